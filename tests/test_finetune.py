"""The digits transfer task and a tiny fine-tuning run of a bundled encoder with RIFLE."""

import csv
import io
import json

import numpy as np
import pytest

from gim_zoo.data.digits import digits_split
from training.experiments import reports
from training.experiments.rifle_finetuning import FinetuneConfig, finetune


def test_digits_split_fixed_test_half_and_seeded_labels():
    tx0, ty0, ex0, ey0 = digits_split(5, seed=0)
    tx1, ty1, ex1, ey1 = digits_split(5, seed=1)
    assert tx0.shape == (50, 28, 28, 1) and ex0.shape[1:] == (28, 28, 1)
    assert np.array_equal(ex0, ex1) and np.array_equal(ey0, ey1)  # the test set never moves
    assert not np.array_equal(tx0, tx1)
    assert np.bincount(ty0).tolist() == [5] * 10
    assert 0 <= tx0.min() and tx0.max() <= 255 and tx0.max() > 200
    test_rows = {x.tobytes() for x in ex0}
    assert not any(x.tobytes() in test_rows for x in digits_split(0, seed=0)[0])
    with pytest.raises(ValueError, match="more than"):
        digits_split(500, seed=0)


@pytest.mark.slow
def test_finetune_with_rifle_records_reinits_and_module_movement(tmp_path):
    config = FinetuneConfig(labels_per_class=2, epochs=3, batch_size=10, rifle_times=1,
                            out_dir=str(tmp_path / "run"), verbose=0)
    m = finetune(config)
    assert m["variant"] == "rifle1"
    assert [r["after_epoch"] for r in m["rifle_reinits"]] == [2]
    assert m["optimizer_steps"] == 3 * 2
    assert m["train_examples"] == 20 and m["test_examples"] > 800
    assert len(m["module_distance"]) == 3 and all(d > 0 for d in m["module_distance"])
    # test_accuracy is the share of the test_examples images classified right
    correct = m["test_accuracy"] * m["test_examples"]
    assert abs(correct - round(correct)) < 1e-3 and 0 < round(correct) < m["test_examples"]
    history = (tmp_path / "run" / "history.csv").read_text()
    assert "module3_distance" in history and "rifle_reinits" in history
    rows = list(csv.DictReader(io.StringIO(history)))
    assert [r["rifle_reinits"] for r in rows] == ["0.0", "1.0", "1.0"]
    # the fitted model's own head was redrawn after epoch 2: its training loss rose again
    assert float(rows[2]["loss"]) > float(rows[1]["loss"])
    assert any((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    again = finetune(config)  # finished: returns the saved metrics without training
    assert again == json.loads((tmp_path / "run" / "metrics.json").read_text())

    results = reports.finetune_results([tmp_path / "run"])
    table = reports.finetune_table(results)
    assert "| rifle1 | 0 |" in table
    assert reports.plot_finetune(results, tmp_path / "rifle.png").stat().st_size > 1000


def test_finetune_refuses_bad_settings_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match="28x28"):
        finetune(FinetuneConfig(model="gim-stl10-resnet", out_dir=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="last 3 epoch"):
        finetune(FinetuneConfig(epochs=10, rifle_times=4, quiet_epochs=3,
                                out_dir=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="dropout"):
        finetune(FinetuneConfig(dropout=1.5, out_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_finetune_on_a_labelled_folder(tmp_path):
    """--dataset: a folder with class subfolders (RGB, 40x40) fine-tunes the bundled
    28x28 grayscale encoder, resized and converted; a flat folder is refused unwritten."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 6)):
        for i in range(count):
            path = tmp_path / "data" / split / f"class{i % 3}" / f"{i}.png"
            tf.io.write_file(str(path), tf.io.encode_png(
                rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    m = finetune(FinetuneConfig(dataset=f"folder/{tmp_path / 'data'}", labels_per_class=2,
                                epochs=1, batch_size=3, out_dir=str(tmp_path / "run"),
                                verbose=0))
    assert (m["train_examples"], m["test_examples"]) == (6, 6)
    assert m["dataset"] == f"folder/{tmp_path / 'data'}" and 0 <= m["test_accuracy"] <= 1
    for i in range(6):
        tf.io.write_file(str(tmp_path / "flat" / f"{i}.png"),
                         tf.io.encode_png(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)))
    with pytest.raises(ValueError, match="has no labels"):
        finetune(FinetuneConfig(dataset=f"folder/{tmp_path / 'flat'}",
                                out_dir=str(tmp_path / "flat-run")))
    assert not (tmp_path / "flat-run").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"target": "cifar"}, "target must be one of"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"weight_decay": 1e-4}, "options of --optimizer=sgd"),
    ({"optimizer": "sgd", "cyclic_head_lr": True}, "needs --rifle_times >= 1"),
    ({"optimizer": "sgd", "weight_decay": -1e-4}, "weight_decay must be a finite"),
    ({"optimizer": "sgd", "momentum": 1.0}, "momentum must be a finite number >= 0 and < 1"),
    ({"augment": True, "resumable": True}, "--augment is for --target=fashion_mnist"),
    ({"augment": True, "target": "fashion_mnist"}, "--augment is for"),
    ({"eval_examples": -1}, "eval_examples must be"),
])
def test_the_authors_regime_options_refuse_bad_settings_before_writing(tmp_path, overrides,
                                                                       message):
    with pytest.raises(ValueError, match=message):
        finetune(FinetuneConfig(out_dir=str(tmp_path / "x"), **overrides))
    assert not (tmp_path / "x").exists()


def test_variant_names_and_default_run_directories():
    assert FinetuneConfig(rifle_times=3, optimizer="sgd", cyclic_head_lr=True).variant() == \
        "rifle3-cyclic"
    config = FinetuneConfig(target="fashion_mnist", labels_per_class=600, seed=2)
    assert config.default_out_dir("m") == "runs/finetune/m-fmnist600-plain-seed2"
    assert FinetuneConfig(random_init=True).default_out_dir("m") == \
        "runs/finetune/m-scratch-seed0"


@pytest.mark.slow
def test_sgd_rifle_run_sigkilled_after_a_reinit_resumes_to_the_unbroken_result(tmp_path):
    """The authors' regime on Fashion-MNIST labels (cyclic head rate, augmentation),
    killed mid-epoch after its re-init: the re-run ends with the unbroken run's numbers."""
    import signal
    import sys

    from tests import subprocs
    from tests.training_procs import ROOT, env

    args = [sys.executable, str(ROOT / "training" / "finetune.py"), "--target=fashion_mnist",
            "--labels_per_class=3", "--epochs=3", "--batch_size=10", "--optimizer=sgd",
            "--learning_rate=0.01", "--weight_decay=1e-4", "--rifle_times=1",
            "--quiet_epochs=1", "--cyclic_head_lr", "--resumable", "--augment",
            "--eval_examples=300", "--verbose=0"]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    subprocs.run(args + [f"--out_dir={unbroken}"], env=env(), cwd=ROOT)
    # 3 steps per epoch: step 8 is inside epoch 3, after the re-init that ended epoch 2
    killed = subprocs.run(args + [f"--out_dir={broken}"], check=False, cwd=ROOT,
                          env=env(GIM_ZOO_SIGKILL_AT_STEP=8))
    assert killed.returncode == -signal.SIGKILL
    assert not (broken / "metrics.json").exists() and (broken / "backup").exists()
    subprocs.run(args + [f"--out_dir={broken}"], env=env(), cwd=ROOT)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (unbroken, broken))
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]
    assert a["module_distance"] == b["module_distance"]
    assert [r.get("replayed", False) for r in b["rifle_reinits"]] == [True]
    assert b["variant"] == "rifle1-cyclic" and b["target"] == "fashion_mnist"
    assert b["train_examples"] == 30 and b["optimizer_steps"] == 9
    assert not (broken / "backup").exists()  # finished: the backup is removed
