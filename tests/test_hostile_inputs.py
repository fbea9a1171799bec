"""Issue 31: numeric arguments are checked where they enter (one-line errors naming the
argument and the allowed range, before any work), and callbacks refuse layers, masks and
variables of a model other than the one being fit."""

import contextlib
import math
import signal

import keras
import numpy as np
import pytest

from gim_zoo.validation import check_int, check_number, check_rate


@contextlib.contextmanager
def within(seconds):
    """Fail (instead of hanging the suite) if the block runs longer than `seconds`: the
    bad inputs below used to make fits run forever."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the argument was not refused")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mlp(name="model"):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, name="head")], name=name)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, n)


# --- the shared checks --------------------------------------------------------------------

def test_checks_name_the_argument_and_the_range():
    assert check_int("steps", 3, low=1) == 3
    with pytest.raises(ValueError, match=r"^steps must be an integer >= 1, got 0$"):
        check_int("steps", 0, low=1)
    with pytest.raises(ValueError, match=r"--seed must be an integer >= 0, got 1.5"):
        check_int("--seed", 1.5, low=0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got nan$"):
        check_number("lr", math.nan, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"rate must be a finite number >= 0 and < 1 .*got 1.0"):
        check_rate("rate", 1.0)
    with pytest.raises(ValueError, match="got 'x'"):
        check_number("lr", "x")


# --- bad case 3: steps <= 0 hung until killed --------------------------------------------

@pytest.mark.parametrize("steps", [0, -5])
def test_fit_softmax_refuses_steps_below_one_instead_of_hanging(steps):
    from gim_zoo.models.probe import fit_softmax

    x, y = data()
    with within(60), pytest.raises(ValueError, match=f"steps must be an integer >= 1, got {steps}"):
        fit_softmax(x, y, num_classes=3, steps=steps)


def test_demo_refuses_steps_below_one_before_any_work(capsys):
    from gim_zoo import cli

    with within(60), pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--steps", "-5"])
    assert str(exit_.value) == "error: --steps must be an integer >= 1, got -5"
    with within(60), pytest.raises(SystemExit) as exit_:
        cli.main(["export", "gim-fmnist-resnet", "--out", "x.tflite", "--pool_to", "-1"])
    assert "--pool_to must be an integer >= 0" in str(exit_.value)


def test_label_budgets_and_train_flags_are_checked():
    from gim_zoo.models.probe import balanced_subset
    from training.experiments.pretraining import TrainConfig

    with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
        balanced_subset(np.arange(20) % 2, -3)
    with pytest.raises(ValueError, match="--verbose must be an integer >= 0 and <= 2"):
        TrainConfig(out_dir="x", verbose=7).resolved()


def test_run_demo_refuses_steps_below_one():
    from gim_zoo.demo import run_demo

    with within(60), pytest.raises(ValueError, match="steps must be an integer >= 1"):
        run_demo(steps=0, log=lambda m: None)


def test_probe_script_config_refuses_steps_below_one_before_loading(tmp_path):
    from training.experiments.image_probes import ProbeConfig, probe

    config = ProbeConfig(random_init=True, model="gim-fmnist-resnet", steps=0,
                         out_dir=str(tmp_path / "probes"))
    with within(60), pytest.raises(ValueError, match="--steps must be an integer >= 1, got 0"):
        probe(config)
    assert not (tmp_path / "probes").exists()


@pytest.mark.parametrize("module, config", [
    ("training.experiments.lottery_rounds", dict(cls="LotteryConfig", field="probe_steps", value=0)),
    ("training.experiments.lottery_rounds", dict(cls="LotteryConfig", field="conv_rate", value=1.5)),
    ("training.experiments.lottery_rounds", dict(cls="LotteryConfig", field="global_rate", value=-0.5)),
    ("training.experiments.rifle_finetuning", dict(cls="FinetuneConfig", field="epochs", value=0)),
    ("training.experiments.rifle_finetuning", dict(cls="FinetuneConfig", field="learning_rate",
                                          value=math.nan)),
    ("training.experiments.teleport_comparison", dict(cls="TeleportConfig", field="teleport_steps",
                                             value=-3)),
    ("training.experiments.teleport_comparison", dict(cls="TeleportConfig", field="teleport_lr",
                                             value=math.nan)),
    ("training.experiments.teleport_comparison", dict(cls="TeleportConfig", field="at_steps",
                                             value="0,x")),
    ("training.experiments.speech_probes", dict(cls="AudioProbeConfig", field="steps", value=0)),
])
def test_script_configs_refuse_out_of_range_numbers_before_writing(tmp_path, module, config):
    import importlib

    jobs = {"LotteryConfig": "run_imp", "FinetuneConfig": "finetune",
            "TeleportConfig": "run_teleport_experiment", "AudioProbeConfig": "probe_audio"}
    mod = importlib.import_module(module)
    cls = getattr(mod, config["cls"])
    bad = cls(out_dir=str(tmp_path / "run"), **{config["field"]: config["value"]})
    with within(60), pytest.raises(ValueError, match=f"--{config['field']}"):
        getattr(mod, jobs[config["cls"]])(bad)
    assert not (tmp_path / "run").exists()


# --- bad case 6: negative or > 1 pruning rates pruned silently ----------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"rates": {"dense": -0.2, "output": 0.1, "conv": 0.15}}, r"rates\['dense'\] must be"),
    ({"rates": {"dense": 1.5, "output": 0.1, "conv": 0.15}}, r"rates\['dense'\] must be"),
    ({"global_rate": -0.5}, "global_rate must be a finite number >= 0 and < 1"),
    ({"global_rate": 2.0}, "global_rate must be"),
    ({"rates": {"dense": 0.2}}, r"no rate for \['output'\]"),
    ({"rates": {"Dense": 0.2, "output": 0.1}}, r"unknown layer kinds \['Dense'\]"),
    ({"rewind_step": -1}, "rewind_step must be an integer >= 0"),
    ({"global_rate": 0.5, "global_score": "LAMP"}, "global_score must be one of"),
])
def test_prune_with_rewind_refuses_bad_rates_before_pruning(kwargs, message):
    from gim_zoo.lottery import PruneWithRewind, PruningMasks

    model = mlp()
    masks = PruningMasks(model)
    before = masks.numpy()
    with pytest.raises(ValueError, match=message):
        PruneWithRewind(masks, prune_at_end=True, **kwargs)
    if "rewind_step" not in kwargs:  # the masks' own pruning checks them too
        with pytest.raises(ValueError, match=message):
            masks.magnitude_prune(kwargs.get("rates"), kwargs.get("global_rate"),
                                  kwargs.get("global_score", "magnitude"))
    for path, mask in masks.numpy().items():
        np.testing.assert_array_equal(mask, before[path])


def test_pruning_rates_in_range_still_prune():
    from gim_zoo.lottery import PruningMasks

    masks = PruningMasks(mlp())
    masks.assign(masks.magnitude_prune(global_rate=0.5))
    assert masks.remaining() == pytest.approx(0.5, abs=0.01)


# --- bad case 7 and its kind: callbacks given another model's layers or masks -------------

def test_rifle_refuses_a_layer_of_another_model():
    from gim_zoo.callbacks import RIFLE

    fitted, other = mlp("fitted"), mlp("other")
    x, y = data()
    others_head = [np.array(v) for v in other.get_layer("head").get_weights()]
    with pytest.raises(ValueError, match="'head' is not a layer of 'fitted'"):
        fitted.fit(x, y, epochs=2, verbose=0,
                   callbacks=[RIFLE(other.get_layer("head"), epochs=2, times=1,
                                    quiet_epochs=0, verbose=0)])
    for now, before in zip(other.get_layer("head").get_weights(), others_head):
        np.testing.assert_array_equal(now, before)  # the other model's head untouched
    fitted.fit(x, y, epochs=2, verbose=0,  # its own layer object is fine
               callbacks=[RIFLE(fitted.get_layer("head"), epochs=2, times=1,
                                quiet_epochs=0, verbose=0)])


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"times": -1}, "times must be an integer >= 0"),
    ({"quiet_epochs": -2}, "quiet_epochs must be an integer >= 0"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_rifle_refuses_bad_numbers(kwargs, message):
    from gim_zoo.callbacks import RIFLE

    with pytest.raises(ValueError, match=message):
        RIFLE("head", **{"epochs": 10, "times": 1, **kwargs})


def test_prune_with_rewind_refuses_masks_of_another_model():
    from gim_zoo.lottery import PruneWithRewind, PruningMasks

    fitted, other = mlp("fitted"), mlp("other")
    x, y = data()
    masks = PruningMasks(other)
    others = [np.array(w) for w in other.get_weights()]
    with pytest.raises(ValueError, match="masks belong to model 'other', not to 'fitted'"):
        fitted.fit(x, y, epochs=1, verbose=0,
                   callbacks=[PruneWithRewind(masks, prune_at_end=True)])
    for now, before in zip(other.get_weights(), others):
        np.testing.assert_array_equal(now, before)


def test_resumable_backup_refuses_variables_of_another_model(tmp_path):
    from gim_zoo.callbacks import ResumableBackup

    fitted, other = mlp("fitted"), mlp("other")
    x, y = data()
    backup = ResumableBackup(tmp_path / "backup", variables=other.trainable_variables)
    with pytest.raises(ValueError, match="not all variables of 'fitted'"):
        fitted.fit(x, y, epochs=1, verbose=0, callbacks=[backup])
    assert not (tmp_path / "backup" / "latest.weights.h5").exists()


# --- teleportation's numbers: steps=-3 crashed, lr=nan was reported as applied -------------

@pytest.mark.parametrize("kwargs, message", [
    ({"steps": -3}, "steps must be an integer >= 1"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"lr": math.nan}, "lr must be a finite number > 0"),
    ({"lr": -0.1}, "lr must be a finite number > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"at_steps": (0, -4)}, "at_steps must be an integer >= 0"),
    ({"loss_tolerance": math.inf}, "loss_tolerance must be a finite number"),
    ({"max_condition": 0.5}, "max_condition must be a finite number >= 1"),
])
def test_teleport_refuses_bad_numbers(kwargs, message):
    from gim_zoo.teleport import SymmetryTeleport

    with pytest.raises(ValueError, match=message):
        SymmetryTeleport(data(), **kwargs)


def test_teleporter_refuses_a_nan_step_instead_of_reporting_a_teleport():
    from gim_zoo.teleport import Teleporter

    model = mlp()
    x, y = data()
    weights = [np.array(w) for w in model.get_weights()]
    teleporter = Teleporter(model)
    for steps, lr, message in ((10, math.nan, "lr must be"), (-3, 0.1, "steps must be")):
        with pytest.raises(ValueError, match=message):
            teleporter.teleport((x, y), steps=steps, lr=lr)
    for now, before in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(now, before)
