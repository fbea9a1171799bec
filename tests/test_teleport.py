"""Symmetry teleportation: exact invariance, the objective improves, and it runs in fit."""

import keras
import numpy as np
import pytest

from gim_zoo.teleport import SymmetryTeleport, Teleporter, rescalable_pairs


def to_numpy(v):
    return keras.ops.convert_to_numpy(v)


def mlp(activation="relu", width=16, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(width, activation=activation, name="d1"),
        keras.layers.Dense(width, name="d2"),
        keras.layers.LeakyReLU(name="act2"),
        keras.layers.Dense(3, name="out"),
    ])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def batch(n=12, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")


def relative_change(before, after):
    return abs(after - before) / abs(before)


def test_pairs_found_in_sequential_models_and_bottleneck_blocks():
    assert [(a.name, b.name) for a, b in rescalable_pairs(mlp())] == [("d1", "d2"), ("d2", "out")]
    from gim_zoo.models.resnet import PatchResNetEncoder

    encoder = PatchResNetEncoder(stem_width=8, widths=(4, 8), blocks=(1, 1), strides=(1, 2))
    names = [(a.name, b.name) for a, b in rescalable_pairs(encoder)]
    assert names == [("reduce", "spatial"), ("spatial", "expand")] * 2
    with pytest.raises(ValueError, match="no layer pairs"):
        Teleporter(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_rescaling_keeps_loss_and_function_and_raises_the_gradient_norm():
    model = mlp()
    x, y = batch()
    other = np.random.default_rng(5).normal(size=(50, 8)).astype("float32")
    outputs_before = to_numpy(model(other))
    teleporter = Teleporter(model, group="rescale", objective="grad_norm")
    weights_before = [to_numpy(v) for v in model.trainable_variables]
    record = teleporter.teleport((x, y), steps=10, lr=0.3)
    assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
    assert record["after"] > 1.05 * record["before"]
    measured = float(to_numpy(teleporter.grad_norm([v.value for v in model.trainable_variables],
                                                   (x, y))))
    np.testing.assert_allclose(measured, record["after"], rtol=1e-4)
    np.testing.assert_allclose(to_numpy(model(other)), outputs_before, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(a, to_numpy(b))
               for a, b in zip(weights_before, model.trainable_variables))


def test_a_move_that_changes_the_loss_is_refused():
    model = mlp()
    x, y = batch()
    teleporter = Teleporter(model)
    teleporter.actions[0].apply = lambda values, t, context: values.update(
        {id(teleporter.actions[0].second.kernel):
         values[id(teleporter.actions[0].second.kernel)] * 2.0})  # not a symmetry
    before = [to_numpy(v) for v in model.trainable_variables]
    record = teleporter.teleport((x, y), steps=2)
    assert not record["applied"] and record["loss_after"] != record["loss_before"]
    assert all(np.array_equal(a, to_numpy(b)) for a, b in zip(before, model.trainable_variables))


def test_gl_action_exact_on_the_batch_within_its_condition():
    model = mlp(activation="leaky_relu", width=16)
    x, y = batch(n=15)  # batch < width: the largest exact case allowed
    record = Teleporter(model, group="gl", objective="grad_norm").teleport((x, y), steps=5,
                                                                          lr=0.05)
    assert record["applied"]
    assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
    assert record["after"] > record["before"] and record["condition"] <= 1e3
    for n in (16, 17):
        with pytest.raises(ValueError, match="smaller than its width 16"):
            Teleporter(mlp(activation="leaky_relu"), group="gl").teleport(batch(n=n), steps=1)


def test_sharpness_objectives_move_the_right_way_at_the_same_loss():
    x, y = batch()
    for objective in ("sharpness_min", "sharpness_max"):
        model = mlp()
        record = Teleporter(model, objective=objective, rho=0.1).teleport((x, y), steps=8,
                                                                         lr=0.3)
        assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
        if objective == "sharpness_min":
            assert record["after"] < record["before"]
        else:
            assert record["after"] > record["before"]


def test_callback_teleports_inside_fit_at_planned_steps_and_resets_slots():
    model = mlp()
    x, y = batch(n=64)
    teleport = SymmetryTeleport((x, y), at_steps=(0, 3), steps=4, lr=0.2, batch_size=16,
                                verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[teleport])
    assert [r["step"] for r in teleport.log] == [0, 3]
    assert all(r["after"] >= r["before"] for r in teleport.log)
    assert history.history["teleports"] == [2.0, 2.0]
    assert np.isfinite(history.history["loss"]).all()
    # a teleport now zeroes the slots of the teleported kernels (Adam moments)
    teleport.teleport_now()
    slots = {s.name: to_numpy(s) for s in model.optimizer.variables}
    name = model.get_layer("d1").kernel.path.replace("/", "_")
    assert not slots[f"{name}_momentum"].any() and not slots[f"{name}_velocity"].any()


def test_gim_module_teleported_under_its_own_infonce_loss():
    from gim_zoo.models.gim import GreedyInfoMax
    from gim_zoo.models.resnet import PatchResNetEncoder

    keras.utils.set_random_seed(0)
    encoder = PatchResNetEncoder(stem_width=8, widths=(4, 8), blocks=(1, 1), strides=(1, 2))
    model = GreedyInfoMax(encoder, prediction_steps=2, negatives=4, seed=0)
    images = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    grid_before = to_numpy(encoder(images))
    record = Teleporter(model).teleport((images, None), steps=6, lr=0.3)
    assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
    assert record["after"] > record["before"]
    np.testing.assert_allclose(to_numpy(encoder(images)), grid_before, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_experiment_runs_both_arms_from_the_same_start(tmp_path):
    from training.experiments import reports
    from training.experiments.teleport_comparison import TeleportConfig, run_teleport_experiment

    runs = {}
    for on in (True, False):
        config = TeleportConfig(teleport=on, train_examples=256, epochs=1, batch_size=64,
                                at_steps="0,2", eval_every=2, target_loss=5.0,
                                out_dir=str(tmp_path / f"run-{on}"), verbose=0)
        runs[on] = run_teleport_experiment(config)
    on, off = runs[True], runs[False]
    assert on["curve"][0] == off["curve"][0]  # same initial weights, loss on the same data
    assert [r["step"] for r in on["teleports"]] == [0, 2] and off["teleports"] == []
    assert all(abs(r["loss_after"] - r["loss_before"]) <= 1e-5 * r["loss_before"]
               for r in on["teleports"])
    assert on["steps_to_target"] == 0 and 0 <= on["test_accuracy"] <= 1
    assert [s for s, _ in on["curve"]] == [0, 2, 4]
    results = reports.teleport_results([tmp_path / "run-True", tmp_path / "run-False"])
    assert "| mlp | sgd | yes (slots reset) | 1 |" in reports.teleport_table(results)
    assert reports.plot_teleport(results, tmp_path / "t.png").stat().st_size > 1000


@pytest.mark.parametrize("bad, message", [
    ({"objective": "sharp"}, "objective must be one of"),
    ({"group": "so3"}, "group must be"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"teleport_batch": 200}, "teleport_batch < width"),
    ({"teleport_batch": 128}, "teleport_batch < width"),
    ({"model": "supervised-fmnist-resnet"}, "Fashion-MNIST gim/cpc"),
])
def test_experiment_refuses_bad_settings_before_writing_anything(tmp_path, bad, message):
    from training.experiments.teleport_comparison import TeleportConfig, run_teleport_experiment

    with pytest.raises(ValueError, match=message):
        run_teleport_experiment(TeleportConfig(out_dir=str(tmp_path / "run"), **bad))
    assert not (tmp_path / "run").exists()


def test_a_move_that_changes_the_loss_by_a_little_is_refused_too():
    model = mlp()
    x, y = batch()
    teleporter = Teleporter(model)
    out = model.get_layer("out").kernel
    teleporter.actions[0].apply = lambda values, t, context: values.update(
        {id(out): values[id(out)] * 1.0005})  # changes the loss by ~1e-4 of itself
    record = teleporter.teleport((x, y), steps=2)
    assert 1e-5 < relative_change(record["loss_before"], record["loss_after"]) < 1e-3
    assert not record["applied"]


def fmnist_like(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 28, 28, 1)).astype("float32")
    return x, rng.integers(0, 10, n).astype("int32")


def test_gl_teleport_of_a_784_32_32_10_mlp_refuses_batch_width_and_fit_stays_finite():
    """Issue 16.12: GL(n) teleports on 32 examples of a 784-32-32-10 leaky-ReLU MLP were
    allowed, kept the batch loss within 1e-3 and sent SGD (0.05, batch 32) to NaN."""
    from training.experiments.teleport_comparison import mlp as fmnist_mlp

    x, y = fmnist_like()

    def fit(teleport_batch):
        model = fmnist_mlp(width=32, seed=0)
        model.compile(keras.optimizers.SGD(0.05),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teleport = SymmetryTeleport((x, y), at_steps=(0,), group="gl", lr=0.1,
                                    batch_size=teleport_batch, verbose=0)
        keras.utils.set_random_seed(0)
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[teleport])
        return model, teleport.log, history.history["loss"]

    with pytest.raises(ValueError, match="smaller than its width 32"):
        fit(32)
    for teleport_batch in (31, 24):  # the largest batch allowed, and one that moves far
        model, [record], loss = fit(teleport_batch)
        if record["applied"]:
            assert record["condition"] <= 1e3
            assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
        else:  # refused outright: sigma(z) itself is too ill-conditioned to re-fit
            assert record["stopped"].startswith("the start: condition number")
        assert np.isfinite(loss).all() and loss[-1] < 4.0, (teleport_batch, loss)
        assert all(np.isfinite(to_numpy(v)).all() for v in model.weights)
    assert record["applied"] and record["after"] > 10 * record["before"]  # 24 moves


def test_gl_batch_not_smaller_than_the_width_is_refused_before_the_first_step():
    model = mlp(activation="leaky_relu", width=16)
    x, y = batch(n=64)
    teleport = SymmetryTeleport((x, y), at_steps=(3,), group="gl", batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="smaller than its width 16"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[teleport])
    assert int(to_numpy(model.optimizer.iterations)) == 0 and teleport.log == []


def test_at_steps_count_steps_of_this_fit_on_a_model_that_trained_before():
    model = mlp()
    x, y = batch(n=64)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 4 optimizer steps
    teleport = SymmetryTeleport((x, y), at_steps=(0, 2), steps=2, batch_size=16, verbose=0)
    for _ in range(2):  # a second fit teleports at its own steps 0 and 2 again
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[teleport])
    assert [r["step"] for r in teleport.log] == [0, 2, 0, 2]
    assert [r["optimizer_step"] for r in teleport.log] == [4, 6, 8, 10]


