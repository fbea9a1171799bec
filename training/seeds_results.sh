#!/usr/bin/env bash
# Issue 30: RIFLE, symmetry teleportation and lottery tickets in their papers' own regimes,
# with paired seeds (every variant of a seed starts from the same weights and sees the same
# batches), then the paired reports in docs/ and the sparse GIM ticket packaged.
#
#   PYTHON=.venv/bin/python nohup nice -n 19 bash training/seeds_results.sh \
#       > runs/seeds-schedule.log 2>&1 &
#
# It lowers itself to the idle scheduling class (chrt --idle) where it can: with the
# kernel's autogroups, `nice` only ranks processes of one session, and a schedule started
# with setsid or from another terminal took half the CPU from a test suite beside it.
# Resumable: re-running the same command skips every finished run (without starting
# Python for it), resumes a fine-tuning run at its last finished epoch (bit-identically)
# and a ticket run at its last finished round; a teleport run (1-2 minutes) restarts.
# Runs go under runs/seeds/ (teleport, rifle) and runs/lth/gim60k*-* (tickets). STEPS
# chooses steps (default: all, in this order: the cheapest answer to each claim first);
# a failed job is reported and the schedule goes on; it exits non-zero if any failed.
#
# Steps, with estimated hours on 2 idle CPU cores (measured epochs, see docs/rifle.md), in
# the default order: the tickets first (the one claim with no answer yet), their controls
# after the ticket is probed and packaged:
#   teleport      0.9 h  (a) MLP and ConvNet, SGD: no teleport / sharpness_min /
#                        sharpness_max, 5 seeds (30 runs); (b) MLP with SGD, AdaGrad,
#                        Adam, one teleport at initialisation vs none, 5 seeds (30 runs);
#                        (c) GIM module 1 under InfoNCE, 5 seeds (10 runs)
#   tickets      14.5 h  IMP of the GIM encoder under InfoNCE, rounds of one epoch of the
#                        60,000 images (two for gim60kglobal2ep), seeds 0 and 1, for each of
#                        TICKET_EXPERIMENTS (lth_results.sh's gim60klamp: gim60kglobal ranked
#                        by LAMP scores, 8 rounds, about 1 h; gim60kgloballate: global 20%
#                        per round, late rewinding, 12 rounds to 8.6%; gim60kglobal2ep:
#                        global 30%, 2 epochs a round, 8 rounds to 8.2%; gim60kglobal: global
#                        30%, 10 rounds to 4%; gim60k: layerwise 30%); 75-90 min a run (415-470
#                        s a round, measured), about 2 h for gim60kglobal2ep; after each run
#                        its probes (linear, all labels, 3 probe seeds, ~3.5 min each: the
#                        dense round and every round at <= 15% of the weights) and the
#                        package step
#   ticket-probes        any probe the tickets step left undone, and the tickets reports
#   package       0.3 h  the sparsest ticket round <= 15% within a point of dense on the
#                        probe, over every ticket run: bundled (package.py), SavedModel +
#                        TFLite sizes/latencies
#   ticket-controls 6 h  random re-init and random pruning at the tickets' sparsities
#                        (the rounds at <= 15% of the weights that were probed, 3-4 per
#                        run), seeds 0 and 1, about 2 h per experiment, then its report
#   rifle-small   3.3 h  fine-tuning, the authors' regime, Fashion-MNIST 1% of the labels
#                        and the digits: plain, RIFLE M=1,2,3, M=3 with the cyclic head
#                        rate, random-init encoder; 5 seeds (60 runs, ~3 min each)
#   rifle-10      5.1 h  Fashion-MNIST 10% of the labels (6,000 images): plain, M=1, M=3,
#                        5 seeds (15 runs, ~20 min each)
#   rifle-10-more 5.1 h  10% of the labels: M=2, M=3 with the cyclic head rate, random-init
#                        encoder, 5 seeds (15 runs)
# A report step follows each (seconds): docs/{teleport,rifle,tickets}_paired.{md,png}.
set -uo pipefail
cd "$(dirname "$0")/.."

