"""PNG plots of results people would rather see than read.

Figures are only saved, never shown, so any backend does; importing this module does not
choose one for the process (matplotlib itself takes Agg where there is no display)."""

from pathlib import Path

import matplotlib.pyplot as plt

from gim_zoo.files import atomic_path
from .run_directory import read_history_rows


def read_history(path):
    """history.csv (Keras CSVLogger) -> {column: [float, ...]}, last row per epoch kept
    (a cut-short last line left out; a damaged file refused, naming it)."""
    rows = {}
    for row in read_history_rows(path)[1]:
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
    ax.set_title(title)
    style_axes(ax, "epoch", "loss", legend_size=8)
    return save_figure(fig, out_path)


def style_axes(ax, xlabel, ylabel, legend_size=7):
    """The look every gim_zoo plot shares: labels, a light grid, a small legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend_size:
        ax.legend(fontsize=legend_size)


def save_figure(fig, out_path):
    """Save as PNG atomically (no half-written plots); close it."""
    fig.tight_layout()
    try:
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return Path(out_path)
