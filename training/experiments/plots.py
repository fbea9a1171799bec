"""PNG plots of results people would rather see than read (headless: Agg backend)."""

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_history(path):
    """history.csv (Keras CSVLogger) -> {column: [float, ...]}, last row per epoch kept."""
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    columns = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                pass
    return columns


def plot_loss_curves(history_csv, out_path, title=""):
    """One line per loss column (total, per module, validation) against epoch."""
    history = read_history(history_csv)
    epochs = [e + 1 for e in history.get("epoch", [])]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted(k for k in history if k.endswith("loss")):
        style = "--" if key.startswith("val_") else "-"
        ax.plot(epochs, history[key], style, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_path)


def save_figure(fig, out_path):
    """Save as PNG via a temporary file and rename (no half-written plots); close it."""
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".tmp-{os.getpid()}-{out_path.name}")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        tmp.replace(out_path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not getattr(e, "filename", None):
            raise (OSError(e.errno, e.strerror or str(e), str(out_path)) if e.errno
                   else OSError(f"{out_path}: {e}")) from e
        raise
    finally:
        plt.close(fig)
    return out_path
