"""RIFLE: the plan, what a re-initialisation touches, and that the schedule is untouched."""

import keras
import numpy as np
import pytest

from gim_zoo.callbacks.rifle import RIFLE, rifle_epochs


def test_plan_is_evenly_spaced_and_refuses_the_last_epochs():
    assert rifle_epochs(60, 1) == [30]
    assert rifle_epochs(60, 3) == [15, 30, 45]
    assert rifle_epochs(8, 3) == [2, 4, 6]
    assert rifle_epochs(10, 0) == []
    with pytest.raises(ValueError, match="last 3 epoch"):
        rifle_epochs(10, 3, quiet_epochs=3)  # the third re-init, after epoch 8, is too late
    with pytest.raises(ValueError, match="do not fit"):
        rifle_epochs(3, 5)


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="backbone1"),
        keras.layers.Dense(16, activation="relu", name="backbone2"),
        keras.layers.Dense(3, activation="softmax", name="head"),
    ])


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")


class Snapshots(keras.callbacks.Callback):
    """All weights at each epoch end (placed before or after RIFLE in the callback list)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append({v.path: keras.ops.convert_to_numpy(v) for v in self.model.weights})


class LearningRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def compiled(model, steps):
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=steps)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    return model


def test_reinits_at_planned_epochs_touch_only_the_head_in_a_plain_keras_model():
    x, y = data()
    epochs, batch = 8, 16
    model = compiled(mlp(), epochs * 4)
    before, after = Snapshots(), Snapshots()
    rifle = RIFLE("head", epochs, times=3, verbose=0)
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
              callbacks=[before, rifle, after])

    assert [r["after_epoch"] for r in rifle.log] == [2, 4, 6]
    assert [r["optimizer_step"] for r in rifle.log] == [8, 16, 24]
    for epoch in range(epochs):
        for path, value in before.weights[epoch].items():
            changed = not np.array_equal(value, after.weights[epoch][path])
            is_head = "/head/" in f"/{path}"
            assert changed == (is_head and epoch + 1 in (2, 4, 6)), (epoch, path)
    head_kernel = model.get_layer("head").kernel.path
    # nothing in the last epochs: the head trained on after the last re-init
    assert not np.array_equal(after.weights[5][head_kernel], after.weights[7][head_kernel])


def test_head_is_redrawn_from_its_own_initializers_with_fresh_values():
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, name="body"),
        keras.layers.Dense(2, kernel_initializer="glorot_uniform", bias_initializer="ones",
                           name="head"),
    ])
    for v in model.weights:
        v.assign(np.full(v.shape, 7.0, "float32"))
    rifle = RIFLE("head", 10, times=1, verbose=0)
    rifle.set_model(model)
    rifle.reinitialise()
    head = model.get_layer("head")
    first = keras.ops.convert_to_numpy(head.kernel)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(head.bias), np.ones(2))
    limit = np.sqrt(6 / (5 + 2))  # Glorot uniform for a 5 -> 2 kernel
    assert np.all(np.abs(first) <= limit) and not np.allclose(first, 7.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("body").kernel), 7.0)
    rifle.reinitialise()
    assert not np.array_equal(first, keras.ops.convert_to_numpy(head.kernel))  # a new draw each time


def test_learning_rate_schedule_and_step_count_are_not_restarted():
    x, y = data()
    epochs = 6
    rates = {}
    for use_rifle in (False, True):
        model = compiled(mlp(), epochs * 4)
        lrs = LearningRates()
        callbacks = [lrs] + ([RIFLE("head", epochs, times=2, verbose=0)] if use_rifle else [])
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks)
        rates[use_rifle] = lrs.rates
        assert int(model.optimizer.iterations.numpy()) == epochs * 4
    np.testing.assert_allclose(rates[True], rates[False], rtol=0, atol=0)
    assert rates[True][0] > rates[True][-1]  # the schedule did decay


def test_reset_optimizer_slots_zeroes_the_head_moments_only():
    x, y = data()
    model = compiled(mlp(), 100)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    rifle = RIFLE("head", 10, times=1, reset_optimizer_slots=True, verbose=0)
    rifle.set_model(model)
    rifle.reinitialise()
    slots = {v.name: keras.ops.convert_to_numpy(v) for v in model.optimizer.variables}
    head = [n for n in slots if "head_" in n]
    body = [n for n in slots if "backbone" in n]
    assert len(head) == 4 and body  # Adam: momentum and velocity of kernel and bias
    assert all(not slots[n].any() for n in head)
    assert all(slots[n].any() for n in body)


def test_unknown_head_layer_names_the_model_layers():
    rifle = RIFLE("classifier", 10, times=1, verbose=0)
    rifle.set_model(mlp())
    with pytest.raises(ValueError, match="'classifier' is not in model.*head"):
        rifle.reinitialise()


def test_plan_rounds_halves_up_as_documented():
    # k E / (M + 1) to the nearest epoch, halves up (not Python's round-half-to-even)
    assert rifle_epochs(10, 3) == [3, 5, 8]  # 2.5, 5, 7.5
    assert rifle_epochs(5, 1) == [3]  # 2.5
    assert rifle_epochs(7, 1) == [4]  # 3.5
    assert rifle_epochs(6, 3) == [2, 3, 5]  # 1.5, 3, 4.5
    assert rifle_epochs(10, 4) == [2, 4, 6, 8]
    assert "E=10, M=3 -> 3, 5, 8" in RIFLE.__doc__


class EpochCount(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


@pytest.mark.parametrize("rifle, message", [
    (lambda: RIFLE("classifier", 4, times=1, verbose=0), "'classifier' is not in model.*head"),
    (lambda: RIFLE("head", 6, times=1, verbose=0), "planned for 6 epochs.*fit runs 4"),
])
def test_settings_are_checked_when_training_begins(rifle, message):
    x, y = data()
    model = compiled(mlp(), 16)
    count = EpochCount()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[count, rifle()])
    assert count.epochs == 0 and int(model.optimizer.iterations.numpy()) == 0


# --- the authors' regime: HeadRateSGD, the cyclic head rate, resuming ---------------------
from gim_zoo.callbacks.rifle import CyclicCosineDecay, HeadRateSGD  # noqa: E402


def rate_at(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cyclic_cosine_restarts_at_each_restart_step_and_ends_at_zero():
    schedule = CyclicCosineDecay(0.01, [10, 30], 40)
    assert rate_at(schedule, 0) == pytest.approx(0.01)
    assert rate_at(schedule, 5) == pytest.approx(0.005)  # half-way down the first cycle
    assert rate_at(schedule, 9) < 0.001
    assert rate_at(schedule, 10) == pytest.approx(0.01)  # restarted
    assert rate_at(schedule, 20) == pytest.approx(0.005)
    assert rate_at(schedule, 30) == pytest.approx(0.01)
    assert rate_at(schedule, 35) == pytest.approx(0.005)
    assert rate_at(schedule, 40) == pytest.approx(0.0, abs=1e-9)
    assert rate_at(CyclicCosineDecay(0.1, [], 4), 2) == pytest.approx(0.05)  # no restart


@pytest.mark.parametrize("args, message", [
    ((0.0, [10], 40), "initial_learning_rate must be a positive finite"),
    ((float("nan"), [10], 40), "initial_learning_rate must be a positive finite"),
    ((0.01, [30, 10], 40), "rise strictly"),
    ((0.01, [10, 10], 40), "rise strictly"),
    ((0.01, [40], 40), "rise strictly"),
    ((0.01, [0], 40), "rise strictly"),
    ((0.01, [], 0), "rise strictly"),
    ((0.01, ["ten"], 40), "whole steps"),
])
def test_cyclic_cosine_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        CyclicCosineDecay(*args)


def test_head_rate_sgd_adds_l2_to_the_gradient_and_steps_the_head_at_its_own_rate():
    body = keras.Variable(np.ones(3, "float32"), name="body")
    head = keras.Variable(np.ones(2, "float32"), name="head")
    optimizer = HeadRateSGD(0.1, momentum=0.0, l2=0.5, head_variables=[head],
                            head_learning_rate=0.01)
    # the head's variables are not tracked as the optimizer's own (saved twice otherwise)
    assert [v.name for v in optimizer.variables] == ["iteration", "learning_rate"]
    grads = [keras.ops.ones(3), keras.ops.ones(2)]
    optimizer.apply(grads, [body, head])
    # w - lr * (g + l2 w): body at 0.1, head at 0.01
    np.testing.assert_allclose(keras.ops.convert_to_numpy(body), 1 - 0.1 * 1.5, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head), 1 - 0.01 * 1.5, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"l2": -1e-4}, "l2 must be a finite number >= 0"),
    ({"l2": float("inf")}, "l2 must be a finite number >= 0"),
    ({"head_learning_rate": 0.01}, "head_variables and head_learning_rate together"),
    ({"head_variables": "V"}, "head_variables and head_learning_rate together"),
    ({"head_variables": "V", "head_learning_rate": -0.01}, "head_learning_rate must be a pos"),
])
def test_head_rate_sgd_refuses_bad_arguments(kwargs, message):
    if kwargs.get("head_variables") == "V":
        kwargs["head_variables"] = [keras.Variable(np.ones(2, "float32"))]
    with pytest.raises(ValueError, match=message):
        HeadRateSGD(0.01, **kwargs)


class HeadRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.head_rate())))


def test_cyclic_head_rate_restarts_at_every_reinit_inside_fit():
    x, y = data()  # 4 steps per epoch at batch 16
    model = mlp()
    rifle = RIFLE("head", 6, times=2, quiet_epochs=1, verbose=0)  # after epochs 2 and 4
    model.compile(HeadRateSGD(keras.optimizers.schedules.CosineDecay(0.05, 24), l2=1e-4,
                              head_variables=model.get_layer("head").weights,
                              head_learning_rate=rifle.cyclic_head_schedule(0.05, 4)),
                  "sparse_categorical_crossentropy")
    rates = HeadRates()
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[rates, rifle])
    assert [r["optimizer_step"] for r in rifle.log] == [8, 16]
    assert [i for i, r in enumerate(rates.rates) if r == pytest.approx(0.05)] == [0, 8, 16]
    assert rates.rates[7] < 0.01 and rates.rates[15] < 0.01 and rates.rates[-1] < 0.01


def test_cyclic_head_rate_of_another_plan_is_refused_before_the_first_step():
    x, y = data()
    model = mlp()
    other = RIFLE("head", 6, times=1, verbose=0).cyclic_head_schedule(0.05, 4)
    model.compile(HeadRateSGD(0.05, head_variables=model.get_layer("head").weights,
                              head_learning_rate=other), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="restarts at steps \\[12\\].*RIFLE re-initialises "
                                         "at steps \\[8, 16\\]"):
        model.fit(x, y, batch_size=16, epochs=6, verbose=0,
                  callbacks=[RIFLE("head", 6, times=2, quiet_epochs=1, verbose=0)])
    assert int(model.optimizer.iterations.numpy()) == 0
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive"):
        RIFLE("head", 6, times=1).cyclic_head_schedule(0.05, 0)


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.stop_after = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.stop_after:
            self.model.stop_training = True


def test_a_resumed_fit_replays_earlier_reinits_and_ends_as_an_unbroken_one():
    x, y = data()
    unbroken = compiled(mlp(), 24)
    rifle = RIFLE("head", 6, times=2, quiet_epochs=1, seed=3, verbose=0)
    unbroken.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0, callbacks=[rifle])

    resumed = compiled(mlp(), 24)
    resumed.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0,
                callbacks=[RIFLE("head", 6, times=2, quiet_epochs=1, seed=3, verbose=0),
                           StopAfter(3)])  # killed after epoch 3: one re-init done
    again = RIFLE("head", 6, times=2, quiet_epochs=1, seed=3, verbose=0)
    resumed.fit(x, y, batch_size=16, epochs=6, initial_epoch=3, shuffle=False, verbose=0,
                callbacks=[again])
    assert [(r["after_epoch"], r.get("replayed", False)) for r in again.log] == \
        [(2, True), (4, False)]
    for a, b in zip(unbroken.weights, resumed.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-6, atol=1e-7)
