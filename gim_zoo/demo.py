"""The main job: pretrained encoder -> linear probe -> TFLite -> LiteRT, one short table.

`python -m gim_zoo demo` runs offline in about 3 minutes on 2 idle CPU cores, with a
progress bar for every step that takes more than a few seconds:

1. load the bundled pretrained encoder (sha256-verified);
2. encode 10,000 labelled training images (1,000 per class, `--labels_per_class`) and
   the 10,000 test images once, in batches: module 3's grid, rectified and pooled to 3x3
   (the probe's features; the encoder is frozen and the images are not augmented, so
   these cached features are exactly what the probe sees);
3. fit the softmax layer on the cached features (3,000 Adam steps of 256, `--steps`);
4. export encoder + softmax to TFLite fp32 and int8 (post-training quantisation,
   calibrated on 200 training images), run both with LiteRT on the test set;
5. print test top-1, file size and batch-1 latency of Keras, TFLite fp32 and int8.

The project's own probe protocol (`training/probe.py`, the README's results) uses every
label budget and 10,000 steps; the demo trades a few tenths of a point for time.
"""

import os
import time
from pathlib import Path

import numpy as np

DEFAULT_LABELS_PER_CLASS = 1000  # 10,000 labelled images; 0: all 60,000
DEFAULT_STEPS = 3000


def per_image_ms(predict, images, repeats=1):
    """Median single-image latency in milliseconds."""
    times = []
    for image in images:
        start = time.perf_counter()
        for _ in range(repeats):
            predict(image[None])
        times.append((time.perf_counter() - start) / repeats)
    return 1000 * float(np.median(times))


def accuracy(predict, images, labels, batch=500, progress=False):
    """Top-1 of `predict` (images -> class scores) in batches; progress: a Keras
    progress bar over the images."""
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(images), unit_name="image")
    predictions = []
    for i in range(0, len(images), batch):
        predictions.append(np.asarray(predict(images[i:i + batch])).argmax(-1))
        if bar is not None:
            bar.update(min(i + batch, len(images)))
    return float(np.mean(np.concatenate(predictions) == labels))


def encode_images(encoder, images, module=None, pool_to=3, batch_size=250, verbose=1):
    """(N, k*k*C) pooled features of `module` (0/None: the last), computed once in
    batches, with a Keras progress bar (verbose=1)."""
    extractor = encoder.feature_model(module or None, pool_to=pool_to)
    return np.asarray(extractor.predict(np.asarray(images, np.float32),
                                        batch_size=batch_size, verbose=verbose))


def run_demo(name="gim-fmnist-resnet", labels_per_class=DEFAULT_LABELS_PER_CLASS,
             out_dir="runs/demo", latency_images=100, data_dir=None, log=print,
             steps=DEFAULT_STEPS, verbose=1):
    """Returns rows of (format, file size bytes, test top-1, ms per image).

    labels_per_class: class-balanced label budget of the probe (0: all 60,000 images).
    steps: Adam steps (batches of 256) of the softmax layer on the cached features.
    verbose: 1 shows Keras progress bars (encoding, fitting, evaluation); 0 hides them.
    """
    from gim_zoo import registry
    from gim_zoo.exporting import TFLiteModel, export_tflite
    from gim_zoo.models.probe import balanced_subset, probe_from_features
    from gim_zoo.data import load_split
    from gim_zoo.zoo import load
    from gim_zoo.validation import check_int

    # before any work: steps=0 or less would fit forever
    labels_per_class = check_int("labels_per_class", labels_per_class, low=0, note="0: all")
    steps = check_int("steps", steps, low=1)
    latency_images = check_int("latency_images", latency_images, low=1)
    start = time.perf_counter()

    def step(message):
        log(f"[{time.perf_counter() - start:5.0f} s] {message}")

    spec = registry.get(name)
    out_dir = Path(out_dir)
    encoder = load(name)
    step(f"loaded pretrained {name}: {encoder.count_params():,} parameters")
    train_images, train_labels = load_split(spec.dataset, "train", data_dir)
    test_images, test_labels = load_split(spec.dataset, "test", data_dir)
    keep = balanced_subset(train_labels, labels_per_class or None, seed=0)
    module, pool_to = encoder.num_modules, spec.probe_pool_to
    step(f"encoding {len(keep):,} labelled training images once (module {module}, pooled "
         f"to {pool_to}x{pool_to}) ...")
    train = (encode_images(encoder, train_images[keep], module, pool_to, verbose=verbose),
             train_labels[keep])
    step(f"encoding the {len(test_images):,} test images once ...")
    test = (encode_images(encoder, test_images, module, pool_to, verbose=verbose),
            test_labels)
    step(f"fitting the linear probe on the cached features: {steps:,} Adam steps of "
         f"{min(256, len(keep))} ...")
    probe, metrics = probe_from_features(encoder, module, pool_to, train, test,
                                         num_classes=spec.num_classes, steps=steps,
                                         verbose=verbose)
    step(f"probe: train top-1 {100 * metrics['train_accuracy']:.2f}%, test top-1 "
         f"{100 * metrics['test_accuracy']:.2f}%")
    images = test_images.astype(np.float32)
    step("exporting the probe (encoder + softmax) to TFLite fp32 ...")
    fp32_path = export_tflite(probe, out_dir / f"{name}-probe.tflite")
    step("exporting to TFLite int8 (calibrating on 200 training images) ...")
    int8_path = export_tflite(probe, out_dir / f"{name}-probe-int8.tflite",
                              quantize="int8", representative_images=train_images[:200])
    sample = images[:latency_images]
    step(f"Keras latency: batch 1, median of {len(sample)} images ...")
    rows = [("Keras (TensorFlow)", None, metrics["test_accuracy"],
             per_image_ms(lambda x: probe(x, training=False), sample))]
    for label, path in (("TFLite fp32 (LiteRT)", fp32_path), ("TFLite int8 (LiteRT)", int8_path)):
        step(f"{label}: test top-1 on {len(images):,} images, then latency (batch 1, one "
             "thread) ...")
        acc = accuracy(TFLiteModel(path, num_threads=os.cpu_count()), images, test_labels,
                       progress=bool(verbose))
        model = TFLiteModel(path, num_threads=1)
        rows.append((label, os.path.getsize(path), acc, per_image_ms(model, sample, repeats=5)))
    step("done")
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
