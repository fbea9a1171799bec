"""Paired-seed reports (training/experiments/paired.py) from tiny fake run directories."""

import json
import math
import subprocess
import sys

import pytest

from training.experiments import paired


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_t_interval_matches_the_textbook_value_and_needs_two_seeds():
    mean, low, high = paired.t_interval([1.0, 2.0, 3.0])
    # sd 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3)
    assert mean == 2.0 and high - mean == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert low == pytest.approx(2 * mean - high)
    assert math.isnan(paired.t_interval([1.0])[1]) and math.isnan(paired.t_interval([])[0])


def test_paired_differences_use_only_seeds_both_sides_have():
    p = paired.paired({0: 80.0, 1: 81.0, 2: 82.0, 3: None, 5: 1.0},
                      {0: 81.0, 1: 81.5, 3: 90.0, 4: 1.0, 5: math.nan})
    assert p["seeds"] == [0, 1] and p["diffs"] == [1.0, 0.5] and p["mean"] == 0.75


def fake_finetune(root, target, variant, seed, accuracy, labels=600):
    examples = {"fashion_mnist": 10 * labels, "digits": 898}[target]
    write(root / target / f"{variant}-seed{seed}" / "metrics.json",
          {"target": target, "variant": variant, "seed": seed, "test_accuracy": accuracy,
           "labels_per_class": labels, "train_examples": examples})


def rifle_runs(tmp_path):
    root = tmp_path / "rifle"
    for seed, (plain, rifle) in enumerate([(0.80, 0.81), (0.79, 0.805), (0.81, 0.82)]):
        fake_finetune(root, "fashion_mnist", "plain", seed, plain)
        fake_finetune(root, "fashion_mnist", "rifle3", seed, rifle)
        fake_finetune(root, "fashion_mnist", "scratch", seed, plain - 0.05)
        fake_finetune(root, "digits", "plain", seed, 0.95)
        fake_finetune(root, "digits", "rifle1", seed, 0.95 - 0.01 * seed)
    (root / "digits" / "rifle1-seed9").mkdir()  # unfinished: no metrics.json
    return root


