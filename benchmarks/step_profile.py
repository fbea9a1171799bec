"""Where one GIM training step spends its time: each part timed on its own, side by side.

Parts (each a compiled tf.function, run on the same synthetic batch): patch extraction,
each module's convolutions (forward + backward), its patch pooling, its InfoNCE loss
(forward + backward) and the Adam update; then the whole `train_step` for comparison.
The shares are of the sum of the parts.

    python benchmarks/step_profile.py                      # batch 32 and 128
    python benchmarks/step_profile.py --model=gim-fmnist-resnet-deep --batch_sizes=32
    python benchmarks/step_profile.py --default_malloc     # glibc's defaults: page faults
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(fn, *args, repeats=5):
    """Milliseconds per call after one warm-up (compilation) call."""
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return (time.perf_counter() - start) / repeats * 1000


def profile(model_name, batch_size, repeats):
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry

    keras.utils.set_random_seed(0)
    model = registry.get(model_name).build_model(seed=0)
    model.compile(keras.optimizers.Adam(2e-4))
    encoder = model.encoder
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1)),
                         tf.float32)
    parts = {"patch extraction": timed(tf.function(encoder.patches), images, repeats=repeats)}
    h = encoder.patches(images)
    for i, module in enumerate(encoder.gim_modules):
        def convolutions(h, module=module):
            with tf.GradientTape() as tape:
                out = module(h, training=True)
                proxy = tf.reduce_sum(out * out)  # stands in for the loss's gradient
            return tape.gradient(proxy, module.trainable_variables)

        def infonce(z, head=model.heads[i]):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = head(z, z)
            return tape.gradient(loss, [z, *head.trainable_variables])

        parts[f"module {i + 1} convolutions (fwd+bwd)"] = timed(tf.function(convolutions), h,
                                                                 repeats=repeats)
        h = module(h)
        parts[f"module {i + 1} patch pooling"] = timed(tf.function(encoder.grid_pool), h,
                                                       repeats=repeats)
        parts[f"module {i + 1} InfoNCE (fwd+bwd)"] = timed(tf.function(infonce),
                                                           encoder.grid_pool(h),
                                                           repeats=repeats)
    variables = model.trainable_variables
    zeros = [tf.zeros_like(v) for v in variables]
    model.optimizer.build(variables)
    parts["Adam update"] = timed(tf.function(lambda g: model.optimizer.apply(g, variables)),
                                 zeros, repeats=repeats)
    whole = timed(tf.function(model.train_step), images, repeats=repeats)
    return parts, whole


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-fmnist-resnet")
    parser.add_argument("--batch_sizes", default="32,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--default_malloc", action="store_true",
                        help="keep glibc's malloc defaults (the scripts reuse freed memory)")
    args = parser.parse_args()
    if not args.default_malloc:
        from gim_zoo.allocator import reuse_freed_memory

        reuse_freed_memory()  # before TensorFlow starts, as the scripts do
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = {b: profile(args.model, b, args.repeats) for b in batch_sizes}
    print(f"\n{args.model}: ms per training step and per image, {os.cpu_count()} CPU cores\n")
    print("| part | " + " | ".join(f"batch {b}: ms | ms/image | share" for b in batch_sizes)
          + " |")
    print("|---|" + "---:|---:|---:|" * len(batch_sizes))
    for part in results[batch_sizes[0]][0]:
        cells = []
        for b in batch_sizes:
            parts = results[b][0]
            ms = parts[part]
            cells.append(f"{ms:.1f} | {ms / b:.3f} | {ms / sum(parts.values()):.0%}")
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("| sum of parts | " + " | ".join(
        f"{sum(results[b][0].values()):.1f} | {sum(results[b][0].values()) / b:.3f} | 100%"
        for b in batch_sizes) + " |")
    print("| whole train_step | " + " | ".join(
        f"{results[b][1]:.1f} | {results[b][1] / b:.3f} | " for b in batch_sizes) + " |")


if __name__ == "__main__":
    main()
