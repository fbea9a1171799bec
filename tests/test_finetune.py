"""The digits transfer task and a tiny fine-tuning run of a bundled encoder with RIFLE."""

import csv
import io
import json

import numpy as np
import pytest

from gim_zoo.data.digits import digits_split
from experiments import reports
from experiments.rifle_finetuning import FinetuneConfig, finetune


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
