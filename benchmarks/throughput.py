"""Training images/s against batch size: GIM (all modules, module at a time) and CPC.

Each (configuration, batch size) runs in its own subprocess, one after another, on the
same synthetic 28x28 batches (throughput does not depend on the pixels). The row "before"
swaps in the earlier InfoNCE, which scored every context against every target of the
batch (O(batch^2)) before picking the sampled negatives, so the table compares the two in
one run. The last column, images/s at the largest batch over images/s at the smallest,
is 1.0 when the per-image cost is flat.

    python benchmarks/throughput.py                          # batch 32, 64, 128, 256
    python benchmarks/throughput.py --batch_sizes=32,128 --steps=10   # quick look
    python benchmarks/throughput.py --model=gim-fmnist-resnet-deep
"""

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = {  # key: (row label, settings)
    "gim": ("GIM, all modules", dict()),
    "gim-before": ("GIM, all modules, before (all-pairs InfoNCE)", dict(all_pairs=True)),
    "gim-m1": ("GIM, module 1 only", dict(train_module=1)),
    "gim-m2": ("GIM, module 2 only", dict(train_module=2)),
    "gim-m3": ("GIM, module 3 only", dict(train_module=3)),
    "cpc": ("CPC end-to-end", dict(cpc=True)),
}


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


def measure(config_name, model_name, batch_size, steps, warmup, repeats):
    """Runs in the child: build, warm up, time `steps` training steps `repeats` times and
    keep the best, in wall-clock images/s and in images per CPU-second (all threads). On
    the 2-vCPU VMs measured here a process runs at half speed for long stretches (the
    same CPU time, twice the wall time, as if one core were taken away, whatever the
    configuration: the host's CPU quota), so wall-clock numbers depend on when a cell ran;
    CPU time per image does not."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from gim_zoo import registry
    from gim_zoo.models import infonce

    config = CONFIGS[config_name][1]
    if config.get("all_pairs"):
        infonce.info_nce_from_scores = all_pairs_info_nce
    keras.utils.set_random_seed(0)
    name = model_name.replace("gim-", "cpc-", 1) if config.get("cpc") else model_name
    model = registry.get(name).build_model(train_module=config.get("train_module"), seed=0)
    model.compile(keras.optimizers.Adam(2e-4))
    images = np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1))
    data = tf.data.Dataset.from_tensors(images.astype("float32")).repeat()
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    rates, cpu_rates = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        rates.append(batch_size * steps / (time.perf_counter() - start))
        cpu_rates.append(batch_size * steps / (time.process_time() - cpu_start))
    return {"images_per_s": max(rates), "all": rates,
            "images_per_cpu_s": max(cpu_rates), "all_cpu": cpu_rates}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gim-fmnist-resnet",
                        help="registry name of the GIM model (CPC: the cpc- twin)")
    parser.add_argument("--batch_sizes", default="32,64,128,256")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps per repeat; 0: enough for ~256 images")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats per cell; the table shows the best")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.model, args.batch_size, args.steps,
                                 args.warmup, args.repeats)))
        return

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    names = [n for n in CONFIGS if n in args.configs.split(",")]
    unknown = set(args.configs.split(",")) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {list(CONFIGS)}")
    table, wall = {}, {}
    for name in names:
        for batch in batch_sizes:
            steps = args.steps or max(2, 256 // batch)
            cmd = [sys.executable, __file__, f"--child={name}", f"--model={args.model}",
                   f"--batch_size={batch}", f"--steps={steps}", f"--warmup={args.warmup}",
                   f"--repeats={args.repeats}"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{CONFIGS[name][0]}, batch {batch} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            table[name, batch] = result["images_per_cpu_s"]
            wall[name, batch] = result["images_per_s"]
            print(f"measured {CONFIGS[name][0]}, batch {batch}: "
                  f"{', '.join(f'{r:.0f}' for r in result['all'])} images/s, "
                  f"{', '.join(f'{r:.1f}' for r in result['all_cpu'])} images/CPU-s",
                  file=sys.stderr, flush=True)

    for title, values, fmt in (("training images per CPU-second (all threads)", table, ".1f"),
                               ("training images/s, wall clock", wall, ".0f")):
        print(f"\n{args.model}: {title}, best of {args.repeats} timed repeats, "
              f"{os.cpu_count()} CPU cores, synthetic 28x28 batches\n")
        head = " | ".join(f"batch {b}" for b in batch_sizes)
        print(f"| configuration | {head} | batch {batch_sizes[-1]} / batch {batch_sizes[0]} |")
        print("|---|" + "---:|" * (len(batch_sizes) + 1))
        for name in names:
            cells = " | ".join(f"{values[name, b]:{fmt}}" for b in batch_sizes)
            ratio = values[name, batch_sizes[-1]] / values[name, batch_sizes[0]]
            print(f"| {CONFIGS[name][0]} | {cells} | {ratio:.2f} |")
        if "gim" in names and "gim-before" in names:
            cells = " | ".join(f"{values['gim', b] / values['gim-before', b]:.2f}x"
                               for b in batch_sizes)
            print(f"| GIM all modules, now / before | {cells} | |")


if __name__ == "__main__":
    main()
