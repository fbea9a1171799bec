"""Where pretrained weights come from, and proof that they are the ones we trained.

Resolution order for `weights="pretrained"`: an explicit local folder -> the Hugging Face
Hub (huggingface_hub's cache, HF_HUB_OFFLINE and a pinned revision respected) -> the copy
bundled inside this package, so `load()` works on a machine with no network. Every file
is checked against the sha256 pinned in the package (`pretrained/manifest.json`) before
use; a mismatch is refused with the file's name, never silently replaced. A list of pins
(the manifest, a folder's metadata.json) may only name files inside the folder. A missing
or unreadable manifest is an installation error (reinstall), not "not published".

A model folder follows Keras' own `hf://` / KerasHub preset layout: config.json,
metadata.json, model.weights.h5, README.md (the card), plus metrics.json and .tflite files.
"""

import hashlib
import json
import logging
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "pretrained"
MANIFEST_PATH = BUNDLED_DIR / "manifest.json"
LOCAL_DIR_ENV = "GIM_ZOO_WEIGHTS_DIR"
REQUIRED_FILES = ("config.json", "metadata.json", "model.weights.h5")


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


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in `chunk`-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(missing_ok: bool = True) -> dict:
    """{model name: {"files": {file: sha256}, "revision": hub commit or null}}.

    missing_ok: a missing manifest reads as {} (for `packaging.pin`, which creates it);
      loading passes False, since an installed package always has one.

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
            f'{{model name: {{"files": {{file: sha256}}, "revision": ...}}}}); {reinstall}.')
    return manifest


def pinned_files(name: str) -> dict:
    """{file: sha256} the package pins for `name`'s pretrained folder ({} if unpublished).

    Raises:
        InstallationError: the package manifest is missing or unreadable.
    """
    entry = read_manifest(missing_ok=False).get(name)
    return dict(entry["files"]) if entry else {}


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


def folder_pins(folder: str | os.PathLike) -> dict:
    """{file: sha256} from a model folder's own metadata.json.

    Raises:
        FileNotFoundError: the folder has no metadata.json.
        IntegrityError: metadata.json is not valid JSON or has no {file: sha256} "files".
    """
    path = Path(folder) / "metadata.json"
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IntegrityError(f"{path} is not valid JSON ({e.msg}: line {e.lineno} column "
                             f"{e.colno})") from None
    files = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise IntegrityError(f'{path} has no "files" table of {{file: sha256}}')
    return files


def verify_folder(folder: str | os.PathLike, expected: dict) -> Path:
    """Check every pinned file exists in `folder` with the pinned sha256; returns the folder.

    Every name is checked to stay inside the folder before anything is read.

    Raises:
        IntegrityError: a name leaves the folder, a pinned file is missing, or its sha256
            differs from the pinned one.
    """
    folder = Path(folder)
    paths = {filename: pinned_path(folder, filename) for filename in expected}
    for filename, want in sorted(expected.items()):
        path = paths[filename]
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


def from_hub(repo_id: str, revision: str | None = None, filenames=REQUIRED_FILES,
             cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> Path:
    """Download (or take from huggingface_hub's cache) the files of a model folder.

    Raises whatever huggingface_hub raises (offline, not found, network down);
    `resolve` turns those into a fallback to the bundled copy.
    """
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                  allow_patterns=list(filenames), endpoint=endpoint))


def resolve(name: str, hub_repo: str | None = None, revision: str | None = None,
            local_dir: str | os.PathLike | None = None,
            cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> Path:
    """A verified local folder holding `name`'s pretrained files.

    hub_repo: Hub repository to try (None: the registry's, if the model is published).
    revision: Hub branch, tag or commit sha (default: the revision pinned in the manifest).

    Raises:
        UnknownModelError: `name` is not in the registry (and not in the manifest).
        WeightsNotAvailableError: the model is not published yet, or no source has it.
        IntegrityError: a file differs from its pinned sha256 or is missing.
        InstallationError: the package manifest is missing or unreadable.
    """
    entry = read_manifest(missing_ok=False).get(name)
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


def upload_folder(folder: str | os.PathLike, repo_id: str, token: str | None = None,
                  private: bool = False, endpoint: str | None = None,
                  commit_message: str | None = None):
    """create_repo + upload_folder; returns the CommitInfo. The token is never logged.

    Raises whatever huggingface_hub raises (e.g. HfHubHTTPError for a missing token);
    `publishing.publish` turns those into PublishError.
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                             commit_message=commit_message or f"Upload {Path(folder).name}")
    return info
