"""GreedyInfoMax train steps per second under TensorFlow and JAX, side by side.

Runs this script once per backend in a subprocess (Keras fixes its backend at import), each
building the same registry model (same encoder settings, batch, random images), compiling,
running one warm-up epoch (tracing / XLA compilation, reported apart) and then timing
`--steps` train steps with `fit`. The backends alternate for `--repeats` rounds (so a
change in machine load hits both) and the table shows medians: images/s and the ratio to
TensorFlow.

    python benchmarks/backends.py [--model=gim-fmnist-resnet] [--batch_size=32] [--steps=20]
        [--repeats=3] [--train_module=K] [--tiny] [--backends=tensorflow,jax]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TINY = {"stem_width": 8, "widths": (4, 4, 8), "blocks": (1, 1, 1), "expansion": 2}


def measure(args):
    """In the worker: one backend's numbers, printed as a JSON line."""
    import keras
    import numpy as np

    from gim_zoo import registry

    spec = registry.get(args.model)
    keras.utils.set_random_seed(0)
    model = spec.build_model(encoder_overrides=TINY if args.tiny else None,
                             train_module=args.train_module, seed=0)
    shape = (spec.encoder["image_size"], spec.encoder["image_size"], spec.encoder["channels"])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(args.batch_size * args.steps, *shape)).astype("float32")
    model.compile(keras.optimizers.Adam(spec.learning_rate))
    start = time.perf_counter()
    model.fit(images[: args.batch_size], batch_size=args.batch_size, epochs=1, verbose=0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(images, batch_size=args.batch_size, epochs=1, verbose=0,
                        shuffle=False).history
    seconds = time.perf_counter() - start
    print(json.dumps({"backend": keras.backend.backend(), "warmup_s": warmup,
                      "seconds": seconds, "images_per_s": len(images) / seconds,
                      "loss": float(history["loss"][-1])}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-fmnist-resnet")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_module", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny encoder widths")
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return measure(args)

    runs = {}
    for _, backend in [(r, b) for r in range(args.repeats) for b in args.backends.split(",")]:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        argv = [sys.executable, __file__, "--worker", f"--model={args.model}",
                f"--batch_size={args.batch_size}", f"--steps={args.steps}"]
        argv += ["--tiny"] if args.tiny else []
        argv += [f"--train_module={args.train_module}"] if args.train_module else []
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{backend}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        runs.setdefault(backend, []).append(json.loads(lines[-1]))
    if not runs:
        return 1
    rows = [{"backend": b, "runs": len(r),
             **{k: statistics.median(x[k] for x in r) for k in ("warmup_s", "images_per_s")},
             "spread": (min(x["images_per_s"] for x in r), max(x["images_per_s"] for x in r))}
            for b, r in runs.items()]
    base = next((r["images_per_s"] for r in rows if r["backend"] == "tensorflow"), None)
    which = f"{args.model}{' (tiny)' if args.tiny else ''}"
    module = f", train_module={args.train_module}" if args.train_module else ""
    print(f"\n{which}, batch {args.batch_size}, {args.steps} timed steps{module}, "
          f"{os.cpu_count()} CPU cores; medians of {args.repeats} alternating runs\n")
    print("| backend | warm-up (trace + compile) s | images/s (min-max) | vs TensorFlow |")
    print("|---|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else "-"
        low, high = r["spread"]
        print(f"| {r['backend']} | {r['warmup_s']:.1f} | {r['images_per_s']:.0f} "
              f"({low:.0f}-{high:.0f}) | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
