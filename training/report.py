"""Tables (markdown) and a label-budget plot from the run directories under --runs.

    python training/report.py --runs=runs
    python training/report.py --tickets="ticket=runs/lth/t-seed*,random re-init=runs/lth/r-seed*"
    python training/report.py --finetune="runs/finetune/gim-fmnist-resnet-*"
    python training/report.py --teleport="runs/teleport/*"
    python training/report.py --audio="runs/*audio*/**/audio-*.json"
    python training/report.py --paired_rifle="runs/seeds/rifle/*/*" --paired_out=docs
"""

import glob
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

# experiments.flags first: it imports TensorFlow with its CUDA probing hushed
from experiments.flags import run_main  # noqa: E402
from gim_zoo.files import atomic_write_text  # noqa: E402
from experiments import reports  # noqa: E402

flags.DEFINE_string("runs", "runs", "folder holding the run directories")
flags.DEFINE_integer("seed", 0, "which seed's runs to report")
flags.DEFINE_string("tickets", "", "lottery plot and table instead: 'label=RUN_DIRS,...', "
                    "RUN_DIRS a run directory or a glob over seeds")
flags.DEFINE_string("tickets_out", "runs/tickets.png", "where the lottery plot goes")
flags.DEFINE_string("finetune", "", "RIFLE table and plot instead: a glob over the run "
                    "directories of training/finetune.py")
flags.DEFINE_string("teleport", "", "teleportation table and plot instead: a glob over the "
                    "run directories of training/teleport.py")
flags.DEFINE_string("teleport_out", "runs/teleport/teleport",
                    "where the teleportation table (.md) and plot (.png) go, no extension")
flags.DEFINE_string("audio", "", "audio probe table instead: a glob over the JSON files of "
                    "training/probe_audio.py (in the order given by the sources)")
flags.DEFINE_string("audio_out", "runs/audio_probes.md", "where the audio probe table goes")
flags.DEFINE_bool("deep", False, "the 3-block-module comparison instead (GIM, LoCo, four "
                  "directions, CPC, supervised, random init), mean and spread over probe "
                  "seeds")
flags.DEFINE_string("finetune_out", "runs/finetune/rifle",
                    "where the RIFLE table (.md) and plot (.png) go, without extension")
flags.DEFINE_string("paired_rifle", "", "paired-seed RIFLE report: a glob over finetune.py "
                    "run directories (every target and variant; plain is the baseline)")
flags.DEFINE_string("paired_teleport", "", "paired-seed teleportation report: a glob over "
                    "teleport.py run directories (the plain arm is the baseline)")
flags.DEFINE_string("paired_tickets", "", "paired-seed lottery-ticket report: "
                    "'ticket=GLOB,label=GLOB,...' over lottery.py runs, the ticket first "
                    "(its probe.py --ticket_dir results are included)")
flags.DEFINE_string("paired_tickets_name", "tickets", "the tickets report's files are "
                    "PAIRED_OUT/NAME_paired.md and .png (one report per ticket experiment)")
flags.DEFINE_string("paired_out", "docs", "folder for the paired reports: "
                    "{rifle,teleport,tickets}_paired.md and .png")
flags.DEFINE_string("choose_ticket", "", "a glob over GIM ticket runs: write the sparsest "
                    "round at most 15% of the weights whose probe (3 probe seeds, all "
                    "labels) is within a point of its dense round, as JSON, to "
                    "--choose_ticket_out (round null if none)")
flags.DEFINE_string("choose_ticket_out", "runs/chosen_ticket.json",
                    "where --choose_ticket writes its JSON")


def table_and_plot(pattern, out, what, collect, table_of, plot):
    """OUT.md (a markdown table) and OUT.png from the run directories matching PATTERN."""
    results = collect(sorted(glob.glob(pattern)))
    if not results:
        raise app.UsageError(f"no finished {what} runs match {pattern}")
    table = table_of(results)
    atomic_write_text(out + ".md", table + "\n")
    print(table)
    print(plot(results, out + ".png"))


