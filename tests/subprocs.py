"""Running subprocesses from tests: one generous timeout for all of them, and failures
(a non-zero exit or a timeout) raised as an AssertionError that shows the command and the
tail of what the process printed.

Why generous: the suite runs on 2 cores, often shared with other CPU-bound jobs, where a
training process takes several times what it takes on an idle machine (a tiny 3-epoch
train.py run: ~40 s idle, over 150 s with two busy loops beside it). The timeout is only
there to stop a hung process (say, a worker blocked on a dead peer) from hanging the whole
suite, not to measure speed, so it is sized for a loaded machine; GIM_ZOO_TEST_TIMEOUT_S
overrides it (the suite's CI limit is 90 minutes).
"""

import os
import shlex
import subprocess
import tempfile
import time

TIMEOUT = float(os.environ.get("GIM_ZOO_TEST_TIMEOUT_S", 900))  # seconds per process
TAIL = 3000  # characters of output shown when a process fails


def describe(args):
    return shlex.join(str(a) for a in args)


def tail(text, n=TAIL):
    return text if len(text) <= n else "[...]" + text[-n:]


def failure(args, why, **outputs):
    """An AssertionError naming the command, why it failed and the tail of each output."""
    parts = [f"{why}: {describe(args)}"]
    for name, text in outputs.items():
        if text and text.strip():
            parts.append(f"--- {name} (last {TAIL} characters) ---\n{tail(text)}")
        else:
            parts.append(f"--- {name}: empty ---")
    return AssertionError("\n".join(parts))


def _timed_out(timeout):
    return (f"timed out after {timeout:.0f} s (GIM_ZOO_TEST_TIMEOUT_S raises the limit; "
            "the process was killed)")


def _read(file):
    file.seek(0)
    return file.read().decode(errors="replace")


def run(args, *, timeout=None, check=True, env=None, cwd=None):
    """subprocess.run(args, capture_output=True, text=True), killed after `timeout` (default
    TIMEOUT) seconds. Raises an AssertionError showing the command and its outputs' tails
    on a timeout, and on a non-zero exit when `check`."""
    timeout = TIMEOUT if timeout is None else timeout
    # Files, not pipes: what a killed process printed can still be read (and shown).
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=cwd)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill(proc)
        stdout, stderr = _read(out), _read(err)
    if getattr(proc, "killed_by_test", False):
        raise failure(args, _timed_out(timeout), stdout=stdout, stderr=stderr)
    if check and proc.returncode != 0:
        raise failure(args, f"exited with status {proc.returncode}", stdout=stdout,
                      stderr=stderr)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def start(args, *, env=None, cwd=None):
    """Popen(args) with stdout and stderr together in a temporary file (proc.log): nobody
    reads a pipe while a test waits on the process, and chatty logs would fill it and block
    the process. Collect it with wait_all."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def wait_all(procs, timeout=None):
    """[(returncode, output)] of processes from start(), after waiting at most `timeout`
    (default TIMEOUT) seconds for them all; then kills any still running. On a timeout
    raises an AssertionError showing every process's command and output tail."""
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        unfinished = [p for p in procs if p.poll() is None]
    finally:
        kill_all(procs, close=False)
    outputs = [_read(p.log) for p in procs]
    for p in procs:
        p.log.close()
    if unfinished:  # show every process: a hang is often another process's failure
        raise AssertionError("\n\n".join(
            str(failure(p.args, _timed_out(timeout) if p in unfinished else
                        f"exited with status {p.returncode}", output=out))
            for p, out in zip(procs, outputs)))
    return [(p.returncode, out) for p, out in zip(procs, outputs)]


def kill_all(procs, close=True):
    """SIGKILL those still running (each by its own process id) and reap them."""
    for p in procs:
        _kill(p)
        if close and getattr(p, "log", None) is not None:
            p.log.close()


def _kill(proc):
    if proc.poll() is None:
        proc.killed_by_test = True
        proc.kill()
        proc.wait()
