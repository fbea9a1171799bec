#!/usr/bin/env bash
# Every command behind the README's Fashion-MNIST results table, in order (seed 0).
# Resumable: re-running skips finished epochs and repeats only the (cheap) probes.
# About 4 hours on 2 CPU cores (each probe command 1-3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEED=${SEED:-0}
GIM=runs/gim-fmnist-resnet-seed$SEED
GIM8=runs/gim-fmnist-resnet-epoch8-seed$SEED

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
