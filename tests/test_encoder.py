"""Patches, the encoder's module outputs, input checks and serialisation."""

import keras
import numpy as np
import pytest

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
