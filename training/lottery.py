"""Iterative magnitude pruning with rewinding (lottery tickets), resumable round by round.

    python training/lottery.py --network=lenet300 --rounds=10 --out_dir=runs/lth/lenet-ticket
    python training/lottery.py --network=lenet300 --rounds=10 --control=random_reinit \
        --ticket_dir=runs/lth/lenet-ticket --out_dir=runs/lth/lenet-reinit
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from gim_zoo.flags import USER_ERRORS, config_from_flags, define_flags  # noqa: E402
from gim_zoo.imp import LotteryConfig, run_imp  # noqa: E402

define_flags(LotteryConfig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        rounds = run_imp(config_from_flags(LotteryConfig))
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    for r in rounds:
        print(json.dumps(r))


if __name__ == "__main__":
    app.run(main)
