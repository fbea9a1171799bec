#!/usr/bin/env bash
# Every command behind the README's audio table, on the synthetic espeak-ng corpus (seed 0):
# the corpus, GIM, CPC and supervised training (resumable), then phone / speaker probes on
# GIM modules, CPC, the supervised encoder, MFCCs and a random-init encoder, and the table.
# Training on 2 CPU cores (60 epochs of 320 crops): about 40 minutes for GIM, 20 for CPC,
# 5 for supervised.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CORPUS=data/speech-corpus

[ -f "$CORPUS/manifest.json" ] || $PY training/make_speech_corpus.py --out_dir="$CORPUS"
for model in gim cpc supervised; do
  $PY training/train.py --model=$model-espeak-audio --seed=0 --out_dir=runs/$model-espeak-audio-seed0 --verbose=2
done
for module in 1 3 5 6; do
  $PY training/probe_audio.py --run_dir=runs/gim-espeak-audio-seed0 --module=$module
done
$PY training/probe_audio.py --run_dir=runs/cpc-espeak-audio-seed0
$PY training/probe_audio.py --run_dir=runs/supervised-espeak-audio-seed0
$PY training/probe_audio.py --model=gim-espeak-audio
$PY training/probe_audio.py --features=mfcc
$PY training/report.py --audio_out=runs/audio_probes.md \
  --audio="runs/gim-espeak-audio-seed0/probes/audio-*.json,runs/cpc-espeak-audio-seed0/probes/audio-*.json,runs/supervised-espeak-audio-seed0/probes/audio-*.json,runs/random-init-gim-espeak-audio-seed0/audio-*.json,runs/audio-probes/audio-mfcc-*.json"
