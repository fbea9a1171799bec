"""A zoo model's preset: its folder, the sha256 pins that prove it is the one we trained,
where it is found and how it is published. The one place that knows a model folder.

A model folder follows Keras' own `hf://` / KerasHub preset layout:

    config.json          the encoder, serialised by Keras (registered gim_zoo classes only)
    metadata.json        versions, parameter count, date, sha256 of every other file
    model.weights.h5     the encoder's weights
    README.md            model card (Hugging Face front matter)
    metrics.json         training command, seed, wall time, measured metrics
    encoder*.tflite      exported encoders

Resolution order for `weights="pretrained"`: an explicit local folder -> the Hugging Face
Hub (huggingface_hub's cache, HF_HUB_OFFLINE and a pinned revision respected) -> the copy
bundled inside this package, so `load()` works on a machine with no network. Every file
is checked against the sha256 pinned in the package (`pretrained/manifest.json`) before
use; a mismatch is refused with the file's name, never silently replaced. A list of pins
(the manifest, a folder's metadata.json) may only name files inside the folder. A missing
or unreadable manifest is an installation error (reinstall), not "not published".

Where a model is published is data, not code: its manifest entry is
{"files": {file: sha256}, "hub_repo": repo or null, "revision": commit or null}, written by
`pin` (training/package.py) and `record_publication` (export/publish.py), never by hand.

This package module holds the layout, the errors, the manifest, the pins and resolution;
`presets.folder` writes and reads a folder (Keras safe mode, encoder class and
architecture checked), `presets.upload` checks and publishes one (huggingface_hub). Their
functions are importable from here too. Nothing here imports more than the standard
library at module level (Keras and huggingface_hub only inside the functions that need
them), so `gim_zoo.info` and `python -m gim_zoo info` stay TensorFlow-free. Tests and
tools patch BUNDLED_DIR / MANIFEST_PATH on this module.
"""

import json
import logging
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from gim_zoo.files import atomic_write_json, sha256_of

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # gim_zoo/
BUNDLED_DIR = PACKAGE_DIR / "pretrained"
MANIFEST_PATH = BUNDLED_DIR / "manifest.json"
LOCAL_DIR_ENV = "GIM_ZOO_WEIGHTS_DIR"

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
TFLITE_FILE = "encoder.tflite"
TFLITE_INT8_FILE = "encoder_int8.tflite"
# What every complete (publishable) model folder holds; the .tflite files are extras.
REQUIRED_FILES = (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)


class WeightsNotAvailableError(FileNotFoundError):
    """No source holds pretrained weights for this model."""


class IntegrityError(ValueError):
    """A weight file's sha256 differs from the pinned one (truncated or tampered), a pinned
    file is missing, or a list of pins names a path outside its folder."""


class InstallationError(IntegrityError):
    """The package's own manifest of sha256 pins is missing or unreadable: reinstall."""


class ModelMismatchError(ValueError):
    """A model folder holds another encoder class, or (without the explicit opt-out)
    another architecture, than the registry name it is loaded as."""


class PublishError(ValueError):
    """The folder is not fit to publish, or the Hub refused it."""


# --- the package manifest: pins, and where each model is published -----------------------


def read_manifest(missing_ok: bool = True) -> dict:
    """{model name: {"files": {file: sha256}, "hub_repo": repo or null, "revision": hub
    commit or null}}.

    missing_ok: a missing manifest reads as {} (for `pin`, which creates it); loading
      passes False, since an installed package always has one.

    Raises:
        InstallationError: the manifest is missing (with missing_ok=False), is not valid
            JSON, or is not a {name: {"files": {...}}} table; the message names the file.
    """
    reinstall = ("reinstall gim_zoo (pip install --force-reinstall gim_zoo; in a clone, "
                 "restore gim_zoo/pretrained/manifest.json from git)")
    if not MANIFEST_PATH.exists():
        if missing_ok:
            return {}
        raise InstallationError(
            f"{MANIFEST_PATH} is missing: this gim_zoo installation is incomplete. The "
            "manifest pins the sha256 of every pretrained file, so no pretrained weights "
            f"can be verified (or found) without it; {reinstall}.")
    try:
        manifest = json.loads(MANIFEST_PATH.read_text())
    except json.JSONDecodeError as e:
        raise InstallationError(
            f"{MANIFEST_PATH} is not valid JSON ({e.msg}: line {e.lineno} column {e.colno}): "
            f"the installation is damaged; {reinstall}.") from None
    if not isinstance(manifest, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("files"), dict)
            for entry in manifest.values()):
        raise InstallationError(
            f"{MANIFEST_PATH} is not a gim_zoo manifest (a JSON object of "
            f'{{model name: {{"files": {{file: sha256}}, "hub_repo": ..., "revision": ...}}}}); '
            f"{reinstall}.")
    return manifest


