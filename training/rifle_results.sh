#!/usr/bin/env bash
# Every fine-tuning run behind the README's RIFLE table: the GIM encoder fine-tuned on the
# handwritten digits (20 labels per class), plain, with RIFLE M = 1, 2, 3 (and M = 3 with
# the head's Adam moments reset), with dropout before the head, and from random init, for
# SEEDS (default 0 1 2); then the table and plot.
# A finished run is skipped when re-run. About a minute per run on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEEDS=${SEEDS:-"0 1 2"}
MODEL=${MODEL:-gim-fmnist-resnet}
OUT=runs/finetune

for seed in $SEEDS; do
  for variant in "" "--rifle_times=1" "--rifle_times=2" "--rifle_times=3" \
                 "--rifle_times=3 --reset_head_slots" "--dropout=0.5" "--random_init"; do
    $PY training/finetune.py --model="$MODEL" --seed="$seed" --verbose=0 $variant
  done
done
$PY training/report.py --finetune="$OUT/$MODEL-*" --finetune_out="$OUT/$MODEL-rifle"
