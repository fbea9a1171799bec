"""Publish a zoo model folder to the Hugging Face Hub (create_repo + one commit).

    python export/publish.py --folder=gim_zoo/pretrained/gim-fmnist-resnet \
        --repo_id=YOUR_ORG/gim-fmnist-resnet [--dry_run]

The token comes from $HF_TOKEN or `hf auth login`; it is never printed or written. A folder
without a model card (README.md) and metrics.json is refused. Exactly the files that
metadata.json lists (and metadata.json) are uploaded, each checked against its sha256;
symbolic links are refused and anything else in the folder (.env, notes) stays local.
When the folder is the package's pinned copy of its model (training/package.py's bundled
folder), the repository and the new commit are recorded in gim_zoo/pretrained/manifest.json,
where `gim_zoo.load` looks for them.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from gim_zoo.presets import (MANIFEST_PATH, InstallationError, PublishError,  # noqa: E402
                             check_repo_id, plan_upload, publish, record_publication,
                             unlisted_files)

flags.DEFINE_string("folder", None, "model folder to upload", required=True)
flags.DEFINE_string("repo_id", None, "Hub repository, e.g. org/gim-fmnist-resnet", required=True)
flags.DEFINE_bool("dry_run", False, "list what would be uploaded and stop")
flags.DEFINE_bool("private", False, "create the repository as private")


def main(argv):
    f = flags.FLAGS
    try:
        check_repo_id(f.repo_id)  # before anything is read: a dry run checks it too
        files = plan_upload(f.folder)
        for path, size in files:
            print(f"{size:>10,d}  {path}")
        for path in unlisted_files(f.folder):
            print(f"not uploaded (not listed in metadata.json): {path}", file=sys.stderr)
        if f.dry_run:
            print(f"dry run: {len(files)} files would be uploaded to {f.repo_id}")
            return
        commit = publish(f.folder, f.repo_id, private=f.private)
        print(f"published: {commit}")
        name = record_publication(f.folder, f.repo_id, commit.oid)
    except (PublishError, InstallationError, OSError) as e:
        sys.exit(f"error: {e}")
    if name:
        print(f"recorded in {MANIFEST_PATH}: {name} is at {f.repo_id}, revision {commit.oid}")
    else:
        print(f"not recorded in {MANIFEST_PATH}: the folder is not the package's pinned copy "
              "of its model (package it with training/package.py, then publish that folder)")


if __name__ == "__main__":
    app.run(main)
