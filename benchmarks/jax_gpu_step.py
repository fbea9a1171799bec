"""The paper's STL-10 GIM train step under JAX: images/s and device memory, float32 vs
mixed precision, at two batch sizes. Made for a GPU machine that has JAX but no TensorFlow.

Nothing on this path imports TensorFlow (the child blocks it, so a stray import fails
instead of passing unnoticed): keras (KERAS_BACKEND=jax), jax, numpy and gim_zoo's models
only, on synthetic arrays already on the device. Each (policy, batch size) runs in its own
subprocess, so its peak device memory is its own (`memory_stats()["peak_bytes_in_use"]`:
what XLA's allocator handed out, not the preallocated pool; on a CPU, which keeps no such
statistics, the process's peak RSS instead). A cell: `--steps` steps after `--warmup`
steps (the first compiles), timed to the last step's results on the host.

    # on the GPU machine, from the repository root (docs/gpu.md: carrying the keras wheel)
    python benchmarks/jax_gpu_step.py                       # batch 32 and 128
    python benchmarks/jax_gpu_step.py --policies=float32,mixed_bfloat16 --batch_sizes=64
    # here, on the CPU, at a toy size (what tests/test_gpu_ready.py runs)
    python benchmarks/jax_gpu_step.py --widths=4,4,8 --blocks=1,1,1 --stem_width=8 \\
        --batch_sizes=2,4 --steps=2 --warmup=1 --policies=float32,mixed_float16
"""

import argparse
import importlib.abc
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_POLICIES = "float32,mixed_bfloat16"  # mixed_float16 on request: device time is short


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuse TensorFlow imports, as on the GPU machine that has none."""

    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked: this benchmark runs with keras and jax "
                              "only (the GPU machine has no TensorFlow)")


def measure(policy, batch_size, steps, warmup, overrides):
    """Runs in the child: build under `policy`, train on one device-resident batch."""
    sys.meta_path.insert(0, _NoTensorFlow())
    import jax
    import keras
    import numpy as np

    from gim_zoo import registry
    from gim_zoo.precision import policy_scope

    if keras.backend.backend() != "jax":
        raise RuntimeError("run with KERAS_BACKEND=jax (the parent sets it)")
    spec = registry.get("gim-stl10-resnet")
    keras.utils.set_random_seed(0)
    with policy_scope("" if policy == "float32" else policy):
        model = spec.build_model(overrides, seed=0)
        model.compile(keras.optimizers.Adam(spec.learning_rate))
    size, channels = spec.encoder["image_size"], spec.encoder["channels"]
    images = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, channels))
    device = jax.devices()[0]
    # uncommitted, like the model's state: an array committed to a device changes the
    # train step's input placements after the first step, and XLA compiles it again
    images = jax.device_put(images.astype("float32"))

    start = time.perf_counter()
    for _ in range(warmup):
        logs = model.train_on_batch(images, return_dict=True)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(images, return_dict=True)  # returns host floats
    seconds = time.perf_counter() - start
    stats = device.memory_stats() or {}
    return {"device": f"{device.platform}: {device.device_kind}",
            "images_per_s": batch_size * steps / seconds,
            "warmup_seconds": compile_seconds,
            "loss": float(logs["loss"]),
            "peak_device_mib": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
            "device_limit_mib": stats.get("bytes_limit", 0) / 2**20 or None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "optimizer": type(model.optimizer).__name__,
            "parameters": int(model.encoder.count_params())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help="comma-separated subset of: " + ", ".join(POLICIES))
    parser.add_argument("--batch_sizes", default="32,128")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps per cell (the first compiles)")
    parser.add_argument("--widths", default="", help="override the encoder's (CPU test)")
    parser.add_argument("--blocks", default="", help="override the encoder's (CPU test)")
    parser.add_argument("--stem_width", type=int, default=0,
                        help="override the encoder's (CPU test)")
    parser.add_argument("--timeout", type=float, default=240,
                        help="seconds per cell before it is reported as timed out")
    parser.add_argument("--json", help="also write every cell's figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = {k: tuple(int(v) for v in getattr(args, k).split(","))
                 for k in ("widths", "blocks") if getattr(args, k)}
    if args.stem_width:
        overrides["stem_width"] = args.stem_width
    if args.child:
        print(json.dumps(measure(args.child, args.batch_size, args.steps, args.warmup,
                                 overrides)))
        return

    policies = args.policies.split(",")
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown --policies {sorted(unknown)}; known: {POLICIES}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    env = {**os.environ, "KERAS_BACKEND": "jax",
           # peak_bytes_in_use counts what is used either way; not grabbing 75% of the
           # GPU up front lets the cells' processes follow each other cleanly
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    cells = {}
    for batch in batch_sizes:  # the small batch first: its figures come back soonest
        for policy in policies:
            cmd = [sys.executable, os.path.abspath(__file__), f"--child={policy}",
                   f"--batch_size={batch}", f"--steps={args.steps}",
                   f"--warmup={args.warmup}", f"--widths={args.widths}",
                   f"--blocks={args.blocks}", f"--stem_width={args.stem_width}"]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                     timeout=args.timeout)
            except subprocess.TimeoutExpired:
                cells[policy, batch] = {"error": f"timed out after {args.timeout:.0f} s"}
            else:
                if out.returncode:
                    cells[policy, batch] = {"error": out.stderr.strip()[-2000:]}
                else:
                    cells[policy, batch] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{policy}, batch {batch}: {json.dumps(cells[policy, batch])}",
                  file=sys.stderr, flush=True)
            if args.json:  # after every cell: a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({f"{p} {b}": c for (p, b), c in cells.items()}, f, indent=1)

    done = [c for c in cells.values() if "error" not in c]
    device = done[0]["device"] if done else "no cell finished"
    print(f"\ngim-stl10-resnet train step under JAX ({device}); synthetic 64x64 batches on "
          f"the device, {args.steps} steps after {args.warmup} warm-up\n")
    print("| policy | batch | images/s | x float32 | peak device MiB | x float32 | peak RSS MiB "
          "| warm-up s | final loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch in batch_sizes:
        base = cells.get(("float32", batch), {})
        for policy in policies:
            c = cells[policy, batch]
            if "error" in c:
                print(f"| {policy} | {batch} | failed: {c['error'].splitlines()[-1][:120]} "
                      "| | | | | | |")
                continue

            def ratio(key):
                return (f"{c[key] / base[key]:.2f}" if base.get(key) and c.get(key)
                        else "")

            mem = f"{c['peak_device_mib']:.0f}" if c["peak_device_mib"] else "n/a (CPU)"
            print(f"| {policy} | {batch} | {c['images_per_s']:.1f} | {ratio('images_per_s')} "
                  f"| {mem} | {ratio('peak_device_mib')} | {c['peak_rss_mib']:.0f} | "
                  f"{c['warmup_seconds']:.1f} | {c['loss']:.3f} |")
    if len(done) < len(cells):
        sys.exit(1)


if __name__ == "__main__":
    main()