main() {
  chrt --idle --pid 0 $$ 2>/dev/null || true  # children inherit it; see the header
  PY=${PYTHON:-python}
  STEPS=${STEPS:-"teleport tickets ticket-probes package ticket-controls rifle-small rifle-10
                  rifle-10-more"}
  SEEDS=${SEEDS:-"0 1 2 3 4"}
  TICKET_SEEDS=${TICKET_SEEDS:-"0 1"}
  TICKET_EXPERIMENTS=${TICKET_EXPERIMENTS:-"gim60klamp gim60kgloballate gim60kglobal2ep gim60kglobal
                                            gim60k"}
  OUT=runs/seeds
  mkdir -p "$OUT"
  exec 9>"$OUT/schedule.lock"
  if ! flock -n 9; then
    echo "error: another seeds_results.sh is running ($OUT/schedule.lock is held)" >&2
    exit 1
  fi
  FAILED=()
  echo "$(stamp) seeds_results.sh: steps: $STEPS (pid $$)"
  for step in $STEPS; do
    echo "$(stamp) === step $step ==="
    case $step in
      teleport) teleport_generalisation; teleport_convergence; teleport_gim
                report --paired_teleport="$OUT/teleport/*/*" ;;
      rifle-small) for seed in $SEEDS; do
                     for variant in plain rifle1 rifle2 rifle3 rifle3-cyclic scratch; do
                       rifle fmnist1 "$variant" "$seed"
                     done
                   done
                   for seed in $SEEDS; do
                     for variant in plain rifle1 rifle2 rifle3 rifle3-cyclic scratch; do
                       rifle digits "$variant" "$seed"
                     done
                   done
                   report --paired_rifle="$OUT/rifle/*/*" ;;
      rifle-10) for seed in $SEEDS; do
                  for variant in plain rifle1 rifle3; do rifle fmnist10 "$variant" "$seed"; done
                done
                report --paired_rifle="$OUT/rifle/*/*" ;;
      tickets) for seed in $TICKET_SEEDS; do
                 for experiment in $TICKET_EXPERIMENTS; do
                   tickets "$experiment" "$seed" ticket
                   ticket_probes "runs/lth/$experiment-ticket-seed$seed"
                   package_ticket
                 done
               done ;;
      ticket-controls) for experiment in $TICKET_EXPERIMENTS; do
                         for seed in $TICKET_SEEDS; do
                           ticket_controls "$experiment" "$seed"
                         done
                         report_tickets "$experiment"
                       done ;;
      ticket-probes) for experiment in $TICKET_EXPERIMENTS; do
                       for seed in $TICKET_SEEDS; do
                         ticket_probes "runs/lth/$experiment-ticket-seed$seed"
                       done
                       report_tickets "$experiment"
                     done ;;
      package) package_ticket ;;
      rifle-10-more) for seed in $SEEDS; do
                       for variant in rifle2 rifle3-cyclic scratch; do
                         rifle fmnist10 "$variant" "$seed"
                       done
                     done
                     report --paired_rifle="$OUT/rifle/*/*" ;;
      *) echo "error: unknown step $step (teleport tickets ticket-probes package" \
              "ticket-controls rifle-small rifle-10 rifle-10-more)" >&2; exit 2 ;;
    esac
  done
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "$(stamp) done, with ${#FAILED[@]} failed job(s) (re-run to retry them):"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
  fi
  echo "$(stamp) done: every step finished"
}

stamp() { date '+%Y-%m-%d %H:%M:%S'; }

job() {  # NAME COMMAND...: run it, note a failure and go on
  local name=$1; shift
  echo "$(stamp) start: $name"
  if "$@"; then
    echo "$(stamp) done: $name"
  else
    echo "$(stamp) FAILED (exit $?): $name"
    FAILED+=("$name")
  fi
}

finished() {  # RUN_DIR KEY: the run's metrics.json has KEY (then Python need not start)
  grep -q "\"$2\"" "$1/metrics.json" 2>/dev/null
}

report() {  # the paired report's flags: tables and plots into docs/ (never fails the run)
  job "report $*" "$PY" training/report.py "$@" --paired_out=docs
}

