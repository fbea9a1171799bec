"""Where pretrained weights come from, and proof that they are the ones we trained.

Resolution order for `weights="pretrained"`: an explicit local folder -> the Hugging Face
Hub (huggingface_hub's cache, HF_HUB_OFFLINE and a pinned revision respected) -> the copy
bundled inside this package, so `load()` works on a machine with no network. Every file
is checked against the sha256 pinned in the package (`pretrained/manifest.json`) before
use; a mismatch is refused with the file's name, never silently replaced.

A model folder follows Keras' own `hf://` / KerasHub preset layout: config.json,
metadata.json, model.weights.h5, README.md (the card), plus metrics.json and .tflite files.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "pretrained"
MANIFEST_PATH = BUNDLED_DIR / "manifest.json"
LOCAL_DIR_ENV = "GIM_ZOO_WEIGHTS_DIR"
REQUIRED_FILES = ("config.json", "metadata.json", "model.weights.h5")


class WeightsNotAvailableError(FileNotFoundError):
    """No source holds pretrained weights for this model."""


class IntegrityError(ValueError):
    """A weight file's sha256 differs from the pinned one (truncated or tampered)."""


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest():
    """{model name: {"files": {file: sha256}, "revision": hub commit or null}}."""
    if not MANIFEST_PATH.exists():
        return {}
    return json.loads(MANIFEST_PATH.read_text())


def pinned_files(name):
    entry = read_manifest().get(name)
    return dict(entry["files"]) if entry else {}


def verify_folder(folder, expected):
    """Check every pinned file exists in `folder` with the pinned sha256."""
    folder = Path(folder)
    for filename, want in sorted(expected.items()):
        path = folder / filename
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (expected sha256 {want[:12]}...)")
        got = sha256_of(path)
        if got != want:
            raise IntegrityError(
                f"{path} failed its integrity check: sha256 {got[:12]}... but the package "
                f"pins {want[:12]}... The file is truncated, corrupted or tampered with; "
                "delete it (for a Hub download, its huggingface_hub cache entry) and load again."
            )
    return folder


def from_hub(repo_id, revision=None, filenames=REQUIRED_FILES, cache_dir=None, endpoint=None):
    """Download (or take from huggingface_hub's cache) the files of a model folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                  allow_patterns=list(filenames), endpoint=endpoint))


def resolve(name, hub_repo=None, revision=None, local_dir=None, cache_dir=None,
            endpoint=None):
    """A verified local folder holding `name`'s pretrained files.

    hub_repo: Hub repository to try (None: the registry's, if the model is published).
    revision: Hub branch, tag or commit sha (default: the revision pinned in the manifest).
    """
    entry = read_manifest().get(name)
    if entry is None:
        from gim_zoo import registry

        spec = registry.get(name)
        raise WeightsNotAvailableError(
            f"pretrained weights for {name!r} are not published yet. Train them with:\n  "
            f"{spec.training_command()}\nthen load them with "
            f"gim_zoo.load({name!r}, weights='RUN_DIR/encoder.weights.h5')."
        )
    expected = entry["files"]
    needed = sorted(expected)
    tried = []
    local_dir = local_dir or os.environ.get(LOCAL_DIR_ENV)
    if local_dir:
        folder = Path(local_dir)
        if (folder / name).is_dir():
            folder = folder / name
        return verify_folder(folder, expected)
    if hub_repo:
        try:
            folder = from_hub(hub_repo, revision or entry.get("revision"), needed, cache_dir,
                              endpoint)
        except Exception as e:  # offline, not found, network down: fall back, say why
            tried.append(f"Hub {hub_repo}: {type(e).__name__}: {str(e).splitlines()[0]}")
            log.info("gim_zoo: %s not available from the Hub (%s); using the bundled copy",
                     name, tried[-1])
        else:
            return verify_folder(folder, expected)
    bundled = BUNDLED_DIR / name
    if bundled.is_dir():
        return verify_folder(bundled, expected)
    tried.append(f"bundled copy {bundled}: missing")
    raise WeightsNotAvailableError(
        f"no pretrained weights for {name!r} could be found: " + "; ".join(tried))


def upload_folder(folder, repo_id, token=None, private=False, endpoint=None,
                  commit_message=None):
    """create_repo + upload_folder; returns the CommitInfo. The token is never logged."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                             commit_message=commit_message or f"Upload {Path(folder).name}")
    return info
