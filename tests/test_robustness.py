"""Issue 16: outputs never replace what they did not write, run directories are locked and
their backups checked, uploads and packages touch exactly what they should, bad configs
and operating-system errors are one-line errors that leave no temporary files behind."""

import errno
import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from gim_zoo import presets
from training.experiments.run_directory import RunDirectory
from tests import subprocs

ROOT = Path(__file__).resolve().parents[1]
NAME = "gim-fmnist-resnet"
TINY_CONFIG = dict(model=NAME, stem_width=8, widths="4,4,8", blocks="1,1,1",
                   max_examples=64, batch_size=32, eval_examples=32, verbose=0)


def temporaries(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                  if ".tmp" in p.name)


def listing(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None)
                  for p in Path(folder).rglob("*"))


def cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocs.run([sys.executable, "-m", "gim_zoo", *args], check=False, env=env,
                        cwd=ROOT)


@pytest.fixture(autouse=True)
def private_manifest(tmp_path, monkeypatch):
    """Nothing here may touch the package's bundled copies or manifest."""
    monkeypatch.setattr(presets, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "bundled" / "manifest.json")


# 1. export --out -------------------------------------------------------------------------

@pytest.mark.slow
def test_export_cli_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "my-documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    like_a_file = tmp_path / "encoder.tflite"
    like_a_file.mkdir()
    (like_a_file / "notes.txt").write_text("keep me")
    before = listing(tmp_path)
    for fmt, out in (("saved_model", mine), ("tflite", like_a_file)):
        for extra in ((), ("--overwrite",)):
            proc = cli("export", NAME, "--weights", "none", "--format", fmt, "--out",
                       str(out), *extra)
            assert proc.returncode != 0, (fmt, extra, proc.stdout)
            assert "Traceback" not in proc.stderr and str(out) in proc.stderr, proc.stderr
    assert listing(tmp_path) == before


@pytest.mark.slow
def test_export_replaces_its_own_output_only_when_told(tiny_encoder, tmp_path):
    from gim_zoo.exporting import OutputExistsError, export_saved_model, export_tflite

    model = tiny_encoder.feature_model(pool_to=1)
    path = export_tflite(model, tmp_path / "enc.tflite", overwrite=False)
    first = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_tflite(model, path, overwrite=False)
    assert path.read_bytes() == first
    export_tflite(model, path, overwrite=True)
    saved = export_saved_model(model, tmp_path / "saved", overwrite=False)
    with pytest.raises(OutputExistsError):
        export_saved_model(model, saved, overwrite=False)
    export_saved_model(model, saved, overwrite=True)
    assert (saved / "saved_model.pb").is_file()
    assert temporaries(tmp_path) == []


def test_export_never_writes_through_a_symlink_into_a_users_folder(tiny_encoder, tmp_path):
    from gim_zoo.exporting import OutputExistsError, export_saved_model

    user = tmp_path / "user"
    user.mkdir()
    (user / "photo.jpg").write_bytes(b"jpeg")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-saved").symlink_to(user)  # the old predictable temporary name
    (out / "link").symlink_to(user)
    model = tiny_encoder.feature_model(pool_to=1)
    export_saved_model(model, out / "saved")
    with pytest.raises(OutputExistsError, match="symbolic link"):
        export_saved_model(model, out / "link", overwrite=True)
    assert listing(user) == [("photo.jpg", b"jpeg")]
    assert (out / "saved" / "saved_model.pb").is_file() and (out / "link").is_symlink()


# 2. one process per run directory --------------------------------------------------------

def test_a_run_directory_is_locked_by_one_process(tmp_path):
    from training.experiments.run_directory import RunLockedError

    run = RunDirectory(tmp_path / "r")
    with run.lock():
        with pytest.raises(RunLockedError, match=str(tmp_path / "r")):
            with RunDirectory(tmp_path / "r").lock():
                pass
    with RunDirectory(tmp_path / "r").lock():  # released
        pass


@pytest.mark.slow
def test_second_train_process_on_the_same_out_dir_is_refused(tmp_path):
    from tests.training_procs import run

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    with open(run_dir / "run.lock", "a") as held:  # what a running train.py holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run(run_dir, "--epochs=1", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{run_dir} is in use by another process" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.lock"]


