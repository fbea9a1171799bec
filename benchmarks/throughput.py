"""Training images/s against batch size: GIM (all modules, module at a time) and CPC, with
and without XLA, under four memory allocators.

Each configuration runs in its own subprocess, which builds one model per batch size and
times them in interleaved rounds (every batch size once per round), so the batch sizes
of a row are measured under the same conditions; a cell is the median over rounds. Rows
run with the scripts' malloc settings (`gim_zoo.allocator.reuse_freed_memory`) unless
they say "default malloc": glibc's defaults, under which every step maps its big tensors
afresh and pays page faults that grow with the batch; "tcmalloc" and "jemalloc" rows run
glibc's defaults with that allocator preloaded into the subprocess (LD_PRELOAD; Debian:
apt-get install libtcmalloc-minimal4 libjemalloc2). "XLA" rows compile the train step with
`jit_compile=True`; every other row with `jit_compile=False` (what "auto" does on a CPU).
"all-pairs" also swaps in the earlier InfoNCE, which scored every context against every
target of the batch (O(batch^2)) before picking the sampled negatives. The ratio columns
are 1.0 when the per-image cost is flat; the peak RSS is the subprocess's, over all its
batch sizes (the largest dominates).

    python benchmarks/throughput.py                          # batch 32, 64, 128, 256
    python benchmarks/throughput.py --batch_sizes=32,128 --rounds=3   # quick look
    python benchmarks/throughput.py --configs=gim,gim-xla,cpc,cpc-xla --batch_sizes=32,128
    python benchmarks/throughput.py --configs=gim,gim-default-malloc,gim-tcmalloc,gim-jemalloc
    python benchmarks/throughput.py --model=gim-fmnist-resnet-deep
"""

import argparse
import ctypes.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {  # key: (row label, settings)
    "gim": ("GIM, all modules", dict()),
    "gim-default-malloc": ("GIM, all modules, default malloc", dict(default_malloc=True)),
    "gim-before": ("GIM, all modules, default malloc, all-pairs InfoNCE",
                   dict(all_pairs=True, default_malloc=True)),
    "gim-m1": ("GIM, module 1 only", dict(train_module=1)),
    "gim-m2": ("GIM, module 2 only", dict(train_module=2)),
    "gim-m3": ("GIM, module 3 only", dict(train_module=3)),
    "cpc": ("CPC end-to-end", dict(cpc=True)),
    "cpc-default-malloc": ("CPC end-to-end, default malloc", dict(cpc=True, default_malloc=True)),
    "gim-xla": ("GIM, all modules, XLA", dict(jit_compile=True)),
    "cpc-xla": ("CPC end-to-end, XLA", dict(cpc=True, jit_compile=True)),
    "gim-tcmalloc": ("GIM, all modules, tcmalloc", dict(default_malloc=True, preload="tcmalloc")),
    "gim-jemalloc": ("GIM, all modules, jemalloc", dict(default_malloc=True, preload="jemalloc")),
}
# Rows that compare two configurations: numerator / denominator, per batch size.
COMPARISONS = [("gim", "gim-default-malloc"), ("gim", "gim-before"), ("gim-xla", "gim"),
               ("cpc-xla", "cpc"), ("gim-tcmalloc", "gim"), ("gim-jemalloc", "gim")]
# LD_PRELOAD allocators: the shared library (found on the loader's path) and the Debian
# package that installs it.
ALLOCATORS = {"tcmalloc": ("tcmalloc_minimal", "libtcmalloc-minimal4"),
              "jemalloc": ("jemalloc", "libjemalloc2")}


def preload_env(name):
    """The child's environment with allocator `name` preloaded; SystemExit if missing."""
    library, package = ALLOCATORS[name]
    found = ctypes.util.find_library(library)
    if not found:
        sys.exit(f"{name} is not installed (lib{library}.so not found): apt-get install "
                 f"{package}, or leave the gim-{name} row out of --configs")
    return {**os.environ, "LD_PRELOAD": found}


def loaded_allocator(name):
    """Whether the preloaded allocator is mapped into this process (checked in the child,
    so a row never claims an allocator it did not run with)."""
    with open("/proc/self/maps") as maps:
        return ALLOCATORS[name][0] in maps.read()


def all_pairs_info_nce(context, transformed_targets, negative_indices):
    """The earlier loss: a (P, P) score matrix, P = contexts in the batch, then the
    sampled negatives picked from it. Same value as the gathered loss (tests/test_infonce)."""
    from keras import ops

    channels = transformed_targets.shape[-1]
    positive = ops.sum(context * transformed_targets, axis=-1, keepdims=True)
    queries = ops.reshape(context, (-1, channels))
    keys = ops.reshape(transformed_targets, (-1, channels))
    all_scores = ops.matmul(queries, ops.transpose(keys))
    flat = ops.reshape(negative_indices, (ops.shape(queries)[0], -1))
    negative = ops.reshape(ops.take_along_axis(all_scores, flat, axis=1),
                           ops.shape(negative_indices))
    logits = ops.concatenate([positive, negative], axis=-1)
    return -ops.mean(ops.log_softmax(logits, axis=-1)[..., 0])