report_tickets() {  # EXPERIMENT: docs/tickets_paired.* for gim60k, tickets_NAME_paired.*
  local t=runs/lth/$1 name=tickets
  [ "$1" = gim60k ] || name=tickets_${1#gim60k}
  report --paired_tickets="ticket=$t-ticket-seed*,random re-init=$t-reinit-seed*,random pruning=$t-randprune-seed*" \
    --paired_tickets_name="$name"
}

# --- teleportation -------------------------------------------------------------------------
teleport() {  # RUN_DIR ARGS...
  local dir=$1; shift
  finished "$dir" final_subset_loss && return 0
  job "teleport $dir" "$PY" training/teleport.py "$@" --out_dir="$dir" --verbose=0
}

teleport_generalisation() {  # (a) the paper's generalisation claim: SGD, 20 epochs
  local common="--optimizer=sgd --epochs=20 --train_examples=10000 --batch_size=64
                --at_steps=0:3140:157 --eval_every=157"
  for seed in $SEEDS; do
    for model in mlp convnet; do
      local net="--model=mlp --group=gl"
      [ $model = convnet ] && net="--model=convnet --group=rescale --teleport_lr=0.1"
      for arm in none sharpness_min sharpness_max; do
        local how="--noteleport"
        [ $arm != none ] && how="--teleport --objective=$arm"
        # shellcheck disable=SC2086
        teleport "$OUT/teleport/generalisation/$model-$arm-seed$seed" $net $common $how \
          --seed="$seed"
      done
    done
  done
}

teleport_convergence() {  # (b) adaptive optimizers, one teleport at initialisation
  for seed in $SEEDS; do
    for optimizer in sgd adagrad adam; do
      for arm in plain teleport; do
        teleport "$OUT/teleport/convergence/mlp-$optimizer-$arm-seed$seed" --model=mlp \
          --optimizer="$optimizer" --at_steps=0 "--$( [ $arm = plain ] && echo no)teleport" \
          --seed="$seed"
      done
    done
  done
}

teleport_gim() {  # (c) the GIM-module row of docs/teleportation.md, 5 seeds
  for seed in $SEEDS; do
    for arm in plain teleport; do
      teleport "$OUT/teleport/gim/gim-module1-$arm-seed$seed" --model=gim-fmnist-resnet \
        --optimizer=adam --learning_rate=2e-4 --group=rescale --teleport_batch=16 \
        --teleport_lr=0.3 --at_steps=0,100 --train_examples=4000 --epochs=2 --batch_size=32 \
        --target_loss=2.6 "--$( [ $arm = plain ] && echo no)teleport" --seed="$seed"
    done
  done
}

# --- RIFLE ---------------------------------------------------------------------------------
rifle() {  # TARGET VARIANT SEED: one fine-tuning run in the authors' regime
  local target=$1 variant=$2 seed=$3
  local dir=$OUT/rifle/$target/$variant-seed$seed
  finished "$dir" test_accuracy && return 0
  local data
  case $target in
    fmnist1) data="--target=fashion_mnist --labels_per_class=60 --augment" ;;
    fmnist10) data="--target=fashion_mnist --labels_per_class=600 --augment" ;;
    digits) data="--target=digits --labels_per_class=0" ;;
  esac
  local how
  case $variant in
    plain) how="" ;;
    rifle1|rifle2|rifle3) how="--rifle_times=${variant#rifle}" ;;
    rifle3-cyclic) how="--rifle_times=3 --cyclic_head_lr" ;;
    scratch) how="--random_init" ;;
  esac
  # shellcheck disable=SC2086
  job "rifle $target $variant seed $seed" "$PY" training/finetune.py \
    --model=gim-fmnist-resnet $data --optimizer=sgd --learning_rate=0.01 --momentum=0.9 \
    --weight_decay=1e-4 --batch_size=32 --epochs=40 --quiet_epochs=5 --resumable \
    $how --seed="$seed" --out_dir="$dir" --verbose=2
}

