"""Memory of a training step of the paper's STL-10 model, per batch size: size a GPU batch.

Each (configuration, batch size) runs in its own subprocess, so its peak resident memory
(`ru_maxrss`) is its own: the model (registry `gim-stl10-resnet`: 64x64 grayscale, 16x16
patches with stride 8, ResNet-50 stages [3, 4, 6] of widths 64/128/256, three InfoNCE
heads) is built and compiled, RSS is read at rest, then `--warmup` + `--steps` training
steps run on synthetic batches. Printed per row: peak RSS, RSS at rest, the growth during
training (activations kept for the backward pass, gradients, Adam's moments, temporaries,
TensorFlow's graph), and per image: the slope of the growth between the first and last
batch size, which is what a bigger batch costs. docs/gpu.md reads these figures for GPUs.

    python benchmarks/step_memory.py                         # GIM, batch 8 and 32
    python benchmarks/step_memory.py --configs=gim,gim-m1,gim-m3,cpc --batch_sizes=8,16
    python benchmarks/step_memory.py --widths=8,8,16 --blocks=1,1,1 --batch_sizes=2,4  # test
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = {  # key: (row label, registry model, train_module)
    "gim": ("GIM, all modules", "gim-stl10-resnet", None),
    "gim-m1": ("GIM, module 1 only", "gim-stl10-resnet", 1),
    "gim-m2": ("GIM, module 2 only", "gim-stl10-resnet", 2),
    "gim-m3": ("GIM, module 3 only", "gim-stl10-resnet", 3),
    "cpc": ("CPC end-to-end", "cpc-stl10-resnet", None),
}


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name, batch_size, steps, warmup, overrides):
    """Runs in the child: build, read RSS at rest, train, read the peak."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from gim_zoo.allocator import reuse_freed_memory

    reuse_freed_memory()  # before TensorFlow starts, as training/train.py does
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry

    _, model_name, train_module = CONFIGS[name]
    spec = registry.get(model_name)
    keras.utils.set_random_seed(0)
    model = spec.build_model(overrides, train_module, seed=0)
    model.compile(keras.optimizers.Adam(spec.learning_rate), jit_compile=False)
    size, channels = spec.encoder["image_size"], spec.encoder["channels"]
    images = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, channels))
    data = tf.data.Dataset.from_tensors(images.astype("float32")).repeat()
    resting = rss_mib()
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    trained = model.trained_variables if hasattr(model, "trained_variables") \
        else model.trainable_variables
    return {"peak_rss_mib": peak, "resting_rss_mib": resting,
            "parameters": int(model.encoder.count_params()),
            "trained_parameters": int(sum(np.prod(v.shape) for v in trained)),
            "seconds_per_step": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="gim",
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--batch_sizes", default="8,32")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per row")
    parser.add_argument("--widths", default="", help="override the encoder's (tests)")
    parser.add_argument("--blocks", default="", help="override the encoder's (tests)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = {k: tuple(int(v) for v in getattr(args, k).split(","))
                 for k in ("widths", "blocks") if getattr(args, k)}
    if args.child:
        print(json.dumps(measure(args.child, args.batch_size, args.steps, args.warmup,
                                 overrides)))
        return

    names = args.configs.split(",")
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {list(CONFIGS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if min(batch_sizes) < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch_sizes and --steps must be >= 1, --warmup >= 0")
    rows = {}
    for name in names:
        for batch in batch_sizes:
            cmd = [sys.executable, __file__, f"--child={name}", f"--batch_size={batch}",
                   f"--steps={args.steps}", f"--warmup={args.warmup}",
                   f"--widths={args.widths}", f"--blocks={args.blocks}"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{CONFIGS[name][0]}, batch {batch} failed:\n{out.stderr[-3000:]}")
            rows[name, batch] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"measured {CONFIGS[name][0]}, batch {batch}: "
                  f"{rows[name, batch]['peak_rss_mib']:.0f} MiB peak, "
                  f"{rows[name, batch]['seconds_per_step']:.1f} s/step",
                  file=sys.stderr, flush=True)

    encoder = "registry encoder" if not overrides else f"encoder overrides {overrides}"
    print(f"\nPeak RSS of training steps (TensorFlow, float32, CPU), {encoder}; "
          f"{args.warmup} + {args.steps} steps per row, {os.cpu_count()} CPU cores\n")
    print("| configuration | batch | peak RSS MiB | at rest MiB | growth in training MiB "
          "| growth per image MiB | s / step |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first, last = batch_sizes[0], batch_sizes[-1]
    for name in names:
        for batch in batch_sizes:
            row = rows[name, batch]
            growth = row["peak_rss_mib"] - row["resting_rss_mib"]
            print(f"| {CONFIGS[name][0]} | {batch} | {row['peak_rss_mib']:.0f} | "
                  f"{row['resting_rss_mib']:.0f} | {growth:.0f} | {growth / batch:.1f} | "
                  f"{row['seconds_per_step']:.1f} |")
        if last != first:
            a, b = rows[name, first], rows[name, last]
            slope = ((b["peak_rss_mib"] - b["resting_rss_mib"])
                     - (a["peak_rss_mib"] - a["resting_rss_mib"])) / (last - first)
            print(f"| {CONFIGS[name][0]}: each image more ({first} -> {last}) | | | | | "
                  f"{slope:.1f} | |")
    for name in names:
        row = rows[name, first]
        print(f"\n{CONFIGS[name][0]}: {row['parameters']:,} encoder parameters, "
              f"{row['trained_parameters']:,} trained (with heads); float32 weights + "
              f"gradients + Adam's two moments: "
              f"{row['trained_parameters'] * 4 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
