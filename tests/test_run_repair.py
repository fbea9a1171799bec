"""Issue 31: a run directory never bricks. Every file it reads is parsed defensively: a
history line cut short by a crash is dropped and re-made, a lost config.json is rebuilt
from the backup's record of the run's settings (never from the flags of the command
resuming it), a deleted backup is refused, a killed process's temporary files are
removed at the next start, and whatever is damaged beyond that is refused with its path
and what recovers it. Nothing is written before the configuration is checked, and a
config.json under which nothing was produced does not block the corrected command."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from gim_zoo.callbacks import BackupError, ResumableBackup
from training.experiments.run_directory import ConfigMismatchError, RunDirectory

NAME = "gim-fmnist-resnet"
TINY = dict(model=NAME, stem_width=8, widths="4,4,8", blocks="1,1,1", max_examples=64,
            batch_size=32, eval_examples=32, final_eval_examples=32, verbose=0)
HEADER = "epoch,loss,val_loss\r\n"


def fit_with_backup(backup_dir, epochs, settings=None):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = ResumableBackup(backup_dir, settings=settings)
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=epochs, verbose=0,
              initial_epoch=backup.initial_epoch, callbacks=[backup])


def files(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes()) for p in Path(folder).rglob("*")
                  if p.is_file())


# --- history.csv ---------------------------------------------------------------------------

def test_a_cut_short_last_history_line_is_left_out_then_dropped(tmp_path):
    from training.experiments.run_directory import read_history_rows
    path = tmp_path / "history.csv"
    path.write_text(HEADER + "0,1.0,1.1\r\n1,0.5,0.6\r\n2,0.4")  # a crash while writing
    header, rows, cut = read_history_rows(path)
    assert [r["epoch"] for r in rows] == ["0", "1"] and cut
    run = RunDirectory(tmp_path)
    assert run.repair_history()
    assert path.read_text() == HEADER.replace("\r\n", "\n") + "0,1.0,1.1\n1,0.5,0.6\n"
    assert read_history_rows(path)[2] is False and not run.repair_history()


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a history CSV"),
    (b"loss,val\n1,2\n", "no epoch column"),
    (HEADER.encode() + b"0,1.0\r\n1,0.5,0.6\r\n", "line 2 is damaged"),
])
def test_a_damaged_history_is_refused_naming_the_file(tmp_path, content, message):
    from gim_zoo.files import DamagedFileError
    from training.experiments.run_directory import read_history_rows
    from training.experiments.plots import read_history

    path = tmp_path / "history.csv"
    path.write_bytes(content)
    for read in (lambda: read_history_rows(path), lambda: read_history(path),
                 RunDirectory(tmp_path).check_backup):
        with pytest.raises(DamagedFileError, match=f"{path}.*{message}"):
            read()


def test_check_backup_counts_complete_history_lines_only(tmp_path):
    run = RunDirectory(tmp_path / "r")
    fit_with_backup(run.backup_dir, 2)
    run.history_path.write_text(HEADER + "0,1.0,1.1\r\n1,0.5,0.6\r\n2,0.")
    assert run.check_backup() == 2


# --- backup/ -------------------------------------------------------------------------------

def test_a_deleted_backup_is_refused_even_one_epoch_in(tmp_path):
    """History is written just before the backup, so one epoch more than the backup holds
    is a normal crash; a backup/ folder that is gone is not (it exists before epoch 1)."""
    run = RunDirectory(tmp_path / "r")
    fit_with_backup(run.backup_dir, 1)
    run.history_path.write_text(HEADER + "0,1.0,1.1\r\n")
    assert run.check_backup() == 1
    shutil.rmtree(run.backup_dir)
    with pytest.raises(BackupError, match=f"{run.backup_dir} is missing.*records 1 epoch"):
        run.check_backup()
    run.history_path.unlink()  # and the history too: the final weights still tell
    run.encoder_weights_path.write_bytes(b"weights")
    with pytest.raises(BackupError, match=f"is missing, but {run.encoder_weights_path} exists"):
        run.check_backup()


@pytest.mark.parametrize("sidecar", [b"[1, 2]", b"\xff\xfe binary", b'{"sha256": '])
def test_a_damaged_sidecar_is_refused_naming_it(tmp_path, sidecar):
    fit_with_backup(tmp_path / "backup", 1)
    path = ResumableBackup.checksum_path(tmp_path / "backup")
    path.write_bytes(sidecar)
    with pytest.raises(BackupError, match=f"{path} is damaged"):
        ResumableBackup.verified_epochs(tmp_path / "backup")


def test_the_backup_folder_exists_before_the_first_epoch(tmp_path):
    from training.experiments.run_directory import RunDirectory as Run

    run = Run(tmp_path / "r")
    backup = ResumableBackup(run.backup_dir)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(run.backup_dir.is_dir())

    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[backup, Look()])
    assert seen == [True]


def test_the_backup_records_the_runs_settings(tmp_path):
    settings = {"model": "m", "learning_rate": 0.0002, "epochs": 2}
    fit_with_backup(tmp_path / "backup", 1, settings)
    assert ResumableBackup.recorded_settings(tmp_path / "backup") == settings
    fit_with_backup(tmp_path / "other", 1)
    assert ResumableBackup.recorded_settings(tmp_path / "other") is None
    assert ResumableBackup.recorded_settings(tmp_path / "none") is None


# --- config.json ---------------------------------------------------------------------------

def test_a_lost_config_is_rebuilt_from_the_backups_record_not_from_todays_flags(tmp_path):
    run = RunDirectory(tmp_path / "r")
    settings = {"model": "m", "learning_rate": 0.0002, "epochs": 2, "out_dir": "r"}
    run.prepare(settings)
    fit_with_backup(run.backup_dir, 1, settings)
    run.config_path.unlink()
    before = files(run.path)
    with pytest.raises(ConfigMismatchError, match="learning_rate: 0.0002 -> 0.05.*backup"):
        run.prepare({**settings, "learning_rate": 0.05})
    assert files(run.path) == before  # nothing written
    run.prepare({**settings, "epochs": 3})  # the run's own settings, more epochs
    assert json.loads(run.config_path.read_text())["learning_rate"] == 0.0002
    run.config_path.write_text("{not json")  # damaged: the same
    run.prepare(settings)
    assert json.loads(run.config_path.read_text()) == settings


def test_a_lost_config_without_a_record_is_refused(tmp_path):
    from gim_zoo.files import DamagedFileError
    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m", "epochs": 2})
    run.history_path.write_text(HEADER + "0,1.0,1.1\r\n")
    run.config_path.unlink()
    with pytest.raises(ConfigMismatchError, match="holds files .*history.csv.* but no config.json"):
        run.prepare({"model": "m", "epochs": 2})
    assert not run.config_path.exists()
    run.config_path.write_text("[1, 2]")
    with pytest.raises(DamagedFileError, match=f"{run.config_path} is not a JSON object"):
        run.prepare({"model": "m", "epochs": 2})


def test_a_config_nothing_was_produced_under_does_not_block_the_corrected_command(tmp_path):
    """A command refused after config.json was written (a check that needs the model,
    say) must not make the corrected command a 'different configuration'."""
    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m", "module": 9})
    run.prepare({"model": "m", "module": 2})
    assert json.loads(run.config_path.read_text())["module"] == 2
    run.history_path.write_text(HEADER + "0,1.0,1.1\r\n")  # now the run has produced
    with pytest.raises(ConfigMismatchError, match="module: 2 -> 3"):
        run.prepare({"model": "m", "module": 3})


def test_a_finetune_refused_after_its_config_was_written_can_be_corrected(tmp_path):
    from training.experiments.rifle_finetuning import FinetuneConfig, finetune

    bad = FinetuneConfig(out_dir=str(tmp_path / "run"), module=9, epochs=1,
                         labels_per_class=1, random_init=True, verbose=0)
    with pytest.raises(ValueError, match="module must be in 1..3"):
        finetune(bad)
    RunDirectory(bad.out_dir).compare_config(dataclasses.asdict(
        dataclasses.replace(bad, module=2)))  # not refused


@pytest.mark.parametrize("saved, message", [
    ({"model": NAME, "widths": 5}, "widths is 5, not a str"),
    ({"model": NAME, "epochs": "2"}, "epochs is '2', not a int"),
    ({"model": NAME, "learning_rate": None}, "learning_rate is None, not a float"),
    ({"model": NAME, "out_dir": "x", "epochs": -3}, "--epochs must be >= 0"),
    ({"model": NAME, "out_dir": "x", "widths": "4,x"}, "--widths must be comma-separated"),
])
def test_bad_config_values_are_one_line_errors_naming_the_file(tmp_path, saved, message):
    from gim_zoo.files import DamagedFileError
    from training.experiments.image_probes import ProbeConfig, probe
    from training.experiments.pretraining import TrainConfig

    run = RunDirectory(tmp_path / "r")
    run.path.mkdir()
    run.config_path.write_text(json.dumps(saved))
    with pytest.raises(DamagedFileError, match=f"{run.config_path}.*{message}"):
        run.read_config(TrainConfig)
    with pytest.raises(DamagedFileError, match=str(run.config_path)):
        probe(ProbeConfig(run_dir=str(run.path)))


# --- metrics.json and the other JSON files ---------------------------------------------------

def test_damaged_json_files_are_refused_naming_them(tmp_path):
    from gim_zoo.files import DamagedFileError
    from gim_zoo.lottery.tickets import read_round_metrics, round_metrics_path, ticket_config

    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m"})
    run.metrics_path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(DamagedFileError, match=f"{run.metrics_path}.*delete it and re-run"):
        run.read_metrics()
    run.config_path.write_text('{"network": ')
    with pytest.raises(DamagedFileError, match=f"{run.config_path} is not valid JSON"):
        ticket_config(run.path)
    round_metrics_path(run.path, 0).parent.mkdir()
    round_metrics_path(run.path, 0).write_text("nan nan")
    with pytest.raises(DamagedFileError, match="round00.json is not valid JSON"):
        read_round_metrics(run.path)


def test_damaged_masks_are_refused_naming_the_file(tmp_path):
    from gim_zoo.files import DamagedFileError
    from gim_zoo.lottery.masks import load_arrays

    (tmp_path / "masks00.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(DamagedFileError, match="masks00.npz cannot be read"):
        load_arrays(tmp_path / "masks00.npz")


# --- temporary files of a killed process -----------------------------------------------------

def test_temporaries_of_a_killed_process_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited
    run = RunDirectory(tmp_path / "r")
    run.prepare({"model": "m"})
    orphans = [run.path / f".tmp-{pid}-history.csv",
               run.backup_dir / f".tmp-{pid}-latest.weights.h5",
               run.path / f".tmp-{pid}-saved.abc123" / "saved.pb"]
    live = run.path / f".tmp-{os.getppid()}-metrics.json"  # a write in progress elsewhere
    for path in orphans + [live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    run.prepare({"model": "m"})
    assert not any(p.exists() for p in orphans) and live.exists()
    assert not (run.path / f".tmp-{pid}-saved.abc123").exists()
    # a folder that is no run directory (a user's, given as --out_dir) is left alone
    user = RunDirectory(tmp_path / "user")
    user.path.mkdir()
    (user.path / "thesis.tex").write_text("years of work")
    (user.path / f".tmp-{pid}-draft").write_text("the user's own")
    with pytest.raises(ConfigMismatchError, match="holds files"):
        user.prepare({"model": "m"})
    assert (user.path / f".tmp-{pid}-draft").exists() and not user.config_path.exists()


# --- end to end: bad cases 4 and 5 of the issue ---------------------------------------------

@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    from training.experiments.pretraining import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "r"
    train(TrainConfig(out_dir=str(out), epochs=2, learning_rate=2e-4, **TINY))
    return out


def copy_of(run_dir, tmp_path):
    target = tmp_path / "r"
    shutil.copytree(run_dir, target)
    return target


@pytest.mark.slow  # two in-process training runs
def test_a_history_line_cut_short_by_a_crash_is_remade_and_the_run_completes(
        two_epoch_run, tmp_path):
    from training.experiments.plots import read_history
    from training.experiments.pretraining import TrainConfig, train

    run_dir = copy_of(two_epoch_run, tmp_path)
    history = run_dir / "history.csv"
    # killed while writing epoch 3's line: the backup still holds 2 epochs
    history.write_bytes(history.read_bytes() + b"2,0.61")
    config = TrainConfig(out_dir=str(run_dir), epochs=3, learning_rate=2e-4, **TINY)
    metrics = train(config)
    assert metrics["status"] == "complete" and metrics["epochs_completed"] == 3
    assert read_history(history)["epoch"] == [0.0, 1.0, 2.0]
    assert history.read_text().count("\n") == 4 and history.read_text().endswith("\n")
    assert train(config)["status"] == "complete"  # the same command again: not refused


@pytest.mark.slow  # in-process training runs
def test_a_removed_config_is_rebuilt_from_the_backup_and_other_flags_are_refused(
        two_epoch_run, tmp_path):
    from training.experiments.pretraining import TrainConfig, train

    run_dir = copy_of(two_epoch_run, tmp_path)
    (run_dir / "config.json").unlink()
    before = files(run_dir)
    config = TrainConfig(out_dir=str(run_dir), epochs=3, learning_rate=2e-4, **TINY)
    with pytest.raises(ConfigMismatchError, match=r"learning_rate: 0\.0002 -> 0\.05"):
        train(dataclasses.replace(config, learning_rate=0.05))
    assert files(run_dir) == before  # nothing written, config.json not made from the flags
    metrics = train(config)
    assert metrics["epochs_completed"] == 3
    assert json.loads((run_dir / "config.json").read_text())["learning_rate"] == 2e-4
