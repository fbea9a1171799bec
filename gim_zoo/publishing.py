"""Checks before a model folder goes to the Hub, and the upload itself.

A folder must be complete (config, weights, metadata, card, metrics) and its files must
match the sha256s its metadata.json records. The token is read by huggingface_hub
($HF_TOKEN or the `hf auth login` cache) and never passes through our output.
"""

import json
from pathlib import Path

from gim_zoo import hub

REQUIRED = ("config.json", "metadata.json", "model.weights.h5", "README.md", "metrics.json")


class PublishError(ValueError):
    """The folder is not fit to publish, or the Hub refused it."""


def plan_upload(folder):
    """[(relative path, size)] of what would be uploaded, after checking the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise PublishError(
            f"{folder} lacks {', '.join(missing)}: a published model needs its card "
            "(README.md) and measured metrics (metrics.json); build the folder with "
            "export/package.py")
    recorded = json.loads((folder / "metadata.json").read_text()).get("files", {})
    try:
        hub.verify_folder(folder, recorded)
    except hub.IntegrityError as e:
        raise PublishError(str(e)) from e
    return [(str(p.relative_to(folder)), p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]


def publish(folder, repo_id, private=False, token=None, endpoint=None):
    """Upload after plan_upload's checks; returns the commit URL."""
    from huggingface_hub.errors import HfHubHTTPError

    plan_upload(folder)
    try:
        info = hub.upload_folder(folder, repo_id, token=token, private=private,
                                 endpoint=endpoint)
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        hint = " (no or invalid token: set HF_TOKEN or run `hf auth login`)" \
            if status in (401, 403) else ""
        raise PublishError(f"the Hub refused the upload: HTTP {status}{hint}") from None
    return getattr(info, "commit_url", str(info))
