"""SavedModel and TFLite exports agree with Keras; int8 keeps a probe's decisions."""

import numpy as np
import pytest
import tensorflow as tf

from gim_zoo.data import image_pipeline, load_fashion_mnist
from gim_zoo.exporting import TFLiteModel, export_saved_model, export_tflite
from gim_zoo.models.probe import fit_linear_probe


@pytest.fixture(scope="module")
def fmnist_sample():
    images, labels = load_fashion_mnist("test")
    return images[:600].astype(np.float32), labels[:600]


def test_fp32_tflite_matches_keras(tiny_encoder, fmnist_sample, tmp_path):
    images, _ = fmnist_sample
    model = tiny_encoder.feature_model(pool_to=3)
    path = export_tflite(model, tmp_path / "enc.tflite")
    lite = TFLiteModel(path)
    np.testing.assert_allclose(lite(images[:64]), np.asarray(model(images[:64])), atol=1e-4)
    assert lite(images[:3]).shape == (3, 9 * 16)  # batch size can change between calls
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 28, 28, 1\)"):
        lite(images[:2, :20])
    assert not list(tmp_path.glob(".tmp*"))


@pytest.mark.slow
def test_int8_probe_agrees_on_most_argmaxes(tiny_encoder, fmnist_sample, tmp_path):
    images, labels = fmnist_sample
    train = image_pipeline(images[:400].astype(np.uint8), labels[:400], batch_size=200)
    test = image_pipeline(images[400:].astype(np.uint8), labels[400:], batch_size=200)
    probe, _ = fit_linear_probe(tiny_encoder, train, test, steps=200, pool_to=3)
    path = export_tflite(probe, tmp_path / "probe_int8.tflite", quantize="int8",
                         representative_images=images[:100])
    lite = TFLiteModel(path)
    dtypes = {d["dtype"] for d in lite.interpreter.get_tensor_details()}
    assert np.int8 in dtypes  # really quantised (the tiny model is too small to shrink)
    keras_top1 = np.asarray(probe(images[400:])).argmax(-1)
    lite_top1 = lite(images[400:]).argmax(-1)
    # 4-channel layers quantise coarsely; the bundled model is held to 95% (test_bundled)
    assert np.mean(keras_top1 == lite_top1) > 0.75


def test_int8_needs_representative_images(tiny_encoder, tmp_path):
    with pytest.raises(ValueError, match="representative_images"):
        export_tflite(tiny_encoder.feature_model(), tmp_path / "x.tflite", quantize="int8")


def test_saved_model_serves_images(tiny_encoder, fmnist_sample, tmp_path):
    images, _ = fmnist_sample
    model = tiny_encoder.feature_model(2)
    path = export_saved_model(model, tmp_path / "saved")
    loaded = tf.saved_model.load(str(path))  # keep a reference while serving
    served = loaded.serve(tf.constant(images[:8]))
    np.testing.assert_allclose(np.asarray(served), np.asarray(model(images[:8])), atol=1e-5)
