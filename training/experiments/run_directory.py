"""Run directories: resumable, never half-written, refusing to mix configurations.

A run directory holds config.json (what was asked), backup/ (Keras BackupAndRestore state,
written atomically and never with non-finite weights), logs/ (TensorBoard), history.csv,
the final weights and metrics.json. Re-running the same command resumes; re-running with
a different configuration (other than more epochs) is refused instead of silently mixed.
"""

import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from gim_zoo.files import (atomic_path, atomic_save_weights, atomic_write_json,  # noqa: F401
                           atomic_write_text, os_error_naming, sha256_of)

# Keys that may change between invocations of the same run (they don't change the result).
RESUMABLE_KEYS = ("epochs", "rounds", "verbose")
# Keys naming the run directory itself: the directory holding config.json is that run
# whether it was named by a relative or an absolute path (or has been moved since).
LOCATION_KEYS = ("out_dir",)


def save_weights_as_worker(model, path, chief=True, attrs=None, checksum=None):
    """atomic_save_weights on the chief; elsewhere the same save into a scratch directory
    that is deleted at once.

    Under MultiWorkerMirroredStrategy reading some variables to save them is a collective
    (a broadcast), so every worker must save; only the chief's copy is kept (TF's
    multi-worker checkpointing does the same). attrs: root attributes added to the file
    before it is renamed into place. checksum: a JSON file that records the new file's
    sha256, and that of the file it replaces, written before the rename (see
    ResumableBackup.verified_epochs)."""
    scratch = None if chief else Path(tempfile.mkdtemp(prefix="gim-zoo-worker-"))
    path = Path(path) if chief else scratch / Path(path).name

    def record_checksum(tmp):
        # Before the rename, so the weights file always matches one of the two.
        atomic_write_json(checksum, {
            "sha256": sha256_of(tmp),
            "previous_sha256": sha256_of(path) if path.exists() else None,
            "epoch": (attrs or {}).get(_EPOCH_ATTR)})

    try:
        with atomic_path(path, record_checksum if checksum and chief else None) as tmp:
            model.save_weights(tmp)
            if attrs:
                import h5py

                with h5py.File(tmp, "a") as f:
                    for key, value in attrs.items():
                        f.attrs[key] = value
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def all_finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values()
               if isinstance(v, (int, float)) or hasattr(v, "__float__"))


class ConfigMismatchError(ValueError):
    """The run directory was made by a different configuration."""


class RunLockedError(ValueError):
    """Another process is running in this run directory."""


class BackupError(ValueError):
    """A run's backup is missing, damaged or disagrees with its history."""


def _history_epochs(path):
    """Distinct epochs recorded in a Keras CSVLogger file (0 without one)."""
    import csv

    if not os.path.exists(path):
        return 0
    with open(path, newline="") as f:
        return len({row.get("epoch") for row in csv.DictReader(f)} - {None, ""})


