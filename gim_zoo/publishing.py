"""Checks before a model folder goes to the Hub, and the upload itself.

A folder must be complete (config, weights, metadata, card, metrics) and its files must
match the sha256s its metadata.json records. The token is read by huggingface_hub
($HF_TOKEN or the `hf auth login` cache) and never passes through our output.
"""

import json
from pathlib import Path

REQUIRED = ("config.json", "metadata.json", "model.weights.h5", "README.md", "metrics.json")


class PublishError(ValueError):
    """The folder is not fit to publish, or the Hub refused it."""


def _listed_files(folder):
    """metadata.json's recorded files (name -> sha256), names checked to stay inside."""
    try:
        recorded = json.loads((folder / "metadata.json").read_text()).get("files", {})
    except ValueError as e:
        raise PublishError(f"{folder / 'metadata.json'} is not valid JSON: {e}") from None
    if not isinstance(recorded, dict) or not recorded:
        raise PublishError(f"{folder / 'metadata.json'} lists no files; build the folder "
                           "with export/package.py")
    for name in recorded:
        parts = Path(name).parts
        if (not parts or Path(name).is_absolute() or ".." in parts
                or any(p.startswith(".") for p in parts)):
            raise PublishError(f"{folder / 'metadata.json'} lists {name!r}, which is not a "
                               "plain file name inside the folder")
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
    listed = set(_listed_files(folder)) | {"metadata.json"}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and str(p.relative_to(folder)) not in listed)


def _checked_contents(folder):
    """[(name, bytes)] to upload: each file read once and checked against its sha256, so
    the bytes uploaded are the bytes checked."""
    import hashlib

    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise PublishError(f"{folder} is not a folder")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise PublishError(
            f"{folder} lacks {', '.join(missing)}: a published model needs its card "
            "(README.md) and measured metrics (metrics.json); build the folder with "
            "export/package.py")
    recorded = _listed_files(folder)
    unpinned = sorted(set(REQUIRED) - set(recorded) - {"metadata.json"})
    if unpinned:
        raise PublishError(f"{folder / 'metadata.json'} does not record the sha256 of "
                           f"{', '.join(unpinned)}")
    contents = []
    for name in sorted(recorded) + ["metadata.json"]:
        data = _check_plain_file(folder, name).read_bytes()
        want = recorded.get(name)
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise PublishError(
                f"{folder / name} failed its integrity check: its sha256 is not the one "
                f"metadata.json records ({want[:12]}...); rebuild the folder with "
                "export/package.py")
        contents.append((name, data))
    return contents


def publish(folder, repo_id, private=False, token=None, endpoint=None):
    """Upload exactly plan_upload's files (after its checks); returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    contents = _checked_contents(folder)
    try:
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id, commit_message=f"Upload {Path(folder).name}",
            operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=data)
                        for name, data in contents])
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        hint = " (no or invalid token: set HF_TOKEN or run `hf auth login`)" \
            if status in (401, 403) else ""
        raise PublishError(f"the Hub refused the upload: HTTP {status}{hint}") from None
    return getattr(info, "commit_url", str(info))
