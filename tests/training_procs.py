"""Helpers for tests that run training/train.py in subprocesses: single device, a
MirroredStrategy over logical CPUs, multi-worker clusters on 127.0.0.1, SIGKILLs."""

import fcntl
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np

from tests import subprocs
from tests.subprocs import kill_all, wait_all  # noqa: F401 (used by the tests)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model=gim-fmnist-resnet", "--stem_width=8", "--widths=4,4,8", "--blocks=1,1,1",
        "--max_examples=256", "--batch_size=32", "--eval_examples=64", "--verbose=0",
        "--learning_rate=2e-3", "--final_eval_examples=64"]
# --final_eval_examples: the final evaluation on 64 test images, not all 10,000 (about 7 s
# of every training process here; tests/test_script_flags.py tests the flag itself)
STEPS_PER_EPOCH = 256 // 32
TIMEOUT = subprocs.TIMEOUT  # seconds per training process (sized for a loaded machine)


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
    """train.py to completion; an AssertionError with its output's tail if it fails."""
    return subprocs.run(command(out_dir, *flags), check=check, env=env(**extra_env), cwd=ROOT)


def start(out_dir, *flags, **extra_env):
    """train.py in the background (collect it with wait_all)."""
    return subprocs.start(command(out_dir, *flags), env=env(**extra_env), cwd=ROOT)


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
        # Logs go to files (subprocs.start), not pipes: TF's chatty collective logs would
        # fill a pipe nobody reads while the test waits, and block the worker.
        procs.append(start(out_dir, "--strategy=multi_worker", *flags, **extra))
    return procs


def run_cluster(out_dir, *flags, tmpdir=None):
    procs = start_cluster(out_dir, *flags, tmpdir=tmpdir)
    results = wait_all(procs)
    for p, (code, output) in zip(procs, results):
        if code != 0:
            raise subprocs.failure(p.args, f"a worker exited with status {code}",
                                   output=output)
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


_REFERENCE_FAILURES = {}  # name -> why building that reference run failed this session


def completed(run_dir):
    """Whether run_dir holds a finished run: metrics.json exists and says status complete
    (a killed or timed-out run leaves none, or one with another status)."""
    try:
        return json.loads((Path(run_dir) / "metrics.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cached_run(tmp_path_factory, name, *flags, cluster=False):
    """An uninterrupted reference run, made once per test session and shared by modules
    (a plain function keyed by name, so no conftest fixture is needed).

    Under pytest-xdist the workers share it: it lives beside their own temporary folders,
    and a lock makes a worker that needs a run another is making wait for it. Reused only
    if it completed; anything else there (a run killed by a timeout, say) is deleted and
    the run made afresh. If making it fails, the tests that need it fail (this one with
    the training process's output, later ones at once, saying so) and no other."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's popen-gwN
    out_dir = root / "reference-runs" / name
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _make_reference_run(out_dir, name, flags, cluster)


def _make_reference_run(out_dir, name, flags, cluster):
    if completed(out_dir):
        return out_dir
    if name in _REFERENCE_FAILURES:
        raise AssertionError(f"this test needs the reference run {name!r}, which failed to "
                             f"build earlier in this session:\n{_REFERENCE_FAILURES[name]}")
    tmpdir = out_dir.parent / f"{name}-tmp"
    for stale in (out_dir, tmpdir):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        if cluster:
            run_cluster(out_dir, *flags, tmpdir=tmpdir)
        else:
            run(out_dir, *flags)
        if not completed(out_dir):
            raise AssertionError(f"train.py exited 0 but {out_dir / 'metrics.json'} does "
                                 "not say status complete")
    except AssertionError as error:
        _REFERENCE_FAILURES[name] = str(error)
        raise AssertionError(f"building the reference run {name!r} that this test needs "
                             f"failed:\n{error}") from None
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
