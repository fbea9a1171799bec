"""Checks before a model folder goes to the Hub, and the upload itself.

A folder must be complete (presets.REQUIRED_FILES: config, weights, metadata, card,
metrics) and its files must match the sha256s its metadata.json records. The token is
read by huggingface_hub ($HF_TOKEN or the `hf auth login` cache) and never passes through
our output. After an upload, `presets.record_publication` writes where it went into the
package manifest (export/publish.py).
"""

import hashlib
from pathlib import Path, PurePosixPath

from gim_zoo.presets import (METADATA_FILE, REQUIRED_FILES, IntegrityError, PublishError,
                             folder_pins, pinned_path)


def _listed_files(folder):
    """metadata.json's recorded files (name -> sha256), each a plain name inside."""
    build = "build the folder with training/package.py"
    try:
        recorded = folder_pins(folder)
    except IntegrityError as e:
        raise PublishError(f"{e}; {build}") from None
    if not recorded:
        raise PublishError(f"{folder / METADATA_FILE} lists no files; {build}")
    for name in recorded:
        try:
            pinned_path(folder, name)
        except IntegrityError as e:
            raise PublishError(str(e)) from None
        if any(part.startswith(".") for part in PurePosixPath(name).parts):
            raise PublishError(f"{folder / METADATA_FILE} lists {name!r}, a hidden file: a "
                               "published folder holds plain file names only")
    return recorded


def _check_plain_file(folder, name):
    path = folder
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            raise PublishError(f"{path} is a symbolic link: a published folder holds the "
                               "files themselves (copy the file in place of the link)")
    if not path.is_file():
        raise PublishError(f"{path} is missing or not a file")
    return path


def plan_upload(folder):
    """[(relative path, size)] of what would be uploaded, after checking the folder:
    exactly the files metadata.json lists, plus metadata.json, none of them a symbolic
    link and each with its recorded sha256. Nothing else in the folder is uploaded."""
    return [(name, len(data)) for name, data in _checked_contents(folder)]


def unlisted_files(folder):
    """Files in `folder` that metadata.json does not list (never uploaded)."""
    folder = Path(folder)
    listed = set(_listed_files(folder)) | {METADATA_FILE}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and str(p.relative_to(folder)) not in listed)


def _checked_contents(folder):
    """[(name, bytes)] to upload: each file read once and checked against its sha256, so
    the bytes uploaded are the bytes checked."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise PublishError(f"{folder} is not a folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise PublishError(
            f"{folder} lacks {', '.join(missing)}: a published model needs its card "
            "(README.md) and measured metrics (metrics.json); build the folder with "
            "training/package.py")
    recorded = _listed_files(folder)
    unpinned = sorted(set(REQUIRED_FILES) - set(recorded) - {METADATA_FILE})
    if unpinned:
        raise PublishError(f"{folder / METADATA_FILE} does not record the sha256 of "
                           f"{', '.join(unpinned)}")
    contents = []
    for name in sorted(recorded) + [METADATA_FILE]:
        data = _check_plain_file(folder, name).read_bytes()
        want = recorded.get(name)
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise PublishError(
                f"{folder / name} failed its integrity check: its sha256 is not the one "
                f"metadata.json records ({want[:12]}...); rebuild the folder with "
                "training/package.py")
        contents.append((name, data))
    return contents


def check_repo_id(repo_id):
    """Refuse a Hub repository id the Hub would (PublishError, one line), before anything
    is read or sent."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if not isinstance(repo_id, str) or not repo_id.strip():
            raise HFValidationError("it is empty")
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"{repo_id!r} is not a valid Hub repository id ({e}); use "
                           "NAMESPACE/NAME, e.g. your-org/gim-fmnist-resnet") from None
    return repo_id


def _network_error(e):
    """Whether `e` says the Hub could not be reached (no network, refused, offline mode),
    whichever HTTP library huggingface_hub uses."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(e, (OSError, OfflineModeIsEnabled)) or any(
        cls.__name__ in ("TransportError", "ConnectionError", "Timeout")
        for cls in type(e).__mro__)


def publish(folder, repo_id, private=False, token=None, endpoint=None):
    """Upload exactly plan_upload's files (after its checks) in one commit.

    Returns huggingface_hub's CommitInfo: a str, the commit URL, whose `.oid` is the
    revision to record (`presets.record_publication`).

    Raises:
        PublishError: the folder is not fit to publish, or the Hub refused it.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    contents = _checked_contents(folder)
    try:
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.create_commit(
            repo_id=repo_id, commit_message=f"Upload {Path(folder).name}",
            operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=data)
                        for name, data in contents])
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        hint = " (no or invalid token: set HF_TOKEN or run `hf auth login`)" \
            if status in (401, 403) else ""
        raise PublishError(f"the Hub refused the upload: HTTP {status}{hint}") from None
    except Exception as e:  # noqa: BLE001  only network failures, re-raised otherwise
        if not _network_error(e):
            raise
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise PublishError(
            f"cannot reach the Hub at {endpoint or constants.ENDPOINT} ({reason}): nothing "
            "was uploaded; check the network connection (and that HF_HUB_OFFLINE is not "
            "set), then publish again") from None
