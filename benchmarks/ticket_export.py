"""Does sparsity pay in TFLite? A lottery ticket vs its dense network, side by side.

    python benchmarks/ticket_export.py --ticket_dir=runs/lth/lenet-ticket-seed1 [--round=7]

Both come from one IMP run (training/lottery.py): round 0 is the dense network as trained,
round r the ticket as trained. Each is exported as a SavedModel (run by TensorFlow), and to
fp32 and int8 TFLite, with and without the converter's sparse weight format
(Optimize.EXPERIMENTAL_SPARSITY), run with LiteRT on one thread; batch 1 throughout.
--out also writes the table to a markdown file. Prints file size, latency and test top-1, with ratios to the
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
    parser.add_argument("--out", default="", help="also write the table here (markdown)")
    args = parser.parse_args()
    if args.latency_images < 1:
        sys.exit(f"error: --latency_images must be >= 1, got {args.latency_images}")

    import numpy as np

    from gim_zoo.cli import native_logs_captured

    with native_logs_captured():  # TensorFlow's start-up CUDA probing: noise on CPU machines
        import tensorflow as tf

        tf.config.list_physical_devices()
    from gim_zoo import registry
    from gim_zoo.data import load_fashion_mnist
    from gim_zoo.demo import accuracy, per_image_ms
    from gim_zoo.exporting import TFLiteModel, export_saved_model, export_tflite
    from gim_zoo.files import atomic_write_text
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
            rows.append(_saved_model_row(exported, Path(tmp) / f"saved-{which}", label,
                                         masks.remaining(), images, test_y, reference,
                                         sample, export_saved_model))
            for quantize in (None, "int8"):
                for sparse in (False, True):
                    if which == 0 and sparse:
                        continue  # nothing to compress in a dense network
                    with native_logs_captured():  # the converter's C++ lines, per file
                        path = export_tflite(
                            exported, Path(tmp) / f"{which}-{quantize}-{sparse}.tflite",
                            quantize=quantize, representative_images=train_x[:200],
                            sparse=sparse)
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
    # ratios against the dense network's fp32 TFLite file
    base = next(r for r in rows if r[0].startswith("dense") and r[1] == "fp32" and not r[2])
    base_size, base_ms = base[4], base[5]
    what = "test top-1" if supervised else "feature cosine vs Keras"
    lines = [f"{args.ticket_dir}: batch 1, median of {args.latency_images} images; "
             "TFLite files run by LiteRT on 1 thread, SavedModels by TensorFlow", "",
             f"| network | format | sparse format | weights kept | file | size vs dense fp32 "
             f"TFLite | latency | latency vs dense fp32 TFLite | {what} |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, kind, sparse, kept, size, ms, quality, delegated in rows:
        runtime = "" if delegated else " (builtin kernels: XNNPACK refused it)"
        shown = f"{100 * quality:.2f}%" if supervised else f"{quality:.4f}"
        fmt = "SavedModel" if kind == "savedmodel" else f"TFLite {kind}"
        lines.append(
            f"| {label} | {fmt} | {'yes' if sparse else 'no'} | {100 * kept:.1f}% | "
            f"{size / 1024:.0f} KiB | {size / base_size:.2f}x | {1000 * ms:.1f} us{runtime} | "
            f"{ms / base_ms:.2f}x | {shown} |")
    print("\n".join(lines))
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


def _saved_model_row(exported, path, label, kept, images, labels, reference, sample,
                     export_saved_model):
    """(label, "savedmodel", False, kept, folder bytes, ms per image, quality, True)."""
    import numpy as np
    import tensorflow as tf

    from gim_zoo.demo import accuracy, per_image_ms

    folder = export_saved_model(exported, path)
    size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    loaded = tf.saved_model.load(str(folder))

    def serve(x):
        return np.asarray(loaded.serve(tf.constant(x, tf.float32)))

    if reference is None:
        quality = accuracy(serve, images, labels)
    else:
        got = serve(images[:500])
        quality = float(np.median(np.sum(got * reference, -1) / (
            np.linalg.norm(got, axis=-1) * np.linalg.norm(reference, axis=-1))))
    return (label, "savedmodel", False, kept, size, per_image_ms(serve, sample, repeats=5),
            quality, True)

if __name__ == "__main__":
    main()
