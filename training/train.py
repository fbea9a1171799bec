"""Train a zoo model (Greedy InfoMax, end-to-end CPC or supervised) into a run directory.

    python training/train.py --model=gim-fmnist-resnet --epochs=2 --out_dir=runs/x

Re-running the same command resumes from the last completed epoch.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from gim_zoo.flags import USER_ERRORS, config_from_flags, define_flags  # noqa: E402
from gim_zoo.training import TrainConfig, train  # noqa: E402

define_flags(TrainConfig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        metrics = train(config_from_flags(TrainConfig))
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
