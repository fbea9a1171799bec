#!/usr/bin/env bash
# LeNet-300-100 lottery tickets on Fashion-MNIST with both controls, then the plot.
# About 8 minutes on 2 CPU cores per seed. Resumable round by round.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEED=${SEED:-0}
A="--network=lenet300 --rounds=8 --epochs=4 --seed=$SEED --verbose=0"
$PY training/lottery.py $A --out_dir=runs/lth/lenet-ticket-seed$SEED
$PY training/lottery.py $A --control=random_reinit --ticket_dir=runs/lth/lenet-ticket-seed$SEED \
  --out_dir=runs/lth/lenet-reinit-seed$SEED
$PY training/lottery.py $A --control=random_prune --ticket_dir=runs/lth/lenet-ticket-seed$SEED \
  --out_dir=runs/lth/lenet-randprune-seed$SEED
$PY training/report.py --tickets_out=runs/lth/lenet-seed$SEED.png \
  --tickets="ticket=runs/lth/lenet-ticket-seed$SEED,random re-init=runs/lth/lenet-reinit-seed$SEED,random pruning=runs/lth/lenet-randprune-seed$SEED"
