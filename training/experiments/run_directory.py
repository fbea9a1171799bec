"""Run directories: resumable, never half-written, refusing to mix configurations.

A run directory holds config.json (what was asked), backup/ (a ResumableBackup: written
atomically and never with non-finite weights), logs/ (TensorBoard), history.csv, the
final weights and metrics.json. Re-running the same command resumes; re-running with a
different configuration (other than more epochs) is refused instead of silently mixed.

It never bricks: every file read here is parsed defensively. A history.csv whose last
line was cut short (a crash while writing it) loses that line, and the epoch is trained
again; a lost config.json is rebuilt from the settings the backup records; temporary
files of a killed process are removed at the next start; anything else damaged is
refused with its path and what recovers it. A configuration is checked (against
config.json and the backup) before anything is written, and a config.json under which
nothing was produced yet never blocks a corrected command.
"""

import contextlib
import csv
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import keras

from gim_zoo.run_layout import RunLayout
from gim_zoo.validation import check_config
from gim_zoo.callbacks.backup import BackupError, ResumableBackup
from gim_zoo.files import (DamagedFileError, atomic_write_json, atomic_write_text,
                           describe_contents, os_error_naming, read_json_object,
                           remove_orphaned_temporaries)

# Keys that may change between invocations of the same run (they don't change the result).
RESUMABLE_KEYS = ("epochs", "rounds", "control_rounds", "verbose")
# Keys naming the run directory itself: the directory holding config.json is that run
# whether it was named by a relative or an absolute path (or has been moved since).
LOCATION_KEYS = ("out_dir",)


class ConfigMismatchError(ValueError):
    """The run directory was made by a different configuration."""


class RunLockedError(ValueError):
    """Another process is running in this run directory."""


