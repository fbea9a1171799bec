#!/usr/bin/env bash
# Every lottery-ticket run behind the README's ticket curves, for one seed (SEED=0, 1, ...):
# each experiment is a ticket run plus its controls, then the plot and its table.
# Resumable round by round. On 2 CPU cores: lenet about 10 minutes, conv2 and conv2late
# about 6 each, gim and resnet about 30 each (measured sharing the cores); gim60k,
# gim60kglobal and gim60kgloballate (not in the default list; training/seeds_results.sh
# runs them) 75-90 minutes a ticket run, gim60kglobal2ep about 2 hours, gim60klamp (also
# theirs) about 1 hour.
# VERBOSE=2 prints one line per epoch (default 0: one line per finished run). PARTS chooses
# what of each experiment runs (default "ticket controls plot"): training/seeds_results.sh
# runs the ticket runs first and their controls later, so a ticket can be probed sooner.
# CONTROL_ROUNDS (e.g. "9,10,11"; default every round) limits the controls to those rounds
# (lottery.py --control_rounds: a control's rounds are independent of each other).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEED=${SEED:-0}
VERBOSE=${VERBOSE:-0}
EXPERIMENTS=${EXPERIMENTS:-"lenet conv2 conv2late gim resnet"}
PARTS=${PARTS:-"ticket controls plot"}
CONTROL_ROUNDS=${CONTROL_ROUNDS:-}
for part in $PARTS; do
  case $part in ticket|controls|plot) ;;
    *) echo "unknown part $part in PARTS (ticket, controls, plot)" >&2; exit 2 ;;
  esac
done

wants() { [[ " $PARTS " == *" $1 "* ]]; }

experiment() {  # NAME CONTROLS ARGS...: ticket run, controls, plot
  local name=$1 controls=$2; shift 2
  local out=runs/lth/$name-ticket-seed$SEED plots="ticket=runs/lth/$name-ticket-seed$SEED"
  wants ticket && $PY training/lottery.py "$@" --seed=$SEED --verbose=$VERBOSE --out_dir="$out"
  for control in $controls; do
    case $control in
      random_reinit) local short=reinit label="random re-init" ;;
      random_prune) local short=randprune label="random pruning" ;;
    esac
    local dir=runs/lth/$name-$short-seed$SEED
    wants controls && $PY training/lottery.py "$@" --seed=$SEED --verbose=$VERBOSE \
      --control=$control --ticket_dir="$out" --out_dir="$dir" \
      ${CONTROL_ROUNDS:+--control_rounds="$CONTROL_ROUNDS"}
    plots="$plots,$label=$dir"
  done
  wants plot && $PY training/report.py --tickets_out=runs/lth/$name-seed$SEED.png \
    --tickets="$plots"
  return 0
}

