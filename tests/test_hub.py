"""Publishing to and loading from the Hub, against the local stand-in (no network)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants

import gim_zoo
from gim_zoo import presets
from gim_zoo.presets import (IntegrityError, PublishError, pin, plan_upload, publish,
                             write_model_folder)
from tests import subprocs

ROOT = Path(__file__).resolve().parents[1]
NAME = "gim-fmnist-resnet"
REPO = "gim-zoo-test/gim-fmnist-resnet"


@pytest.fixture
def model_folder(tmp_path, monkeypatch, tiny_encoder):
    """A complete model folder, pinned in a temporary manifest; no bundled copy."""
    monkeypatch.setattr(presets, "BUNDLED_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "manifest.json")
    folder = write_model_folder(tiny_encoder, tmp_path / "out" / NAME, NAME,
                                {"README.md": "---\nlicense: apache-2.0\n---\ncard\n",
                                 "metrics.json": "{}"})
    pin(NAME, folder)
    return folder


def test_publish_then_load_from_the_hub_then_offline_from_cache(
        standin, model_folder, tiny_encoder, images, tmp_path, monkeypatch):
    publish(model_folder, REPO, token=standin.token, endpoint=standin.endpoint)
    assert set(standin.files(REPO)) >= {"config.json", "model.weights.h5", "README.md",
                                        "metrics.json", "metadata.json"}
    cache = tmp_path / "hf-cache"
    encoder = gim_zoo.load(NAME, hub_repo=REPO, endpoint=standin.endpoint, cache_dir=cache)
    np.testing.assert_allclose(np.asarray(encoder(images)), np.asarray(tiny_encoder(images)),
                               rtol=1e-6, atol=1e-6)
    requests_before = len(standin.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    gim_zoo.load(NAME, hub_repo=REPO, endpoint=standin.endpoint, cache_dir=cache)
    assert len(standin.requests) == requests_before  # served from the cache


def test_revision_pinning_and_a_tampered_hub_file(standin, model_folder, tmp_path):
    publish(model_folder, REPO, token=standin.token, endpoint=standin.endpoint)
    good = standin.resolve(REPO)
    weights = bytearray(standin.files(REPO)["model.weights.h5"])
    weights[-10] ^= 0xFF
    standin.add_files(REPO, {"model.weights.h5": bytes(weights)})  # a bad newer commit
    with pytest.raises(IntegrityError, match="model.weights.h5 failed its integrity check"):
        gim_zoo.load(NAME, hub_repo=REPO, endpoint=standin.endpoint, cache_dir=tmp_path / "c1")
    encoder = gim_zoo.load(NAME, hub_repo=REPO, revision=good, endpoint=standin.endpoint,
                           cache_dir=tmp_path / "c2")
    assert encoder.num_modules == 3


def test_unreachable_hub_falls_back_to_the_bundled_copy(standin, model_folder, monkeypatch,
                                                        tiny_encoder, images, caplog):
    monkeypatch.setattr(presets, "BUNDLED_DIR", model_folder.parent)
    with caplog.at_level("INFO", logger="gim_zoo.presets"):
        encoder = gim_zoo.load(NAME, hub_repo="nobody/not-there", endpoint=standin.endpoint)
    # the Hub was asked first, and refused
    assert any("nobody/not-there" in r.path for r in standin.requests)
    assert "not available from the Hub" in caplog.text and "RepositoryNotFound" in caplog.text
    # what loaded is the bundled copy: its weights, bit for bit
    for loaded, bundled in zip(encoder.get_weights(), tiny_encoder.get_weights()):
        np.testing.assert_array_equal(loaded, bundled)
    np.testing.assert_array_equal(np.asarray(encoder(images)), np.asarray(tiny_encoder(images)))


def test_publication_is_data_in_the_manifest_and_load_follows_it(
        standin, model_folder, tiny_encoder, tmp_path):
    """Where a model is published (repo, commit) is written into the manifest by
    record_publication, read by load() (no hub_repo= needed) and dropped by new pins."""
    commit = publish(model_folder, REPO, token=standin.token, endpoint=standin.endpoint)
    other = write_model_folder(tiny_encoder, tmp_path / "other" / NAME, NAME,
                               {"README.md": "another card", "metrics.json": "{}"})
    assert presets.record_publication(other, REPO, commit.oid) is None  # not the pinned copy
    assert presets.manifest_entry(NAME)["hub_repo"] is None
    assert presets.record_publication(model_folder, REPO, commit.oid) == NAME
    entry = presets.manifest_entry(NAME)
    assert (entry["hub_repo"], entry["revision"]) == (REPO, commit.oid)
    assert gim_zoo.info(NAME)["hub_repo"] == REPO
    weights = bytearray(standin.files(REPO)["model.weights.h5"])
    weights[-10] ^= 0xFF
    standin.add_files(REPO, {"model.weights.h5": bytes(weights)})  # a bad newer commit
    before = len(standin.requests)
    encoder = gim_zoo.load(NAME, endpoint=standin.endpoint, cache_dir=tmp_path / "c")
    assert encoder.num_modules == 3 and len(standin.requests) > before  # the recorded commit
    presets.pin(NAME, model_folder)  # the same files: the record stays
    assert presets.manifest_entry(NAME)["revision"] == commit.oid
    presets.pin(NAME, other)  # new files: the Hub holds the old ones, so the record goes
    assert presets.manifest_entry(NAME)["hub_repo"] is None


def test_upload_without_a_token_is_refused(standin, model_folder):
    with pytest.raises(PublishError, match="HTTP 401"):
        publish(model_folder, REPO, token=None, endpoint=standin.endpoint)
    assert REPO not in standin.repos


def test_folder_without_card_or_metrics_is_refused(model_folder):
    (model_folder / "README.md").unlink()
    with pytest.raises(PublishError, match="lacks README.md"):
        plan_upload(model_folder)


@pytest.mark.slow  # two fresh Pythons importing TensorFlow
def test_publish_script_dry_run_and_real_run_never_print_the_token(standin, model_folder):
    env = {**os.environ, "HF_ENDPOINT": standin.endpoint, "HF_TOKEN": standin.token,
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    script = [sys.executable, str(ROOT / "export" / "publish.py"), f"--folder={model_folder}",
              f"--repo_id={REPO}"]
    dry = subprocs.run(script + ["--dry_run"], env=env)
    assert "model.weights.h5" in dry.stdout and "dry run: 5 files" in dry.stdout
    assert REPO not in standin.repos
    real = subprocs.run(script, env=env)
    assert "published" in real.stdout and "model.weights.h5" in standin.files(REPO)
    for output in (dry.stdout, dry.stderr, real.stdout, real.stderr):
        assert standin.token not in output
    auth = [r for r in standin.requests if r.method == "POST"]
    assert auth and all(r.authorization == f"Bearer {standin.token}" for r in auth)
