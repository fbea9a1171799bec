"""Exported encoders side by side: file size, per-image latency, probe accuracy.

Loads the pretrained encoder, fits a linear probe on Fashion-MNIST, exports the probe
(encoder + softmax) as SavedModel, TFLite fp32 and TFLite int8, and measures in one run:
size on disk, median single-image latency (batch 1, one thread for LiteRT) and test top-1.

    python benchmarks/export_formats.py [--model=gim-fmnist-resnet] [--labels_per_class=0]
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def folder_size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-fmnist-resnet")
    parser.add_argument("--labels_per_class", type=int, default=0)
    parser.add_argument("--latency_images", type=int, default=200)
    args = parser.parse_args()

    import tensorflow as tf

    from gim_zoo import registry
    from gim_zoo.data import image_pipeline
    from gim_zoo.demo import accuracy, per_image_ms
    from gim_zoo.exporting import TFLiteModel, export_saved_model, export_tflite
    from gim_zoo.models.probe import balanced_subset, fit_linear_probe
    from gim_zoo.data import load_split
    from gim_zoo.zoo import load

    spec = registry.get(args.model)
    encoder = load(args.model)
    train_x, train_y = load_split(spec.dataset, "train")
    test_x, test_y = load_split(spec.dataset, "test")
    keep = balanced_subset(train_y, args.labels_per_class or None)
    probe, metrics = fit_linear_probe(
        encoder, image_pipeline(train_x[keep], train_y[keep], spec.dataset, batch_size=256),
        image_pipeline(test_x, test_y, spec.dataset, batch_size=256),
        pool_to=spec.probe_pool_to)
    images = test_x.astype(np.float32)
    sample = images[: args.latency_images]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        saved = export_saved_model(probe, Path(tmp) / "saved_model")
        loaded = tf.saved_model.load(str(saved))
        rows.append(("SavedModel (TF runtime)", folder_size(saved),
                     accuracy(lambda x: loaded.serve(tf.constant(x)).numpy(), images, test_y),
                     per_image_ms(lambda x: loaded.serve(tf.constant(x)), sample)))
        for label, quantize in (("TFLite fp32 (LiteRT)", None), ("TFLite int8 (LiteRT)", "int8")):
            path = export_tflite(probe, Path(tmp) / f"{label.split()[1]}.tflite",
                                 quantize=quantize, representative_images=train_x[:200])
            lite = TFLiteModel(path, num_threads=1)
            rows.append((label, folder_size(path), accuracy(lite, images, test_y),
                         per_image_ms(lite, sample, repeats=5)))

    base_size, base_ms = rows[0][1], rows[0][3]
    print(f"\n{args.model}: linear probe on {len(keep)} labels, Keras test top-1 "
          f"{100 * metrics['test_accuracy']:.2f}%; latency = median of {len(sample)} single "
          f"images; {os.cpu_count()} CPU cores\n")
    print("| format | size KiB | x SavedModel | test top-1 | ms / image | x SavedModel |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, size, acc, ms in rows:
        print(f"| {label} | {size / 1024:.0f} | {size / base_size:.2f} | {100 * acc:.2f}% | "
              f"{ms:.3f} | {ms / base_ms:.2f} |")


if __name__ == "__main__":
    main()
