"""The main job: pretrained encoder -> linear probe -> TFLite -> LiteRT, one short table.

Runs offline in a few minutes on 2 CPU cores (`python -m gim_zoo demo`).
"""

import os
import time
from pathlib import Path

import numpy as np

from gim_zoo import registry
from gim_zoo.data import image_pipeline
from gim_zoo.exporting import TFLiteModel, export_tflite
from gim_zoo.models.probe import balanced_subset, fit_linear_probe
from gim_zoo.training import load_split
from gim_zoo.zoo import load


def per_image_ms(predict, images, repeats=1):
    """Median single-image latency in milliseconds."""
    times = []
    for image in images:
        start = time.perf_counter()
        for _ in range(repeats):
            predict(image[None])
        times.append((time.perf_counter() - start) / repeats)
    return 1000 * float(np.median(times))


def accuracy(predict, images, labels, batch=500):
    predictions = np.concatenate([np.asarray(predict(images[i:i + batch])).argmax(-1)
                                  for i in range(0, len(images), batch)])
    return float(np.mean(predictions == labels))


def run_demo(name="gim-fmnist-resnet", labels_per_class=0, out_dir="runs/demo",
             latency_images=100, data_dir=None, log=print):
    """Returns rows of (format, file size bytes, test top-1, ms per image)."""
    spec = registry.get(name)
    out_dir = Path(out_dir)
    encoder = load(name)
    log(f"loaded pretrained {name}: {encoder.count_params():,} parameters")
    train_images, train_labels = load_split(spec.dataset, "train", data_dir)
    test_images, test_labels = load_split(spec.dataset, "test", data_dir)
    keep = balanced_subset(train_labels, labels_per_class or None, seed=0)
    log(f"fitting a linear probe on {len(keep)} labelled images ...")
    probe, metrics = fit_linear_probe(
        encoder, image_pipeline(train_images[keep], train_labels[keep], spec.dataset,
                                batch_size=256),
        image_pipeline(test_images, test_labels, spec.dataset, batch_size=256),
        pool_to=spec.probe_pool_to)
    images = test_images.astype(np.float32)
    log("exporting the probe (encoder + softmax) to TFLite fp32 and int8 ...")
    keras_probe = probe  # images -> class probabilities
    fp32_path = export_tflite(keras_probe, out_dir / f"{name}-probe.tflite")
    int8_path = export_tflite(keras_probe, out_dir / f"{name}-probe-int8.tflite",
                              quantize="int8", representative_images=train_images[:200])
    sample = images[:latency_images]
    rows = [("Keras (TensorFlow)", None, metrics["test_accuracy"],
             per_image_ms(lambda x: keras_probe(x, training=False), sample))]
    for label, path in (("TFLite fp32 (LiteRT)", fp32_path), ("TFLite int8 (LiteRT)", int8_path)):
        model = TFLiteModel(path, num_threads=1)
        rows.append((label, os.path.getsize(path), accuracy(model, images, test_labels),
                     per_image_ms(model, sample, repeats=5)))
    return rows


def format_table(rows, labelled):
    lines = [f"Fashion-MNIST test top-1 of a linear probe ({labelled}) on the pretrained "
             "encoder", "",
             "| model | file size | test top-1 | latency per image (batch 1) |",
             "|---|---:|---:|---:|"]
    for label, size, acc, ms in rows:
        size_text = "-" if size is None else f"{size / 1024:.0f} KiB"
        lines.append(f"| {label} | {size_text} | {100 * acc:.2f}% | {ms:.2f} ms |")
    return "\n".join(lines)