for e in $EXPERIMENTS; do
  case $e in
    # LeNet-300-100 (Frankle & Carbin's MNIST network), Adam 1.2e-3, batch 60.
    lenet) experiment lenet "random_reinit random_prune" --network=lenet300 --rounds=8 \
             --epochs=4 ;;
    # Conv-2 (32 filters), first 20k training images, 2 epochs per round.
    conv2) experiment conv2 "random_reinit random_prune" --network=conv2 --rounds=7 \
             --epochs=2 --max_examples=20000 --learning_rate=2e-4 ;;
    # Late rewinding: conv2's runs, survivors rewound to step 50 instead of initialisation.
    conv2late) experiment conv2late "" --network=conv2 --rounds=7 --epochs=2 \
                 --max_examples=20000 --learning_rate=2e-4 --rewind_step=50 ;;
    # The GIM encoder under its own InfoNCE losses (no labels), 25% of each conv's
    # weights per round; scored by a linear probe (100 labels/class, 5000 test images).
    gim) experiment gim "random_reinit" --network=gim-fmnist-resnet --rounds=8 --epochs=1 \
           --max_examples=12000 --batch_size=32 --learning_rate=2e-4 --conv_rate=0.25 \
           --eval_examples=5000 ;;
    # The GIM encoder in rounds long enough to train: one epoch of all 60,000 images per
    # round, 30% of each conv's surviving weights per round, 10 rounds (to 4% of the
    # weights); probed on all 10,000 test images; both controls.
    gim60k) experiment gim60k "random_reinit random_prune" --network=gim-fmnist-resnet \
              --rounds=10 --epochs=1 --batch_size=32 --learning_rate=2e-4 --conv_rate=0.3 ;;
    # gim60k with global magnitude pruning (Frankle & Carbin's choice for their deep
    # networks): 30% of all surviving conv weights pooled per round, so each round keeps the
    # same share of the weights as gim60k but not of each layer: module 1's convs (few,
    # large weights) keep more, module 3's less (pruned at once from seed 0's dense round to
    # 11.8%: module 1's blocks keep 29-67% of their weights, module 3's 3x3 conv 0.4%).
    # Layerwise, every module's InfoNCE loss rose from 34% of the weights down.
    gim60kglobal) experiment gim60kglobal "random_reinit random_prune" \
                    --network=gim-fmnist-resnet --rounds=10 --epochs=1 --batch_size=32 \
                    --learning_rate=2e-4 --global_rate=0.3 ;;
    # Both gim60k rules lost 1.3-1.5 points of the all-label probe at 11.8% of the weights.
    # gim60kgloballate tries the two remedies the LTH papers give for deeper networks:
    # a gentler rate (Frankle & Carbin's 20% per round: more rounds to the same sparsity)
    # and late rewinding (to the weights after 100 of round 0's 1,875 steps, about 5%,
    # instead of initialisation; Frankle et al. 2020); 12 rounds, to 8.6% of the weights.
    gim60kgloballate) experiment gim60kgloballate "random_reinit random_prune" \
                        --network=gim-fmnist-resnet --rounds=12 --epochs=1 --batch_size=32 \
                        --learning_rate=2e-4 --global_rate=0.2 --rewind_step=100 ;;
    # gim60kglobal in rounds of two epochs (3,750 steps): the dense round and every ticket
    # trained twice as long. With one epoch, each round at <= 11.8% lost 1.25-1.3 points of
    # the all-label probe against its dense round, with the 100-label probe falling round
    # by round: a sparse network may simply train slower. 8 rounds, to 8.2% of the weights.
    gim60kglobal2ep) experiment gim60kglobal2ep "random_reinit random_prune" \
                       --network=gim-fmnist-resnet --rounds=8 --epochs=2 --batch_size=32 \
                       --learning_rate=2e-4 --global_rate=0.3 ;;
    # gim60kglobal with the pooled weights ranked by LAMP scores (Lee et al., ICLR 2021)
    # instead of |w|: global magnitude pruning empties first the layers of many small
    # weights (gim60kglobal2ep seed 0 at 11.8%: module 3's 3x3 conv keeps 0.7% of its
    # weights, the first conv 15%); LAMP scores the same dense weights to 4.2% and 54%.
    # 8 rounds, to 8.2% of the weights.
    gim60klamp) experiment gim60klamp "random_reinit random_prune" \
                  --network=gim-fmnist-resnet --rounds=8 --epochs=1 --batch_size=32 \
                  --learning_rate=2e-4 --global_rate=0.3 --global_score=lamp ;;
    # The supervised encoder under cross-entropy, the same schedule as the GIM tickets.
    resnet) experiment resnet "random_reinit" --network=supervised-fmnist-resnet --rounds=8 \
              --epochs=1 --max_examples=12000 --batch_size=32 --learning_rate=1e-3 \
              --conv_rate=0.25 --eval_examples=5000 ;;
    *) echo "unknown experiment $e (lenet, conv2, conv2late, gim, gim60k, gim60kglobal," \
            "gim60kgloballate, gim60kglobal2ep, gim60klamp, resnet)" >&2; exit 2 ;;
  esac
done