def paired_reports(f):
    """The paired-seed reports asked for: OUT/<method>_paired.md (table, headline, the
    command) and .png."""
    import shlex
    import sys

    from experiments import paired

    command = "python training/report.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    jobs = []
    if f.paired_rifle:
        results = paired.rifle_results(sorted(glob.glob(f.paired_rifle)))
        jobs.append(("rifle", results, paired.rifle_table, paired.rifle_headline,
                     paired.plot_rifle))
    if f.paired_teleport:
        results = paired.teleport_pairs(sorted(glob.glob(f.paired_teleport)))
        jobs.append(("teleport", results, paired.teleport_pairs_table, paired.teleport_headline,
                     paired.plot_teleport_pairs))
    if f.paired_tickets:
        if not re.fullmatch(r"[\w.-]+", f.paired_tickets_name):
            raise app.UsageError("--paired_tickets_name is a file name stem (letters, digits, "
                                 f"'_', '-', '.'), got {f.paired_tickets_name!r}")
        runs = {}
        for item in f.paired_tickets.split(","):
            label, _, pattern = item.partition("=")
            if not pattern:
                raise app.UsageError(f"--paired_tickets wants label=GLOB items, got {item!r}")
            runs[label] = sorted(glob.glob(pattern))
        results = paired.ticket_results(runs)
        probes = paired.ticket_probes(next(iter(runs.values()), []))
        jobs.append((f.paired_tickets_name, results,
                     lambda r: paired.ticket_pairs_table(r, probes),
                     lambda r: paired.ticket_headline(r, probes), paired.plot_ticket_pairs))
    for name, results, table_of, headline_of, plot in jobs:
        if not results:
            print(f"{name}: no finished runs yet")
            continue
        text = (f"<!-- generated by `{command}`; do not edit -->\n\n"
                f"{table_of(results)}\n\nHeadline: {headline_of(results) or '-'}\n")
        out = os.path.join(f.paired_out, f"{name}_paired")
        atomic_write_text(out + ".md", text)
        print(text)
        print(plot(results, out + ".png"))


def main(argv):
    f = flags.FLAGS
    if f.choose_ticket:
        import json

        from experiments import paired

        chosen = paired.choose_ticket(sorted(glob.glob(f.choose_ticket))) or {"round": None}
        atomic_write_text(f.choose_ticket_out, json.dumps(chosen, indent=2) + "\n")
        print(json.dumps(chosen))
        return
    if f.paired_rifle or f.paired_teleport or f.paired_tickets:
        return paired_reports(f)
    if flags.FLAGS.tickets:
        runs = {}
        for item in flags.FLAGS.tickets.split(","):
            label, pattern = item.split("=", 1)
            runs[label] = sorted(glob.glob(pattern)) or [pattern]
        table = reports.ticket_table(runs)
        atomic_write_text(os.path.splitext(flags.FLAGS.tickets_out)[0] + ".md", table + "\n")
        print(table)
        print(reports.plot_tickets(runs, flags.FLAGS.tickets_out))
        return
    if flags.FLAGS.audio:
        paths = [p for pattern in flags.FLAGS.audio.split(",")
                 for p in sorted(glob.glob(pattern, recursive=True))]
        if not paths:
            raise app.UsageError(f"no audio probe results match {flags.FLAGS.audio}")
        table = reports.audio_table(paths)
        atomic_write_text(flags.FLAGS.audio_out, table + "\n")
        print(table)
        return
    if flags.FLAGS.teleport:
        return table_and_plot(flags.FLAGS.teleport, flags.FLAGS.teleport_out, "teleport",
                              reports.teleport_results, reports.teleport_table,
                              reports.plot_teleport)
    if flags.FLAGS.finetune:
        return table_and_plot(flags.FLAGS.finetune, flags.FLAGS.finetune_out, "fine-tuning",
                              reports.finetune_results, reports.finetune_table,
                              reports.plot_finetune)
    runs = flags.FLAGS.runs
    if flags.FLAGS.deep:
        sources = reports.deep_sources(runs, flags.FLAGS.seed)
        text = "".join(
            f"## {title}\n\n"
            + reports.markdown_over_seeds(reports.collect_over_probe_seeds(sources, pool)) + "\n\n"
            for title, pool in (("Linear-probe test top-1 (%), 3x3 grid, mean ± std over "
                                 "probe seeds", 3),
                                ("The same, global average pool", 1)))
        atomic_write_text(os.path.join(runs, "results_deep.md"), text)
        print(text)
        return
    rows, per_module = reports.collect(runs, flags.FLAGS.seed, pool_to=3)
    global_rows, global_per_module = reports.collect(runs, flags.FLAGS.seed, pool_to=1)
    text = ("## Linear-probe test top-1 (%), features pooled to a 3x3 grid\n\n"
            + reports.markdown(rows, per_module)
            + "\n\n## The same, global average pool (the paper's probe input)\n\n"
            + reports.markdown(global_rows, global_per_module)
            + "\n\n## Training runs\n\n" + reports.training_table(runs, flags.FLAGS.seed) + "\n")
    atomic_write_text(os.path.join(runs, "results.md"), text)
    if rows:
        reports.plot_budgets(rows, os.path.join(runs, "label_budgets.png"))
    print(text)


if __name__ == "__main__":
    run_main(main)
