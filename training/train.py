"""Train a zoo model (Greedy InfoMax, end-to-end CPC or supervised) into a run directory.

    python training/train.py --model=gim-fmnist-resnet --epochs=2 --out_dir=runs/x

Re-running the same command resumes from the last completed epoch.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from experiments.flags import run_script  # noqa: E402
from experiments.pretraining import TrainConfig, train  # noqa: E402

if __name__ == "__main__":
    run_script(TrainConfig, train, lambda m: print(json.dumps(m, indent=2, sort_keys=True)))
