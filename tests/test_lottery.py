"""Masks keep pruned weights at exactly zero; rounds remove exact fractions; rewinds are exact."""

import keras
import numpy as np
import pytest

from gim_zoo.lottery import PruneWithRewind, PruningMasks, prunable_kernels


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(30, activation="relu"),
                             keras.layers.Dense(25, activation="relu"),
                             keras.layers.Dense(4, activation="softmax")])


def data(n=128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 20)).astype("float32")
    return x, (x[:, :4].argmax(-1)).astype("int64")


def compile_(model):
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")


def test_kinds_and_no_biases():
    kinds = [kind for _, kind, _ in prunable_kernels(mlp())]
    assert kinds == ["dense", "dense", "output"]
    conv = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                             keras.layers.Flatten(), keras.layers.Dense(2)])
    assert [k for _, k, _ in prunable_kernels(conv)] == ["conv", "output"]


def test_pruned_weights_stay_exactly_zero_through_fit():
    model = mlp()
    masks = PruningMasks(model)
    compile_(model)
    rng = np.random.default_rng(1)
    masks.assign({p: (rng.random(m.shape) > 0.5).astype("float32")
                  for p, m in masks.numpy().items()})
    x, y = data()
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    for path, _, kernel in masks.kernels:
        mask = masks.masks[path].numpy()
        assert np.all(kernel.numpy()[mask == 0] == 0.0)
        assert np.count_nonzero(kernel.numpy()[mask == 1]) == mask.sum()


def test_layerwise_round_removes_exact_fractions():
    model = mlp()
    masks = PruningMasks(model)
    before = masks.counts()
    masks.assign(masks.magnitude_prune())
    after = masks.counts()
    rates = {"dense": 0.2, "output": 0.1}
    for path, kind, _ in masks.kernels:
        alive, total = before[path]
        assert after[path][0] == alive - round(rates[kind] * alive)
    # a second round prunes the survivors again, never reviving a weight
    first = masks.numpy()
    masks.assign(masks.magnitude_prune())
    for path, mask in masks.numpy().items():
        assert np.all(mask <= first[path])


def test_global_round_removes_the_smallest_pooled_weights():
    model = mlp()
    masks = PruningMasks(model)
    magnitudes = {p: np.abs(k.numpy()) for p, _, k in masks.kernels}
    pooled = np.sort(np.concatenate([m.ravel() for m in magnitudes.values()]))
    n_remove = round(0.3 * pooled.size)
    threshold = pooled[n_remove - 1]  # the largest magnitude that goes
    assert threshold < pooled[n_remove]  # no tie at the cut: the answer is unique
    masks.assign(masks.magnitude_prune(global_rate=0.3))
    for path, mask in masks.numpy().items():
        # exactly the weights at or below the pooled cut are removed, in every layer
        np.testing.assert_array_equal(mask, (magnitudes[path] > threshold).astype("float32"),
                                      err_msg=path)
        kernel = dict((p, k) for p, _, k in masks.kernels)[path].numpy()
        assert np.all(kernel[mask == 0] == 0.0)
    # a second round removes the smallest of the survivors only
    survivors = np.sort(np.concatenate([magnitudes[p][m > 0] for p, m in masks.numpy().items()]))
    second = masks.magnitude_prune(global_rate=0.3)
    cut = survivors[round(0.3 * survivors.size) - 1]
    for path, mask in second.items():
        np.testing.assert_array_equal(mask, (magnitudes[path] > cut).astype("float32"))



def test_global_round_prunes_by_pooled_magnitude():
    model = mlp()
    masks = PruningMasks(model)
    magnitudes = {p: np.abs(k.numpy()) for p, _, k in masks.kernels}
    new = masks.magnitude_prune(global_rate=0.3)
    kept = np.concatenate([magnitudes[p][new[p] > 0] for p in new])
    removed = np.concatenate([magnitudes[p][new[p] == 0] for p in new])
    assert removed.max() <= kept.min()  # one threshold across layers
    per_layer = [1 - new[p].mean() for p in new]
    assert max(per_layer) - min(per_layer) > 0.01  # not the same rate in every layer


def test_lamp_scores_follow_their_definition():
    from gim_zoo.lottery.masks import lamp_scores

    w = np.array([[0.5, -2.0], [1.0, 0.0]])
    mask = np.array([[1.0, 1.0], [1.0, 0.0]])  # the 0.0 is pruned already
    # survivors ascending: 0.5, 1, 2 -> 0.25/5.25, 1/5, 4/4 (the largest always 1)
    np.testing.assert_allclose(lamp_scores(np.abs(w), mask),
                               [[0.25 / 5.25, 1.0], [0.2, 0.0]])


