"""Paired comparisons over seeds: RIFLE, teleportation and lottery tickets against their
baselines (training/report.py --paired_*; the runs come from training/seeds_results.sh).

Every variant of a seed starts from the same weights and sees the same batches, so a
variant's effect is judged by its per-seed differences from the baseline run of that
seed: their mean and a 95% Student-t interval over seeds (mean +- t(0.975, n-1) sd /
sqrt(n)). An interval that excludes 0 is an effect larger than the seed-to-seed noise;
with 2 seeds (t = 12.7) it rarely does. Numbers come only from the runs' JSON files.
"""

import json
import math
from pathlib import Path

import numpy as np

from gim_zoo.run_layout import RunLayout
from .plots import plt, save_figure


# --- statistics -----------------------------------------------------------------------------
def t_interval(values, level=0.95):
    """(mean, low, high) of a Student-t interval for the mean of `values`; low and high
    are nan with fewer than 2 values."""
    values = np.asarray(values, float)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def paired(baseline, variant):
    """Per-seed differences variant - baseline over the seeds both have, and their
    t-interval: {"seeds", "diffs", "mean", "low", "high"}. baseline, variant: {seed: value}
    (None or non-finite values, e.g. a target never reached or a measure that overflowed,
    leave that seed out)."""
    def usable(x):
        return x is not None and math.isfinite(x)

    seeds = sorted(s for s in set(baseline) & set(variant)
                   if usable(baseline[s]) and usable(variant[s]))
    diffs = [variant[s] - baseline[s] for s in seeds]
    mean, low, high = t_interval(diffs)
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "low": low, "high": high}


def _num(x, fmt):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{fmt}}"


def interval_cells(p, fmt=".2f", signed=True):
    """Markdown cells: per-seed differences, their mean, the 95% interval."""
    sign = "+" if signed else ""
    per_seed = ", ".join(f"{d:{sign}{fmt}}" for d in p["diffs"]) or "-"
    interval = "-" if math.isnan(p["low"]) else \
        f"{p['low']:{sign}{fmt}} to {p['high']:{sign}{fmt}}"
    mean = "-" if math.isnan(p["mean"]) else f"{p['mean']:{sign}{fmt}}"
    return f"{per_seed} | {mean} | {interval}"


def _read_metrics(run_dirs, required):
    found = []
    for d in run_dirs:
        path = RunLayout(d).metrics_path
        if path.exists():
            m = json.loads(path.read_text())
            if required in m:
                found.append({**m, "run_dir": str(d)})
    return found


def _plot_intervals(ax, labels, comparisons, ylabel, lines=(0.0,)):
    """One column per comparison: each seed's difference a dot, the mean with its 95%
    interval as an error bar."""
    for i, p in enumerate(comparisons):
        ax.plot([i] * len(p["diffs"]), p["diffs"], "k.", alpha=0.6)
        if not math.isnan(p["mean"]):
            err = None if math.isnan(p["low"]) else [[p["mean"] - p["low"]],
                                                     [p["high"] - p["mean"]]]
            ax.errorbar(i, p["mean"], yerr=err, fmt="o", color="C0", capsize=5)
    for y in lines:
        ax.axhline(y, color="grey", lw=0.8, ls="-" if y == 0 else "--")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


# --- RIFLE ----------------------------------------------------------------------------------
RIFLE_ORDER = ("plain", "rifle1", "rifle2", "rifle3", "rifle3-cyclic", "rifle3-reset",
               "dropout0.5", "scratch")


def rifle_target(m):
    """A fine-tuning run's target, e.g. 'fashion_mnist 10% (6000 labels)' (the share of the
    target's labelled images, where the target says how many it has)."""
    from .rifle_finetuning import FinetuneConfig, TARGETS

    target = m.get("target", FinetuneConfig.target)
    known = TARGETS.get(target)
    if known and known.labelled_images and m.get("labels_per_class"):
        share = 100 * m["train_examples"] / known.labelled_images
        return f"{target} {share:g}% ({m['train_examples']} labels)"
    return f"{target} ({m['train_examples']} labels)"


