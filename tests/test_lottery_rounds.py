"""The IMP driver: exact sparsity per round, resume at the right round, matched controls."""

import json

import numpy as np
import pytest

import gim_zoo
from gim_zoo import presets
from gim_zoo.data import load_fashion_mnist
from gim_zoo.exporting import TFLiteModel, export_tflite
from gim_zoo.lottery import load_ticket
from training.experiments.lottery_rounds import LotteryConfig, choose_round, run_imp
from training.experiments.packaging import package_ticket


def config(tmp_path, name, **kw):
    settings = dict(rounds=3, epochs=1, max_examples=600, verbose=0)
    return LotteryConfig(out_dir=str(tmp_path / name), **{**settings, **kw})


def expected_remaining(rounds):
    """LeNet-300-100 kernels: 784x300 and 300x100 at 20% per round, 100x10 at 10%."""
    alive = [784 * 300, 300 * 100, 100 * 10]
    rates = [0.2, 0.2, 0.1]
    out = []
    for _ in range(rounds):
        out.append(sum(alive) / (784 * 300 + 300 * 100 + 100 * 10))
        alive = [a - round(r * a) for a, r in zip(alive, rates)]
    return out


@pytest.mark.slow
def test_rounds_prune_exact_fractions_and_resume(tmp_path):
    rounds = run_imp(config(tmp_path, "ticket"))
    assert [r["remaining"] for r in rounds] == pytest.approx(expected_remaining(3), abs=1e-9)
    assert all(r["test_accuracy"] > 0.3 for r in rounds)
    run_dir = tmp_path / "ticket"
    first = (run_dir / "rounds" / "round00.json").stat().st_mtime_ns
    (run_dir / "rounds" / "round02.json").unlink()  # as if killed during round 2
    resumed = run_imp(config(tmp_path, "ticket", rounds=4))
    assert (run_dir / "rounds" / "round00.json").stat().st_mtime_ns == first  # not redone
    assert [r["remaining"] for r in resumed] == pytest.approx(expected_remaining(4), abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("control", ["random_prune", "random_reinit"])
def test_controls_use_the_tickets_sparsity(tmp_path, control):
    ticket = run_imp(config(tmp_path, "ticket"))
    rounds = run_imp(config(tmp_path, control, control=control,
                            ticket_dir=str(tmp_path / "ticket")))
    assert [r["remaining"] for r in rounds] == pytest.approx([r["remaining"] for r in ticket])


@pytest.mark.slow
def test_a_control_trains_only_its_rounds_from_the_tickets_rewind_point(tmp_path):
    from gim_zoo.lottery.masks import load_arrays

    run_imp(config(tmp_path, "ticket", rewind_step=3))
    control = config(tmp_path, "prune", control="random_prune", rewind_step=3,
                     ticket_dir=str(tmp_path / "ticket"), control_rounds="2")
    assert [r["round"] for r in run_imp(control)] == [2]
    rounds = tmp_path / "prune" / "rounds"
    assert sorted(p.name for p in rounds.glob("round*.json")) == ["round02.json"]
    ticket_round = json.loads((tmp_path / "ticket/rounds/round02.json").read_text())
    assert json.loads((rounds / "round02.json").read_text())["remaining"] == pytest.approx(
        ticket_round["remaining"])
    for mine, theirs in zip(load_arrays(tmp_path / "prune" / "rewind_point.npz"),
                            load_arrays(tmp_path / "ticket" / "rewind_point.npz")):
        np.testing.assert_array_equal(mine, theirs)  # not a rewind point of its own
    done = (rounds / "round02.json").stat().st_mtime_ns
    control.control_rounds = "1,2"  # more rounds later: the same run goes on
    assert [r["round"] for r in run_imp(control)] == [1, 2]
    assert (rounds / "round02.json").stat().st_mtime_ns == done  # not trained again


@pytest.mark.parametrize("kw, message", [
    (dict(control_rounds="2"), "is for a control run"),
    (dict(control="random_prune", control_rounds="2,x"), "comma-separated round numbers"),
    (dict(control="random_prune", control_rounds="1,3"), r"round\(s\) \[3\] outside 0..2"),
])
def test_bad_control_rounds_are_refused_before_anything_is_written(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        run_imp(config(tmp_path, "c", ticket_dir=str(tmp_path / "t"), **kw))
    assert not (tmp_path / "c").exists()


def test_a_lamp_run_prunes_its_trained_weights_by_lamp_score(tmp_path):
    from gim_zoo.lottery import PruningMasks, build_network
    from gim_zoo.lottery.masks import load_arrays
    from gim_zoo.lottery.tickets import masks_path, trained_weights_path

    run = config(tmp_path, "lamp", rounds=2, global_rate=0.9, global_score="lamp")
    run_imp(run)
    trained = build_network("lenet300")
    trained.load_weights(trained_weights_path(run.out_dir, 0))
    masks = PruningMasks(trained)
    expected = masks.magnitude_prune(global_rate=0.9, global_score="lamp")
    by_magnitude = masks.magnitude_prune(global_rate=0.9)
    written = load_arrays(masks_path(run.out_dir, 1))
    for mask, want, other in zip(written, expected.values(), by_magnitude.values()):
        np.testing.assert_array_equal(mask, want)
    assert any(np.any(m != o) for m, o in zip(written, by_magnitude.values()))


@pytest.mark.parametrize("kw, message", [
    (dict(global_score="lamp"), "--global_score=lamp ranks the weights of global pruning"),
    (dict(global_rate=0.2, global_score="magnitudes"), "--global_score must be one of"),
])
def test_bad_global_scores_are_refused_before_anything_is_written(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        run_imp(config(tmp_path, "c", **kw))
    assert not (tmp_path / "c").exists()


def test_control_without_ticket_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs --ticket_dir"):
        run_imp(config(tmp_path, "c", control="random_prune"))
    assert not (tmp_path / "c").exists()  # refused before anything was written


@pytest.fixture(scope="module")
def lenet_ticket(tmp_path_factory):
    path = tmp_path_factory.mktemp("imp") / "ticket"
    run_imp(LotteryConfig(out_dir=str(path), rounds=3, epochs=1, max_examples=600, verbose=0))
    return path


@pytest.mark.slow
def test_load_ticket_gives_the_trained_sparse_network(lenet_ticket):
    model, masks = load_ticket(lenet_ticket, 2)
    assert masks.remaining() == pytest.approx(expected_remaining(3)[2], abs=1e-9)
    for path, _, kernel in masks.kernels:
        pruned = masks.numpy()[path] == 0
        assert np.all(kernel.numpy()[pruned] == 0) and np.all(kernel.numpy()[~pruned] != 0)
    with pytest.raises(FileNotFoundError, match="round 3 has not finished"):
        load_ticket(lenet_ticket, 3)


@pytest.mark.slow
def test_sparse_tflite_is_smaller_and_agrees(lenet_ticket, tmp_path):
    model, _ = load_ticket(lenet_ticket, 2)  # 64% of the weights left
    images = load_fashion_mnist("test")[0][:64].astype("float32")
    dense = export_tflite(model, tmp_path / "dense.tflite")
    sparse = export_tflite(model, tmp_path / "sparse.tflite", sparse=True)
    assert sparse.stat().st_size < 0.97 * dense.stat().st_size
    np.testing.assert_allclose(TFLiteModel(sparse)(images), np.asarray(model(images)),
                               atol=1e-5)
    # XNNPACK refuses int8 weights in the sparse format; LiteRT's builtin kernels run them
    lite = TFLiteModel(export_tflite(model, tmp_path / "s8.tflite", quantize="int8",
                                     representative_images=images, sparse=True))
    assert np.mean(lite(images).argmax(-1) == np.asarray(model(images)).argmax(-1)) > 0.9


@pytest.fixture(scope="module")
def gim_ticket(tmp_path_factory):
    path = tmp_path_factory.mktemp("gim") / "gim-ticket"
    rounds = run_imp(LotteryConfig(
        out_dir=str(path), network="gim-fmnist-resnet", rounds=2, epochs=1, max_examples=64,
        batch_size=32, learning_rate=2e-4, conv_rate=0.25, eval_examples=200,
        probe_labels_per_class=5, probe_steps=50, verbose=0))
    return path, rounds


@pytest.mark.slow
def test_gim_encoder_ticket_under_infonce(gim_ticket):
    path, rounds = gim_ticket
    _, masks = load_ticket(path, 1)
    assert {kind for _, kind, _ in masks.kernels} == {"conv"}  # InfoNCE heads not pruned
    alive, total = 0, 0
    for _, _, kernel in masks.kernels:  # 25% of every conv kernel per round, rounded
        size = int(np.prod(kernel.shape))
        total += size
        alive += size - round(0.25 * size)
    assert rounds[1]["remaining"] == pytest.approx(alive / total, abs=1e-9)
    assert 0.1 < rounds[1]["test_accuracy"] <= 1  # a linear probe's top-1
    assert "final_test_infonce" in rounds[1] and rounds[1]["seconds"] > 0


@pytest.mark.slow
def test_packaged_gim_ticket_loads_sparse(gim_ticket, tmp_path, monkeypatch):
    path, rounds = gim_ticket
    monkeypatch.setattr(presets, "BUNDLED_DIR", tmp_path / "pretrained")
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "pretrained" / "manifest.json")
    monkeypatch.delenv(presets.LOCAL_DIR_ENV, raising=False)
    name = "gim-fmnist-resnet-ticket"
    package_ticket(name, path, round_index=1, cards_dir=tmp_path / "cards")
    encoder = gim_zoo.load(name)  # sha256-checked against the manifest just written
    _, masks = load_ticket(path, 1)
    for (_, _, kernel), mask in zip(masks.kernels, masks.numpy().values()):
        loaded = {w.path: w for w in encoder.weights}[kernel.path.removeprefix("gim/")]
        assert np.all(loaded.numpy()[mask == 0] == 0)
    metrics = json.loads((tmp_path / "pretrained" / name / "metrics.json").read_text())
    assert metrics["ticket"]["weights_remaining"] == pytest.approx(rounds[1]["remaining"])
    assert metrics["linear_probe"]["5"]["test_accuracy"] == rounds[1]["test_accuracy"]
    card = (tmp_path / "cards" / f"{name}.md").read_text()
    assert f"{100 * rounds[1]['remaining']:.1f}% of the prunable weights remain" in card
    rule = metrics["ticket"]["pruning"]  # the GIM encoder has conv kernels only
    assert rule.startswith("layerwise: ") and "conv kernel" in rule and "dense" not in rule
    assert metrics["ticket"]["rewinding"] == "survivors rewound to their initial values"
    assert f"round 1 ({rule}; survivors rewound to their initial values): " in card
    with pytest.raises(ValueError, match="pruned 'gim-fmnist-resnet'; "
                                         "supervised-fmnist-resnet-ticket is a ticket of"):
        package_ticket("supervised-fmnist-resnet-ticket", path)


def test_the_pruning_rule_in_words():
    from training.experiments.lottery_rounds import pruning_rule

    assert pruning_rule(LotteryConfig(global_rate=0.3, conv_rate=0.3), {"conv"}) == (
        "global: 30% of all surviving weights per round, pooled")
    assert pruning_rule(LotteryConfig(global_rate=0.2, global_score="lamp"), {"conv"}) == (
        "global: 20% of all surviving weights per round, pooled by LAMP score")
    assert pruning_rule(LotteryConfig(conv_rate=0.25), {"conv", "output"}) == (
        "layerwise: 25% of each conv kernel's surviving weights, 10% of each output "
        "kernel's surviving weights per round")


def test_the_rewinding_rule_in_words():
    from training.experiments.lottery_rounds import rewinding_rule

    assert rewinding_rule(LotteryConfig()) == "survivors rewound to their initial values"
    assert rewinding_rule(LotteryConfig(rewind_step=100)) == (
        "survivors rewound to their values after step 100 of round 0 (late rewinding)")


def test_choose_round_is_the_sparsest_within_a_point():
    rounds = [{"round": 0, "remaining": 1.0, "test_accuracy": 0.80},
              {"round": 1, "remaining": 0.8, "test_accuracy": 0.795},
              {"round": 2, "remaining": 0.64, "test_accuracy": 0.785},
              {"round": 3, "remaining": 0.5, "test_accuracy": 0.791}]
    assert choose_round(rounds) == 3
    assert choose_round(rounds[:3]) == 1


@pytest.mark.slow
def test_probe_a_ticket_round_with_several_probe_seeds(gim_ticket):
    from training.experiments.image_probes import ProbeConfig, probe

    path, _ = gim_ticket
    config = ProbeConfig(ticket_dir=str(path), round=1, labels_per_class="5", seeds="0,1",
                         steps=20, verbose=0)
    results = probe(config)
    assert sorted(r["seed"] for r in results) == [0, 1]
    assert all(r["round"] == 1 and r["source"] == str(path) for r in results)
    assert all(0 <= r["test_accuracy"] <= 1 for r in results)
    assert len(list((path / "probes" / "round01").glob("*.json"))) == 2
    assert all(r.get("reused") for r in probe(config))  # same weights and settings: kept


def test_probing_a_ticket_refuses_bad_rounds_and_networks(tmp_path):
    from training.experiments.image_probes import ProbeConfig, probe

    run = tmp_path / "ticket"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"network": "gim-fmnist-resnet", "seed": 0}))
    with pytest.raises(ValueError, match="--round must name a finished round .*got 0"):
        probe(ProbeConfig(ticket_dir=str(run), round=0))
    with pytest.raises(ValueError, match="one of --ticket_dir, --run_dir"):
        probe(ProbeConfig(ticket_dir=str(run), run_dir="runs/x", round=0))
    (run / "config.json").write_text(json.dumps({"network": "lenet300", "seed": 0}))
    with pytest.raises(ValueError, match="pruned 'lenet300'"):
        probe(ProbeConfig(ticket_dir=str(run), round=0))


