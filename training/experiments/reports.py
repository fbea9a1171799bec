"""Collect run directories' metrics and probe results into tables and a PNG.

Numbers come only from metrics.json / probes/*.json written by train.py and probe.py, so
README tables are generated, never typed.
"""

from pathlib import Path

from gim_zoo.files import read_json_object
from gim_zoo.run_layout import RunLayout
from .plots import plt, save_figure, style_axes

BUDGETS = (("60", "1% (60/class)"), ("600", "10% (600/class)"), ("all", "100%"))


def _probes(run_dir):
    for path in sorted(Path(run_dir).glob("probes/*.json")):
        yield read_json_object(path)


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
        metrics = RunLayout(root / f"supervised-fmnist-resnet{suffix}-seed{seed}").metrics_path
        if metrics.exists():
            supervised[budget] = read_json_object(metrics).get("test_accuracy")
    if supervised:
        rows["Supervised end-to-end (trained on the budget, global-pool head)"] = supervised
    return rows, per_module


def deep_sources(runs_root, seed=0):
    """Rows of the 3-block-module comparison (training/fmnist_results.sh, deep section)."""
    root = Path(runs_root)
    return [
        ("GIM, module at a time", root / f"gim-fmnist-resnet-deep-m3-seed{seed}"),
        ("GIM + LoCo overlap, module at a time", root / f"loco-fmnist-resnet-deep-m3-seed{seed}"),
        ("GIM, four prediction directions, module at a time",
         root / f"gim4dir-fmnist-resnet-deep-m3-seed{seed}"),
        ("CPC (end-to-end)", root / f"cpc-fmnist-resnet-deep-seed{seed}"),
        ("Supervised encoder, frozen", root / f"supervised-fmnist-resnet-deep-seed{seed}"),
        ("Random init, frozen", root / "random-init-gim-fmnist-resnet-deep"),
    ]


def collect_over_probe_seeds(sources, pool_to):
    """{row label: {budget: [accuracy per probe seed]}} of last-module probes that pooled
    to pool_to x pool_to; a seed's repeated result (a re-run) counts once."""
    rows = {}
    for label, run_dir in sources:
        seen = {}
        for p in _probes(run_dir):
            if p.get("pool_to", 1) == pool_to and p["module"] == 3:
                seen[str(p["labels_per_class"]), p.get("seed")] = p["test_accuracy"]
        for (budget, _), accuracy in sorted(seen.items()):
            rows.setdefault(label, {}).setdefault(budget, []).append(accuracy)
    return rows


def markdown_over_seeds(rows):
    """Mean and standard deviation over probe seeds, with the number of seeds."""
    import numpy as np

    def cell(values):
        if not values:
            return "-"
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f} (n={len(values)})"

    lines = ["| encoder | " + " | ".join(name for _, name in BUDGETS) + " |",
             "|---|" + "---:|" * len(BUDGETS)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(values.get(b)) for b, _ in BUDGETS)
                     + " |")
    return "\n".join(lines)


def training_table(runs_root, seed=0):
    lines = ["| run | epochs | train time (s) | examples | final test loss / accuracy |",
             "|---|---:|---:|---:|---|"]
    for run_dir in sorted(Path(runs_root).glob(f"*-seed{seed}")):
        metrics_path = RunLayout(run_dir).metrics_path
        if not metrics_path.exists():
            continue
        m = read_json_object(metrics_path)
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
    style_axes(ax, "labelled training examples", "Fashion-MNIST test top-1 (%)")
    return save_figure(fig, out_path)


def read_rounds(run_dir):
    """{round: metrics} of an IMP run directory (training/lottery.py), read where the
    ticket-run layout says (imported here: it loads Keras, which other tables need not)."""
    from gim_zoo.lottery.tickets import round_metrics_by_number

    return round_metrics_by_number(run_dir)


def ticket_curves(runs):
    """{label: (rounds, remaining %, {metric: (seeds x rounds) array})} over the rounds that
    every seed's run has finished (a control may have trained only some).
    runs: {label: [run directory per seed]}."""
    import numpy as np

    from gim_zoo.lottery.tickets import common_rounds

    curves = {}
    for label, dirs in runs.items():
        per_seed = [r for r in map(read_rounds, dirs) if r]
        rounds = common_rounds(per_seed)
        if not rounds:
            continue
        remaining = [100 * per_seed[0][i]["remaining"] for i in rounds]
        metrics = {key: np.array([[r[i][key] for i in rounds] for r in per_seed], float)
                   for key in ("test_accuracy", "early_stop_iteration")}
        curves[label] = (rounds, remaining, metrics)
    return curves


