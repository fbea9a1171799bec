#!/usr/bin/env bash
# Every run behind the README's teleportation table: the leaky-ReLU MLP on Fashion-MNIST
# (first 10k training images, 5 epochs) with SGD, AdaGrad and Adam, without GL(n)
# teleports, and with them at steps 0, 50, ..., 200 (optimizer slots reset, or kept:
# SGD has none), for SEEDS (default 0..4); then one GIM encoder (module 1 under its
# InfoNCE loss, rescaling group, seed 0) with and without; then the table and plot.
# A finished run is skipped when re-run. About 15 s per MLP run on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEEDS=${SEEDS:-"0 1 2 3 4"}

for seed in $SEEDS; do
  for optimizer in sgd adagrad adam; do
    for arm in --noteleport --teleport "--teleport --optimizer_state=keep"; do
      [[ $optimizer == sgd && $arm == *keep ]] && continue  # plain SGD keeps no slots
      $PY training/teleport.py --optimizer="$optimizer" $arm --seed="$seed" --verbose=0
    done
  done
done
for teleport in --teleport --noteleport; do
  $PY training/teleport.py --model=gim-fmnist-resnet --optimizer=adam --learning_rate=2e-4 \
    --group=rescale --teleport_batch=16 --teleport_lr=0.3 --at_steps=0,100 \
    --train_examples=4000 --epochs=2 --batch_size=32 --target_loss=2.6 $teleport --seed=0 \
    --verbose=0
done
$PY training/report.py --teleport="runs/teleport/*" --teleport_out=runs/teleport/teleport
