"""The file names of a run directory, said once (as open_lth's paths.py owns its paths).

A run directory is what training/train.py (and the other training scripts) write:
config.json, metrics.json, history.csv, logs/ (TensorBoard), backup/ (ResumableBackup),
the final weights, the loss plot, probes/, run.lock. Everything that reads or writes one,
in the experiments (`RunDirectory` adds the behaviour there), the benchmarks, packaging
and lottery tickets, names its files through `RunLayout`, so a name changes in one place.
Standard library only.
"""

from pathlib import Path


class RunLayout:
    """Paths of the files of the run directory at `path`."""

    CONFIG = "config.json"
    METRICS = "metrics.json"
    HISTORY = "history.csv"
    BACKUP = "backup"
    LOGS = "logs"
    PROBES = "probes"
    WEIGHTS = "model.weights.h5"
    ENCODER_WEIGHTS = "encoder.weights.h5"
    LOSS_PLOT = "loss_curves.png"
    LOCK = "run.lock"

    def __init__(self, path):
        self.path = Path(path)
        self.config_path = self.path / self.CONFIG
        self.metrics_path = self.path / self.METRICS
        self.history_path = self.path / self.HISTORY
        self.backup_dir = self.path / self.BACKUP
        self.logs_dir = self.path / self.LOGS
        self.probes_dir = self.path / self.PROBES
        self.weights_path = self.path / self.WEIGHTS
        self.encoder_weights_path = self.path / self.ENCODER_WEIGHTS
        self.loss_plot_path = self.path / self.LOSS_PLOT
        self.lock_path = self.path / self.LOCK
