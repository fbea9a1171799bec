"""Patches, the encoder's module outputs, input checks and serialisation."""

import keras
import numpy as np
import pytest

from gim_zoo.models.patches import ImagePatches
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
        feats = tiny_encoder.feature_model(k, pooled=True)(images)
        want = np.asarray(tiny_encoder.module_outputs(images, upto=k)[-1]).mean(axis=(1, 2))
        np.testing.assert_allclose(np.asarray(feats), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="module must be in 1..3"):
        tiny_encoder.feature_model(4)


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
