"""load()/info(): offline resolution, sha256 pins, tampering, bad names, paper config."""

import json
import shutil

import numpy as np
import pytest

import gim_zoo
from gim_zoo import hub
from gim_zoo.hub import IntegrityError, WeightsNotAvailableError
from gim_zoo.model_folder import write_model_folder
from gim_zoo.packaging import pin
from gim_zoo.registry import UnknownModelError
from tests.conftest import TINY_ENCODER

NAME = "gim-fmnist-resnet"


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch, tiny_encoder):
    """A bundled copy of a tiny 'gim-fmnist-resnet' in a temporary package dir."""
    bundled = tmp_path / "pretrained"
    monkeypatch.setattr(hub, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(hub, "MANIFEST_PATH", bundled / "manifest.json")
    monkeypatch.delenv(hub.LOCAL_DIR_ENV, raising=False)
    folder = write_model_folder(tiny_encoder, bundled / NAME, NAME,
                                {"README.md": "card", "metrics.json": "{}"})
    pin(NAME, folder)
    return folder, tiny_encoder


def test_pretrained_loads_offline_from_the_bundled_copy(fake_zoo, images):
    folder, original = fake_zoo
    encoder = gim_zoo.load(NAME)
    np.testing.assert_allclose(np.asarray(encoder(images)), np.asarray(original(images)),
                               rtol=1e-6, atol=1e-6)
    assert encoder.widths == list(TINY_ENCODER["widths"])


@pytest.mark.parametrize("damage", ["flip_byte", "truncate"])
def test_tampered_or_truncated_weights_are_refused_by_name(fake_zoo, damage):
    folder, _ = fake_zoo
    path = folder / "model.weights.h5"
    data = bytearray(path.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.weights\.h5 failed its integrity check"):
        gim_zoo.load(NAME)


def test_tampered_config_is_refused(fake_zoo):
    folder, _ = fake_zoo
    config = json.loads((folder / "config.json").read_text())
    config["config"]["widths"] = [64, 64, 64]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="config.json"):
        gim_zoo.load(NAME)


def test_explicit_local_folder_wins_and_is_verified(fake_zoo, tmp_path, images):
    folder, original = fake_zoo
    local = tmp_path / "mine" / NAME
    shutil.copytree(folder, local)
    shutil.rmtree(folder)  # the bundled copy is gone: the local one must be used
    encoder = gim_zoo.load(NAME, local_dir=tmp_path / "mine")
    np.testing.assert_allclose(np.asarray(encoder(images)), np.asarray(original(images)),
                               rtol=1e-6, atol=1e-6)
    (local / "metadata.json").write_text("{}")
    with pytest.raises(IntegrityError, match="metadata.json"):
        gim_zoo.load(NAME, local_dir=local)


def test_weights_file_path_and_wrong_architecture(fake_zoo, tmp_path, tiny_encoder):
    folder, _ = fake_zoo
    with pytest.raises(ValueError, match="cannot load .*model.weights.h5"):
        gim_zoo.load(NAME, weights=folder / "model.weights.h5")  # tiny vs registry widths
    path = tmp_path / "full.weights.h5"
    gim_zoo.load(NAME, weights=None).save_weights(path)
    assert gim_zoo.load(NAME, weights=path).widths == [16, 32, 64]
    with pytest.raises(FileNotFoundError, match="neither 'pretrained'"):
        gim_zoo.load(NAME, weights=tmp_path / "nothing.weights.h5")


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: gim-fmnist-resnet"):
        gim_zoo.load("gim-fmnist-resnt")


def test_paper_model_builds_but_has_no_published_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "MANIFEST_PATH", tmp_path / "manifest.json")
    encoder = gim_zoo.load("gim-stl10-resnet", weights=None)
    assert encoder.grid == 7 and encoder.blocks == [3, 4, 6]
    assert encoder.output_channels == [256, 512, 1024]
    with pytest.raises(WeightsNotAvailableError,
                       match="(?s)not published yet.*training/train.py --model=gim-stl10-resnet"):
        gim_zoo.load("gim-stl10-resnet")


def test_config_of_another_class_is_refused(tmp_path, fake_zoo):
    folder, _ = fake_zoo
    config = json.loads((folder / "config.json").read_text())
    config["registered_name"] = "Lambda"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metadata.json").unlink()  # a user's own folder: no pins to check
    with pytest.raises(ValueError, match="not a gim_zoo encoder"):
        gim_zoo.load(NAME, weights=folder)


def test_list_and_info():
    assert "gim-fmnist-resnet" in gim_zoo.list_models("gim-*")
    assert "cpc-fmnist-resnet" not in gim_zoo.list_models("gim-*")
    details = gim_zoo.info("gim-stl10-resnet")
    assert details["encoder"]["blocks"] == (3, 4, 6) and "training/train.py" in \
        details["training"]["command"]
