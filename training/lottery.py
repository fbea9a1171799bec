"""Iterative magnitude pruning with rewinding (lottery tickets), resumable round by round.

    python training/lottery.py --network=lenet300 --rounds=10 --out_dir=runs/lth/lenet-ticket
    python training/lottery.py --network=lenet300 --rounds=10 --control=random_reinit \
        --ticket_dir=runs/lth/lenet-ticket --out_dir=runs/lth/lenet-reinit
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

from experiments.flags import run_script  # noqa: E402
from experiments.lottery_rounds import LotteryConfig, run_imp  # noqa: E402

if __name__ == "__main__":
    run_script(LotteryConfig, run_imp, lambda rounds: print("\n".join(map(json.dumps, rounds))))
