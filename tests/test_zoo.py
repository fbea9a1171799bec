"""load()/info(): offline resolution, sha256 pins, tampering, bad names, paper config."""

import json
import shutil

import numpy as np
import pytest

import gim_zoo
from gim_zoo import presets
from gim_zoo.files import sha256_of
from gim_zoo.presets import IntegrityError, WeightsNotAvailableError, pin, write_model_folder
from gim_zoo.registry import UnknownModelError
from tests.conftest import TINY_ENCODER

NAME = "gim-fmnist-resnet"


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch, tiny_encoder):
    """A bundled copy of a tiny 'gim-fmnist-resnet' in a temporary package dir."""
    bundled = tmp_path / "pretrained"
    monkeypatch.setattr(presets, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(presets, "MANIFEST_PATH", bundled / "manifest.json")
    monkeypatch.delenv(presets.LOCAL_DIR_ENV, raising=False)
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
    with pytest.raises(presets.ModelMismatchError,
                       match=r"model.weights.h5 holds the weights of another architecture.*"
                             r"have another shape"):
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
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "manifest.json")
    presets.MANIFEST_PATH.write_text("{}")  # an installed manifest that does not list it
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
    # a module-at-a-time recipe is one job per module, each from the previous one's run
    jobs = gim_zoo.info("gim-fmnist-resnet-deep")["training"]["command"].split(" && ")
    assert [j.split("--train_module=")[1].split()[0] for j in jobs] == ["1", "2", "3"]
    assert "--init_from" not in jobs[0]
    assert jobs[2].endswith("--init_from=runs/gim-fmnist-resnet-deep-m2-seed0")
    assert "--out_dir=runs/gim-fmnist-resnet-deep-m2-seed0 " in jobs[1]


# --- issue 16: what a folder holds, paths it lists, the package manifest -----------------


def _tiny_audio_folder(tmp_path):
    from gim_zoo.registry import get

    audio = get("gim-espeak-audio").build_encoder(channels=4, gru_units=4)
    return write_model_folder(audio, tmp_path / "audio", "gim-espeak-audio")


def test_folder_of_another_encoder_class_is_refused(tmp_path, fake_zoo):
    folder = _tiny_audio_folder(tmp_path)
    with pytest.raises(presets.ModelMismatchError, match="(?s)holds an AudioEncoder.*"
                                                     "gim-fmnist-resnet is a PatchResNetEncoder"):
        gim_zoo.load(NAME, weights=folder)
    with pytest.raises(presets.ModelMismatchError, match="AudioEncoder"):  # no opt-out for a class
        gim_zoo.load(NAME, weights=folder, allow_other_architecture=True)


def test_pinned_folder_of_another_class_is_refused(tmp_path, fake_zoo):
    bundled, _ = fake_zoo
    shutil.rmtree(bundled)
    shutil.copytree(_tiny_audio_folder(tmp_path), bundled)
    pin(NAME, bundled)
    with pytest.raises(presets.ModelMismatchError, match="AudioEncoder"):
        gim_zoo.load(NAME)


def test_folder_of_other_widths_needs_an_explicit_opt_out(fake_zoo, images):
    folder, original = fake_zoo  # a tiny encoder: widths (4, 4, 8), the registry's (16, 32, 64)
    with pytest.raises(presets.ModelMismatchError,
                       match=r"(?s)widths=\[4, 4, 8\] \(registry: \[16, 32, 64\]\).*"
                             r"allow_other_architecture=True"):
        gim_zoo.load(NAME, weights=folder)
    encoder = gim_zoo.load(NAME, weights=folder, allow_other_architecture=True)
    np.testing.assert_allclose(np.asarray(encoder(images)), np.asarray(original(images)),
                               rtol=1e-6, atol=1e-6)


def test_folder_without_metadata_warns_that_nothing_is_pinned(fake_zoo):
    folder, _ = fake_zoo
    (folder / "metadata.json").unlink()
    with pytest.warns(UserWarning, match="no metadata.json.*not sha256-verified"):
        gim_zoo.load(NAME, weights=folder, allow_other_architecture=True)


@pytest.mark.parametrize("listed", ["../outside.txt", "ABSOLUTE", "sub/../../outside.txt"])
def test_metadata_listing_a_path_outside_the_folder_is_refused(fake_zoo, listed):
    folder, _ = fake_zoo
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of the model")
    listed = str(outside) if listed == "ABSOLUTE" else listed
    (folder / "sub").mkdir()
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"][listed] = sha256_of(outside)  # it would even verify
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(IntegrityError, match="outside the folder"):
        gim_zoo.load(NAME, weights=folder, allow_other_architecture=True)
    with pytest.raises(IntegrityError, match="outside the folder"):
        presets.verify_folder(folder, {listed: sha256_of(outside)})


def test_corrupt_manifest_is_named(fake_zoo):
    presets.MANIFEST_PATH.write_text('{"gim-fmnist-resnet": {"files": ')
    with pytest.raises(presets.InstallationError,
                       match=r"(?s)manifest\.json is not valid JSON.*reinstall"):
        gim_zoo.load(NAME)


def test_missing_manifest_is_an_installation_error_not_unpublished(fake_zoo):
    presets.MANIFEST_PATH.unlink()
    for call in (lambda: gim_zoo.load(NAME), lambda: gim_zoo.info(NAME)):
        with pytest.raises(presets.InstallationError,
                           match="(?s)manifest.json is missing.*reinstall"):
            call()
    assert gim_zoo.load(NAME, weights=None).widths == [16, 32, 64]  # needs no manifest
