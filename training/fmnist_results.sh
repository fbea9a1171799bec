#!/usr/bin/env bash
# Every command behind the README's Fashion-MNIST results table, in order (seed 0).
# Resumable: re-running skips finished epochs, and probes already fitted with the same
# encoder weights and settings (probe.py --redo fits them again).
# About 4 hours on 2 CPU cores (each probe command 1-3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEED=${SEED:-0}
GIM=runs/gim-fmnist-resnet-seed$SEED
GIM8=runs/gim-fmnist-resnet-epoch8-seed$SEED
if [ -z "${DEEP_ONLY:-}" ]; then

# GIM: 8 epochs (CPC's budget), keep that encoder for the equal-budget row, then on to the
# recipe's 16 epochs in the same run directory.
$PY training/train.py --model=gim-fmnist-resnet --epochs=8 --seed=$SEED --out_dir=$GIM --verbose=2
if [ ! -e $GIM8/encoder.weights.h5 ]; then
  mkdir -p $GIM8 && cp $GIM/config.json $GIM/history.csv $GIM/encoder.weights.h5 $GIM8/
fi
$PY training/train.py --model=gim-fmnist-resnet --seed=$SEED --out_dir=$GIM --verbose=2
for m in cpc-fmnist-resnet supervised-fmnist-resnet; do
  $PY training/train.py --model=$m --seed=$SEED --out_dir=runs/$m-seed$SEED --verbose=2
done
$PY training/train.py --model=supervised-fmnist-resnet --labels_per_class=60 --epochs=100 \
  --seed=$SEED --out_dir=runs/supervised-fmnist-resnet-labels60-seed$SEED --verbose=2
$PY training/train.py --model=supervised-fmnist-resnet --labels_per_class=600 --epochs=20 \
  --seed=$SEED --out_dir=runs/supervised-fmnist-resnet-labels600-seed$SEED --verbose=2

# Linear probes on 3x3-pooled features (the zoo's probe), three label budgets from one
# encoding pass; modules 1 and 2 with all labels; then the paper's global pooling.
R=runs/random-init-gim-fmnist-resnet-seed$SEED
for run in $GIM $GIM8 runs/cpc-fmnist-resnet-seed$SEED runs/supervised-fmnist-resnet-seed$SEED; do
  $PY training/probe.py --run_dir=$run --labels_per_class=60,600,0 --seed=$SEED
done
$PY training/probe.py --random_init --model=gim-fmnist-resnet --labels_per_class=60,600,0 \
  --seed=$SEED --out_dir=$R/probes
for module in 1 2; do
  for run in $GIM runs/cpc-fmnist-resnet-seed$SEED; do
    $PY training/probe.py --run_dir=$run --labels_per_class=0 --module=$module --seed=$SEED
  done
done
$PY training/probe.py --run_dir=$GIM --labels_per_class=60,600,0 --pool_to=1 --seed=$SEED
for run in $GIM8 runs/cpc-fmnist-resnet-seed$SEED runs/supervised-fmnist-resnet-seed$SEED; do
  $PY training/probe.py --run_dir=$run --labels_per_class=0 --pool_to=1 --seed=$SEED
done
$PY training/probe.py --random_init --model=gim-fmnist-resnet --labels_per_class=0 \
  --pool_to=1 --seed=$SEED --out_dir=$R/probes
$PY training/report.py --runs=runs --seed=$SEED
fi

# --- Deeper modules (3 pre-activation blocks per module), one module at a time ---------
# Each command is one resumable job of at most about 2 hours on 2 idle cores (about 12
# epochs of one module at ~150-200 images/s); module k starts from module k-1's run.
# `DEEP_ONLY=1 bash training/fmnist_results.sh` skips everything above (set it first).
# Equal budget: every weight gets the same number of optimizer updates (12 epochs of
# 60k images at batch 32): GIM and LoCo train each module for 12 epochs, CPC and the
# supervised encoder train all modules together for 12 epochs (their steps cost ~3x).
deep_modules() {  # MODEL: train modules 1..3 in turn, each from the previous run
  local model=$1 prev=""
  for k in 1 2 3; do
    local run=runs/$model-m$k-seed$SEED
    $PY training/train.py --model=$model --train_module=$k --epochs=12 --seed=$SEED \
      --out_dir=$run ${prev:+--init_from=$prev} --verbose=2
    prev=$run
  done
}
end_to_end() {  # MODEL: all modules together, 12 epochs in two jobs of ~2 hours each
  for e in 6 12; do
    $PY training/train.py --model=$1 --epochs=$e --seed=$SEED --out_dir=runs/$1-seed$SEED \
      --verbose=2
  done
}
# Probes: 3 probe seeds x (1%, 10%, 100% of the labels) x (3x3 grid, global pool); the
# seeds of one command share its encoding pass.
probe_deep() {  # RUN_DIR...: probe each trained encoder
  for pool in 3 1; do
    for run in "$@"; do
      $PY training/probe.py --run_dir=$run --labels_per_class=60,600,0 --pool_to=$pool \
        --seeds=0,1,2
    done
  done
}
# Order: GIM and its probes first, then CPC and its probes (the GIM-vs-CPC answer), then
# LoCo's overlap (asked for when plain GIM trails CPC, as it does), the supervised
# baseline (the last fair-baseline row), and GIM with four prediction directions last (its
# module 1 led plain GIM's by only 0.6-0.8 points, short of CPC's 1.3-point lead; the
# pilot in docs/next-flagship.md).
deep_modules gim-fmnist-resnet-deep
probe_deep runs/gim-fmnist-resnet-deep-m3-seed$SEED
for pool in 3 1; do
  for probe_seed in 0 1 2; do  # a new random encoder per seed
    $PY training/probe.py --random_init --model=gim-fmnist-resnet-deep \
      --labels_per_class=60,600,0 --pool_to=$pool --seed=$probe_seed \
      --out_dir=runs/random-init-gim-fmnist-resnet-deep/probes
  done
done
end_to_end cpc-fmnist-resnet-deep
probe_deep runs/cpc-fmnist-resnet-deep-seed$SEED
deep_modules loco-fmnist-resnet-deep
probe_deep runs/loco-fmnist-resnet-deep-m3-seed$SEED
end_to_end supervised-fmnist-resnet-deep
probe_deep runs/supervised-fmnist-resnet-deep-seed$SEED
deep_modules gim4dir-fmnist-resnet-deep
probe_deep runs/gim4dir-fmnist-resnet-deep-m3-seed$SEED
$PY training/report.py --runs=runs --seed=$SEED --deep