def rifle_results(run_dirs):
    """{target: {variant: {seed: test top-1 in %}}} of finished finetune.py runs."""
    results = {}
    for m in _read_metrics(run_dirs, "test_accuracy"):
        by_variant = results.setdefault(rifle_target(m), {})
        by_variant.setdefault(m["variant"], {})[m["seed"]] = 100 * m["test_accuracy"]
    rank = {v: i for i, v in enumerate(RIFLE_ORDER)}
    return {t: dict(sorted(v.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
            for t, v in sorted(results.items())}


def rifle_table(results):
    """Markdown, one block per target: each variant's test top-1 and its paired
    difference from plain fine-tuning (points)."""
    lines = []
    for target, variants in results.items():
        base = variants.get("plain", {})
        lines += [f"**{target}**", "",
                  "| head treatment | seeds | test top-1 (%), mean | minus plain, per seed "
                  "(points) | mean difference | 95% interval |", "|---|---:|---:|---|---:|---:|"]
        for variant, accs in variants.items():
            cells = "- | - | -" if variant == "plain" else interval_cells(paired(base, accs))
            seeds = ",".join(str(s) for s in sorted(accs))
            lines.append(f"| {variant} | {seeds} | {np.mean(list(accs.values())):.2f} | "
                         f"{cells} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def rifle_headline(results):
    """One line: the best RIFLE variant (largest mean difference from plain) per target."""
    parts = []
    for target, variants in results.items():
        base = variants.get("plain", {})
        scored = [(v, paired(base, a)) for v, a in variants.items()
                  if v.startswith("rifle") and len(paired(base, a)["seeds"]) >= 2]
        if not scored:
            continue
        v, p = max(scored, key=lambda vp: vp[1]["mean"])
        parts.append(f"{target}: best {v} {p['mean']:+.2f} points vs plain (95% interval "
                     f"{p['low']:+.2f} to {p['high']:+.2f}, {len(p['seeds'])} seeds)")
    return "; ".join(parts)


def plot_rifle(results, out_path):
    fig, axes = plt.subplots(1, max(1, len(results)), figsize=(4.5 * max(1, len(results)), 4),
                             squeeze=False)
    for ax, (target, variants) in zip(axes[0], results.items()):
        base = variants.get("plain", {})
        names = [v for v in variants if v != "plain"]
        _plot_intervals(ax, names, [paired(base, variants[v]) for v in names],
                        "test top-1 minus plain (points)", lines=(0.0, 0.5))
        ax.set_title(target, fontsize=9)
    fig.suptitle("RIFLE, paired seeds: each dot a seed, bars the mean and 95% interval")
    return save_figure(fig, out_path)


# --- teleportation --------------------------------------------------------------------------
# Settings of a teleport.py run that make its arm (or say where it goes), not its regime:
# runs that agree on every other setting are paired with each other.
TELEPORT_ARM_KEYS = ("teleport", "objective", "optimizer_state", "group", "at_steps",
                     "teleport_steps", "teleport_lr", "teleport_batch", "out_dir", "verbose",
                     "seed", "data_dir")


def teleport_regime(run_dir):
    """A run's training regime, e.g. '10000 images x 20 epochs', from its config.json:
    a teleport arm is compared with the plain run of the same regime only ('' without a
    config.json)."""
    path = RunLayout(run_dir).config_path
    if not path.exists():
        return ""
    config = json.loads(path.read_text())
    regime = {k: v for k, v in config.items() if k not in TELEPORT_ARM_KEYS}
    label = f"{regime.get('train_examples')} images x {regime.get('epochs')} epochs"
    if regime.get("learning_rate"):
        label += f", lr {regime['learning_rate']:g}"
    return label


def teleport_pairs(run_dirs):
    """{(model, optimizer, regime): {arm: {seed: metrics}}} of finished teleport.py runs."""
    results = {}
    for m in _read_metrics(run_dirs, "final_subset_loss"):
        arm = m.get("arm", "teleport" if m["teleport"] else "plain")
        key = (m["model"], m["optimizer"], teleport_regime(m["run_dir"]))
        results.setdefault(key, {}).setdefault(arm, {})[m["seed"]] = m
    return dict(sorted(results.items()))


def _values(runs, key, scale=1.0):
    return {s: None if m.get(key) is None else scale * m[key] for s, m in runs.items()}


TELEPORT_MEASURES = (  # (metrics key, column title, scale, format)
    ("test_accuracy", "test top-1 (points)", 100.0, ".2f"),
    ("final_sharpness", "final sharpness", 1.0, ".2g"),
    ("final_adaptive_sharpness", "final adaptive sharpness", 1.0, ".2g"),
    ("steps_to_target", "steps to target loss", 1.0, ".0f"),
    ("final_subset_loss", "final training loss", 1.0, ".4f"),
)


def teleport_comparisons(results):
    """[(model, optimizer, arm, measure title, format, paired, regime)] against the plain
    run of the same regime and seed."""
    rows = []
    for (model, optimizer, regime), arms in results.items():
        base = arms.get("plain", {})
        for arm, runs in sorted(arms.items()):
            if arm == "plain":
                continue
            for key, title, scale, fmt in TELEPORT_MEASURES:
                if any(m.get(key) is not None for m in runs.values()):
                    p = paired(_values(base, key, scale), _values(runs, key, scale))
                    rows.append((model, optimizer, arm, title, fmt, p, regime))
    return rows


def teleport_pairs_table(results):
    """Markdown: per model, optimizer and teleport arm, the paired differences (teleport
    minus no teleport) of every measure the runs have."""
    lines = ["| model | regime | optimizer | teleport arm | measure | seeds | teleport minus "
             "none, per seed | mean difference | 95% interval |",
             "|---|---|---|---|---|---:|---|---:|---:|"]
    for model, optimizer, arm, title, fmt, p, regime in teleport_comparisons(results):
        lines.append(f"| {model} | {regime} | {optimizer} | {arm} | {title} | "
                     f"{len(p['seeds'])} | {interval_cells(p, fmt)} |")
    means = ["| model | regime | optimizer | arm | seeds | test top-1 (%) | final sharpness | "
             "final adaptive sharpness | steps to target (reached) | final training loss |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for (model, optimizer, regime), arms in results.items():
        for arm, runs in sorted(arms.items()):
            ms = list(runs.values())
            acc = [100 * m["test_accuracy"] for m in ms if "test_accuracy" in m]
            sharp = [m["final_sharpness"] for m in ms
                     if math.isfinite(m.get("final_sharpness", math.nan))]
            adaptive = [m["final_adaptive_sharpness"] for m in ms
                        if math.isfinite(m.get("final_adaptive_sharpness", math.nan))]
            steps = [m["steps_to_target"] for m in ms if m.get("steps_to_target") is not None]
            means.append(
                f"| {model} | {regime} | {optimizer} | {arm} | {len(ms)} | "
                f"{_num(np.mean(acc) if acc else None, '.2f')} | "
                f"{_num(np.mean(sharp) if sharp else None, '.2g')} | "
                f"{_num(np.mean(adaptive) if adaptive else None, '.2g')} | "
                f"{_num(np.mean(steps) if steps else None, '.0f')} ({len(steps)}/{len(ms)}) | "
                f"{np.mean([m['final_subset_loss'] for m in ms]):.4f} |")
    return "\n".join(lines + ["", "Means over seeds:", ""] + means)


def teleport_headline(results):
    parts = []
    for model, optimizer, arm, title, fmt, p, regime in teleport_comparisons(results):
        wanted = (arm.startswith("teleport-sharpness") and title.startswith("test top-1")) \
            or (arm == "teleport" and title == "steps to target loss")
        if wanted and len(p["seeds"]) >= 2:
            where = f" ({regime})" if regime else ""
            parts.append(f"{model}{where} {optimizer} {arm}: {title} {p['mean']:+{fmt}} (95% "
                         f"interval {p['low']:+{fmt}} to {p['high']:+{fmt}}, "
                         f"{len(p['seeds'])} seeds)")
    return "; ".join(parts)


def plot_teleport_pairs(results, out_path):
    rows = teleport_comparisons(results)
    panels = [("test top-1 (points)", "test top-1 minus none (points)"),
              ("final adaptive sharpness", "final adaptive sharpness minus none"),
              ("steps to target loss", "steps to target minus none")]
    panels = [(t, y) for t, y in panels if any(r[3] == t for r in rows)] or panels[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (title, ylabel) in zip(axes[0], panels):
        chosen = [r for r in rows if r[3] == title]
        _plot_intervals(ax, [f"{r[0]} {r[1]} {r[2].removeprefix('teleport').lstrip('-')}".strip()
                             + (f" ({r[6].split(' x ')[-1]})" if r[6] else "")
                             for r in chosen], [r[5] for r in chosen], ylabel)
        ax.set_title(title, fontsize=9)
    fig.suptitle("Teleportation, paired seeds: each dot a seed, bars the mean and 95% interval")
    return save_figure(fig, out_path)


# --- lottery tickets ------------------------------------------------------------------------
def ticket_results(runs):
    """{label: {seed: {round: metrics}}} from lottery.py run directories (a control may
    have trained only some rounds). runs: {label: [run directories]}, the ticket's first."""
    from gim_zoo.lottery.tickets import round_metrics_by_number, ticket_config

    results = {}
    for label, dirs in runs.items():
        for d in dirs:
            if RunLayout(d).config_path.exists():
                rounds = round_metrics_by_number(d)
                if rounds:
                    results.setdefault(label, {})[ticket_config(d).get("seed", 0)] = rounds
    return results


def ticket_probes(ticket_dirs):
    """{seed: {round: [test top-1 in % per probe seed]}} from probe.py --ticket_dir results
    (all labels, the registered pooling) in TICKET_DIR/probes/roundNN."""
    from gim_zoo.lottery.tickets import ticket_config

    found = {}
    for d in ticket_dirs:
        if not RunLayout(d).config_path.exists():
            continue
        seed = ticket_config(d).get("seed", 0)
        for path in sorted(Path(d).glob("probes/round*/labelsall-*.json")):
            r = json.loads(path.read_text())
            found.setdefault(seed, {}).setdefault(r["round"], []).append(
                100 * r["test_accuracy"])
    return found


def _by_round(per_seed, r, key="test_accuracy", scale=100.0):
    return {s: scale * rounds[r][key] for s, rounds in per_seed.items() if r in rounds}




def ticket_pairs_table(results, probes=None):
    """Markdown: per round, the ticket's score and its paired differences from its dense
    round 0 and from each control at the same sparsity; then the 3-probe-seed probes."""
    labels = list(results)
    if not labels:
        return ""
    ticket = results[labels[0]]
    rounds = sorted(set().union(*ticket.values()))
    lines = ["| round | weights remaining | ticket top-1 (%), mean | comparison | per seed "
             "(points) | mean difference | 95% interval |", "|---:|---:|---:|---|---|---:|---:|"]
    for r in rounds:
        scores = _by_round(ticket, r)
        remaining = np.mean([100 * rs[r]["remaining"] for rs in ticket.values() if r in rs])
        comparisons = [("minus dense (round 0)", _by_round(ticket, 0))] if r else []
        comparisons += [(f"minus {label}", _by_round(results[label], r))
                        for label in labels[1:]]
        for i, (what, other) in enumerate(comparisons or [("-", {})]):
            head = f"| {r} | {remaining:.1f}% | {np.mean(list(scores.values())):.2f} |" \
                if i == 0 else "| | | |"
            cells = interval_cells(paired(other, scores)) if other else "- | - | -"
            lines.append(f"{head} {what} | {cells} |")
    if probes:
        lines += ["", "Linear probe on all 60,000 labels (registered pooling), mean over probe "
                  "seeds, each ticket seed's round against its own dense round 0:", "",
                  "| round | weights remaining | ticket seed | probe seeds | probe top-1 (%) | "
                  "minus dense (points) |", "|---:|---:|---:|---:|---:|---:|"]
        for seed, by_round in sorted(probes.items()):
            dense = np.mean(by_round[0]) if 0 in by_round else None
            for r, accs in sorted(by_round.items()):
                remaining = 100 * ticket[seed][r]["remaining"] if seed in ticket and \
                    r in ticket[seed] else math.nan
                diff = None if dense is None or r == 0 else np.mean(accs) - dense
                lines.append(f"| {r} | {remaining:.1f}% | {seed} | {len(accs)} | "
                             f"{np.mean(accs):.2f} | {_num(diff, '+.2f')} |")
    return "\n".join(lines)


def choose_ticket(ticket_dirs, max_remaining=0.15, tolerance=1.0, min_probe_seeds=3):
    """The sparsest (run, round) at most `max_remaining` of the weights whose probe mean
    over at least `min_probe_seeds` probe seeds is within `tolerance` points of its own
    dense round's: {"ticket_dir", "round", "remaining", "probe", "dense", "probe_seeds"},
    or None if no round qualifies."""
    from gim_zoo.lottery.tickets import read_round_metrics, ticket_config

    best = None
    for d in ticket_dirs:
        if not RunLayout(d).config_path.exists():
            continue
        rounds = read_round_metrics(d)
        by_round = ticket_probes([d]).get(ticket_config(d).get("seed", 0), {})
        dense = by_round.get(0, [])
        if len(dense) < min_probe_seeds:
            continue
        for r, accs in by_round.items():
            if r == 0 or r >= len(rounds) or len(accs) < min_probe_seeds:
                continue
            remaining = rounds[r]["remaining"]
            if remaining <= max_remaining and np.mean(accs) >= np.mean(dense) - tolerance:
                pick = {"ticket_dir": str(d), "round": r, "remaining": remaining,
                        "probe": float(np.mean(accs)), "dense": float(np.mean(dense)),
                        "probe_seeds": len(accs)}
                if best is None or remaining < best["remaining"]:
                    best = pick
    return best


def ticket_headline(results, probes=None):
    labels = list(results)
    if not labels:
        return ""
    from gim_zoo.lottery.tickets import common_rounds

    ticket = results[labels[0]]
    r = max(common_rounds(ticket.values()), default=0)
    if r < 1:
        return ""
    remaining = np.mean([100 * rs[r]["remaining"] for rs in ticket.values()])
    scores = _by_round(ticket, r)
    parts = [f"at {remaining:.1f}% of the weights (round {r}, {len(scores)} seeds) the ticket "
             f"scores {np.mean(list(scores.values())):.2f}%"]
    for what, other in [("dense", _by_round(ticket, 0))] + \
            [(label, _by_round(results[label], r)) for label in labels[1:]]:
        p = paired(other, scores)
        if p["seeds"]:
            parts.append(f"{p['mean']:+.2f} points vs {what}")
    return ", ".join(parts)


def plot_ticket_pairs(results, out_path):
    from gim_zoo.lottery.tickets import common_rounds

    labels = list(results)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ticket = results[labels[0]] if labels else {}
    rounds = common_rounds(ticket.values())
    comparisons = [("dense (round 0)", lambda r: _by_round(ticket, 0))] + \
        [(label, lambda r, label=label: _by_round(results[label], r)) for label in labels[1:]]
    for i, (name, other) in enumerate(comparisons):
        ps = [paired(other(r), _by_round(ticket, r)) for r in rounds]
        kept = [k for k, p in enumerate(ps) if p["seeds"]]  # a control may skip rounds
        ps = [ps[k] for k in kept]
        remaining = [np.mean([100 * rs[rounds[k]]["remaining"] for rs in ticket.values()])
                     for k in kept]
        x = np.array(remaining) * (1.0 + 0.03 * i)  # side by side on the log axis
        for xi, p in zip(x, ps):
            ax.plot([xi] * len(p["diffs"]), p["diffs"], ".", color=f"C{i}", alpha=0.5)
        means = [p["mean"] for p in ps]
        low = [p["mean"] - p["low"] if not math.isnan(p["low"]) else 0 for p in ps]
        high = [p["high"] - p["mean"] if not math.isnan(p["high"]) else 0 for p in ps]
        ax.errorbar(x, means, yerr=[low, high], marker="o", capsize=3, color=f"C{i}",
                    label=f"ticket minus {name}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-1, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("probe top-1 difference (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("GIM-encoder tickets, paired seeds (mean and 95% interval)", fontsize=9)
    return save_figure(fig, out_path)