# 3. damaged backups are refused, not resumed ---------------------------------------------

def _fit_with_backup(model, backup_dir, epochs):
    from gim_zoo.callbacks import ResumableBackup

    backup = ResumableBackup(backup_dir)
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=epochs, verbose=0,
              initial_epoch=backup.initial_epoch, callbacks=[backup])


def test_backup_checksum_catches_damage_but_not_an_interrupted_commit(tmp_path):
    from gim_zoo.callbacks import BackupError, ResumableBackup

    backup = tmp_path / "backup"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    _fit_with_backup(model, backup, 1)
    weights = backup / "latest.weights.h5"
    epoch1 = weights.read_bytes()
    _fit_with_backup(model, backup, 2)
    assert ResumableBackup.verified_epochs(backup) == 2
    # Killed between the checksum and the rename: the previous weights are still whole.
    weights.write_bytes(epoch1)
    assert ResumableBackup.verified_epochs(backup) == 1
    damaged = bytearray(epoch1)
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(BackupError, match="sha256"):
        ResumableBackup.verified_epochs(backup)
    weights.unlink()
    with pytest.raises(BackupError, match="latest.weights.h5 is missing"):
        ResumableBackup.verified_epochs(backup)


def test_backup_must_agree_with_history(tmp_path):
    from gim_zoo.callbacks import BackupError

    run = RunDirectory(tmp_path / "r")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    _fit_with_backup(model, run.backup_dir, 2)
    run.history_path.write_text("epoch,loss\n0,1.0\n1,0.5\n")
    assert run.check_backup() == 2
    run.history_path.write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(BackupError, match="history.csv records 1 epoch"):
        run.check_backup()
    shutil.rmtree(run.backup_dir)
    run.history_path.write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.4\n")
    with pytest.raises(BackupError, match="delete"):
        run.check_backup()


