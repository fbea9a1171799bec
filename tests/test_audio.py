"""Audio GIM: the conv+GRU encoder's modules, 1-D InfoNCE, isolation and a tiny training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gim_zoo.models.audio import AudioEncoder
from gim_zoo.models.gim import GreedyInfoMax
from gim_zoo.models.infonce import InfoNCE


def tiny_encoder():
    keras.utils.set_random_seed(0)
    return AudioEncoder(channels=8, gru_units=8, crop_samples=1600)


def waves(batch=4, samples=1600, seed=0):
    """Structured signals (a few chirping sines and noise), so the future is predictable."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    out = []
    for _ in range(batch):
        f0 = rng.uniform(100, 400)
        out.append(0.5 * np.sin(2 * np.pi * (f0 + 300 * t) * t)
                   + 0.3 * np.sin(2 * np.pi * 2.5 * f0 * t) + 0.05 * rng.normal(size=samples))
    return np.array(out, "float32")


def test_every_module_is_scored_at_the_frame_rate():
    encoder = tiny_encoder()
    assert encoder.num_modules == 6 and encoder.hop == 160 and encoder.grid == 10
    outputs = encoder.module_outputs(waves())
    assert [tuple(o.shape) for o in outputs] == [(4, 10, 8)] * 6
    with pytest.raises(ValueError, match="multiple of 160"):
        encoder(np.zeros((1, 1000), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        encoder(np.zeros((1, 1600, 1), "float32"))


def test_1d_infonce_matches_the_numpy_reference():
    from tests.test_infonce import numpy_infonce

    rng = np.random.default_rng(2)
    B, T, C, K, N = 2, 9, 5, 3, 4
    z = rng.normal(size=(B, T, 1, C)).astype("float32")
    head = InfoNCE(prediction_steps=K, negatives=N, skip=0)
    head.build(z.shape)
    negatives = [rng.integers(0, B * (T - k), size=(B, T - k, 1, N)) for k in range(1, K + 1)]
    got = float(head(z, z, negative_indices=negatives))
    want = numpy_infonce(z, z, np.asarray(head.predictors), negatives, skip=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def grads_of_last_loss(isolate):
    model = GreedyInfoMax(tiny_encoder(), prediction_steps=3, negatives=4, skip=0,
                          isolate=isolate, seed=0)
    x = waves()
    with tf.GradientTape() as tape:
        loss = model.module_losses(x)[5]
    modules = model.encoder.gim_modules
    return tape.gradient(loss, [modules[0].trainable_variables[0],
                                modules[5].trainable_variables[0]])


def test_gradients_are_isolated_between_modules():
    first, last = grads_of_last_loss(isolate=True)
    assert first is None or not np.any(first)
    assert np.any(last)
    first, _ = grads_of_last_loss(isolate=False)
    assert first is not None and np.any(first)


@pytest.mark.slow
def test_tiny_training_lowers_every_module_loss():
    model = GreedyInfoMax(tiny_encoder(), prediction_steps=3, negatives=4, skip=0, seed=0)
    model.compile(keras.optimizers.Adam(3e-3))
    x = waves(batch=8)
    fixed = [np.random.default_rng(k).integers(0, 8 * (10 - k), size=(8, 10 - k, 1, 4))
             for k in range(1, 4)]
    before = {i: float(v) for i, v in model.module_losses(x, negative_indices=fixed).items()}
    model.fit(x, epochs=40, batch_size=8, verbose=0)
    after = {i: float(v) for i, v in model.module_losses(x, negative_indices=fixed).items()}
    assert len(before) == 6
    assert all(after[i] < before[i] for i in before), (before, after)


def test_tflite_export_of_conv_and_gru_matches_keras(tmp_path):
    from gim_zoo.exporting import TFLiteModel, export_tflite

    encoder = tiny_encoder()
    x = waves(batch=2)
    want = keras.ops.convert_to_numpy(encoder.feature_model()(x))
    path = export_tflite(encoder.export_model(), tmp_path / "audio.tflite")
    got = TFLiteModel(path)(x)
    assert got.shape == want.shape == (2, 10, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gru_module_predicts_its_input_frames():
    model = GreedyInfoMax(tiny_encoder(), prediction_steps=3, negatives=4, skip=0, seed=0)
    head = model.heads[5]
    x = 50 * waves()  # loud enough that the scores are not all ~0 at initialisation
    encoder = model.encoder
    conv5 = encoder.module_outputs(x, upto=5)[-1][:, :, None]
    gru = encoder.module_outputs(x)[-1][:, :, None]
    fixed = [np.random.default_rng(k).integers(0, 4 * (10 - k), size=(4, 10 - k, 1, 4))
             for k in range(1, 4)]
    want = float(head(gru, conv5, negative_indices=fixed))
    got = float(model.module_losses(x, negative_indices=fixed)[5])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.isclose(got, float(head(gru, gru, negative_indices=fixed)))