def test_gl_on_dense_layers_joined_by_separate_leaky_relu_layers():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, name="d1"),
        keras.layers.LeakyReLU(negative_slope=0.1, name="act1"),
        keras.layers.Dense(16, name="d2"),
        keras.layers.LeakyReLU(name="act2"),  # Keras' default slope, 0.3
        keras.layers.Dense(3, name="out"),
    ])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch()
    other = np.random.default_rng(5).normal(size=(50, 8)).astype("float32")
    teleporter = Teleporter(model, group="gl")
    assert [(a.first.name, a.second.name) for a in teleporter.actions] == [("d1", "d2"),
                                                                          ("d2", "out")]
    record = teleporter.teleport((x, y), steps=5, lr=0.05)
    assert record["applied"] and record["after"] > 1.05 * record["before"]
    assert relative_change(record["loss_before"], record["loss_after"]) <= 1e-5
    assert np.isfinite(to_numpy(model(other))).all()


# --- the paper's regimes: teleport schedules, the ConvNet, the final sharpness -----------
def test_teleport_schedule_takes_steps_and_ranges():
    from training.experiments.teleport_comparison import parse_schedule

    assert parse_schedule("0,50,100") == [0, 50, 100]
    assert parse_schedule("0:471:157") == [0, 157, 314]
    assert parse_schedule("300, 0:20:10,10") == [0, 10, 300]
    assert parse_schedule("") == []


