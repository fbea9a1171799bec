"""The test helpers that run subprocesses (tests/subprocs.py) and reuse cached reference
runs (tests/training_procs.py): failures show the command and its output, timeouts kill,
and only a completed reference run is reused. Quick: no TensorFlow in the subprocesses."""

import json
import sys

import pytest

from tests import subprocs, training_procs


def test_a_failing_process_shows_its_command_and_the_tail_of_its_output():
    code = ("import sys; print('x' * 5000 + 'last words'); print('oops', file=sys.stderr); "
            "sys.exit(3)")
    with pytest.raises(AssertionError) as error:
        subprocs.run([sys.executable, "-c", code])
    message = str(error.value)
    assert "exited with status 3" in message and "sys.exit(3)" in message
    assert "last words" in message and "oops" in message
    assert len(message) < 2 * subprocs.TAIL + 1000  # a tail, not all 5000 characters
    proc = subprocs.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == 3 and proc.stdout.endswith("last words\n")
    assert proc.stderr == "oops\n"


def test_a_process_past_its_timeout_is_killed_and_its_output_shown():
    with pytest.raises(AssertionError, match=r"(?s)timed out after 2 s.*started") as error:
        subprocs.run(["sh", "-c", "echo started; exec sleep 60"], timeout=2)
    assert "sleep 60" in str(error.value)


def test_wait_all_kills_what_is_left_at_the_timeout_and_shows_every_process():
    procs = [subprocs.start(["sh", "-c", "echo quick"]),
             subprocs.start(["sh", "-c", "echo stuck; exec sleep 60"])]
    with pytest.raises(AssertionError) as error:
        subprocs.wait_all(procs, timeout=2)
    message = str(error.value)
    assert "exited with status 0" in message and "quick" in message
    assert "timed out after 2 s" in message and "stuck" in message
    assert all(p.poll() is not None for p in procs)
    assert subprocs.wait_all([subprocs.start(["sh", "-c", "echo fine"])]) == [(0, "fine\n")]


class _Factory:  # the part of pytest's tmp_path_factory that cached_run uses
    def __init__(self, base):
        self.base = base

    def getbasetemp(self):
        return self.base


def test_only_a_completed_reference_run_is_reused(tmp_path, monkeypatch):
    built = []

    def fake_run(out_dir, *flags, status="complete"):
        built.append(out_dir.name)
        out_dir.mkdir(parents=True)
        (out_dir / "metrics.json").write_text(json.dumps({"status": status}))

    monkeypatch.setattr(training_procs, "run", fake_run)
    monkeypatch.setattr(training_procs, "_REFERENCE_FAILURES", {})
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # the root: tmp_path
    factory = _Factory(tmp_path)
    stale = tmp_path / "reference-runs" / "single"
    stale.mkdir(parents=True)  # what a training process killed by a timeout leaves
    (stale / "metrics.json").write_text(json.dumps({"status": "incomplete"}))
    (stale / "leftover").write_text("")

    assert training_procs.cached_run(factory, "single") == stale
    assert built == ["single"] and not (stale / "leftover").exists()  # rebuilt afresh
    assert training_procs.cached_run(factory, "single") == stale
    assert built == ["single"]  # reused

    (tmp_path / "reference-runs" / "partial").mkdir()
    (tmp_path / "reference-runs" / "partial" / "metrics.json").write_text("{\"stat")
    training_procs.cached_run(factory, "partial")
    assert built == ["single", "partial"]


def test_a_reference_run_that_fails_to_build_fails_the_tests_that_need_it(tmp_path,
                                                                         monkeypatch):
    attempts = []

    def failing_run(out_dir, *flags):
        attempts.append(out_dir.name)
        raise AssertionError("train.py exited with status 1: the tail of its output")

    monkeypatch.setattr(training_procs, "run", failing_run)
    monkeypatch.setattr(training_procs, "_REFERENCE_FAILURES", {})
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # the root: tmp_path
    factory = _Factory(tmp_path)
    with pytest.raises(AssertionError, match=r"(?s)building the reference run 'single' that "
                                             r"this test needs failed.*tail of its output"):
        training_procs.cached_run(factory, "single")
    # The next test needing it fails at once, saying why, without another attempt.
    with pytest.raises(AssertionError, match=r"(?s)needs the reference run 'single', which "
                                             r"failed to build earlier.*tail of its output"):
        training_procs.cached_run(factory, "single")
    assert attempts == ["single"]

    # A process that exits 0 without completing its run is a failure too.
    monkeypatch.setattr(training_procs, "run", lambda out_dir, *flags: (
        out_dir.mkdir(parents=True),
        (out_dir / "metrics.json").write_text(json.dumps({"status": "incomplete"}))))
    with pytest.raises(AssertionError, match="does not say status complete"):
        training_procs.cached_run(factory, "other")