def test_global_lamp_round_keeps_every_layer_that_magnitude_empties():
    # a layer of small weights (its last kernel scaled by 1e-3): pooled by |w| it loses
    # every weight at a 90% global rate; by LAMP score its largest weights stay
    model = mlp()
    masks = PruningMasks(model)
    small = masks.kernels[-1][2]
    small.assign(small.numpy() * 1e-3)
    by_magnitude = masks.magnitude_prune(global_rate=0.9)
    by_lamp = masks.magnitude_prune(global_rate=0.9, global_score="lamp")
    small_path = masks.kernels[-1][0]
    assert by_magnitude[small_path].sum() == 0 and by_lamp[small_path].sum() > 0
    alive = sum(m.size for m in masks.numpy().values())
    assert sum(m.sum() for m in by_lamp.values()) == alive - round(0.9 * alive)
    # within each layer, LAMP keeps that layer's largest weights
    for path, _, kernel in masks.kernels:
        magnitude = np.abs(kernel.numpy())
        kept, removed = magnitude[by_lamp[path] > 0], magnitude[by_lamp[path] == 0]
        assert kept.size and (removed.size == 0 or removed.max() <= kept.min())


@pytest.mark.parametrize("rewind_step", [0, 3])
def test_rewind_restores_the_exact_values_and_a_fresh_optimizer(rewind_step):
    model = mlp()
    masks = PruningMasks(model)
    compile_(model)
    x, y = data()
    callback = PruneWithRewind(masks, rewind_step=rewind_step)
    snapshot = {}

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if rewind_step == 0:
                snapshot.update({v.path: v.numpy().copy() for v in model.weights})

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == rewind_step and not snapshot:  # batch restarts each epoch
                snapshot.update({v.path: v.numpy().copy() for v in model.weights})

    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback, Record()])
    callback.prune_and_rewind()
    assert int(model.optimizer.iterations.numpy()) == 0
    assert all(np.all(v.numpy() == 0) for v in model.optimizer.variables
               if "learning_rate" not in v.path)
    for variable in model.weights:
        if variable.path.endswith("mask"):
            continue
        want = snapshot[variable.path]
        mask = next((masks.masks[p].numpy() for p in masks.masks if p == variable.path), None)
        if mask is not None:
            want = want * mask
        np.testing.assert_array_equal(variable.numpy(), want)


def test_prune_at_end_in_fit_equals_pruning_by_hand():
    """One fit = one round: the same masks and weights as fit, then prune_and_rewind();
    a callback listed before it still sees the trained weights in on_train_end."""
    x, y = data()
    results = []
    for at_end in (False, True):
        model = mlp()
        masks = PruningMasks(model)
        compile_(model)
        rewind = PruneWithRewind(masks, rewind_step=3, prune_at_end=at_end)
        trained = []

        class Trained(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                trained[:] = [v.numpy().copy() for v in model.weights]

        for _ in range(2):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[Trained(), rewind])
            if not at_end:
                rewind.prune_and_rewind()
        results.append(([v.numpy() for v in model.weights], masks.numpy(), trained))
    (by_hand, masks_by_hand, trained_by_hand), (in_fit, masks_in_fit, trained_in_fit) = results
    for a, b in zip(by_hand, in_fit, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(masks_by_hand.values(), masks_in_fit.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(m.mean() < 1 for m in masks_in_fit.values())  # two rounds pruned
    for a, b in zip(trained_by_hand, trained_in_fit, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rewind_at_end_keeps_the_masks():
    model = mlp()
    masks = PruningMasks(model)
    compile_(model)
    x, y = data()
    masks.assign(masks.magnitude_prune())
    before = masks.numpy()
    rewind = PruneWithRewind(masks, rewind_at_end=True)
    start = [v.numpy().copy() for v in masks.unmasked_weights(model)]
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[rewind])
    for path, mask in masks.numpy().items():
        np.testing.assert_array_equal(mask, before[path])
    for variable, value in zip(masks.unmasked_weights(model), start):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_random_pruning_control_has_the_same_counts(tmp_path):
    model = mlp()
    masks = PruningMasks(model)
    ticket = masks.magnitude_prune()
    control = masks.random_prune(ticket, seed=3)
    for path in ticket:
        assert control[path].sum() == ticket[path].sum()
        assert not np.array_equal(control[path], ticket[path])
    masks.assign(ticket)
    masks.save(tmp_path / "masks.npz")
    other = PruningMasks(mlp(seed=1))
    other.load(tmp_path / "masks.npz")
    for loaded, saved in zip(other.numpy().values(), ticket.values()):
        np.testing.assert_array_equal(loaded, saved)
