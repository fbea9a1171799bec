"""Run-directory safety: atomic writes, configuration checks, finite-only backups."""

import json
import math

import keras
import numpy as np
import pytest

from gim_zoo.callbacks import ResumableBackup
from gim_zoo.files import atomic_write_json
from training.experiments.run_directory import ConfigMismatchError, RunDirectory


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {"x": object()})  # not serialisable
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_only_epochs_may_change_between_invocations(tmp_path):
    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m", "seed": 0, "epochs": 2})
    run.history_path.write_text("epoch,loss\n0,1.0\n")  # the run has trained
    run.prepare({"model": "m", "seed": 0, "epochs": 5})
    with pytest.raises(ConfigMismatchError, match="seed: 0 -> 1"):
        run.prepare({"model": "m", "seed": 1, "epochs": 5})


def test_a_setting_added_later_matches_at_its_default(tmp_path):
    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m", "epochs": 2})  # saved before "rate" existed
    run.history_path.write_text("epoch,loss\n0,1.0\n")  # the run has trained
    run.prepare({"model": "m", "epochs": 2, "rate": 0.1}, defaults={"rate": 0.1})
    with pytest.raises(ConfigMismatchError, match="rate: 0.1 -> 0.2"):
        RunDirectory(tmp_path / "r").prepare({"model": "m", "epochs": 2, "rate": 0.2},
                                             defaults={"rate": 0.1})


def test_backup_skips_non_finite_epochs(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = ResumableBackup(tmp_path / "backup")
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[backup])
    saved = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    model.layers[0].kernel.assign(np.full((3, 1), np.nan, "float32"))
    backup.on_epoch_end(1, {"loss": math.nan})
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == saved
    meta = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1


def test_fit_resumes_where_the_backup_ends_and_nowhere_else(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 3)), np.ones((4, 1))
    backup = ResumableBackup(tmp_path / "backup")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    assert backup.initial_epoch == 2
    history = model.fit(x, y, epochs=3, initial_epoch=backup.initial_epoch, verbose=0,
                        callbacks=[backup])
    assert history.epoch == [2] and backup.initial_epoch == 3
    with pytest.raises(ValueError, match="initial_epoch"):  # would redo epochs 1 to 3
        model.fit(x, y, epochs=5, verbose=0, callbacks=[backup])
    assert ResumableBackup.completed_epochs(tmp_path / "backup") == 3