# --- lottery tickets -----------------------------------------------------------------------
tickets() {  # EXPERIMENT SEED PARTS [CONTROL_ROUNDS]: an lth_results.sh experiment
  job "$1 $3 seed $2" env SEED="$2" EXPERIMENTS="$1" PARTS="$3" VERBOSE=2 \
    CONTROL_ROUNDS="${4:-}" PYTHON="$PY" bash training/lth_results.sh
}

ticket_controls() {  # EXPERIMENT SEED: the controls at the ticket's probed pruned rounds
  local dir=runs/lth/$1-ticket-seed$2 rounds
  [ -d "$dir" ] && rounds=$(probe_rounds "$dir" | tr ' ' '\n' | grep -vx 0 | paste -sd, -)
  if [ -z "${rounds:-}" ]; then
    echo "$(stamp) $1 controls seed $2: no ticket round at <= 15% of the weights yet"
    return 0
  fi
  tickets "$1" "$2" "controls plot" "$rounds"
}

probe_rounds() {  # TICKET_DIR: round 0 and every finished round at <= 15% of the weights
  "$PY" - "$1" <<'EOF'
import json, pathlib, sys
rounds = sorted(pathlib.Path(sys.argv[1]).glob("rounds/round*.json"))
print(" ".join(str(r["round"]) for r in map(lambda p: json.loads(p.read_text()), rounds)
               if r["round"] == 0 or r["remaining"] <= 0.15))
EOF
}

ticket_probes() {  # TICKET_DIR: probe the rounds probe_rounds names, unless done
  local dir=$1
  [ -d "$dir" ] || return 0
  for r in $(probe_rounds "$dir"); do
    local done_probes
    done_probes=$(ls "$dir/probes/round$(printf %02d "$r")"/labelsall-*-seed[012].json \
                  2>/dev/null | wc -l)
    [ "$done_probes" -ge 3 ] && continue
    job "probe $dir round $r" "$PY" training/probe.py --ticket_dir="$dir" --round="$r" \
      --labels_per_class=0 --seeds=0,1,2 --verbose=0
  done
}

package_ticket() {
  # Chosen again each time (seconds): a ticket seed that finished later may give a sparser
  # ticket; packaged again only when the choice differs from the one packaged ($done).
  local chosen=$OUT/chosen_ticket.json done=$OUT/package.done
  job "choose the ticket" "$PY" training/report.py --choose_ticket="runs/lth/gim60k*-ticket-seed*" \
    --choose_ticket_out="$chosen" || return 0
  if cmp -s "$chosen" "$done"; then
    echo "$(stamp) package: this ticket was packaged earlier ($done)"; return 0
  fi
  local dir round note
  read -r dir round note < <("$PY" - "$chosen" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
if c.get("round") is None:
    print("- - -")
else:
    print(c["ticket_dir"], c["round"],
          f"linear probe (all labels, 3x3 pooling) {c['probe']:.2f}% mean of "
          f"{c['probe_seeds']} probe seeds, dense round 0 {c['dense']:.2f}%; "
          f"{100 * c['remaining']:.1f}% of the conv weights remain")
EOF
)
  if [ "$round" = "-" ] || [ -z "$round" ]; then
    echo "$(stamp) package: no ticket round at <= 15% of the weights is within a point of" \
         "dense on 3 probe seeds (yet): nothing packaged ($chosen)"
    return 0
  fi
  local before=${#FAILED[@]}
  job "package $dir round $round" "$PY" training/package.py --model=gim-fmnist-resnet-ticket \
    --ticket_dir="$dir" --round="$round" --note="$note"
  job "ticket export sizes and latencies" "$PY" benchmarks/ticket_export.py \
    --ticket_dir="$dir" --round="$round" --out=docs/ticket_export_gim60k.md
  job "ticket SavedModel" "$PY" -m gim_zoo export gim-fmnist-resnet-ticket \
    --format saved_model --out "$OUT/ticket-export/saved_model"
  [ ${#FAILED[@]} -eq "$before" ] && cp "$chosen" "$done"
}

main "$@"
exit $?