def plot_tickets(runs, out_path, title=""):
    """Test accuracy and early-stop iteration vs % of weights remaining, one line per
    label: the mean over seeds, with a band from the lowest to the highest seed.

    runs: {label: run directory or [one per seed]}, e.g. ticket and its controls."""
    runs = {k: [v] if isinstance(v, (str, Path)) else list(v) for k, v in runs.items()}
    fig, (acc_ax, stop_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for label, (_, remaining, metrics) in ticket_curves(runs).items():
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
        style_axes(ax, "weights remaining (%)", ylabel, legend_size=8)
    fig.suptitle(title)
    return save_figure(fig, out_path)


def ticket_table(runs):
    """Markdown: per round, each label's mean test top-1 over seeds (min-max)."""
    runs = {k: [v] if isinstance(v, (str, Path)) else list(v) for k, v in runs.items()}
    curves = ticket_curves(runs)
    if not curves:
        return ""
    labels = list(curves)
    seeds = {label: len(curves[label][2]["test_accuracy"]) for label in labels}
    lines = ["| weights remaining | " + " | ".join(
                 f"{label} top-1, {seeds[label]} seed(s)" for label in labels) + " |",
             "|---:|" + "---:|" * len(labels)]
    rounds, remaining, _ = curves[labels[0]]  # rows: the first label's (the ticket's) rounds
    for r, left in zip(rounds, remaining):
        cells = []
        for label in labels:
            if r not in curves[label][0]:
                cells.append("-")
                continue
            acc = 100 * curves[label][2]["test_accuracy"][:, curves[label][0].index(r)]
            spread = f" ({acc.min():.2f}-{acc.max():.2f})" if len(acc) > 1 else ""
            cells.append(f"{acc.mean():.2f}%{spread}")
        lines.append(f"| {left:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


FINETUNE_ORDER = ("plain", "rifle1", "rifle2", "rifle3", "rifle3-reset", "dropout0.5",
                  "scratch")


def finetune_results(run_dirs):
    """{variant: [metrics of each seed's finished run]} from training/finetune.py runs."""
    results = {}
    for d in run_dirs:
        path = RunLayout(d).metrics_path
        if path.exists():
            m = read_json_object(path)
            results.setdefault(m["variant"], []).append({**m, "run_dir": str(d)})
    rank = {v: i for i, v in enumerate(FINETUNE_ORDER)}
    return dict(sorted(results.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def finetune_table(results):
    """Markdown: per variant, test top-1 mean and std over seeds, and how far each backbone
    module moved from the pre-trained weights (mean relative distance)."""
    import numpy as np

    if not results:
        return ""
    modules = max(len(m["module_distance"]) for runs in results.values() for m in runs)
    lines = ["| head treatment | seeds | digits test top-1 (%) | "
             + " | ".join(f"module {k} moved" for k in range(1, modules + 1)) + " |",
             "|---|---:|---:|" + "---:|" * modules]
    for variant, runs in results.items():
        acc = 100 * np.array([m["test_accuracy"] for m in runs])
        moved = np.array([m["module_distance"] for m in runs]).mean(0)
        seeds = ",".join(str(m["seed"]) for m in sorted(runs, key=lambda m: m["seed"]))
        lines.append(f"| {variant} | {seeds} | {acc.mean():.2f} ± {acc.std(ddof=0):.2f} | "
                     + " | ".join(f"{d:.3f}" for d in moved) + " |")
    return "\n".join(lines)


def plot_finetune(results, out_path, title=""):
    """Left: test top-1 per head treatment (mean, std bar, each seed a dot). Middle: how
    far each backbone module moved. Right: training accuracy per epoch of the lowest seed
    (RIFLE's re-inits show as drops)."""
    import numpy as np

    from .plots import read_history

    fig, (acc_ax, move_ax, curve_ax) = plt.subplots(1, 3, figsize=(15, 4))
    for i, (variant, runs) in enumerate(results.items()):
        acc = 100 * np.array([m["test_accuracy"] for m in runs])
        acc_ax.bar(i, acc.mean(), yerr=acc.std(), capsize=4, alpha=0.7)
        acc_ax.plot([i] * len(acc), acc, "k.")
        moved = np.array([m["module_distance"] for m in runs])
        modules = np.arange(1, moved.shape[1] + 1)
        move_ax.errorbar(modules, moved.mean(0), yerr=moved.std(0), marker="o", capsize=3,
                         label=variant)
        first = min(runs, key=lambda m: m["seed"])
        history = RunLayout(first["run_dir"]).history_path
        if history.exists():
            columns = read_history(history)
            curve_ax.plot(np.array(columns["epoch"]) + 1, 100 * np.array(columns["accuracy"]),
                          label=f"{variant} (seed {first['seed']})")
    lowest = min(100 * m["test_accuracy"] for runs in results.values() for m in runs)
    acc_ax.set_ylim(max(0.0, lowest - 5), 100)
    acc_ax.set_xticks(range(len(results)), list(results), rotation=30)
    move_ax.set_xticks(modules)
    acc_ax.set_ylabel("digits test top-1 (%)")
    move_ax.set_xlabel("backbone module")
    move_ax.set_ylabel("||w - w0|| / ||w0|| (w0: pre-trained; scratch: its init)")
    curve_ax.set_xlabel("epoch")
    curve_ax.set_ylabel("training accuracy (%)")
    for ax in (acc_ax, move_ax, curve_ax):
        ax.grid(alpha=0.3)
    for ax in (move_ax, curve_ax):
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, out_path)


TELEPORT_ARMS = {"plain": "no", "teleport": "yes (slots reset)",
                 "teleport-keep": "yes (slots kept)"}


def teleport_results(run_dirs):
    """{(model, optimizer): {"teleport"/"plain": [metrics per seed]}} from
    training/teleport.py runs that finished."""
    results = {}
    for d in run_dirs:
        path = RunLayout(d).metrics_path
        if path.exists():
            m = read_json_object(path)
            if "final_subset_loss" in m:
                arm = m.get("arm", "teleport" if m["teleport"] else "plain")
                results.setdefault((m["model"], m["optimizer"]), {}).setdefault(arm, []).append(m)
    return dict(sorted(results.items(), key=lambda kv: (kv[0][0] != "mlp", kv[0])))


def teleport_table(results):
    """Markdown: per model and optimizer, with and without teleports: steps until the
    training loss first fell below the target (mean ± std over the seeds that reached it),
    the final training loss and the test top-1 (mean ± std)."""
    import numpy as np

    def stat(values, fmt):
        values = np.array(values, float)
        return f"{values.mean():{fmt}} ± {values.std():{fmt}}" if len(values) else "-"

    lines = ["| model | optimizer | teleport | seeds | steps to target loss (reached) | "
             "final training loss | test top-1 (%) |", "|---|---|---|---:|---:|---:|---:|"]
    for (model, optimizer), arms in results.items():
        for arm in TELEPORT_ARMS:
            runs = arms.get(arm, [])
            if not runs:
                continue
            reached = [m["steps_to_target"] for m in runs if m["steps_to_target"] is not None]
            accuracy = [100 * m["test_accuracy"] for m in runs if "test_accuracy" in m]
            lines.append(
                f"| {model} | {optimizer} | {TELEPORT_ARMS[arm]} | "
                f"{len(runs)} | {stat(reached, '.0f')} ({len(reached)}/{len(runs)}, target "
                f"{runs[0]['target_loss']}) | {stat([m['final_subset_loss'] for m in runs], '.4f')}"
                f" | {stat(accuracy, '.2f')} |")
    return "\n".join(lines)


def plot_teleport(results, out_path):
    """Training loss vs optimizer step, one panel per (model, optimizer): mean over seeds
    with and without teleports, a band from the lowest to the highest seed, and the
    teleport steps marked."""
    import numpy as np

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.8), squeeze=False)
    for ax, ((model, optimizer), arms) in zip(axes[0], results.items()):
        for arm in TELEPORT_ARMS:
            runs = arms.get(arm, [])
            if not runs:
                continue
            n = min(len(m["curve"]) for m in runs)
            steps = np.array([s for s, _ in runs[0]["curve"][:n]])
            losses = np.array([[v for _, v in m["curve"][:n]] for m in runs])
            ax.plot(steps, losses.mean(0), label=f"{TELEPORT_ARMS[arm]} ({len(runs)} seeds)")
            ax.fill_between(steps, losses.min(0), losses.max(0), alpha=0.2)
            if arm != "plain":
                for s in sorted({r["step"] for m in runs for r in m["teleports"]}):
                    ax.axvline(s, color="grey", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"{model}, {optimizer}")
        style_axes(ax, "optimizer step", "training loss")
    return save_figure(fig, out_path)


def audio_table(result_paths):
    """Markdown: phone and speaker probe accuracy per feature source (audio_probing JSONs)."""
    rows = []
    for path in result_paths:
        r = read_json_object(Path(path))
        name = r["source"] + (f", module {r['module']}" if r.get("module") else "")
        rows.append((name, r))
    if not rows:
        return ""
    first = rows[0][1]
    lines = [f"| features (synthetic speech) | dim | phone top-1 ({first['phone_frames_test']} "
             f"test frames) | speaker top-1 ({first['utterances_test']} test utterances) |",
             "|---|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['feature_dim']} | {100 * r['phone_accuracy']:.1f}% | "
                     f"{100 * r['speaker_accuracy']:.1f}% |")
    return "\n".join(lines)
