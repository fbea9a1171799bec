"""Helpers for tests that run training/train.py in subprocesses: single device, a
MirroredStrategy over logical CPUs, multi-worker clusters on 127.0.0.1, SIGKILLs."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model=gim-fmnist-resnet", "--stem_width=8", "--widths=4,4,8", "--blocks=1,1,1",
        "--max_examples=256", "--batch_size=32", "--eval_examples=64", "--verbose=0",
        "--learning_rate=2e-3"]
STEPS_PER_EPOCH = 256 // 32
TIMEOUT = 150  # seconds per training process (a shared 2-core machine: generous)


def env(**extra):
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": str(ROOT)}
    base.pop("TF_CONFIG", None)
    base.pop("GIM_ZOO_SIGKILL_AT_STEP", None)
    return {**base, **{k: str(v) for k, v in extra.items()}}


def command(out_dir, *flags):
    return [sys.executable, str(ROOT / "training" / "train.py"), *TINY,
            f"--out_dir={out_dir}", *flags]


def run(out_dir, *flags, check=True, **extra_env):
    proc = subprocess.run(command(out_dir, *flags), capture_output=True, text=True,
                          timeout=TIMEOUT, env=env(**extra_env), cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_cluster(out_dir, *flags, kill_at=None, workers=2, tmpdir=None):
    """Popen one train.py --strategy=multi_worker per worker, all on 127.0.0.1.

    kill_at: {worker index: step} makes that worker SIGKILL itself after that step.
    tmpdir: the workers' TMPDIR (where non-chief workers save scratch copies)."""
    ports = free_ports(workers)
    procs = []
    for i in range(workers):
        extra = {"TF_CONFIG": tf_config(ports, i)}
        if tmpdir:
            Path(tmpdir).mkdir(parents=True, exist_ok=True)
            extra["TMPDIR"] = tmpdir
        if kill_at and i in kill_at:
            extra["GIM_ZOO_SIGKILL_AT_STEP"] = kill_at[i]
        # Logs go to files, not pipes: nobody reads a pipe while a test waits on a worker,
        # and TF's chatty collective logs would fill it and block the worker.
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            command(out_dir, "--strategy=multi_worker", *flags), env=env(**extra), cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT)
        proc.log = log
        procs.append(proc)
    return procs


def wait_all(procs, timeout=TIMEOUT):
    """[(returncode, output)] of every process; on timeout kill them all and fail."""
    deadline = time.time() + timeout
    outputs = []
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.time()))
            p.log.seek(0)
            outputs.append((p.returncode, p.log.read().decode(errors="replace")))
    finally:
        kill_all(procs)
    return outputs


def kill_all(procs):
    """SIGKILL those still running (by their own ids) and reap them."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if getattr(p, "log", None) is not None and p.returncode is not None:
            p.log.close()


def run_cluster(out_dir, *flags, tmpdir=None):
    results = wait_all(start_cluster(out_dir, *flags, tmpdir=tmpdir))
    for code, output in results:
        assert code == 0, f"a worker failed ({code}):\n{output[-3000:]}"
    return results


def weights(path):
    """{dataset path: array} of every array in a Keras .weights.h5 file (model layers and
    optimizer variables)."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def max_abs_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               if np.size(a[k]) else 0.0 for k in a)


def cached_run(tmp_path_factory, name, *flags, cluster=False):
    """An uninterrupted reference run, made once per test session and shared by modules
    (a plain function keyed by name, so no conftest fixture is needed)."""
    out_dir = tmp_path_factory.getbasetemp() / "reference-runs" / name
    if not (out_dir / "metrics.json").exists():
        if cluster:
            run_cluster(out_dir, *flags, tmpdir=out_dir.parent / f"{name}-tmp")
        else:
            run(out_dir, *flags)
    return out_dir


def final_logs(run_dir):
    """metrics.json's last training logs and test losses, without timings."""
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    logs = {k: v for k, v in metrics["final_train_logs"].items() if k != "epoch_seconds"}
    return logs, {k: v for k, v in metrics.items() if k.startswith("test_")}


def leftovers(run_dir):
    """Temporary or partial files anywhere in a run directory (there should be none)."""
    return sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*")
                  if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name))
