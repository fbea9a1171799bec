"""Linear probe on a frozen encoder: test top-1 for a label budget.

    python training/probe.py --run_dir=runs/x --labels_per_class=60
    python training/probe.py --random_init --model=gim-fmnist-resnet --labels_per_class=60
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.flags import run_script  # noqa: E402
from gim_zoo.probing import ProbeConfig, probe  # noqa: E402


def show(result):
    print(f"{result['model']} ({result['source']}), module {result['module']}, "
          f"{result['train_examples']} labels: test top-1 {result['test_accuracy']:.4f} "
          f"on {result['test_examples']} images  [{result['path']}]")


if __name__ == "__main__":
    run_script(ProbeConfig, probe, show)
