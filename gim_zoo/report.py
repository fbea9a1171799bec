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


def collect(runs_root, seed=0):
    """{row label: {budget: accuracy}} for probes and supervised end-to-end runs."""
    root = Path(runs_root)
    rows = {}
    sources = [
        ("GIM (Greedy InfoMax)", root / f"gim-fmnist-resnet-seed{seed}"),
        ("CPC (end-to-end)", root / f"cpc-fmnist-resnet-seed{seed}"),
        ("Supervised encoder, frozen", root / f"supervised-fmnist-resnet-seed{seed}"),
        ("Random init, frozen", root / f"random-init-gim-fmnist-resnet-seed{seed}"),
    ]
    per_module = {}
    for label, run_dir in sources:
        for p in _probes(run_dir):
            if p.get("seed") != seed:
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
        rows["Supervised end-to-end (trained on the budget)"] = supervised
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


def plot_tickets(runs, out_path, title=""):
    """Test accuracy and early-stop iteration vs % of weights remaining, one line per run.

    runs: {label: run directory}, e.g. ticket, random re-init and random pruning."""
    fig, (acc_ax, stop_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for label, run_dir in runs.items():
        rounds = read_rounds(run_dir)
        remaining = [100 * r["remaining"] for r in rounds]
        acc_ax.plot(remaining, [100 * r["test_accuracy"] for r in rounds], marker="o",
                    label=label)
        stop_ax.plot(remaining, [r["early_stop_iteration"] for r in rounds], marker="o",
                     label=label)
    for ax, ylabel in ((acc_ax, "test top-1 (%)"), (stop_ax, "early-stop iteration")):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out_path)
