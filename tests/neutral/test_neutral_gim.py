"""GreedyInfoMax under the active backend: fit, gradient isolation, module-at-a-time
training, the audio encoder, and trained weights that reload (and, handed over from JAX,
load in TensorFlow: tests/test_jax_backend.py)."""

import keras
import numpy as np
import pytest

from gim_zoo.models.gim import GreedyInfoMax
from tests.neutral.backend_tools import handoff_dir, jacobian, stripes, to_numpy


@pytest.mark.slow  # 15 epochs
def test_fit_lowers_the_loss_and_draws_new_negatives_every_step(tiny_encoder):
    model = GreedyInfoMax(tiny_encoder, seed=0)
    seeds = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
    seeds_before = [to_numpy(v).copy() for v in seeds]
    model.compile(keras.optimizers.Adam(3e-3))
    history = model.fit(stripes(), batch_size=16, epochs=15, verbose=0).history
    assert set(history) == {"loss", "module1_loss", "module2_loss", "module3_loss"}
    assert history["loss"][-1] < history["loss"][0] - 0.1, history["loss"]
    for i in (1, 2, 3):
        assert history[f"module{i}_loss"][-1] < history[f"module{i}_loss"][0]
    assert int(to_numpy(model.optimizer.iterations)) == 15
    # each head's seed generator is model state, carried from step to step
    assert len(seeds) == len(model.heads) == 3
    assert all(not np.array_equal(a, to_numpy(v)) for a, v in zip(seeds_before, seeds))
    evaluated = model.evaluate(stripes(), batch_size=16, verbose=0, return_dict=True)
    assert set(evaluated) == set(history) and np.isfinite(list(evaluated.values())).all()


def test_gradients_do_not_cross_modules(tiny_encoder, images):
    """[loss j, module i] norms of d(module j's loss)/d(module i's variables)."""
    model = GreedyInfoMax(tiny_encoder, seed=0)
    trainable, fixed = model.trainable_variables, model.non_trainable_variables
    fixed_values = [v.value for v in fixed]
    owner = {id(v): i for i, m in enumerate(tiny_encoder.gim_modules)
             for v in m.trainable_variables}

    def module_losses(values):
        mapping = list(zip(trainable, values)) + list(zip(fixed, fixed_values))
        with keras.StatelessScope(state_mapping=mapping):
            losses = model.module_losses(images, training=True)
        return keras.ops.stack([losses[j] for j in range(3)])

    tables = {}
    for isolate in (True, False):
        model.isolate = isolate  # read when the losses are computed
        table = np.zeros((3, 3))
        for v, g in zip(trainable, jacobian(module_losses, [v.value for v in trainable])):
            if id(v) in owner:
                table[:, owner[id(v)]] += np.sqrt(np.sum(np.square(g.reshape(3, -1)), axis=1))
        tables[isolate] = table
    isolated, end_to_end = tables[True], tables[False]
    # each loss reaches its own module only ...
    assert np.all(np.diag(isolated) > 0)
    assert np.all(isolated[~np.eye(3, dtype=bool)] == 0.0), isolated
    # ... where without stop_gradient later losses reach every earlier module
    assert np.all(end_to_end[np.tril_indices(3, -1)] > 0), end_to_end
    assert np.all(end_to_end[np.triu_indices(3, 1)] == 0.0), end_to_end


def test_train_module_updates_only_that_module_its_head_and_their_slots(tiny_encoder, images):
    model = GreedyInfoMax(tiny_encoder, train_module=2, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    groups = list(tiny_encoder.gim_modules) + list(model.heads)
    before = [[to_numpy(v).copy() for v in g.weights] for g in groups]
    history = model.fit(images, batch_size=4, epochs=2, verbose=0).history
    after = [[to_numpy(v) for v in g.weights] for g in groups]
    changed = [any(not np.array_equal(a, b) for a, b in zip(x, y)) for x, y in zip(before, after)]
    assert changed == [False, True, False] * 2  # modules, then heads
    assert sorted(history) == ["loss", "module2_loss"]
    moved_slots = {s.path.split("/")[-1] for s in model.optimizer.variables
                   if np.any(to_numpy(s)) and "learning_rate" not in s.path
                   and "iteration" not in s.path}
    assert moved_slots and all("module2" in s or "infonce2" in s for s in moved_slots)


@pytest.mark.slow  # 40 epochs of a GRU
def test_audio_gim_lowers_every_module_loss():
    """The conv + GRU encoder's six module losses, on fixed negatives, before and after."""
    from gim_zoo.models.audio import AudioEncoder

    keras.utils.set_random_seed(0)
    model = GreedyInfoMax(AudioEncoder(channels=8, gru_units=8, crop_samples=1600),
                          prediction_steps=3, negatives=4, skip=0, seed=0)
    model.compile(keras.optimizers.Adam(3e-3))
    rng = np.random.default_rng(0)
    t = np.arange(1600) / 16000
    x = np.array([0.5 * np.sin(2 * np.pi * (f0 + 300 * t) * t)
                  + 0.3 * np.sin(2 * np.pi * 2.5 * f0 * t) + 0.05 * rng.normal(size=1600)
                  for f0 in rng.uniform(100, 400, size=8)], "float32")
    fixed = [np.random.default_rng(k).integers(0, 8 * (10 - k), size=(8, 10 - k, 1, 4))
             for k in range(1, 4)]

    def losses():
        return [float(to_numpy(v)) for v in
                model.module_losses(x, negative_indices=fixed).values()]

    before = losses()
    model.fit(x, epochs=40, batch_size=8, verbose=0)
    after = losses()
    assert len(before) == 6
    assert all(a < b for a, b in zip(after, before)), (before, after)


def test_trained_weights_reload_with_the_same_outputs(tiny_encoder, tmp_path):
    """Trained here, saved, loaded into a differently initialised encoder. Handed over
    (weights and outputs), tests/test_jax_backend.py loads JAX's in TensorFlow."""
    from gim_zoo.registry import get
    from tests.conftest import TINY_ENCODER

    model = GreedyInfoMax(tiny_encoder, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    initial = [to_numpy(v).copy() for v in tiny_encoder.weights]
    model.fit(stripes(8), batch_size=4, epochs=1, verbose=0)
    assert any(not np.array_equal(a, to_numpy(b)) for a, b in zip(initial, tiny_encoder.weights))
    folder = handoff_dir("trained_weights") or tmp_path
    tiny_encoder.save_weights(folder / "encoder.weights.h5")
    images = np.random.default_rng(3).uniform(0, 255, size=(6, 28, 28, 1)).astype("float32")
    outputs = {"grid": to_numpy(tiny_encoder(images)),
               "pooled": to_numpy(tiny_encoder.feature_model(pool_to=3)(images)),
               "module2": to_numpy(tiny_encoder.feature_model(2)(images))}
    np.savez(folder / "outputs.npz", images=images, **outputs)

    keras.utils.set_random_seed(1)
    other = get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER)
    assert not np.allclose(to_numpy(other(images)), outputs["grid"], atol=1e-3)
    other.load_weights(folder / "encoder.weights.h5")
    np.testing.assert_allclose(to_numpy(other(images)), outputs["grid"], atol=1e-5)
    np.testing.assert_allclose(to_numpy(other.feature_model(pool_to=3)(images)),
                               outputs["pooled"], atol=1e-5)
    np.testing.assert_allclose(to_numpy(other.feature_model(2)(images)), outputs["module2"],
                               atol=1e-5)