def measure(config_name, model_name, batch_sizes, warmup, rounds, images_per_round):
    """Runs in the child: per batch size build a model and warm it up, then `rounds`
    rounds of ~`images_per_round` training images per batch size, in wall-clock images/s
    and in images per CPU-second (all threads). On the 2-vCPU VMs measured here a process
    runs at half speed for long stretches (the same CPU time, twice the wall time, as if
    one core were taken away: the host's CPU quota), so wall-clock numbers depend on when
    a cell ran; CPU time per image does not."""
    config = CONFIGS[config_name][1]
    if config.get("preload") and not loaded_allocator(config["preload"]):
        raise RuntimeError(f"{config['preload']} was not preloaded (LD_PRELOAD="
                           f"{os.environ.get('LD_PRELOAD')!r})")
    if not config.get("default_malloc"):
        from gim_zoo.allocator import reuse_freed_memory

        reuse_freed_memory()  # before TensorFlow starts, as the scripts do
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry
    from gim_zoo.models import infonce

    if config.get("all_pairs"):
        infonce.info_nce_from_scores = all_pairs_info_nce
    name = model_name.replace("gim-", "cpc-", 1) if config.get("cpc") else model_name
    cells = {}
    for batch_size in batch_sizes:
        keras.utils.set_random_seed(0)
        model = registry.get(name).build_model(train_module=config.get("train_module"), seed=0)
        model.compile(keras.optimizers.Adam(2e-4), jit_compile=config.get("jit_compile", False))
        images = np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1))
        data = tf.data.Dataset.from_tensors(images.astype("float32")).repeat()
        model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
        cells[batch_size] = model, data, max(2, images_per_round // batch_size)
    rates, cpu_rates, faults, system_ms = ({b: [] for b in batch_sizes} for _ in range(4))
    for _ in range(rounds):
        for batch_size, (model, data, steps) in cells.items():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
            images = batch_size * steps
            rates[batch_size].append(images / (time.perf_counter() - start))
            cpu_rates[batch_size].append(images / (time.process_time() - cpu_start))
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults[batch_size].append((after.ru_minflt - usage.ru_minflt) / images)
            system_ms[batch_size].append((after.ru_stime - usage.ru_stime) * 1000 / images)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {str(b): {"images_per_s": statistics.median(rates[b]), "all": rates[b],
                     "images_per_cpu_s": statistics.median(cpu_rates[b]),
                     "all_cpu": cpu_rates[b],
                     "page_faults_per_image": statistics.median(faults[b]),
                     "system_ms_per_image": statistics.median(system_ms[b]),
                     "peak_rss_mib": peak_mib}
            for b in batch_sizes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-fmnist-resnet",
                        help="registry name of the GIM model (CPC: the cpc- twin)")
    parser.add_argument("--batch_sizes", default="32,64,128,256")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--images_per_round", type=int, default=256,
                        help="training images per batch size and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds; a cell is the median over them")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.child:
        print(json.dumps(measure(args.child, args.model, batch_sizes, args.warmup,
                                 args.rounds, args.images_per_round)))
        return

    names = list(dict.fromkeys(args.configs.split(",")))  # in the order given: reversing
    unknown = set(names) - set(CONFIGS)  # it in a second run shows what order did
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {list(CONFIGS)}")
    table, wall, faults, peak = {}, {}, {}, {}
    for name in names:
        cmd = [sys.executable, __file__, f"--child={name}", f"--model={args.model}",
               f"--batch_sizes={args.batch_sizes}", f"--warmup={args.warmup}",
               f"--rounds={args.rounds}", f"--images_per_round={args.images_per_round}"]
        preload = CONFIGS[name][1].get("preload")
        out = subprocess.run(cmd, capture_output=True, text=True,
                             env=preload_env(preload) if preload else None)
        if out.returncode:
            sys.exit(f"{CONFIGS[name][0]} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for batch in batch_sizes:
            cell = result[str(batch)]
            table[name, batch] = cell["images_per_cpu_s"]
            wall[name, batch] = cell["images_per_s"]
            peak[name] = cell["peak_rss_mib"]
            faults[name, batch] = (f'{cell["page_faults_per_image"]:.0f} '
                                   f'({cell["system_ms_per_image"]:.2f} ms)')
            print(f"measured {CONFIGS[name][0]}, batch {batch}: "
                  f"{', '.join(f'{r:.0f}' for r in cell['all'])} images/s, "
                  f"{', '.join(f'{r:.1f}' for r in cell['all_cpu'])} images/CPU-s",
                  file=sys.stderr, flush=True)

    first, others = batch_sizes[0], batch_sizes[1:]
    for title, values, fmt in (("training images per CPU-second (all threads)", table, ".1f"),
                               ("training images/s, wall clock", wall, ".0f")):
        print(f"\n{args.model}: {title}, median of {args.rounds} interleaved rounds, "
              f"{os.cpu_count()} CPU cores, synthetic 28x28 batches\n")
        head = " | ".join(f"batch {b}" for b in batch_sizes)
        ratios = " | ".join(f"{b} / {first}" for b in others)
        print(f"| configuration | {head} | {ratios} | peak RSS MiB |")
        print("|---|" + "---:|" * (len(batch_sizes) + len(others) + 1))
        for name in names:
            cells = " | ".join(f"{values[name, b]:{fmt}}" for b in batch_sizes)
            ratio = " | ".join(f"{values[name, b] / values[name, first]:.2f}" for b in others)
            print(f"| {CONFIGS[name][0]} | {cells} | {ratio} | {peak[name]:.0f} |")
        for a, b in COMPARISONS:
            if a in names and b in names:
                cells = " | ".join(f"{values[a, n] / values[b, n]:.2f}x" for n in batch_sizes)
                print(f"| {CONFIGS[a][0]} / {CONFIGS[b][0]} | {cells} |" + " |" * len(others)
                      + f" {peak[a] / peak[b]:.2f}x |")
    print(f"\n{args.model}: minor page faults per training image (system CPU time per "
          f"image), median of {args.rounds} rounds\n")
    print("| configuration | " + " | ".join(f"batch {b}" for b in batch_sizes) + " |")
    print("|---|" + "---:|" * len(batch_sizes))
    for name in names:
        print(f"| {CONFIGS[name][0]} | " + " | ".join(faults[name, b] for b in batch_sizes)
              + " |")


if __name__ == "__main__":
    main()