class RunDirectory:
    def __init__(self, path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.json"
        self.backup_dir = self.path / "backup"
        self.logs_dir = self.path / "logs"
        self.history_path = self.path / "history.csv"
        self.weights_path = self.path / "model.weights.h5"
        self.encoder_weights_path = self.path / "encoder.weights.h5"
        self.loss_plot_path = self.path / "loss_curves.png"
        self.lock_path = self.path / "run.lock"

    @contextlib.contextmanager
    def lock(self):
        """Hold the run directory for one process (created if needed) until the block
        ends. An flock on run.lock: released when the process dies, however it dies."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise os_error_naming(e, self.lock_path) from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                raise RunLockedError(
                    f"{self.path} is in use by another process"
                    f"{f' (pid {holder})' if holder else ''}: two processes would corrupt "
                    "it. Wait for that one to finish, or use another --out_dir.") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the lock

    def check_backup(self):
        """Completed epochs of the backup, after checking it is whole (its sha256) and
        agrees with history.csv; BackupError says what is wrong and how to recover."""
        recovery = (f"To start the run over, delete {self.path} (or restore "
                    f"{self.backup_dir} and {self.history_path.name} from a copy).")
        backed_up = ResumableBackup.verified_epochs(self.backup_dir, recovery)
        recorded = _history_epochs(self.history_path)
        # history.csv is written just before the backup: it may be one epoch ahead.
        if not backed_up <= recorded <= backed_up + 1:
            raise BackupError(
                f"{self.history_path} records {recorded} epoch{'s' * (recorded != 1)} but "
                f"the backup in {self.backup_dir} holds {backed_up}: the backup or the "
                f"history was deleted or replaced. {recovery}")
        return backed_up

    def prepare(self, config, defaults=None, write=True):
        """Create the directory or check that it belongs to the same configuration.

        defaults: values of settings that a run saved by an older version may lack (a
        missing setting equal to its default is not a difference).
        write: False only checks (a non-chief multi-worker process writes nothing)."""
        if self.config_path.exists():
            saved = {**(defaults or {}), **self.read_config()}
            differ = sorted(
                k for k in set(saved) | set(config)
                if k not in RESUMABLE_KEYS + LOCATION_KEYS and saved.get(k) != config.get(k)
            )
            if differ:
                details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in differ)
                raise ConfigMismatchError(
                    f"{self.path} holds a run with a different configuration ({details}). "
                    "Use another --out_dir, or delete that directory to start over."
                )
        if not write:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, config)

    def read_config(self):
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    def read_metrics(self):
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.exists() else {}

    def update_metrics(self, **values):
        metrics = self.read_metrics()
        metrics.update(values)
        atomic_write_json(self.metrics_path, metrics)
        return metrics

    @property
    def has_backup(self):
        return (self.backup_dir / "latest.weights.h5").exists()


# Attributes of the backup weights file: the epoch count and the seed generators' states
# live in the same file as the weights, so one rename commits all three together.
_EPOCH_ATTR = "gim_zoo_completed_epochs"
_SEEDS_ATTR = "gim_zoo_seed_generators"


def seed_generators(model):
    """Every keras.random.SeedGenerator of `model` (e.g. the InfoNCE negative samplers),
    in layer order. Keras's weights files leave their states out."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", []):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that writes atomically and never backs up a non-finite epoch.

    Keeps the backup after training (delete_checkpoint=False), so re-running a finished
    command is a no-op and asking for more epochs continues from the last one.

    The weights file (model and optimizer variables) also carries the number of completed
    epochs and the states of the model's seed generators, so a resumed run draws the same
    InfoNCE negatives as an uninterrupted one, and the epoch count can never disagree
    with the weights (one `os.replace` commits both). training_metadata.json is still
    written after it, for Keras and for people; the weights file's count wins.

    write=False (non-chief multi-worker processes) restores from the chief's backup and
    keeps nothing it saves.
    """

    def __init__(self, backup_dir, write=True):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.write = write

    @staticmethod
    def checksum_path(backup_dir):
        return Path(backup_dir) / "latest.weights.h5.sha256"

    @staticmethod
    def verified_epochs(backup_dir, recovery=None):
        """completed_epochs after checking the backup is whole: the weights file's sha256
        is the one recorded beside it (or the one it was replacing, when a process died
        between the two), and a backup that was committed has not since gone missing.
        BackupError otherwise, saying what is wrong and how to recover."""
        backup_dir = Path(backup_dir)
        weights = backup_dir / "latest.weights.h5"
        sidecar = ResumableBackup.checksum_path(backup_dir)
        recovery = recovery or f"Delete {backup_dir} to start over."
        recorded = None
        if sidecar.exists():
            try:
                recorded = json.loads(sidecar.read_text())
            except ValueError:
                raise BackupError(f"{sidecar} is damaged (not JSON). {recovery}") from None
        metadata = backup_dir / "training_metadata.json"
        if not weights.exists():
            if metadata.exists() or (recorded and recorded.get("previous_sha256")):
                raise BackupError(
                    f"{weights} is missing, but {backup_dir} records a completed backup: "
                    f"resuming would restart from random weights. {recovery}")
            return 0  # no backup yet (or the first one was never committed)
        if recorded is None:
            raise BackupError(
                f"{weights} has no checksum ({sidecar.name} is missing: the backup is "
                f"damaged, or was written by an older gim_zoo). {recovery}")
        got = sha256_of(weights)
        if got not in (recorded.get("sha256"), recorded.get("previous_sha256")):
            raise BackupError(
                f"{weights} failed its integrity check: sha256 {got[:12]}... but "
                f"{sidecar.name} records {str(recorded.get('sha256'))[:12]}... The file is "
                f"truncated or corrupted. {recovery}")
        try:
            return ResumableBackup.completed_epochs(backup_dir)
        except (OSError, ValueError, KeyError) as e:
            raise BackupError(f"{weights} cannot be read ({e}). {recovery}") from e

    @staticmethod
    def completed_epochs(backup_dir):
        """Epochs a run in `backup_dir` has completed (0 without a backup): the epoch
        training resumes at, known before fit() so the data pipeline can start there."""
        weights = Path(backup_dir) / "latest.weights.h5"
        if weights.exists():
            import h5py

            with h5py.File(weights, "r") as f:
                if _EPOCH_ATTR in f.attrs:
                    return int(f.attrs[_EPOCH_ATTR])
        metadata = Path(backup_dir) / "training_metadata.json"
        if metadata.exists():
            return int(json.loads(metadata.read_text())["epoch"])
        return 0

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        # Every worker saves (see save_weights_as_worker); only the chief's file is kept.
        seeds = [keras.ops.convert_to_numpy(g.state.value).tolist()
                 for g in seed_generators(self.model)]
        save_weights_as_worker(self.model, self._weights_path, chief=self.write,
                               attrs={_EPOCH_ATTR: int(self._current_epoch),
                                      _SEEDS_ATTR: json.dumps(seeds)},
                               checksum=self.checksum_path(self.backup_dir))
        if self.write:
            atomic_write_json(self._training_metadata_path,
                              {"epoch": self._current_epoch, "batch": self._last_batch_seen})

    def _load_model(self):
        self.verified_epochs(self.backup_dir)  # never resume from a damaged backup
        super()._load_model()
        if not os.path.exists(self._weights_path):
            return
        import h5py

        with h5py.File(self._weights_path, "r") as f:
            epoch = f.attrs.get(_EPOCH_ATTR)
            seeds = f.attrs.get(_SEEDS_ATTR)
        if epoch is not None:
            self.model._initial_epoch = int(epoch)
        if seeds is not None:
            generators = seed_generators(self.model)
            states = json.loads(seeds)
            if len(states) != len(generators):
                raise ValueError(f"{self._weights_path} holds {len(states)} seed generator "
                                 f"states, the model has {len(generators)}")
            for generator, state in zip(generators, states):
                generator.state.assign(np.asarray(state, dtype=generator.state.dtype))


class SelfKill(keras.callbacks.Callback):
    """Fault injection for tests: SIGKILL this process after its `step`-th training batch
    (counted from this process's start). Enabled by the GIM_ZOO_SIGKILL_AT_STEP variable."""

    ENV = "GIM_ZOO_SIGKILL_AT_STEP"

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = int(step), 0

    @classmethod
    def from_env(cls):
        step = os.environ.get(cls.ENV)
        return cls(step) if step else None

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs (so history.csv and TensorBoard record it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