def test_rifle_table_pairs_each_variant_with_plain_per_target(tmp_path):
    results = paired.rifle_results(sorted((rifle_runs(tmp_path)).glob("*/*")))
    assert list(results) == ["digits (898 labels)", "fashion_mnist 10% (6000 labels)"]
    fmnist = results["fashion_mnist 10% (6000 labels)"]
    assert list(fmnist) == ["plain", "rifle3", "scratch"]
    table = paired.rifle_table(results)
    # rifle3 - plain: +1.0, +1.5, +1.0 points
    assert "| rifle3 | 0,1,2 | 81.17 | +1.00, +1.50, +1.00 | +1.17 | +0.45 to +1.88 |" in table
    assert "| scratch | 0,1,2 | 75.00 | -5.00, -5.00, -5.00 | -5.00 |" in table
    assert "| rifle1 | 0,1,2 | 94.00 | +0.00, -1.00, -2.00 | -1.00 | -3.48 to +1.48 |" in table
    headline = paired.rifle_headline(results)
    assert "fashion_mnist 10% (6000 labels): best rifle3 +1.17 points" in headline
    assert paired.plot_rifle(results, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def fake_teleport(root, model, optimizer, arm, seed, **metrics):
    write(root / f"{model}-{optimizer}-{arm}-seed{seed}" / "metrics.json",
          {"model": model, "optimizer": optimizer, "arm": arm, "seed": seed,
           "teleport": arm != "plain", "final_subset_loss": 0.3, **metrics})


def test_teleport_table_pairs_arms_with_no_teleport(tmp_path):
    root = tmp_path / "teleport"
    for seed in range(3):
        fake_teleport(root, "mlp", "sgd", "plain", seed, test_accuracy=0.80,
                      final_sharpness=0.002, final_adaptive_sharpness=0.01,
                      steps_to_target=500)
        fake_teleport(root, "mlp", "sgd", "teleport-sharpness_min", seed,
                      test_accuracy=0.80 + 0.005 * (seed + 1), final_sharpness=0.001,
                      final_adaptive_sharpness=0.01 - 0.001 * seed, steps_to_target=500)
        fake_teleport(root, "mlp", "adam", "plain", seed, steps_to_target=200)
        fake_teleport(root, "mlp", "adam", "teleport", seed,
                      steps_to_target=None if seed == 2 else 150)
    results = paired.teleport_pairs(sorted(root.glob("*")))
    table = paired.teleport_pairs_table(results)
    assert ("| mlp |  | sgd | teleport-sharpness_min | test top-1 (points) | 3 | +0.50, +1.00, "
            "+1.50 | +1.00 | -0.24 to +2.24 |") in table
    assert "| mlp |  | sgd | teleport-sharpness_min | final sharpness | 3 |" in table
    assert ("| mlp |  | sgd | teleport-sharpness_min | final adaptive sharpness | 3 | +0, -0.001, "
            "-0.002 | -0.001 |") in table
    # the seed that never reached the target is left out of the steps comparison
    assert "| mlp |  | adam | teleport | steps to target loss | 2 | -50, -50 | -50 |" in table
    assert "| mlp |  | adam | teleport | 3 | - | - | - | 150 (2/3) | 0.3000 |" in table
    headline = paired.teleport_headline(results)
    assert "mlp sgd teleport-sharpness_min: test top-1 (points) +1.00" in headline
    assert "mlp adam teleport: steps to target loss -50" in headline
    assert paired.plot_teleport_pairs(results, tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_teleport_arms_pair_only_with_the_plain_run_of_their_regime(tmp_path):
    for regime, epochs, accuracy in (("short", 5, 0.70), ("long", 20, 0.80)):
        for arm, bonus in (("plain", 0.0), ("teleport", 0.01)):
            fake_teleport(tmp_path / regime, "mlp", "sgd", arm, 0,
                          test_accuracy=accuracy + bonus)
            write(tmp_path / regime / f"mlp-sgd-{arm}-seed0" / "config.json",
                  {"model": "mlp", "optimizer": "sgd", "epochs": epochs,
                   "train_examples": 10000, "teleport": arm != "plain", "at_steps": "0",
                   "out_dir": f"{regime}/{arm}", "seed": 0})
    results = paired.teleport_pairs(sorted(tmp_path.glob("*/*")))
    assert sorted(results) == [("mlp", "sgd", "10000 images x 20 epochs"),
                               ("mlp", "sgd", "10000 images x 5 epochs")]
    table = paired.teleport_pairs_table(results)
    for regime in ("20 epochs", "5 epochs"):  # +1 point each, not 80 vs 70
        assert (f"| mlp | 10000 images x {regime} | sgd | teleport | test top-1 (points) | 1 "
                "| +1.00 |") in table


def fake_ticket_run(path, seed, accuracies, remaining, probes=None):
    write(path / "config.json", {"network": "gim-fmnist-resnet", "seed": seed})
    for r, (acc, rem) in enumerate(zip(accuracies, remaining)):
        write(path / "rounds" / f"round{r:02d}.json",
              {"round": r, "test_accuracy": acc, "remaining": rem})
    for r, accs in (probes or {}).items():
        for probe_seed, acc in enumerate(accs):
            write(path / "probes" / f"round{r:02d}" / f"labelsall-module3-pool3-seed"
                  f"{probe_seed}.json", {"round": r, "seed": probe_seed, "test_accuracy": acc})


def ticket_runs(tmp_path):
    remaining = [1.0, 0.3, 0.12, 0.08]
    for seed in (0, 1):
        fake_ticket_run(tmp_path / f"t-ticket-seed{seed}", seed,
                        [0.80, 0.81, 0.80, 0.785 - 0.01 * seed], remaining,
                        probes={0: [0.88, 0.88, 0.89], 2: [0.875, 0.88, 0.88],
                                3: [0.86, 0.86, 0.87]})
        fake_ticket_run(tmp_path / f"t-reinit-seed{seed}", seed,
                        [0.79, 0.78, 0.76, 0.74], remaining)
    return {"ticket": sorted(map(str, tmp_path.glob("t-ticket-seed*"))),
            "random re-init": sorted(map(str, tmp_path.glob("t-reinit-seed*")))}


def test_ticket_table_pairs_rounds_with_dense_and_controls(tmp_path):
    runs = ticket_runs(tmp_path)
    results = paired.ticket_results(runs)
    probes = paired.ticket_probes(runs["ticket"])
    assert probes[0][2] == pytest.approx([87.5, 88.0, 88.0])
    table = paired.ticket_pairs_table(results, probes)
    assert "| 3 | 8.0% | 78.00 | minus dense (round 0) | -1.50, -2.50 | -2.00 |" in table
    assert "| | | | minus random re-init | +4.50, +3.50 | +4.00 |" in table
    assert "| 2 | 12.0% | 0 | 3 | 87.83 | -0.50 |" in table
    headline = paired.ticket_headline(results, probes)
    assert headline.startswith("at 8.0% of the weights (round 3, 2 seeds) the ticket scores "
                               "78.00%, -2.00 points vs dense, +4.00 points vs random re-init")
    assert paired.plot_ticket_pairs(results, tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_a_control_of_some_rounds_pairs_at_those_rounds_only(tmp_path):
    runs = ticket_runs(tmp_path)
    for seed in (0, 1):  # random pruning trained round 3 only (lottery.py --control_rounds)
        write(tmp_path / f"t-prune-seed{seed}" / "config.json",
              {"network": "gim-fmnist-resnet", "seed": seed, "control": "random_prune"})
        write(tmp_path / f"t-prune-seed{seed}" / "rounds" / "round03.json",
              {"round": 3, "test_accuracy": 0.70, "remaining": 0.08})
    runs["random pruning"] = sorted(map(str, tmp_path.glob("t-prune-seed*")))
    results = paired.ticket_results(runs)
    assert sorted(results["random pruning"][1]) == [3]
    table = paired.ticket_pairs_table(results).splitlines()
    rows = [line for line in table if "minus random pruning" in line]
    assert rows[:3] == ["| | | | minus random pruning | - | - | - |"] * 3  # rounds 0-2
    assert rows[3] == "| | | | minus random pruning | +8.50, +7.50 | +8.00 | +1.65 to +14.35 |"
    assert paired.ticket_headline(results).endswith("+8.00 points vs random pruning")
    assert paired.plot_ticket_pairs(results, tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_choose_ticket_is_the_sparsest_round_within_a_point_on_three_probe_seeds(tmp_path):
    runs = ticket_runs(tmp_path)
    chosen = paired.choose_ticket(runs["ticket"])
    # round 3 (8%) is 1.67 points below dense: round 2 (12%) is the sparsest within a point
    assert chosen["round"] == 2 and chosen["remaining"] == 0.12
    assert chosen["probe_seeds"] == 3 and chosen["dense"] == pytest.approx(88 + 1 / 3)
    assert paired.choose_ticket(runs["ticket"], max_remaining=0.1) is None
    assert paired.choose_ticket(runs["ticket"], min_probe_seeds=4) is None


@pytest.mark.slow
def test_report_command_writes_the_paired_tables_and_plots(tmp_path):
    from tests.training_procs import ROOT, env

    root = rifle_runs(tmp_path)
    ticket_runs(tmp_path / "lth")
    out = tmp_path / "docs"
    out.mkdir()

    def report(*tickets):
        return subprocess.run(
            [sys.executable, str(ROOT / "training" / "report.py"),
             f"--paired_rifle={root}/*/*", f"--paired_out={out}",
             f"--paired_tickets=ticket={tmp_path}/lth/t-ticket-seed*,"
             f"random re-init={tmp_path}/lth/t-reinit-seed*", *tickets],
            capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600)

    result = report("--paired_tickets_name=tickets_global")
    assert result.returncode == 0, result.stderr[-2000:]
    # one tickets report per experiment, named by the flag
    assert "| 3 | 8.0% |" in (out / "tickets_global_paired.md").read_text()
    assert not (out / "tickets_paired.md").exists()
    text = (out / "rifle_paired.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("<!-- generated by `python training/report.py ")
    assert f"--paired_rifle={root}/*/*" in first
    assert "| rifle3 | 0,1,2 | 81.17 |" in text and "Headline: " in text
    assert (out / "rifle_paired.png").read_bytes()[:4] == b"\x89PNG"
    bad = report("--paired_tickets_name=../tickets")
    assert bad.returncode != 0
    assert "--paired_tickets_name is a file name stem" in bad.stderr, bad.stderr[-2000:]
