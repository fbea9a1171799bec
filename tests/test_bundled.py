"""The pretrained model shipped inside the package: loads offline from a fresh clone,
its pins hold, its TFLite files agree with Keras, its card is generated from its metrics."""

import json

import numpy as np
import pytest

import gim_zoo
from gim_zoo import presets, registry
from gim_zoo.data import load_fashion_mnist
from gim_zoo.exporting import TFLiteModel
from training.experiments import model_cards

NAME = "gim-fmnist-resnet"
FOLDER = presets.BUNDLED_DIR / NAME


@pytest.fixture(scope="module")
def fmnist_test_images():
    images, labels = load_fashion_mnist("test")
    return images[:500].astype(np.float32), labels[:500]


@pytest.mark.parametrize("name", ["gim-fmnist-resnet", "cpc-fmnist-resnet",
                                  "supervised-fmnist-resnet", "gim-fmnist-resnet-deep",
                                  "loco-fmnist-resnet-deep"])
def test_bundled_models_load_offline_and_are_pinned(name):
    assert set(presets.pinned_files(name)) >= {
        "config.json", "metadata.json", "model.weights.h5", "README.md", "metrics.json",
        "encoder.tflite", "encoder_int8.tflite"}
    encoder = gim_zoo.load(name)  # conftest keeps the Hub client offline
    assert encoder.output_channels == [64, 128, 256]
    assert (presets.BUNDLED_DIR / name / "model.weights.h5").stat().st_size < 5 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("name", [NAME, "gim-fmnist-resnet-deep", "loco-fmnist-resnet-deep"])
def test_bundled_tflite_files_agree_with_keras(fmnist_test_images, name):
    images, _ = fmnist_test_images
    folder = presets.BUNDLED_DIR / name
    features = gim_zoo.load(name).feature_model(pool_to=3)
    want = np.asarray(features(images))
    np.testing.assert_allclose(TFLiteModel(folder / "encoder.tflite")(images), want,
                               atol=1e-4, rtol=1e-4)
    int8 = TFLiteModel(folder / "encoder_int8.tflite")(images)
    cosine = np.sum(int8 * want, -1) / (np.linalg.norm(int8, axis=-1) *
                                         np.linalg.norm(want, axis=-1))
    assert np.median(cosine) > 0.95


@pytest.mark.parametrize("name", [NAME, "gim-fmnist-resnet-deep", "loco-fmnist-resnet-deep"])
def test_card_and_metrics_come_from_the_run(name):
    folder = presets.BUNDLED_DIR / name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["training"]["command"].startswith("python training/train.py --model=" + name)
    assert {"60", "600", "all"} <= set(metrics["linear_probe"])
    card = (folder / "README.md").read_text()
    assert card == model_cards.render(registry.get(name), metrics)
    assert card.startswith("---\nlibrary_name: keras\n")
    assert f"value: {round(metrics['linear_probe']['all']['test_accuracy'], 4)}" in card


@pytest.mark.slow
def test_bundled_gim_ticket_is_as_sparse_as_its_metrics_say(fmnist_test_images):
    name = "gim-fmnist-resnet-ticket"
    folder = presets.BUNDLED_DIR / name
    metrics = json.loads((folder / "metrics.json").read_text())
    encoder = gim_zoo.load(name)
    kernels = [w.numpy() for w in encoder.weights if w.path.endswith("kernel")]
    alive = sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
    assert alive == pytest.approx(metrics["ticket"]["weights_remaining"], abs=1e-6)
    assert alive < 0.5
    images, _ = fmnist_test_images
    want = np.asarray(encoder.feature_model(pool_to=3)(images))
    np.testing.assert_allclose(TFLiteModel(folder / "encoder.tflite")(images), want,
                               atol=1e-4, rtol=1e-4)  # the sparse format is exact
    assert (folder / "encoder.tflite").stat().st_size < \
        0.5 * (FOLDER / "encoder.tflite").stat().st_size
    card = (folder / "README.md").read_text()
    assert card == model_cards.render(registry.get(name), metrics)


def test_bundled_audio_encoder_loads_and_its_tflite_files_agree():
    """gim-espeak-audio: waveforms in, 10 ms frames out; fp32 TFLite (GRU unrolled) equal
    to Keras, int8 close in direction; the card is rendered from metrics.json and says
    the corpus is synthetic."""
    name = "gim-espeak-audio"
    folder = presets.BUNDLED_DIR / name
    encoder = gim_zoo.load(name)
    samples = encoder.crop_samples
    t = np.arange(samples, dtype=np.float32) / 16000
    waves = np.stack([0.3 * np.sin(2 * np.pi * f * t) * np.sin(2 * np.pi * 3 * t)
                      for f in (140.0, 220.0, 330.0)]).astype(np.float32)
    want = np.asarray(encoder(waves))
    assert want.shape == (3, samples // 160, encoder.gru_units)
    got = np.concatenate([TFLiteModel(folder / "encoder.tflite")(w[None]) for w in waves])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    int8 = np.concatenate([TFLiteModel(folder / "encoder_int8.tflite")(w[None]) for w in waves])
    cosine = np.sum(int8 * want, -1) / (np.linalg.norm(int8, axis=-1) *
                                         np.linalg.norm(want, axis=-1) + 1e-12)
    assert np.median(cosine) > 0.95
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["linear_probe"]["module6"]["phone_accuracy"] > \
        metrics["random_init_linear_probe"]["module6"]["phone_accuracy"]
    card = (folder / "README.md").read_text()
    assert card == model_cards.render(registry.get(name), metrics)
    assert "synthetic speech" in card
    assert f"value: {round(metrics['linear_probe']['module6']['phone_accuracy'], 4)}" in card
