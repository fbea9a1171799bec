"""Tables (markdown) and a label-budget plot from the run directories under --runs.

    python training/report.py --runs=runs
    python training/report.py --tickets="ticket=runs/lth/t,random re-init=runs/lth/r"
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from gim_zoo import report  # noqa: E402
from gim_zoo.runs import atomic_write_text  # noqa: E402

flags.DEFINE_string("runs", "runs", "folder holding the run directories")
flags.DEFINE_integer("seed", 0, "which seed's runs to report")
flags.DEFINE_string("tickets", "", "lottery plot instead: 'label=RUN_DIR,label=RUN_DIR,...'")
flags.DEFINE_string("tickets_out", "runs/tickets.png", "where the lottery plot goes")


def main(argv):
    if flags.FLAGS.tickets:
        runs = dict(item.split("=", 1) for item in flags.FLAGS.tickets.split(","))
        print(report.plot_tickets(runs, flags.FLAGS.tickets_out))
        return
    runs = flags.FLAGS.runs
    rows, per_module = report.collect(runs, flags.FLAGS.seed)
    text = ("## Linear-probe test top-1 (%)\n\n" + report.markdown(rows, per_module)
            + "\n\n## Training runs\n\n" + report.training_table(runs, flags.FLAGS.seed) + "\n")
    atomic_write_text(os.path.join(runs, "results.md"), text)
    if rows:
        report.plot_budgets(rows, os.path.join(runs, "label_budgets.png"))
    print(text)


if __name__ == "__main__":
    app.run(main)