def manifest_entry(name: str) -> dict | None:
    """`name`'s manifest entry (files, hub_repo, revision), or None if unpublished.

    Raises:
        InstallationError: the package manifest is missing or unreadable.
    """
    return read_manifest(missing_ok=False).get(name)


def pinned_files(name: str) -> dict:
    """{file: sha256} the package pins for `name`'s pretrained folder ({} if unpublished).

    Raises:
        InstallationError: the package manifest is missing or unreadable.
    """
    entry = manifest_entry(name)
    return dict(entry["files"]) if entry else {}


def file_pins(folder: str | os.PathLike) -> dict:
    """{file: sha256} of every file directly inside `folder`, by name."""
    return {p.name: sha256_of(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


def pin(name: str, folder: str | os.PathLike) -> None:
    """Pin every file of `folder` (metadata.json included) as `name`'s in the package
    manifest. New pins drop the entry's Hub record (the Hub holds the files pinned before,
    until export/publish.py records a commit of these); unchanged pins keep it."""
    files = file_pins(folder)
    manifest = read_manifest()
    old = manifest.get(name, {})
    same = old.get("files") == files
    manifest[name] = {"files": files, "hub_repo": old.get("hub_repo") if same else None,
                      "revision": old.get("revision") if same else None}
    atomic_write_json(MANIFEST_PATH, manifest)


def record_publication(folder: str | os.PathLike, repo_id: str, revision: str) -> str | None:
    """Record in the package manifest that `folder`'s model is on the Hub at repo_id,
    commit `revision`, so `load` finds it there. Only a folder holding exactly the files
    the package pins for its model (metadata.json's "name") is recorded: a revision whose
    files differ from the pins would fail every download's check.

    Returns the model name recorded, or None (nothing written).

    Raises:
        InstallationError: the package manifest is missing or unreadable.
    """
    folder = Path(folder)
    try:
        name = read_metadata(folder).get("name")
        manifest = read_manifest(missing_ok=False)
        entry = manifest.get(name)
        if entry is None or not set(entry["files"]) <= set(folder_pins(folder)) | {
                METADATA_FILE}:
            return None
        verify_folder(folder, entry["files"])
    except InstallationError:
        raise
    except (IntegrityError, OSError, AttributeError, TypeError):
        return None
    manifest[name] = {**entry, "hub_repo": repo_id, "revision": revision}
    atomic_write_json(MANIFEST_PATH, manifest)
    return name


# --- pins of one folder ------------------------------------------------------------------


def pinned_path(folder: str | os.PathLike, filename: str) -> Path:
    """folder / filename, for a file name taken from a list of pins (a manifest or a
    folder's metadata.json): it must be a relative path that stays inside the folder.

    Raises:
        IntegrityError: an absolute path, a drive, or a '..' component.
    """
    folder = Path(folder)
    if not isinstance(filename, str) or not filename.strip():
        raise IntegrityError(f"the pins for {folder} list {filename!r}, not a file name")
    posix, windows = PurePosixPath(filename), PureWindowsPath(filename)
    if (posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root
            or ".." in posix.parts or ".." in windows.parts):
        raise IntegrityError(
            f"refusing {filename!r}, listed in the pins for {folder}: it is a path outside "
            "the folder (absolute, or with '..'); a model folder's pinned files lie inside "
            "it. The list of pins was tampered with or built wrongly.")
    return folder / filename


def read_metadata(folder: str | os.PathLike) -> dict:
    """A model folder's metadata.json.

    Raises:
        FileNotFoundError: the folder has no metadata.json.
        IntegrityError: metadata.json is not valid JSON.
    """
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IntegrityError(f"{path} is not valid JSON ({e.msg}: line {e.lineno} column "
                             f"{e.colno})") from None


def folder_pins(folder: str | os.PathLike) -> dict:
    """{file: sha256} from a model folder's own metadata.json.

    Raises:
        FileNotFoundError: the folder has no metadata.json.
        IntegrityError: metadata.json is not valid JSON or has no {file: sha256} "files".
    """
    metadata = read_metadata(folder)
    files = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise IntegrityError(f'{Path(folder) / METADATA_FILE} has no "files" table of '
                             '{file: sha256}')
    return files


# What recovers a file that failed its check, by where the folder came from: only a
# reinstall restores the package's own copy (deleting it would make things worse).
RECOVER_BUNDLED = ("it is the copy bundled inside the gim_zoo package: reinstall gim_zoo "
                   "(pip install --force-reinstall gim_zoo; in a clone, `git checkout -- "
                   "gim_zoo/pretrained`) to restore it")
RECOVER_DOWNLOAD = ("delete its huggingface_hub cache entry (`hf cache delete`, or the "
                    "folder under the cache) and load again: it is downloaded afresh")
RECOVER_FOLDER = "replace it with an intact copy of the folder (or write the folder again)"


def verify_folder(folder: str | os.PathLike, expected: dict,
                  recovery: str = RECOVER_FOLDER) -> Path:
    """Check every pinned file exists in `folder` with the pinned sha256; returns the folder.

    Every name is checked to stay inside the folder before anything is read.
    recovery: what the error tells the user to do (RECOVER_BUNDLED, RECOVER_DOWNLOAD...).

    Raises:
        IntegrityError: a name leaves the folder, a pinned file is missing, or its sha256
            differs from the pinned one.
    """
    folder = Path(folder)
    paths = {filename: pinned_path(folder, filename) for filename in expected}
    for filename, want in sorted(expected.items()):
        path = paths[filename]
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (expected sha256 {want[:12]}...): "
                                 f"{recovery}")
        got = sha256_of(path)
        if got != want:
            raise IntegrityError(
                f"{path} failed its integrity check: sha256 {got[:12]}... but the pins say "
                f"{want[:12]}... The file is truncated, corrupted or tampered with; "
                f"{recovery}.")
    return folder


# --- resolution: local folder -> Hub -> bundled copy -------------------------------------


def from_hub(repo_id: str, revision: str | None, filenames,
             cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> Path:
    """Download (or take from huggingface_hub's cache) `filenames` of a model folder.

    Raises whatever huggingface_hub raises (offline, not found, network down);
    `resolve` turns those into a fallback to the bundled copy.
    """
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                  allow_patterns=list(filenames), endpoint=endpoint))


