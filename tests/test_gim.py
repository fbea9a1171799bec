"""GreedyInfoMax: gradient isolation, module-at-a-time training, CPC context, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gim_zoo.models.autoregressor import RowCausalContext
from gim_zoo.models.gim import GreedyInfoMax


# Gradient isolation (with and without stop_gradient) and the 15-epoch fit are tested
# once, backend-neutrally, in tests/neutral/test_neutral_gim.py (run under TensorFlow
# and again under JAX).


def test_train_module_records_only_that_module(tiny_encoder, images):
    model = GreedyInfoMax(tiny_encoder, train_module=2, seed=0)
    tape, total, losses = model.losses_on_tape(images)
    watched = {v.name.split(":")[0] for v in tape.watched_variables()}
    module2 = {v.path for v in tiny_encoder.gim_modules[1].trainable_variables}
    head2 = {v.path for v in model.heads[1].trainable_variables}
    assert module2 and head2 and watched == module2 | head2
    assert list(losses) == [1]


def test_train_module_fit_changes_only_that_module(tiny_encoder, images):
    model = GreedyInfoMax(tiny_encoder, train_module=2, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    before = [[v.numpy().copy() for v in m.weights] for m in tiny_encoder.gim_modules]
    logs = model.fit(images, batch_size=4, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "module2_loss"}
    after = [[v.numpy() for v in m.weights] for m in tiny_encoder.gim_modules]
    changed = [any(not np.array_equal(a, b) for a, b in zip(x, y))
               for x, y in zip(before, after)]
    assert changed == [False, True, False]


def test_cpc_configuration_has_one_loss_and_a_causal_context(tiny_encoder, images):
    model = GreedyInfoMax(tiny_encoder, isolate=False, loss_modules="last",
                          autoregressor=True, seed=0)
    assert list(model.module_losses(images)) == [2]
    with pytest.raises(ValueError, match="only the last module"):
        GreedyInfoMax(tiny_encoder, loss_modules="last", train_module=1)


def test_row_causal_context_never_sees_later_rows():
    rng = np.random.default_rng(0)
    net = RowCausalContext()
    net.build((None, 7, 7, 5))
    for weight in net.weights:  # non-trivial weights
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    z = rng.normal(size=(2, 7, 7, 5)).astype("float32")
    changed = z.copy()
    changed[:, 4:] += 10.0  # alter rows 4..6
    a, b = np.asarray(net(z)), np.asarray(net(changed))
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_config_round_trip_and_weights(tiny_encoder, images, tmp_path):
    model = GreedyInfoMax(tiny_encoder, isolate=False, loss_modules="last",
                          autoregressor=True, prediction_steps=3, seed=4)
    path = tmp_path / "cpc.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config()["autoregressor"] is True
    assert restored.prediction_steps == 3 and restored.isolate is False
    np.testing.assert_allclose(np.asarray(restored(images)), np.asarray(model(images)),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def block_loss_gradients(model, images):
    """grads[j][(i, b)]: norm of module j's loss gradient w.r.t. block b of module i."""
    with tf.GradientTape(persistent=True) as tape:
        losses = model.module_losses(images, training=True)
    return {j: {(i, b): sum(0.0 if g is None else float(tf.norm(g))
                            for g in tape.gradient(loss, layer.trainable_variables))
                for i, module in enumerate(model.encoder.gim_modules)
                for b, layer in enumerate(module.layers)}
            for j, loss in losses.items()}


@pytest.fixture
def two_block_encoder():
    from gim_zoo.registry import get

    keras.utils.set_random_seed(0)
    return get("gim-fmnist-resnet").build_encoder(stem_width=8, widths=(4, 4, 8),
                                                  blocks=(1, 2, 2), expansion=2)


def test_overlap_trains_the_first_block_of_the_next_module_only(two_block_encoder, images):
    grads = block_loss_gradients(GreedyInfoMax(two_block_encoder, overlap=1, seed=0), images)
    for j in range(3):
        reached = {key for key, norm in grads[j].items() if norm > 0}
        own = {(j, b) for b in range(len(two_block_encoder.gim_modules[j].layers))}
        bridge = {(j + 1, 0)} if j < 2 else set()
        assert reached == own | bridge, (j, reached)


def test_overlap_with_train_module_fits_module_and_bridge(two_block_encoder, images):
    model = GreedyInfoMax(two_block_encoder, overlap=1, train_module=1, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    layers = [(i, b, layer) for i, m in enumerate(two_block_encoder.gim_modules)
              for b, layer in enumerate(m.layers)]
    before = {(i, b): [w.numpy().copy() for w in layer.weights] for i, b, layer in layers}
    model.fit(images, batch_size=4, epochs=1, verbose=0)
    changed = {(i, b) for i, b, layer in layers
               if any(not np.array_equal(w.numpy(), w0)
                      for w, w0 in zip(layer.weights, before[i, b]))}
    assert changed == {(0, 0), (0, 1), (1, 0)}  # stem, block 1 of module 1; module 2's first


def test_overlap_round_trips_and_refuses_what_it_cannot_do(two_block_encoder, images, tmp_path):
    model = GreedyInfoMax(two_block_encoder, overlap=2, seed=0)
    path = tmp_path / "loco.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.overlap == 2
    # module 1's head scores module 2's channels (after its two blocks)
    assert restored.heads[0].predictors.shape == model.heads[0].predictors.shape == (5, 8, 8)
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="overlap must be"):
        GreedyInfoMax(two_block_encoder, overlap=3)
    with pytest.raises(ValueError, match="isolated modules"):
        GreedyInfoMax(two_block_encoder, overlap=1, isolate=False)
