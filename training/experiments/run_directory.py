"""Run directories: resumable, never half-written, refusing to mix configurations.

A run directory holds config.json (what was asked), backup/ (a ResumableBackup: written
atomically and never with non-finite weights), logs/ (TensorBoard), history.csv, the
final weights and metrics.json. Re-running the same command resumes; re-running with a
different configuration (other than more epochs) is refused instead of silently mixed.
"""

import contextlib
import fcntl
import json
import os
import signal
import time
from pathlib import Path

import keras

from gim_zoo.callbacks.backup import BackupError, ResumableBackup
from gim_zoo.files import atomic_write_json, os_error_naming

# Keys that may change between invocations of the same run (they don't change the result).
RESUMABLE_KEYS = ("epochs", "rounds", "verbose")
# Keys naming the run directory itself: the directory holding config.json is that run
# whether it was named by a relative or an absolute path (or has been moved since).
LOCATION_KEYS = ("out_dir",)


class ConfigMismatchError(ValueError):
    """The run directory was made by a different configuration."""


class RunLockedError(ValueError):
    """Another process is running in this run directory."""


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

    @property
    def recovery(self):
        """What to do about a backup that is refused (BackupError messages end with it)."""
        return (f"To start the run over, delete {self.path} (or restore "
                f"{self.backup_dir} and {self.history_path.name} from a copy).")

    def check_backup(self):
        """Completed epochs of the backup, after checking it is whole (its sha256) and
        agrees with history.csv; BackupError says what is wrong and how to recover."""
        recovery = self.recovery
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
        return (self.backup_dir / ResumableBackup.WEIGHTS).exists()


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