@pytest.mark.parametrize("text, message", [
    ("0,fifty", "steps \\(50\\) or ranges"),
    ("0:100", "steps \\(50\\) or ranges"),
    ("0:100:0", "start < stop and step >= 1"),
    ("100:0:10", "start < stop and step >= 1"),
    ("-5", "count steps of the run from 0"),
])
def test_teleport_schedule_refuses_bad_text(text, message):
    from training.experiments.teleport_comparison import parse_schedule

    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def fitted_convnet(epochs):
    """The experiment's small ConvNet after a few SGD epochs on 64 random images, with them."""
    from training.experiments.teleport_comparison import convnet

    model = convnet(width=32, seed=0)
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model, x, y


def test_measured_sharpness_is_repeatable_grows_with_rho_and_leaves_the_weights():
    from training.experiments.teleport_comparison import measured_sharpness

    model, x, y = fitted_convnet(epochs=3)
    before = [np.array(w) for w in model.get_weights()]
    small = measured_sharpness(model, x, y, rho=0.05, directions=4, seed=1)
    assert measured_sharpness(model, x, y, rho=0.05, directions=4, seed=1) == small
    assert measured_sharpness(model, x, y, rho=0.5, directions=4, seed=1) > small
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_convnet_sharpness_arms_record_the_final_sharpness(tmp_path):
    from training.experiments.teleport_comparison import TeleportConfig, run_teleport_experiment

    runs = {}
    for arm in ("plain", "sharpness_min"):
        config = TeleportConfig(model="convnet", group="rescale", teleport=arm != "plain",
                                objective="sharpness_min", width=32, train_examples=256,
                                epochs=2, batch_size=64, at_steps="0:8:4", eval_every=4,
                                teleport_lr=0.1, sharpness_examples=128,
                                sharpness_directions=3, out_dir=str(tmp_path / arm), verbose=0)
        runs[arm] = run_teleport_experiment(config)
    on, off = runs["sharpness_min"], runs["plain"]
    assert on["arm"] == "teleport-sharpness_min" and off["arm"] == "plain"
    assert on["curve"][0] == off["curve"][0]
    assert [r["step"] for r in on["teleports"]] == [0, 4]
    assert all(r["objective"] == "sharpness_min" and r["after"] <= r["before"]
               for r in on["teleports"])
    assert all(np.isfinite(m["final_sharpness"]) and np.isfinite(m["final_adaptive_sharpness"])
               and 0 <= m["test_accuracy"] <= 1 for m in (on, off))
    assert on["sharpness"] == {"examples": 128, "rho": 0.05, "directions": 3}
    assert (tmp_path / "sharpness_min" / "model.weights.h5").exists()