def test_a_packaged_ticket_names_the_experiment_that_made_it():
    from gim_zoo import registry
    from training.experiments.packaging import ticket_command

    spec = registry.get("gim-fmnist-resnet-ticket")
    assert ticket_command(spec, "runs/lth/gim60k-ticket-seed1", 1, 7) == (
        "SEED=1 EXPERIMENTS=gim60k bash training/lth_results.sh && python training/package.py "
        "--model=gim-fmnist-resnet-ticket --ticket_dir=runs/lth/gim60k-ticket-seed1 --round=7")
    assert ticket_command(spec, "/tmp/elsewhere", 0) == spec.training_command(0)


def lth_results_commands(parts, experiment="gim60k", **env):
    """What training/lth_results.sh would run for one experiment with PARTS=parts (its
    Python replaced by `echo`)."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "training" / "lth_results.sh"
    env = {**os.environ, "PYTHON": "echo", "EXPERIMENTS": experiment, "SEED": "1",
           "PARTS": parts, **env}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_lth_results_limits_only_the_controls_to_control_rounds():
    rc, lines, _ = lth_results_commands("ticket controls", CONTROL_ROUNDS="6,7")
    assert rc == 0 and "--control_rounds" not in lines[0]
    assert all(line.split()[-1] == "--control_rounds=6,7" for line in lines[1:3])
    assert "--control_rounds" not in " ".join(lth_results_commands("controls")[1])


def test_seeds_schedule_runs_controls_at_the_probed_pruned_rounds(tmp_path):
    """seeds_results.sh's ticket-controls: each seed's controls at the ticket's rounds at
    <= 15% of the weights (not round 0, not the denser rounds); none before such a round."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "training").mkdir()
    for name in ("seeds_results.sh", "lth_results.sh"):
        shutil.copy(root / "training" / name, tmp_path / "training" / name)
    for r, remaining in enumerate([1.0, 0.3, 0.15, 0.1]):
        (tmp_path / "runs/lth/gim60k-ticket-seed0/rounds").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"runs/lth/gim60k-ticket-seed0/rounds/round{r:02d}.json").write_text(
            json.dumps({"round": r, "remaining": remaining}))
    python = tmp_path / "python"  # runs the schedule's inline Python, echoes its jobs
    python.write_text(f'#!/bin/sh\n[ "$1" = - ] && exec {sys.executable} "$@"\necho "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "STEPS": "ticket-controls",
           "TICKET_EXPERIMENTS": "gim60k", "TICKET_SEEDS": "0 1"}
    done = subprocess.run(["bash", "training/seeds_results.sh"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    controls = [line for line in done.stdout.splitlines() if "--control=" in line]
    assert len(controls) == 2 and all("--control_rounds=2,3" in line for line in controls)
    assert "gim60k controls seed 1: no ticket round at <= 15% of the weights yet" in done.stdout


def test_lth_results_runs_the_ticket_apart_from_its_controls():
    """seeds_results.sh probes a ticket before its controls run: PARTS splits an experiment."""
    rc, lines, _ = lth_results_commands("ticket")
    assert rc == 0 and len(lines) == 1 and "--control" not in lines[0]
    assert "--out_dir=runs/lth/gim60k-ticket-seed1" in lines[0]
    rc, lines, _ = lth_results_commands("controls plot")
    assert rc == 0 and [line.split("--control=")[1].split()[0] for line in lines[:2]] == [
        "random_reinit", "random_prune"]
    assert all("--ticket_dir=runs/lth/gim60k-ticket-seed1" in line for line in lines[:2])
    assert lines[2].startswith("training/report.py") and "random pruning=" in lines[2]
    rc, lines, _ = lth_results_commands("ticket controls plot")
    assert rc == 0 and len(lines) == 4


def test_gim60kglobal_prunes_globally_at_gim60ks_sparsities():
    """Same rounds, rate and training as gim60k; only the pooling of the pruning differs."""
    rc, lines, _ = lth_results_commands("ticket controls", "gim60kglobal")
    layerwise = lth_results_commands("ticket", "gim60k")[1][0].split()
    assert rc == 0 and len(lines) == 3
    flags = lines[0].split()
    assert "--global_rate=0.3" in flags and "--conv_rate=0.3" in layerwise
    assert set(layerwise) - set(flags) == {"--conv_rate=0.3",
                                           "--out_dir=runs/lth/gim60k-ticket-seed1"}
    assert "--out_dir=runs/lth/gim60kglobal-ticket-seed1" in flags
    assert all("--ticket_dir=runs/lth/gim60kglobal-ticket-seed1" in line for line in lines[1:])


def test_gim60kgloballate_rewinds_late_at_a_gentler_global_rate():
    rc, lines, _ = lth_results_commands("ticket", "gim60kgloballate")
    flags = lines[0].split()
    assert rc == 0 and {"--global_rate=0.2", "--rewind_step=100", "--rounds=12"} <= set(flags)


def test_gim60kglobal2ep_is_gim60kglobal_with_rounds_of_two_epochs():
    flags = set(lth_results_commands("ticket", "gim60kglobal2ep")[1][0].split())
    one_epoch = set(lth_results_commands("ticket", "gim60kglobal")[1][0].split())
    assert flags - one_epoch == {"--epochs=2", "--rounds=8",
                                 "--out_dir=runs/lth/gim60kglobal2ep-ticket-seed1"}


def test_gim60klamp_is_gim60kglobal_ranked_by_lamp_scores():
    flags = set(lth_results_commands("ticket", "gim60klamp")[1][0].split())
    magnitude = set(lth_results_commands("ticket", "gim60kglobal")[1][0].split())
    assert flags - magnitude == {"--global_score=lamp", "--rounds=8",
                                 "--out_dir=runs/lth/gim60klamp-ticket-seed1"}


def test_lth_results_refuses_an_unknown_part():
    rc, lines, err = lth_results_commands("ticket probes")
    assert rc == 2 and not lines
    assert "unknown part probes in PARTS (ticket, controls, plot)" in err
