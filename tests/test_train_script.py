"""training/train.py and training/probe.py end to end on real Fashion-MNIST, tiny model."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from tests import subprocs
from tests.conftest import TINY_FLAGS

pytestmark = pytest.mark.slow  # training and probing processes

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--max_examples=512", "--eval_examples=128", "--final_eval_examples=128",
         "--verbose=2", *TINY_FLAGS]


def run_script(script, *args, check=True):
    """training/SCRIPT ARGS; an AssertionError with its output's tail if it times out, or
    if it fails when `check`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocs.run([sys.executable, str(ROOT / "training" / script), *args],
                        check=check, env=env, cwd=ROOT)


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "gim"
    run_script("train.py", "--model=gim-fmnist-resnet", "--epochs=2", "--learning_rate=2e-3",
               f"--out_dir={run_dir}", *QUICK)
    return run_dir


def test_train_writes_a_complete_run_and_the_loss_decreases(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["epochs_completed"] == 2
    rows = history(trained_run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"module1_loss", "module2_loss", "module3_loss", "val_loss"} <= set(rows[0])
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    for name in ("config.json", "model.weights.h5", "encoder.weights.h5", "loss_curves.png"):
        assert (trained_run / name).stat().st_size > 0, name
    assert list((trained_run / "logs").rglob("events.out.tfevents*")), "no TensorBoard logs"
    assert (trained_run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_on_a_small_label_budget(trained_run):
    proc = run_script("probe.py", f"--run_dir={trained_run}", "--labels_per_class=20,5",
                      "--steps=300", "--seeds=0,1")
    assert proc.stdout.count("test top-1") == 4  # one encoding pass, two budgets x 2 seeds
    # progress while encoding: 1 + 40 batches of 256 test images (a bar per pass)
    assert "40/40" in proc.stdout, proc.stdout[-2000:]
    probes = trained_run / "probes"
    result = json.loads((probes / "labels20-module3-pool3-seed0.json").read_text())
    assert result["train_examples"] == 200 and result["test_examples"] == 10000
    assert result["pool_to"] == 3  # the registry's probe pooling for Fashion-MNIST
    assert result["test_accuracy"] > 0.3  # chance is 0.1
    assert json.loads((probes / "labels5-module3-pool3-seed0.json").read_text())[
        "train_examples"] == 50
    other_seed = json.loads((probes / "labels20-module3-pool3-seed1.json").read_text())
    assert other_seed["seed"] == 1 and other_seed["train_examples"] == 200
    assert result["encoder"].startswith("sha256:") and result["probe_batch_size"] == 256


def test_probe_rerun_reuses_results_of_the_same_weights_and_settings(trained_run):
    from training.experiments.image_probes import ProbeConfig, probe  # in-process: no TF start-up

    config = dict(run_dir=str(trained_run), labels_per_class="20,5", steps=300, verbose=0)
    first = (trained_run / "probes" / "labels20-module3-pool3-seed0.json").read_text()
    results = probe(ProbeConfig(**config, seeds="0,1"))
    assert [r.get("reused") for r in results] == [True] * 4  # no encoding, no fit
    assert (trained_run / "probes" / "labels20-module3-pool3-seed0.json").read_text() == first
    # a new seed is fitted, the old one reused; other settings are fitted again
    results = probe(ProbeConfig(**config, seeds="0,2"))
    assert sorted((r["seed"], bool(r.get("reused"))) for r in results) == [
        (0, True), (0, True), (2, False), (2, False)]
    assert (trained_run / "probes" / "labels5-module3-pool3-seed2.json").exists()
    [result] = probe(ProbeConfig(run_dir=str(trained_run), labels_per_class="5", steps=200,
                                 verbose=0))
    assert not result.get("reused") and result["steps"] == 200
    assert json.loads((trained_run / "probes" / "labels5-module3-pool3-seed0.json")
                      .read_text())["steps"] == 200
    [again] = probe(ProbeConfig(run_dir=str(trained_run), labels_per_class="5", steps=200,
                                verbose=0, redo=True))
    assert not again.get("reused")


def test_rerun_resumes_instead_of_restarting(trained_run):
    proc = run_script("train.py", "--model=gim-fmnist-resnet", "--epochs=3",
                      "--learning_rate=2e-3", f"--out_dir={trained_run}", *QUICK)
    assert "Epoch 1/3" not in proc.stdout and "Epoch 3/3" in proc.stdout
    assert [r["epoch"] for r in history(trained_run)] == ["0", "1", "2"]


def test_bad_inputs_give_one_line_errors(tmp_path, trained_run):
    proc = run_script("train.py", "--model=gim-fmnist-resnt", f"--out_dir={tmp_path}/a",
                      check=False)
    assert proc.returncode != 0
    assert "unknown model 'gim-fmnist-resnt'" in proc.stderr
    assert "Did you mean: gim-fmnist-resnet" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_script("train.py", "--model=gim-fmnist-resnet", "--seed=7", "--epochs=2",
                      f"--out_dir={trained_run}", *QUICK, check=False)
    assert proc.returncode != 0 and "different configuration" in proc.stderr
    assert "seed: 0 -> 7" in proc.stderr

    proc = run_script("train.py", "--model=gim-fmnist-resnet", f"--out_dir={tmp_path}/b",
                      f"--data_dir={tmp_path}/nothing-here", check=False)
    assert proc.returncode != 0 and "apt-get install dataset-fashion-mnist" in proc.stderr

    proc = run_script("probe.py", f"--run_dir={tmp_path}/not-a-run", check=False)
    assert proc.returncode != 0 and "not a run directory" in proc.stderr

    proc = run_script("probe.py", f"--run_dir={trained_run}", "--labels_per_class=60,6OO",
                      check=False)
    assert proc.returncode != 0 and "non-negative integers like 60,600,0" in proc.stderr


def test_non_finite_loss_stops_without_writing_weights(tmp_path):
    run_dir = tmp_path / "nan"
    proc = run_script("train.py", "--model=gim-fmnist-resnet", "--epochs=2",
                      "--learning_rate=1e12", f"--out_dir={run_dir}", *QUICK, check=False)
    assert proc.returncode != 0 and "non-finite" in proc.stderr
    assert not (run_dir / "model.weights.h5").exists()
    assert not (run_dir / "backup" / "latest.weights.h5").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["status"].startswith("stopped")
