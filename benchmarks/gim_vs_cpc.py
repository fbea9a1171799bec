"""Greedy InfoMax vs end-to-end CPC: training throughput and peak memory, side by side.

Each configuration runs in its own subprocess (so peak resident memory is its own), one
after another, on the same synthetic 28x28 batches (throughput does not depend on the
pixels). Printed: images per CPU-second (all threads) and per wall-clock second, peak RSS,
the growth of RSS during training over the model's resting footprint, and ratios against
GIM training all modules at once. Speed ratios use CPU time: on these 2-vCPU machines
wall-clock rates jump between whole fractions as the host's CPU quota comes and goes
(docs/next-flagship.md).

    python benchmarks/gim_vs_cpc.py                 # registry encoder, batch 64
    python benchmarks/gim_vs_cpc.py --steps=5 --batch_size=16   # quick look
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = {
    "GIM, all modules": dict(model="gim-fmnist-resnet"),
    "CPC end-to-end": dict(model="cpc-fmnist-resnet"),
    "GIM, module 1 only": dict(model="gim-fmnist-resnet", train_module=1),
    "GIM, module 2 only": dict(model="gim-fmnist-resnet", train_module=2),
    "GIM, module 3 only": dict(model="gim-fmnist-resnet", train_module=3),
}


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name, batch_size, steps, warmup):
    """Runs in the child: build, warm up, time `steps` training steps."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from gim_zoo.allocator import reuse_freed_memory

    reuse_freed_memory()  # before TensorFlow starts, as the training scripts do
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry

    config = CONFIGS[name]
    keras.utils.set_random_seed(0)
    model = registry.get(config["model"]).build_model(
        train_module=config.get("train_module"), seed=0)
    model.compile(keras.optimizers.Adam(2e-4))
    images = np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1))
    data = tf.data.Dataset.from_tensors(images.astype("float32")).repeat()
    resting = rss_mb()
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"images_per_s": batch_size * steps / seconds,
            "images_per_cpu_s": batch_size * steps / cpu_seconds, "peak_rss_mb": peak,
            "training_rss_mb": peak - resting}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch_size, args.steps, args.warmup)))
        return

    results = {}
    for name in CONFIGS:
        cmd = [sys.executable, __file__, f"--child={name}", f"--batch_size={args.batch_size}",
               f"--steps={args.steps}", f"--warmup={args.warmup}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        print(f"measured {name}", file=sys.stderr)

    base = results["GIM, all modules"]
    print(f"\nbatch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{os.cpu_count()} CPU cores, gim-fmnist-resnet encoder\n")
    print("| configuration | images per CPU-second | x GIM | images/s (wall) | peak RSS MiB "
          "| x GIM | RSS growth in training MiB | x GIM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cpu_ratio = r["images_per_cpu_s"] / base["images_per_cpu_s"]
        print(f"| {name} | {r['images_per_cpu_s']:.1f} | {cpu_ratio:.2f} | {r['images_per_s']:.0f}"
              f" | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}"
              f" | {r['training_rss_mb']:.0f} | "
              f"{r['training_rss_mb'] / base['training_rss_mb']:.2f} |")


if __name__ == "__main__":
    main()
