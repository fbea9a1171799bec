"""Collect run directories' metrics and probe results into tables and a PNG.

Numbers come only from metrics.json / probes/*.json written by train.py and probe.py, so
README tables are generated, never typed.
"""

import json
from pathlib import Path

from gim_zoo.plots import plt, save_figure

BUDGETS = (("60", "1% (60/class)"), ("600", "10% (600/class)"), ("all", "100%"))


def _probes(run_dir):
    for path in sorted(Path(run_dir).glob("probes/*.json")):
        yield json.loads(path.read_text())


def collect(runs_root, seed=0, pool_to=3):
    """{row label: {budget: accuracy}} for probes that pooled to pool_to x pool_to, and
    supervised end-to-end runs (their own head, whatever pool_to)."""
    root = Path(runs_root)
    rows = {}
    sources = [
        ("GIM (Greedy InfoMax)", root / f"gim-fmnist-resnet-seed{seed}"),
        ("GIM at 8 epochs (CPC's budget)", root / f"gim-fmnist-resnet-epoch8-seed{seed}"),
        ("CPC (end-to-end)", root / f"cpc-fmnist-resnet-seed{seed}"),
        ("Supervised encoder, frozen", root / f"supervised-fmnist-resnet-seed{seed}"),
        ("Random init, frozen", root / f"random-init-gim-fmnist-resnet-seed{seed}"),
    ]
    per_module = {}
    for label, run_dir in sources:
        for p in _probes(run_dir):
            if p.get("seed") != seed or p.get("pool_to", 1) != pool_to:
                continue
            budget = str(p["labels_per_class"])
            if p["module"] == 3:
                rows.setdefault(label, {})[budget] = p["test_accuracy"]
            if budget == "all":
                per_module.setdefault(label, {})[p["module"]] = p["test_accuracy"]
    supervised = {}
    for budget, _ in BUDGETS:
        suffix = "" if budget == "all" else f"-labels{budget}"
        metrics = root / f"supervised-fmnist-resnet{suffix}-seed{seed}" / "metrics.json"
        if metrics.exists():
            supervised[budget] = json.loads(metrics.read_text()).get("test_accuracy")
    if supervised:
        rows["Supervised end-to-end (trained on the budget, global-pool head)"] = supervised
    return rows, per_module


def training_table(runs_root, seed=0):
    lines = ["| run | epochs | train time (s) | examples | final test loss / accuracy |",
             "|---|---:|---:|---:|---|"]
    for run_dir in sorted(Path(runs_root).glob(f"*-seed{seed}")):
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.exists():
            continue
        m = json.loads(metrics_path.read_text())
        final = (f"accuracy {m['test_accuracy']:.4f}" if "test_accuracy" in m
                 else f"InfoNCE {m.get('test_loss', float('nan')):.4f} (sum over losses)")
        lines.append(f"| {run_dir.name} | {m.get('epochs_completed')} | "
                     f"{m.get('train_seconds')} | {m.get('train_examples')} | {final} |")
    return "\n".join(lines)


def markdown(rows, per_module):
    def cell(v):
        return "-" if v is None else f"{100 * v:.1f}"

    lines = ["| encoder | " + " | ".join(name for _, name in BUDGETS) + " |",
             "|---|" + "---:|" * len(BUDGETS)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(values.get(b)) for b, _ in BUDGETS)
                     + " |")
    if per_module:
        lines += ["", "| encoder, probe on module (100% labels) | module 1 | module 2 | "
                      "module 3 |", "|---|---:|---:|---:|"]
        for label, values in per_module.items():
            lines.append(f"| {label} | " + " | ".join(cell(values.get(k)) for k in (1, 2, 3))
                         + " |")
    return "\n".join(lines)


def plot_budgets(rows, out_path):
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(BUDGETS))
    for label, values in rows.items():
        ys = [100 * values[b] if values.get(b) is not None else float("nan")
              for b, _ in BUDGETS]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xticks(list(xs), [name for _, name in BUDGETS])
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out_path)


def read_rounds(run_dir):
    """Per-round metrics of an IMP run directory (training/lottery.py)."""
    return [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob("rounds/round*.json"))]


def ticket_curves(runs):
    """{label: (remaining %, {metric: (seeds x rounds) array})} over the rounds that every
    seed's run has finished. runs: {label: [run directory per seed]}."""
    import numpy as np

    curves = {}
    for label, dirs in runs.items():
        per_seed = [read_rounds(d) for d in dirs]
        per_seed = [r for r in per_seed if r]
        if not per_seed:
            continue
        n = min(len(r) for r in per_seed)
        remaining = [100 * per_seed[0][i]["remaining"] for i in range(n)]
        metrics = {key: np.array([[r[i][key] for i in range(n)] for r in per_seed], float)
                   for key in ("test_accuracy", "early_stop_iteration")}
        curves[label] = (remaining, metrics)
    return curves


def plot_tickets(runs, out_path, title=""):
    """Test accuracy and early-stop iteration vs % of weights remaining, one line per
    label: the mean over seeds, with a band from the lowest to the highest seed.

    runs: {label: run directory or [one per seed]}, e.g. ticket and its controls."""
    runs = {k: [v] if isinstance(v, (str, Path)) else list(v) for k, v in runs.items()}
    fig, (acc_ax, stop_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for label, (remaining, metrics) in ticket_curves(runs).items():
        seeds = len(metrics["test_accuracy"])
        for ax, key, scale in ((acc_ax, "test_accuracy", 100),
                               (stop_ax, "early_stop_iteration", 1)):
            values = scale * metrics[key]
            ax.plot(remaining, values.mean(0), marker="o", label=f"{label} ({seeds} seeds)"
                    if seeds > 1 else label)
            if seeds > 1:
                ax.fill_between(remaining, values.min(0), values.max(0), alpha=0.2)
    for ax, ylabel in ((acc_ax, "test top-1 (%)"), (stop_ax, "early-stop iteration")):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out_path)


def ticket_table(runs):
    """Markdown: per round, each label's mean test top-1 over seeds (min-max)."""
    runs = {k: [v] if isinstance(v, (str, Path)) else list(v) for k, v in runs.items()}
    curves = ticket_curves(runs)
    if not curves:
        return ""
    labels = list(curves)
    n = min(len(c[0]) for c in curves.values())
    seeds = {label: len(curves[label][1]["test_accuracy"]) for label in labels}
    lines = ["| weights remaining | " + " | ".join(
                 f"{label} top-1, {seeds[label]} seed(s)" for label in labels) + " |",
             "|---:|" + "---:|" * len(labels)]
    for i in range(n):
        cells = []
        for label in labels:
            acc = 100 * curves[label][1]["test_accuracy"][:, i]
            spread = f" ({acc.min():.2f}-{acc.max():.2f})" if len(acc) > 1 else ""
            cells.append(f"{acc.mean():.2f}%{spread}")
        lines.append(f"| {curves[labels[0]][0][i]:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)