def read_history_rows(path):
    """(header, rows, cut_short) of a Keras CSVLogger file: rows are the complete lines
    (one value per column, an integer epoch) as dicts; cut_short says the last line was
    cut short (a crash while writing it) and is left out. ([], [], False) without a file.
    DamagedFileError, naming the file, for anything else (binary, no epoch column, a
    damaged line before the last)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], [], False
    except UnicodeDecodeError:
        text = "\0"
    except OSError as e:
        raise os_error_naming(e, path) from e
    recover = (f"restore it from a copy, or delete it to start the history afresh "
               f"(delete {path.parent} to start the run over)")
    if "\0" in text:
        raise DamagedFileError(f"{path} is not a history CSV (binary content): {recover}")
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], [], False
    header = next(csv.reader([lines[0]]), [])
    if not lines[0].endswith("\n") and len(lines) == 1:
        return [], [], True  # the header itself was cut short
    if "epoch" not in header:
        raise DamagedFileError(f"{path} is not a Keras history CSV (no epoch column in its "
                               f"first line): {recover}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        values = next(csv.reader([line]), [])
        complete = line.endswith("\n") and len(values) == len(header)
        row = dict(zip(header, values))
        if complete:
            try:
                int(row["epoch"])
            except ValueError:
                complete = False
        if not complete:
            if number == len(lines):
                return header, rows, True
            raise DamagedFileError(f"{path} line {number} is damaged ({len(values)} of "
                                   f"{len(header)} fields): {recover}")
        rows.append(row)
    return header, rows, False


def _history_epochs(path):
    """Distinct epochs recorded in a Keras CSVLogger file (0 without one), a cut-short
    last line left out."""
    return len({int(row["epoch"]) for row in read_history_rows(path)[1]})


class RunDirectory(RunLayout):
    """A run directory's behaviour (lock, config checks, repairs); its file names are
    gim_zoo.run_layout.RunLayout's."""

    def has_results(self):
        """Whether the directory holds anything a run produced (history, backup, logs,
        weights, metrics...), besides config.json, the lock and temporary files."""
        if not self.path.is_dir():
            return False
        for path in self.path.rglob("*"):
            if path.is_file() and path.name not in (self.CONFIG, self.LOCK) \
                    and not path.name.startswith(".tmp-"):
                return True
        return False

    def remove_temporaries(self):
        """Delete what a killed process left mid-write (.tmp-PID-* of dead processes)."""
        if not self.path.is_dir():
            return []
        removed = remove_orphaned_temporaries(self.path)
        if removed:
            names = ", ".join(str(p.relative_to(self.path)) for p in removed[:4])
            print(f"{self.path}: removed {len(removed)} temporary file(s) left by an "
                  f"interrupted process ({names}{' ...' if len(removed) > 4 else ''})",
                  file=sys.stderr, flush=True)
        return removed

    def repair_history(self):
        """Drop a cut-short last line of history.csv (a crash while writing it): the
        backup was not committed after it, so that epoch is trained again and its line
        written anew. Returns whether a line was dropped."""
        header, rows, cut_short = read_history_rows(self.history_path)
        if not cut_short:
            return False
        lines = self.history_path.read_text().splitlines(keepends=True)
        atomic_write_text(self.history_path, "".join(lines[:1 + len(rows)]) if header else "")
        print(f"{self.history_path}: dropped its last line, cut short by an interrupted "
              "write; that epoch is trained again", file=sys.stderr, flush=True)
        return True

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
        recorded = _history_epochs(self.history_path)
        # backup/ is made before the first epoch: a run that trained without one lost it
        trained = [f"{self.history_path} records {recorded} epoch{'s' * (recorded != 1)}"
                   ] if recorded else []
        trained += [f"{p} exists" for p in (self.metrics_path, self.encoder_weights_path)
                    if p.exists()]
        if trained and not self.backup_dir.is_dir():
            raise BackupError(
                f"{self.backup_dir} is missing, but {trained[0]}: resuming would restart "
                f"from random weights. {recovery}")
        backed_up = ResumableBackup.verified_epochs(self.backup_dir, recovery)
        # history.csv is written just before the backup: it may be one epoch ahead.
        if not backed_up <= recorded <= backed_up + 1:
            raise BackupError(
                f"{self.history_path} records {recorded} epoch{'s' * (recorded != 1)} but "
                f"the backup in {self.backup_dir} holds {backed_up}: the backup or the "
                f"history was deleted or replaced. {recovery}")
        return backed_up

    def prepare(self, config, defaults=None, write=True):
        """Create the directory or check that it belongs to the same configuration
        (compare_config), then record the configuration (write_config).

        defaults: values of settings that a run saved by an older version may lack (a
        missing setting equal to its default is not a difference).
        write: False only checks (a non-chief multi-worker process writes nothing)."""
        self.compare_config(config, defaults)
        if write:  # in a folder now known to be this run's (or empty)
            self.remove_temporaries()
            self.write_config(config)

    def compare_config(self, config, defaults=None):
        """ConfigMismatchError unless `config` is the run's own, writing nothing: compared
        with config.json and with the settings the backup records (which also stand in
        for a lost or damaged config.json). A config.json under which nothing was produced
        yet (a refused command) is no run to protect: it does not count."""
        recorded = ResumableBackup.recorded_settings(self.backup_dir)
        saved = self._saved_config(recorded is not None)
        for source, settings in ((self.config_path.name, saved),
                                 (f"the backup in {self.backup_dir}", recorded)):
            if settings is None or (settings is saved and not self.has_results()):
                continue
            settings = {**(defaults or {}), **settings}
            differ = sorted(
                k for k in set(settings) | set(config)
                if k not in RESUMABLE_KEYS + LOCATION_KEYS and settings.get(k) != config.get(k)
            )
            if differ:
                details = ", ".join(f"{k}: {settings.get(k)!r} -> {config.get(k)!r}"
                                    for k in differ)
                raise ConfigMismatchError(
                    f"{self.path} holds a run with a different configuration ({details}, "
                    f"as {source} records it). Use another --out_dir, or delete that "
                    "directory to start over.")
        self._rebuilt_from = recorded if saved is None and recorded is not None else None
        if saved is None and recorded is None and self.has_results():
            raise ConfigMismatchError(
                f"{self.path} holds files ({describe_contents(self.path)}) but no "
                f"{self.config_path.name}: it is not a run directory (use another "
                "--out_dir), or its config.json is missing and no backup records the run's "
                "settings, so continuing could mix two configurations (restore "
                f"{self.config_path.name} from a copy, or delete {self.path} to start over)")

    def _saved_config(self, rebuildable=False):
        """config.json's settings; None if it is missing, or damaged and `rebuildable`
        (the backup records the settings); DamagedFileError if damaged otherwise."""
        try:
            return self.read_config()
        except FileNotFoundError:
            return None
        except DamagedFileError:
            if rebuildable:
                return None
            raise

    def write_config(self, config):
        """Record `config` as config.json (after compare_config: the same settings as any
        that config.json or the backup held, so a lost one is rebuilt as it was)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, config)
        if getattr(self, "_rebuilt_from", None) is not None:
            print(f"{self.config_path} was missing or damaged: rebuilt from the settings the "
                  f"backup in {self.backup_dir} records", file=sys.stderr, flush=True)
            self._rebuilt_from = None

    def read_config(self, config_cls=None):
        """config.json as a dict or, given the run's config dataclass, an instance of it
        whose fields have their declared types. FileNotFoundError without one;
        DamagedFileError (naming the file) for one that is not a JSON object or holds a
        value of the wrong type."""
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        saved = read_json_object(self.config_path,
                                  f"restore it from a copy, or delete {self.path} to start "
                                  "the run over")
        if config_cls is None:
            return saved
        return _typed_config(config_cls, saved, self.config_path)

    def read_metrics(self):
        """metrics.json ({} without one); DamagedFileError naming it if it is damaged."""
        if not self.metrics_path.exists():
            return {}
        return read_json_object(self.metrics_path,
                                 f"restore it from a copy, or delete it and re-run the "
                                 f"command that made {self.path}: it is written again")

    def update_metrics(self, **values):
        metrics = self.read_metrics()
        metrics.update(values)
        atomic_write_json(self.metrics_path, metrics)
        return metrics

    @property
    def has_backup(self):
        return (self.backup_dir / ResumableBackup.WEIGHTS).exists()


def _typed_config(config_cls, saved, path):
    """config_cls(**saved) after checking each known field's type against its default's
    (an int for an int, a number for a float...); unknown keys are left out."""
    import dataclasses

    values = {}
    for field in dataclasses.fields(config_cls):
        if field.name not in saved:
            continue
        value, kind = saved[field.name], type(field.default)
        ok = (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
              or (kind is float and isinstance(value, int) and not isinstance(value, bool)))
        if not ok:
            raise DamagedFileError(
                f"{path}: {field.name} is {value!r}, not a {kind.__name__}; restore the file "
                "from a copy (or delete the run directory to start over)")
        values[field.name] = value
    config = config_cls(**values)
    try:  # the ranges the config's own checks enforce (a run's flags passed them)
        config.resolved() if hasattr(config, "resolved") else check_config(config)
    except ValueError as e:
        raise DamagedFileError(f"{path} holds a setting that is refused ({e}): restore the "
                               "file from a copy (or delete the run directory to start "
                               "over)") from None
    return config


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
