"""Patches, the encoder's module outputs, input checks and serialisation."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from gim_zoo.models.patches import GridAveragePool, ImagePatches
from gim_zoo.models.resnet import PatchResNetEncoder
from tests.conftest import TINY_ENCODER


def test_patches_match_numpy_slicing():
    x = np.arange(2 * 12 * 12 * 3, dtype="float32").reshape(2, 12, 12, 3)
    patches = np.asarray(ImagePatches(4, 2)(x))
    assert patches.shape == (2 * 5 * 5, 4, 4, 3)
    for b in range(2):
        for i in range(5):
            for j in range(5):
                np.testing.assert_array_equal(
                    patches[b * 25 + i * 5 + j], x[b, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4])


def test_fashion_mnist_grid_is_the_papers_7x7(tiny_encoder, images):
    assert tiny_encoder.grid == 7
    outs = tiny_encoder.module_outputs(images)
    assert [tuple(o.shape) for o in outs] == [(4, 7, 7, 8), (4, 7, 7, 8), (4, 7, 7, 16)]


def test_feature_model_per_module(tiny_encoder, images):
    for k in (1, 2, 3):
        feats = tiny_encoder.feature_model(k, pool_to=1)(images)
        grid = np.asarray(tiny_encoder.module_outputs(images, upto=k)[-1])
        want = np.maximum(grid, 0).mean(axis=(1, 2))  # rectified, then global average
        np.testing.assert_allclose(np.asarray(feats), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="module must be in 1..3"):
        tiny_encoder.feature_model(4)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_grid_pool_matches_numpy_windows(k):
    grid = np.random.default_rng(0).normal(size=(2, 7, 7, 5)).astype("float32")
    stride = 7 // k
    size = 7 - stride * (k - 1)  # windows cover the whole 7x7 grid
    relu = np.maximum(grid, 0)
    want = np.stack([
        np.stack([relu[:, i * stride:i * stride + size, j * stride:j * stride + size].mean((1, 2))
                  for j in range(k)], axis=1) for i in range(k)], axis=1).reshape(2, -1)
    got = np.asarray(GridAveragePool(k)(grid))
    assert got.shape == (2, k * k * 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cannot pool a 7x7 grid to 8x8"):
        GridAveragePool(8)(grid)


def test_wrong_input_shape_names_the_expected_shape(tiny_encoder):
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 28, 28, 1\)"):
        tiny_encoder(np.zeros((2, 32, 32, 3), "float32"))


def test_keras_file_round_trip(tiny_encoder, images, tmp_path):
    path = tmp_path / "encoder.keras"
    tiny_encoder.save(path)
    restored = keras.saving.load_model(path)  # safe_mode: only registered classes
    assert isinstance(restored, PatchResNetEncoder)
    np.testing.assert_allclose(np.asarray(restored(images)), np.asarray(tiny_encoder(images)),
                               rtol=1e-5, atol=1e-6)


def test_paper_configuration_builds():
    from gim_zoo.registry import get

    spec = get("gim-stl10-resnet")
    enc = spec.build_encoder(**{**TINY_ENCODER, "blocks": (3, 4, 6)})
    assert enc.grid == 7 and enc.image_size == 64
    assert [len(m.layers) for m in enc.gim_modules] == [4, 4, 6]  # stem + 3 blocks, 4, 6


# --- issue 16: the encoder knows its input range; checks on concrete arrays only ---------


def _image_paths(encoder):
    features = encoder.feature_model(pool_to=3)
    return {"call": encoder, "predict": lambda x: encoder.predict(x, verbose=0),
            "feature_model": features,
            "feature_model.predict": lambda x: features.predict(x, verbose=0)}


def test_nan_images_are_refused_and_scaled_images_warn(tiny_encoder, images):
    from gim_zoo.models.input_checks import InputRangeWarning, check_images

    bad = images.copy()
    bad[1, 3, 4, 0] = np.nan
    for run in _image_paths(tiny_encoder).values():
        with pytest.raises(ValueError, match="1 NaN or inf value"):
            run(bad)
        with pytest.warns(InputRangeWarning, match=r"max 1\).*raw 0\.\.255 pixels"):
            run(images / images.max())
    with pytest.raises(ValueError, match="NaN or inf"):
        check_images(bad, tiny_encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        tiny_encoder(images)  # raw pixels: silent
        tiny_encoder(np.zeros((2, 28, 28, 1), "float32"))  # a blank image is not "scaled"
        # traced (tf.function, export, TFLite): the check is Python-side only, not in the graph
        traced = tf.function(tiny_encoder.feature_model(pool_to=3))
        out = np.asarray(traced(bad))
        assert np.isnan(out[1]).any() and np.isfinite(out[0]).all()


def test_empty_batch_gives_empty_features(tiny_encoder):
    empty = np.zeros((0, 28, 28, 1), "float32")
    assert tiny_encoder.predict(empty, verbose=0).shape == (0, 7, 7, 16)
    assert tiny_encoder.feature_model(pool_to=3).predict(empty, verbose=0).shape == (0, 144)


def test_predict_with_a_wrong_shape_names_expected_and_got(tiny_encoder):
    for bad in (np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 28, 28), "float32")):
        with pytest.raises(ValueError, match=r"expects images of shape \(batch, 28, 28, 1\)"
                                             r".*got shape \(2, ") as e:
            tiny_encoder.predict(bad, verbose=0)
        assert "Exception encountered" not in str(e.value)  # our message, not Keras' wrapper


def test_audio_input_checks():
    from gim_zoo.models.audio import AudioEncoder
    from gim_zoo.models.input_checks import InputRangeWarning

    encoder = AudioEncoder(channels=4, gru_units=4, crop_samples=1600)
    waves = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1600)).astype("float32")
    bad = waves.copy()
    bad[0, 7] = np.inf
    for run in (encoder, lambda x: encoder.predict(x, verbose=0), encoder.feature_model()):
        with pytest.raises(ValueError, match="NaN or inf"):
            run(bad)
        with pytest.warns(InputRangeWarning, match=r"\[-1, 1\]"):
            run(waves * 32768)  # int16 PCM, not scaled
    assert encoder.predict(np.zeros((0, 1600), "float32"), verbose=0).shape == (0, 10, 4)
    with pytest.raises(ValueError, match=r"expects waveforms of shape \(batch, samples\)"):
        encoder.predict(np.zeros((2, 1600, 1), "float32"), verbose=0)
