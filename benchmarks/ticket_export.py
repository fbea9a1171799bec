"""Does sparsity pay in TFLite? A lottery ticket vs its dense network, side by side.

    python benchmarks/ticket_export.py --ticket_dir=runs/lth/lenet-ticket-seed1 [--round=7]

Both come from one IMP run (training/lottery.py): round 0 is the dense network as trained,
round r the ticket as trained. Each is exported to fp32 and int8 TFLite, with and without
the converter's sparse weight format (Optimize.EXPERIMENTAL_SPARSITY), and run with LiteRT
on one thread, batch 1. Prints file size, latency and test top-1, with ratios to the
dense fp32 file. For GIM-encoder tickets the exported model is the encoder's pooled
features (no classifier), so the accuracy column shows the int8/fp32 feature cosine.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticket_dir", required=True, help="an IMP ticket run directory")
    parser.add_argument("--round", type=int, default=-1, help="ticket round (-1: the last)")
    parser.add_argument("--latency_images", type=int, default=300)
    args = parser.parse_args()

    import numpy as np

    from gim_zoo import registry
    from gim_zoo.data import load_fashion_mnist
    from gim_zoo.demo import accuracy, per_image_ms
    from gim_zoo.exporting import TFLiteModel, export_tflite
    from gim_zoo.lottery import completed_rounds, load_ticket, ticket_config

    network = ticket_config(args.ticket_dir)["network"]
    last = completed_rounds(args.ticket_dir) - 1
    r = last if args.round < 0 else args.round
    if r < 1:
        sys.exit(f"error: {args.ticket_dir} has no pruned round yet (rounds done: {last + 1})")
    train_x, _ = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    images = test_x.astype(np.float32)
    sample = images[: args.latency_images]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, which in (("dense (round 0)", 0), (f"ticket (round {r})", r)):
            model, masks = load_ticket(args.ticket_dir, which)
            supervised = not hasattr(model, "encoder")
            exported = model if supervised else model.encoder.feature_model(
                pool_to=registry.get(network).probe_pool_to)
            reference = None if supervised else np.asarray(exported(images[:500]))
            for quantize in (None, "int8"):
                for sparse in (False, True):
                    if which == 0 and sparse:
                        continue  # nothing to compress in a dense network
                    path = export_tflite(
                        exported, Path(tmp) / f"{which}-{quantize}-{sparse}.tflite",
                        quantize=quantize, representative_images=train_x[:200], sparse=sparse)
                    lite = TFLiteModel(path, num_threads=1)
                    if supervised:
                        quality = accuracy(lite, images, test_y)
                    else:
                        got = lite(images[:500])
                        quality = float(np.median(np.sum(got * reference, -1) / (
                            np.linalg.norm(got, axis=-1) * np.linalg.norm(reference, axis=-1))))
                    rows.append((label, "int8" if quantize else "fp32", sparse,
                                 masks.remaining(), os.path.getsize(path),
                                 per_image_ms(lite, sample, repeats=20), quality,
                                 lite.delegated))
    base_size, base_ms = rows[0][4], rows[0][5]
    what = "test top-1" if supervised else "feature cosine vs Keras"
    print(f"{args.ticket_dir}: LiteRT, 1 thread, batch 1, median of "
          f"{args.latency_images} images\n")
    print(f"| network | weights | sparse format | weights kept | file | size vs dense fp32 | "
          f"latency | latency vs dense fp32 | {what} |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for label, kind, sparse, kept, size, ms, quality, delegated in rows:
        runtime = "" if delegated else " (builtin kernels: XNNPACK refused it)"
        shown = f"{100 * quality:.2f}%" if supervised else f"{quality:.4f}"
        print(f"| {label} | {kind} | {'yes' if sparse else 'no'} | {100 * kept:.1f}% | "
              f"{size / 1024:.0f} KiB | {size / base_size:.2f}x | {1000 * ms:.1f} us{runtime} | "
              f"{ms / base_ms:.2f}x | {shown} |")


if __name__ == "__main__":
    main()