@pytest.mark.slow
def test_damaged_backups_are_refused_by_train_py(tmp_path, tmp_path_factory):
    from tests.training_procs import cached_run, run

    # the uninterrupted 3-epoch run that test_faults and test_distributed share
    done = cached_run(tmp_path_factory, "single", "--epochs=3")
    deleted, flipped = tmp_path / "deleted", tmp_path / "flipped"
    shutil.copytree(done, deleted)
    shutil.copytree(done, flipped)
    (deleted / "backup" / "latest.weights.h5").unlink()
    data = bytearray((flipped / "backup" / "latest.weights.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "backup" / "latest.weights.h5").write_bytes(bytes(data))
    # training further needs the backup (a finished run without one is still complete,
    # see test_final_eval_is_limited_and_a_finished_run_is_not_redone)
    for run_dir, flags, why in ((deleted, ["--epochs=4"], "is missing"),
                                (flipped, ["--epochs=4"], "sha256")):
        metrics = (run_dir / "metrics.json").read_bytes()
        proc = run(run_dir, *flags, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert why in proc.stderr and f"delete {run_dir}" in proc.stderr, proc.stderr
        assert (run_dir / "metrics.json").read_bytes() == metrics


# 4. publish uploads exactly metadata.json's files -----------------------------------------

@pytest.fixture
def model_folder(tmp_path, tiny_encoder):
    from gim_zoo.presets import write_model_folder

    return write_model_folder(tiny_encoder, tmp_path / "out" / NAME, NAME,
                              {"README.md": "---\nlicense: apache-2.0\n---\ncard\n",
                               "metrics.json": "{}"})


def test_publish_uploads_exactly_the_listed_files(standin, model_folder, tmp_path):
    from gim_zoo.presets import plan_upload, publish

    secret = tmp_path / "secret.txt"
    secret.write_text("outside the folder")
    (model_folder / ".env").write_text("HF_TOKEN=hf_leaked\n")
    (model_folder / "notes.txt").symlink_to(secret)
    (model_folder / "scratch").mkdir()
    (model_folder / "scratch" / "x.bin").write_bytes(b"x")
    listed = set(json.loads((model_folder / "metadata.json").read_text())["files"])
    planned = {path for path, _ in plan_upload(model_folder)}
    assert planned == listed | {"metadata.json"}
    repo = "gim-zoo-test/exact"
    publish(model_folder, repo, token=standin.token, endpoint=standin.endpoint)
    assert set(standin.files(repo)) == planned
    assert standin.files(repo)["README.md"] == (model_folder / "README.md").read_bytes()


def test_publish_refuses_a_symlinked_file(standin, model_folder, tmp_path):
    from gim_zoo.presets import PublishError, plan_upload

    outside = tmp_path / "README-elsewhere.md"
    shutil.move(model_folder / "README.md", outside)
    (model_folder / "README.md").symlink_to(outside)  # same bytes: the sha256 matches
    with pytest.raises(PublishError, match="README.md is a symbolic link"):
        plan_upload(model_folder)


# 5. packaging writes only --out_dir and only complete, trained runs ------------------------

def _fake_run(run_dir, tiny_encoder, epochs_completed=1):
    from training.experiments.pretraining import TrainConfig

    run = RunDirectory(run_dir)
    config = TrainConfig(out_dir=str(run_dir), epochs=1, **{
        k: v for k, v in TINY_CONFIG.items() if k != "verbose"})
    import dataclasses

    run.prepare(dataclasses.asdict(config))
    from gim_zoo.registry import get

    get(NAME).build_encoder(**config.encoder_overrides()).save_weights(run.encoder_weights_path)
    run.update_metrics(status="complete", epochs_completed=epochs_completed,
                       train_seconds=1.0, train_examples=64, test_loss=1.0)
    return run_dir


def test_packaging_refuses_a_run_that_trained_no_epoch(tmp_path, tiny_encoder):
    from training.experiments.packaging import package_run

    run_dir = _fake_run(tmp_path / "run", tiny_encoder, epochs_completed=0)
    with pytest.raises(ValueError, match="trained 0 epochs"):
        package_run(NAME, run_dir, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not presets.MANIFEST_PATH.exists()


def _write_probe(probes_dir, budget, seed, accuracy, pool_to=3):
    probes_dir.mkdir(parents=True, exist_ok=True)
    (probes_dir / f"labels{budget}-module3-pool{pool_to}-seed{seed}.json").write_text(
        json.dumps({"labels_per_class": budget, "seed": seed, "module": 3, "pool_to": pool_to,
                    "test_accuracy": accuracy, "train_examples": 600, "test_examples": 10000,
                    "steps": 10}))


def test_packaged_metrics_record_every_module_job_and_every_probe_seed(tmp_path, tiny_encoder):
    """A module-at-a-time encoder is one job per module: its metrics.json and card give the
    whole recipe (each job's command, all jobs' time), and probe seeds as mean ± std."""
    from training.experiments import model_cards
    from training.experiments.packaging import run_metrics
    from gim_zoo.files import sha256_of
    from gim_zoo.registry import get

    m1 = _fake_run(tmp_path / "m1", tiny_encoder)
    m2 = _fake_run(tmp_path / "m2", tiny_encoder)
    config = json.loads((m2 / "config.json").read_text())
    (m2 / "config.json").write_text(json.dumps({**config, "train_module": 2,
                                                 "init_from": str(m1)}))
    for seed, accuracy in enumerate((0.90, 0.91, 0.92)):
        _write_probe(m2 / "probes", "all", seed, accuracy)
        _write_probe(tmp_path / "random" / "probes", "all", seed, accuracy - 0.1)
    _write_probe(m2 / "probes", "all", 0, 0.87, pool_to=1)
    _write_probe(tmp_path / "random" / "probes", "all", 0, 0.77, pool_to=1)
    _write_probe(m2 / "probes", "600", 0, 0.5)  # of other weights: left out
    stale = m2 / "probes" / "labels600-module3-pool3-seed0.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "encoder": "sha256:0"}))
    current = m2 / "probes" / "labelsall-module3-pool3-seed2.json"  # of these weights: kept
    current.write_text(json.dumps({**json.loads(current.read_text()), "encoder": "sha256:"
                                   + sha256_of(m2 / "encoder.weights.h5")}))
    metrics = run_metrics(m2, pool_to=3, random_init_probes=tmp_path / "random" / "probes")

    training = metrics["training"]
    assert [job["command"] for job in training["jobs"]] == training["command"].split(" && ")
    assert "--train_module=2" in training["jobs"][1]["command"]
    assert f"--init_from={m1}" in training["jobs"][1]["command"]
    assert "--train_module" not in training["jobs"][0]["command"]
    assert training["train_seconds"] == 2.0  # both jobs
    probe = metrics["linear_probe"]["all"]
    assert probe["test_accuracy"] == pytest.approx(0.91)
    assert probe["test_accuracy_std"] == pytest.approx(np.std([0.90, 0.91, 0.92]))
    assert probe["probe_seeds"] == [0, 1, 2]
    assert metrics["random_init_linear_probe"]["all"]["test_accuracy"] == pytest.approx(0.81)
    assert metrics["global_pool_linear_probe"]["all"]["test_accuracy"] == 0.87
    assert metrics["random_init_global_pool_linear_probe"]["all"]["test_accuracy"] == 0.77
    assert "600" not in metrics["linear_probe"]

    card = model_cards.render(get(NAME), metrics)
    assert "91.00% ± 0.82 (3 probe seeds)" in card and "81.00% ± 0.82" in card
    assert "global average pool | random-init encoder, same probe |" in card
    assert "| 100% labels | 87.00% | 77.00% |" in card
    assert f"  2. `{training['jobs'][1]['command']}`" in card
    assert "InfoNCE of each module, after its job" not in card  # the fakes recorded none

    shutil.rmtree(m1)  # the run module 2 started from is gone: nothing to record
    with pytest.raises(FileNotFoundError, match="m1.*is missing"):
        run_metrics(m2, pool_to=3)


@pytest.mark.slow
def test_package_script_with_out_dir_writes_only_that_folder(tmp_path, tiny_encoder):
    run_dir = _fake_run(tmp_path / "run", tiny_encoder)
    cards = ROOT / "model_cards"
    cards_before = listing(cards)
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"other-model": {"files": {}, "revision": null}}\n')
    before = manifest.read_bytes()
    # The package's manifest and bundled folder point into tmp_path; the rest is what
    # `python training/package.py` does (its own folder first on the path).
    wrapper = ("import runpy, sys; from pathlib import Path; from gim_zoo import presets; "
               "presets.MANIFEST_PATH = Path(sys.argv[1]); presets.BUNDLED_DIR = Path(sys.argv[2]); "
               "sys.argv = sys.argv[3:]; sys.path.insert(0, str(Path(sys.argv[0]).parent)); "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocs.run(
        [sys.executable, "-c", wrapper, str(manifest), str(tmp_path / "bundled"),
         str(ROOT / "training" / "package.py"), f"--model={NAME}", f"--run_dir={run_dir}",
         f"--out_dir={tmp_path / 'x'}"], env=env, cwd=ROOT)
    assert (tmp_path / "x" / "encoder_int8.tflite").is_file()
    assert manifest.read_bytes() == before
    assert listing(cards) == cards_before and not (tmp_path / "bundled").exists()


@pytest.mark.slow
def test_the_old_package_command_forwards_to_training(tmp_path):
    """export/package.py, named in earlier model cards, runs training/package.py."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocs.run([sys.executable, "export/package.py", "--help"], check=False,
                        env=env, cwd=ROOT)
    assert "--ticket_dir" in proc.stdout + proc.stderr and "training/package.py" in (
        proc.stdout + proc.stderr)


# 9. configs are checked before anything is written ---------------------------------------

@pytest.mark.parametrize("field,value", [("epochs", -1), ("batch_size", -1),
                                         ("learning_rate", -0.1),
                                         ("learning_rate", float("nan")),
                                         ("max_examples", -5), ("eval_examples", -1),
                                         ("train_module", 4), ("widths", "4,x,8"),
                                         ("cpu_devices", -2), ("batch_size", 65)])
def test_invalid_configs_are_refused_before_anything_is_written(tmp_path, field, value):
    from training.experiments.pretraining import TrainConfig, train

    config = TrainConfig(out_dir=str(tmp_path / "r"), **{**TINY_CONFIG, field: value})
    with pytest.raises(ValueError, match=field):
        train(config)
    assert not (tmp_path / "r").exists()


def test_the_same_run_directory_by_absolute_or_relative_path(tmp_path, monkeypatch):
    from training.experiments.run_directory import ConfigMismatchError

    monkeypatch.chdir(tmp_path)
    RunDirectory("runs/r").prepare({"model": "m", "out_dir": "runs/r", "epochs": 1})
    (tmp_path / "runs" / "r" / "history.csv").write_text("epoch,loss\n0,1.0\n")  # trained
    for name in (tmp_path / "runs" / "r", "./runs/r/", "runs/r"):
        # the same run, however named: resumed (more epochs), never refused ...
        RunDirectory(name).prepare({"model": "m", "out_dir": str(name), "epochs": 2})
        assert json.loads((tmp_path / "runs" / "r" / "config.json").read_text()) == {
            "model": "m", "out_dir": str(name), "epochs": 2}
        # ... and another configuration in it is refused, however named
        with pytest.raises(ConfigMismatchError, match="model: 'm' -> 'other'"):
            RunDirectory(name).prepare({"model": "other", "out_dir": str(name), "epochs": 2})
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir()) == ["r", "runs"]


# 10. operating-system errors ------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_atomic_writes_leaves_no_temporary_file(tmp_path, monkeypatch,
                                                                 tiny_encoder):
    from gim_zoo import files
    from gim_zoo.callbacks.backup import save_weights_as_worker
    from training.experiments.plots import plot_loss_curves

    monkeypatch.setattr(files.os, "fsync", _enospc)
    with pytest.raises(OSError, match=f"No space left on device.*{tmp_path / 'a.json'}"):
        files.atomic_write_json(tmp_path / "a.json", {"x": 1})

    def partial_then_full(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        _enospc()

    monkeypatch.setattr(tiny_encoder, "save_weights", partial_then_full)
    for save in (files.atomic_save_weights, save_weights_as_worker):
        with pytest.raises(OSError, match=f"No space left on device.*{tmp_path / 'w'}"):
            save(tiny_encoder, tmp_path / "w.weights.h5")

    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, path, **kw: partial_then_full(path))
    with pytest.raises(OSError, match="No space left on device"):
        plot_loss_curves(tmp_path / "history.csv", tmp_path / "loss.png")
    assert temporaries(tmp_path) == [] and not (tmp_path / "w.weights.h5").exists()


def test_full_disk_during_export_leaves_no_temporary_file(tmp_path, monkeypatch,
                                                          tiny_encoder):
    from gim_zoo.exporting import export_saved_model, export_tflite

    model = tiny_encoder.feature_model(pool_to=1)

    def partial_then_full(path, *args, **kwargs):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"half a model")
        _enospc()

    monkeypatch.setattr(model, "export", partial_then_full)
    with pytest.raises(OSError, match=f"No space left on device.*{tmp_path / 'enc.tflite'}"):
        export_tflite(model, tmp_path / "enc.tflite")
    with pytest.raises(OSError, match="No space left on device"):
        export_saved_model(model, tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_during_a_backup_keeps_the_last_good_one(tmp_path, monkeypatch):
    from gim_zoo.callbacks import ResumableBackup

    backup = tmp_path / "backup"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    _fit_with_backup(model, backup, 1)
    saved = (backup / "latest.weights.h5").read_bytes()
    real = model.save_weights

    def full_disk(path, *args, **kwargs):
        real(path)
        _enospc()

    monkeypatch.setattr(model, "save_weights", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        _fit_with_backup(model, backup, 2)
    assert temporaries(tmp_path) == []
    assert (backup / "latest.weights.h5").read_bytes() == saved
    assert ResumableBackup.verified_epochs(backup) == 1


@pytest.mark.slow
def test_os_errors_are_one_line_errors_naming_the_path(tmp_path):
    from tests.training_procs import run

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run(blocker / "run", "--epochs=1", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert str(blocker) in proc.stderr
    proc = cli("export", NAME, "--weights", "none", "--out", str(blocker / "x.tflite"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(blocker) in proc.stderr
    assert temporaries(tmp_path) == []
