"""The in-memory Hub stand-in (tests/hf_standin.py) driven by the real huggingface_hub client."""

import os
import re
import threading

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hf_standin import HubStandIn, isolate_client

TOKEN = "hf_test_token"
REPO = "gim-zoo/test-model"


@pytest.fixture(autouse=True)
def isolated_client(monkeypatch):
    isolate_client(monkeypatch)  # loopback only, no implicit token, no telemetry, online


@pytest.fixture
def hub():
    with HubStandIn(token=TOKEN) as hub:
        yield hub
    assert hub.errors == []
    leftovers = [t for t in threading.enumerate() if t.name == "hub-standin" or "process_request" in t.name]
    assert leftovers == []


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.endpoint, token=TOKEN)


def _write_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


FILES = {
    "config.json": b'{"widths": [4, 4, 8]}',
    "model.weights.h5": bytes(range(256)) * 40,
    "module_2/encoder.keras": b"\x00binary\xff" * 3,
    "README.md": b"---\nlicense: mit\n---\n# test model\n",
}


def test_create_upload_folder_then_download_each_file(hub, api, tmp_path):
    url = api.create_repo(REPO, exist_ok=True)
    assert url.repo_id == REPO
    api.create_repo(REPO, exist_ok=True)  # second call: 409, accepted
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409

    info = api.upload_folder(repo_id=REPO, folder_path=_write_tree(tmp_path / "src", FILES))
    assert re.fullmatch(r"[0-9a-f]{40}", info.oid)
    assert info.commit_url == f"{hub.endpoint}/{REPO}/commit/{info.oid}"
    assert hub.resolve(REPO) == info.oid
    assert hub.files(REPO) == FILES
    assert sorted(api.list_repo_files(REPO)) == sorted(FILES)

    writes = [r for r in hub.requests if r.method == "POST"]
    assert {r.path for r in writes} >= {"/api/repos/create", f"/api/models/{REPO}/commit/main"}
    assert all(r.authorization == f"Bearer {TOKEN}" for r in writes)

    for name, data in FILES.items():
        path = hf_hub_download(REPO, name, cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
        assert open(path, "rb").read() == data
        assert f"/snapshots/{info.oid}/" in path
    downloads = [r for r in hub.requests if "/resolve/" in r.path]
    assert downloads and not any(r.has_auth for r in downloads)  # public repo, no token sent

    # Uploading the same folder again is a no-op on the client side (preupload returned the same oids).
    again = api.upload_folder(repo_id=REPO, folder_path=tmp_path / "src")
    assert again.oid == info.oid


def test_snapshot_download_of_prepopulated_repo(hub, tmp_path):
    sha = hub.add_files(REPO, FILES)
    folder = snapshot_download(REPO, cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    assert folder.endswith(sha)
    got = {
        os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/"): open(os.path.join(d, f), "rb").read()
        for d, _, names in os.walk(folder)
        for f in names
    }
    assert got == FILES


def test_revision_pinning_serves_old_bytes(hub, api, tmp_path):
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="weights.bin", repo_id=REPO).oid
    second = api.upload_file(path_or_fileobj=b"v2", path_in_repo="weights.bin", repo_id=REPO).oid
    api.upload_file(path_or_fileobj=b"new", path_in_repo="extra.txt", repo_id=REPO)
    assert first != second

    def fetch(revision, cache):
        kwargs = dict(revision=revision, cache_dir=tmp_path / cache, endpoint=hub.endpoint)
        return open(hf_hub_download(REPO, "weights.bin", **kwargs), "rb").read()

    assert fetch(first, "a") == b"v1"
    assert fetch("main", "a") == b"v2"
    assert fetch(second, "b") == b"v2"
    old = snapshot_download(REPO, revision=first, cache_dir=tmp_path / "c", endpoint=hub.endpoint)
    assert sorted(os.listdir(old)) == ["weights.bin"]
    assert api.model_info(REPO, revision=first).sha == first
    assert [s.rfilename for s in api.model_info(REPO).siblings] == ["extra.txt", "weights.bin"]


def test_missing_entries_raise_the_clients_errors(hub, tmp_path):
    hub.add_files(REPO, {"a.txt": b"a"})
    kwargs = dict(cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    with pytest.raises(EntryNotFoundError):  # RemoteEntryNotFoundError in 2.4.0
        hf_hub_download(REPO, "missing.txt", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "a.txt", revision="no-such-branch", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("gim-zoo/nope", "a.txt", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("gim-zoo/nope", **kwargs)


def test_writes_need_the_token(hub, tmp_path):
    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.create_repo(REPO)
    assert err.value.response.status_code == 401
    assert hub.repos == {}

    hub.add_files(REPO, {"a.txt": b"a"})
    for client in (anonymous, HfApi(endpoint=hub.endpoint, token="hf_wrong")):
        with pytest.raises(HfHubHTTPError) as err:
            client.upload_file(path_or_fileobj=b"evil", path_in_repo="a.txt", repo_id=REPO)
        assert err.value.response.status_code == 401
    assert hub.files(REPO) == {"a.txt": b"a"}
    assert hub.requests[-1].authorization == "Bearer hf_wrong"


def test_private_repo_reads_need_the_token(hub, api, tmp_path):
    api.create_repo(REPO, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=REPO)
    kwargs = dict(cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "s.txt", **kwargs)
    path = hf_hub_download(REPO, "s.txt", token=TOKEN, **kwargs)
    assert open(path, "rb").read() == b"secret"
    assert hub.requests[-1].authorization == f"Bearer {TOKEN}"


def test_offline_mode_serves_from_cache_without_requests(hub, tmp_path, monkeypatch):
    hub.add_files(REPO, FILES)
    cache = tmp_path / "cache"
    online_file = hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=hub.endpoint)
    online_snapshot = snapshot_download(REPO, cache_dir=tmp_path / "snap", endpoint=hub.endpoint)
    seen = len(hub.requests)

    # HF_HUB_OFFLINE is read once, at import: setting the env var now would do nothing.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=hub.endpoint) == online_file
    assert snapshot_download(REPO, cache_dir=tmp_path / "snap", endpoint=hub.endpoint) == online_snapshot
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "model.weights.h5", cache_dir=cache, endpoint=hub.endpoint)
    assert len(hub.requests) == seen
