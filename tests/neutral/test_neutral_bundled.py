"""The library without TensorFlow (under JAX), and the bundled pretrained encoders under
the active backend: their outputs equal those of their TFLite files, which TensorFlow
converted, so the backend computes the same network."""

import importlib
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import gim_zoo
from gim_zoo.exporting import TFLiteModel

BUNDLED = Path(gim_zoo.__file__).parent / "pretrained"


def test_models_callbacks_lottery_and_teleport_import_without_tensorflow():
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow is the backend here (the JAX pass checks this)")
    for name in ("gim_zoo.zoo", "gim_zoo.callbacks", "gim_zoo.lottery", "gim_zoo.teleport",
                 "gim_zoo.models.gim", "gim_zoo.models.audio", "gim_zoo.models.probe",
                 "gim_zoo.models.resnet", "gim_zoo.exporting"):
        importlib.import_module(name)
    assert "tensorflow" not in sys.modules


def test_bundled_image_encoder_matches_its_tflite_file():
    encoder = gim_zoo.load("gim-fmnist-resnet")  # conftest keeps the Hub client offline
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 255, size=(8, 1, 28, 1))
    images = np.concatenate([rng.uniform(0, 255, size=(8, 28, 28, 1)),
                             np.repeat(rows, 28, axis=1)]).astype("float32")
    want = np.asarray(keras.ops.convert_to_numpy(encoder.feature_model(pool_to=3)(images)))
    got = TFLiteModel(BUNDLED / "gim-fmnist-resnet" / "encoder.tflite")(images)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_bundled_audio_encoder_matches_its_tflite_file():
    encoder = gim_zoo.load("gim-espeak-audio")
    t = np.arange(encoder.crop_samples, dtype=np.float32) / 16000
    waves = np.stack([0.3 * np.sin(2 * np.pi * f * t) * np.sin(2 * np.pi * 3 * t)
                      for f in (140.0, 220.0)]).astype(np.float32)
    want = np.asarray(keras.ops.convert_to_numpy(encoder(waves)))
    assert want.shape == (2, encoder.crop_samples // 160, encoder.gru_units)
    lite = TFLiteModel(BUNDLED / "gim-espeak-audio" / "encoder.tflite")
    got = np.concatenate([lite(w[None]) for w in waves])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
