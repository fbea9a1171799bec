"""Throughput of training/train.py on one device vs 2 replicas: MirroredStrategy over 2
logical CPU devices, and 2 MultiWorkerMirroredStrategy workers on 127.0.0.1.

Every setup trains the same model with the same global batch (each replica gets half)
into a fresh run directory, one setup after another. Throughput is images/s over the
epochs after the first (the first includes tracing), from history.csv's epoch_seconds;
those include the small per-epoch validation (--eval_examples). Printed as a markdown
table with ratios against one device.

On a machine with C cores, 2 replicas share the same C cores: what is measured is the
overhead (or gain) of splitting the work, not added hardware.

    python benchmarks/scaling.py                       # registry encoder, batch 64
    python benchmarks/scaling.py --tiny --epochs=3     # quick look
"""

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gim_zoo.run_layout import RunLayout

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--stem_width=8", "--widths=4,4,8", "--blocks=1,1,1"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(flags, out_dir, workers=1, timeout=3600):
    """Run train.py (one process, or one per worker on loopback); return wall seconds."""
    import json

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), *flags, f"--out_dir={out_dir}"]
    ports = free_ports(workers) if workers > 1 else []
    procs = []
    start = time.perf_counter()
    try:
        for i in range(workers):
            worker_env = dict(env)
            if workers > 1:
                worker_env["TF_CONFIG"] = json.dumps({
                    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                    "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(cmd + (["--strategy=multi_worker"] if workers > 1
                                                 else []),
                                          env=worker_env, cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"train.py failed ({p.returncode}):\n{err[-2000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return time.perf_counter() - start


def images_per_second(run_dir, images_per_epoch):
    with open(RunLayout(run_dir).history_path) as f:
        seconds = [float(r["epoch_seconds"]) for r in csv.DictReader(f)][1:]
    return images_per_epoch * len(seconds) / sum(seconds), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gim-fmnist-resnet")
    parser.add_argument("--batch_size", type=int, default=64, help="global batch")
    parser.add_argument("--max_examples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny encoder")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")

    flags = [f"--model={args.model}", f"--batch_size={args.batch_size}",
             f"--max_examples={args.max_examples}", f"--epochs={args.epochs}",
             "--eval_examples=64", "--verbose=0", *(TINY if args.tiny else [])]
    setups = [("1 device", [], 1, 1),
              ("MirroredStrategy, 2 logical CPUs", ["--strategy=mirrored",
                                                     "--cpu_devices=2"], 1, 2),
              ("MultiWorkerMirroredStrategy, 2 workers on 127.0.0.1", [], 2, 2)]
    images_per_epoch = args.max_examples // args.batch_size * args.batch_size
    work = Path(tempfile.mkdtemp(prefix="gim-scaling-"))
    rows = []
    try:
        for name, extra, workers, replicas in setups:
            out_dir = work / f"run{len(rows)}"
            wall = launch(flags + extra, out_dir, workers)
            rate, seconds = images_per_second(out_dir, images_per_epoch)
            rows.append((name, replicas, args.batch_size // replicas, rate, wall))
            print(f"{name}: {rate:.1f} images/s (timed epochs: "
                  f"{', '.join(f'{s:.2f}s' for s in seconds)}; process wall {wall:.0f}s)",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = rows[0][3]
    print(f"\n{args.model}{' (tiny encoder)' if args.tiny else ''}, global batch "
          f"{args.batch_size}, {images_per_epoch} images/epoch, {args.epochs - 1} timed "
          f"epochs, {os.cpu_count()} CPU cores\n")
    print("| setup | replicas | per-replica batch | images/s | ratio vs 1 device |")
    print("|---|---:|---:|---:|---:|")
    for name, replicas, per_replica, rate, _ in rows:
        print(f"| {name} | {replicas} | {per_replica} | {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
