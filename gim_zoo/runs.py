"""Run directories: resumable, never half-written, refusing to mix configurations.

A run directory holds config.json (what was asked), backup/ (Keras BackupAndRestore state,
written atomically and never with non-finite weights), logs/ (TensorBoard), history.csv,
the final weights and metrics.json. Re-running the same command resumes; re-running with
a different configuration (other than more epochs) is refused instead of silently mixed.
"""

import json
import math
import os
import tempfile
import time
from pathlib import Path

import keras

# Keys that may change between invocations of the same run (they don't change the result).
RESUMABLE_KEYS = ("epochs", "rounds", "verbose")


def atomic_write_text(path, text):
    """Write to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_weights(model, path):
    """model.save_weights to a temporary `.weights.h5` next to `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def all_finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values()
               if isinstance(v, (int, float)) or hasattr(v, "__float__"))


class ConfigMismatchError(ValueError):
    """The run directory was made by a different configuration."""


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

    def prepare(self, config, defaults=None):
        """Create the directory or check that it belongs to the same configuration.

        defaults: values of settings that a run saved by an older version may lack (a
        missing setting equal to its default is not a difference)."""
        if self.config_path.exists():
            saved = {**(defaults or {}), **self.read_config()}
            differ = sorted(
                k for k in set(saved) | set(config)
                if k not in RESUMABLE_KEYS and saved.get(k) != config.get(k)
            )
            if differ:
                details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in differ)
                raise ConfigMismatchError(
                    f"{self.path} holds a run with a different configuration ({details}). "
                    "Use another --out_dir, or delete that directory to start over."
                )
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


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that writes atomically and never backs up a non-finite epoch.

    Keeps the backup after training (delete_checkpoint=False), so re-running a finished
    command is a no-op and asking for more epochs continues from the last one.
    """

    def __init__(self, backup_dir):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        atomic_save_weights(self.model, self._weights_path)
        atomic_write_json(self._training_metadata_path,
                          {"epoch": self._current_epoch, "batch": self._last_batch_seen})


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs (so history.csv and TensorBoard record it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