def test_adaptive_sharpness_ignores_a_rescaling_that_changes_the_plain_one():
    from training.experiments.teleport_comparison import measured_sharpness

    model, x, y = fitted_convnet(epochs=2)

    def both():
        return [measured_sharpness(model, x, y, rho=0.1, directions=4, seed=1, adaptive=a)
                for a in (False, True)]

    plain, adaptive = both()
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    a = np.exp(np.linspace(-1.5, 1.5, conv1.kernel.shape[-1])).astype("float32")
    conv1.kernel.assign(conv1.kernel.numpy() * a)  # the rescaling symmetry, scaled hard
    conv1.bias.assign(conv1.bias.numpy() * a)
    conv2.kernel.assign(conv2.kernel.numpy() / a[:, None])
    plain_after, adaptive_after = both()
    assert adaptive_after == pytest.approx(adaptive, rel=1e-3, abs=1e-6)
    assert abs(plain_after - plain) > 10 * abs(adaptive_after - adaptive)


@pytest.mark.parametrize("bad, message", [
    ({"model": "convnet"}, "--group=rescale"),
    ({"at_steps": "0:10"}, "ranges start:stop:step"),
    ({"sharpness_directions": 0}, "sharpness_directions >= 1"),
    ({"sharpness_rho": 0.0}, "0 < sharpness_rho < 1"),
    ({"sharpness_examples": -1}, "sharpness_examples >= 0"),
])
def test_new_options_refuse_bad_settings_before_writing_anything(tmp_path, bad, message):
    from training.experiments.teleport_comparison import TeleportConfig, run_teleport_experiment

    with pytest.raises(ValueError, match=message):
        run_teleport_experiment(TeleportConfig(out_dir=str(tmp_path / "run"), **bad))
    assert not (tmp_path / "run").exists()