def resolve(spec, hub_repo: str | None = None, revision: str | None = None,
            local_dir: str | os.PathLike | None = None,
            cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> Path:
    """A verified local folder holding the pretrained files of `spec` (a registry
    ModelSpec: the caller has looked its name up once; nothing here looks it up again).

    hub_repo: Hub repository to try (None: the one the manifest records for `name`, if
      it is published there).
    revision: Hub branch, tag or commit sha (default: the commit the manifest records with
      its repository; another repository's default is its main branch).

    Raises:
        WeightsNotAvailableError: the model is not published yet, or no source has it.
        IntegrityError: a file differs from its pinned sha256 or is missing.
        InstallationError: the package manifest is missing or unreadable.
    """
    name = spec.name
    entry = manifest_entry(name)
    if entry is None:
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
    if hub_repo is None or hub_repo == entry.get("hub_repo"):
        # the recorded commit belongs to the recorded repository, never to another one
        hub_repo, revision = entry.get("hub_repo"), revision or entry.get("revision")
    if hub_repo:
        try:
            folder = from_hub(hub_repo, revision, needed, cache_dir, endpoint)
        except Exception as e:  # offline, not found, network down: fall back, say why
            tried.append(f"Hub {hub_repo}: {type(e).__name__}: {str(e).splitlines()[0]}")
            log.info("gim_zoo: %s not available from the Hub (%s); using the bundled copy",
                     name, tried[-1])
        else:
            return verify_folder(folder, expected, RECOVER_DOWNLOAD)
    bundled = BUNDLED_DIR / name
    if bundled.is_dir():
        return verify_folder(bundled, expected, RECOVER_BUNDLED)
    tried.append(f"bundled copy {bundled}: missing")
    raise WeightsNotAvailableError(
        f"no pretrained weights for {name!r} could be found: " + "; ".join(tried))


# The folder reader / writer and the upload, importable from gim_zoo.presets (last: they
# import the names above).
from gim_zoo.presets.folder import (ENCODER_CLASSES, check_folder_config,  # noqa: E402
                                    check_model_folder_target, is_model_folder,
                                    load_weights_checked, read_encoder, write_model_folder)
from gim_zoo.presets.upload import (check_repo_id, plan_upload, publish,  # noqa: E402
                                    unlisted_files)

__all__ = [
    "BUNDLED_DIR", "CARD_FILE", "CONFIG_FILE", "ENCODER_CLASSES", "LOCAL_DIR_ENV",
    "MANIFEST_PATH", "METADATA_FILE", "METRICS_FILE", "PACKAGE_DIR", "REQUIRED_FILES",
    "TFLITE_FILE", "TFLITE_INT8_FILE", "WEIGHTS_FILE",
    "InstallationError", "IntegrityError", "ModelMismatchError", "PublishError",
    "WeightsNotAvailableError",
    "file_pins", "folder_pins", "from_hub", "manifest_entry", "pin", "pinned_files",
    "pinned_path", "read_manifest", "read_metadata", "record_publication", "resolve",
    "verify_folder",
    "check_folder_config", "check_model_folder_target", "is_model_folder",
    "load_weights_checked", "read_encoder", "write_model_folder",
    "check_repo_id", "plan_upload", "publish", "unlisted_files",
]
