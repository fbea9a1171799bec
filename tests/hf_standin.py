"""In-memory stand-in for the Hugging Face Hub HTTP API, for tests (stdlib only).

``HubStandIn`` serves on 127.0.0.1 (ephemeral port) what the real ``huggingface_hub`` client
(read from 2.4.0) calls for:

* ``HfApi.create_repo``: POST /api/repos/create; 409 with the ``url`` body the client reads, so
  ``exist_ok=True`` works.
* ``HfApi.upload_file / upload_folder / create_commit``: POST /api/{type}s/{id}/preupload/{rev} answers
  ``uploadMode: "regular"`` for every file, so no LFS or Xet transfer ever starts (with hf_xet installed
  ``upload_folder`` takes its pipelined path, which then sends nothing to Xet: HF_HUB_DISABLE_XET is not
  needed); it also returns the ``oid`` of files already there, so unchanged files are skipped. Then
  POST .../commit/{rev} (ndjson: header, ``file`` (base64), ``deletedFile``, ``deletedFolder`` lines).
  POST /api/validate-yaml (README.md uploads) accepts anything.
* ``HfApi.repo_info / model_info``: GET /api/{type}s/{id}[/revision/{rev}] (``sha``, ``siblings``).
* ``HfApi.list_repo_tree / list_repo_files`` and ``snapshot_download``: GET .../tree/{rev}[/{path}].
* ``hf_hub_download`` and ``snapshot_download``: HEAD and GET /[datasets/|spaces/]{id}/resolve/{rev}/{file}
  with ETag (git blob sha1), X-Repo-Commit and Content-Length, and no X-Xet-Hash: plain HTTP downloads.

Errors carry the ``X-Error-Code`` that the client turns into its exceptions: ``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound`` (all 404). Writes need ``Authorization: Bearer <token>`` (401
otherwise); a wrong token is refused on every route, as on the Hub. Public repos read without a token;
private ones look missing without it. A revision is a branch or a full commit sha, and every commit keeps
its own snapshot, so pinning an old sha serves the old bytes. Every request lands in ``hub.requests``.

Limits: no LFS/Xet storage (an ``lfsFile`` commit line gets 400), tags, pull requests, new branches,
paths-info, repo deletion, Range requests, chunked request bodies or pagination; repo ids must be
``namespace/name``; a new repo starts with an empty commit (the Hub adds ``.gitattributes``). HTTP/1.0,
one connection per request, and ``stop()`` joins every thread. A bug inside the stand-in answers 400 (a
500 would be retried by the client for seconds) and its traceback is kept in ``hub.errors``.

``isolate_client(monkeypatch)`` keeps the client itself off the real network and off local tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

_SHA = re.compile(r"[0-9a-f]{40}")
_URL_PREFIX = {"models": "", "datasets": "datasets/", "spaces": "spaces/"}  # /api/{segment}/ -> key prefix
_TYPE_PREFIX = {None: "", "model": "", "dataset": "datasets/", "space": "spaces/"}  # create_repo "type"


class RequestRecord(NamedTuple):
    method: str
    path: str  # percent-decoded, no query string
    has_auth: bool
    authorization: str | None  # raw header, e.g. "Bearer hf_test_token"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def git_blob_sha(data: bytes) -> str:
    """Git blob id of ``data``: the Hub's ETag and ``oid`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, private: bool = False):
        self.private = bool(private)
        self.commits: dict[str, dict[str, bytes]] = {}  # commit sha -> {path: bytes}
        self.refs: dict[str, str] = {}  # branch -> commit sha

    def commit(self, branch: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
        self.commits[sha], self.refs[branch] = files, sha
        return sha

    def resolve(self, revision: str) -> str:
        if revision in self.refs:
            return self.refs[revision]
        if _SHA.fullmatch(revision) and revision in self.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class HubStandIn:
    """``with HubStandIn(token="hf_test_token") as hub: HfApi(endpoint=hub.endpoint, token=hub.token)``.

    Repos are keyed like their web path: ``"user/model"``, ``"datasets/user/data"``.
    """

    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[str, _Repo] = {}
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []
        self.endpoint: str | None = None
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HubStandIn:
        self._server = _Server(("127.0.0.1", 0), type("Handler", (_Handler,), {"hub": self}))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="hub-standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
            self._thread.join()
            self._server = self._thread = None

    # ------------------------------------------------------------ helpers for tests
    def add_files(self, repo_id: str, files: dict[str, bytes], *, private: bool = False) -> str:
        """Commit ``files`` on top of ``main``, creating the repo if needed; return the commit sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, _Repo(private))
            return repo.commit("main", {**(repo.commits[repo.refs["main"]] if repo.refs else {}), **files})

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            return dict(self.repos[repo_id].commits[self.resolve(repo_id, revision)])

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """Commit sha that ``revision`` (branch or sha) points at."""
        with self._lock:
            return self.repos[repo_id].resolve(revision)

    # ------------------------------------------------------------ routing
    def handle(self, method: str, raw_path: str, query: dict, auth: str | None, body: bytes):
        """Answer one request: ``(status, headers, payload)``, payload being bytes or JSON-able."""
        if auth is not None and auth != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        authorized = auth is not None
        segs = [unquote(s) for s in raw_path.strip("/").split("/")]  # revisions come quoted with safe=""
        if segs[0] != "api":  # /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path...}
            i = 3 if segs[0] in ("datasets", "spaces") else 2
            if method in ("GET", "HEAD") and len(segs) > i + 2 and segs[i] == "resolve":
                return self._resolve_file("/".join(segs[:i]), segs[i + 1], "/".join(segs[i + 2 :]), authorized)
        elif method == "POST" and segs[1:] == ["validate-yaml"]:
            return 200, {}, {"errors": [], "warnings": []}
        elif method == "POST" and segs[1:] == ["repos", "create"]:
            return self._create_repo(authorized, json.loads(body or b"{}"))
        elif len(segs) >= 4 and segs[1] in _URL_PREFIX:  # /api/{type}s/{ns}/{name}[/{action}/{rev}[/{path}]]
            key = _URL_PREFIX[segs[1]] + "/".join(segs[2:4])
            action, rest = (segs[4], segs[5:]) if len(segs) > 4 else (None, [])
            if method == "GET" and action is None:
                return self._info(key, "main", authorized)
            if method == "GET" and action == "revision" and len(rest) == 1:
                return self._info(key, rest[0], authorized)
            if method == "GET" and action == "tree" and rest:
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._tree(key, rest[0], "/".join(rest[1:]), recursive, authorized)
            if method == "POST" and action in ("preupload", "commit") and len(rest) == 1:
                if not authorized:
                    raise HubError(401, "Write access needs a token")
                if "create_pr" in query:
                    raise HubError(400, "HubStandIn does not emulate pull requests")
                if action == "preupload":
                    return self._preupload(key, rest[0], json.loads(body))
                return self._commit(key, rest[0], body)
        raise HubError(404, f"HubStandIn has no route for {method} {raw_path}")

    def _repo(self, key: str, authorized: bool) -> _Repo:
        repo = self.repos.get(key)
        if repo is None or (repo.private and not authorized):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _create_repo(self, authorized: bool, payload: dict):
        if not authorized:
            raise HubError(401, "Creating a repo needs a token")
        if not payload.get("organization"):
            raise HubError(400, "HubStandIn needs repo ids of the form 'namespace/name'")
        key = f"{_TYPE_PREFIX[payload.get('type')]}{payload['organization']}/{payload['name']}"
        url = f"{self.endpoint}/{key}"
        with self._lock:
            if key in self.repos:  # with exist_ok=True the client reads "url" from this body
                return 409, {"X-Error-Message": "You already created this repo"}, {"error": "exists", "url": url}
            self.repos[key] = _Repo(private=payload.get("visibility") == "private" or payload.get("private"))
            self.repos[key].commit("main", {})
        return 200, {}, {"url": url, "name": key}

    def _info(self, key: str, revision: str, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            sha = repo.resolve(revision)
            files = repo.commits[sha]
        repo_id = key.split("/", 1)[1] if key.startswith(("datasets/", "spaces/")) else key
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_blob_sha(d)} for p, d in sorted(files.items())]
        return 200, {}, {"_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                         "private": repo.private, "gated": False, "disabled": False, "tags": [],
                         "downloads": 0, "likes": 0, "siblings": siblings}

    def _tree(self, key: str, revision: str, folder: str, recursive: bool, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            files = repo.commits[repo.resolve(revision)]
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(files.items()):
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                    sub = prefix + "/".join(parts[:depth])
                    entries[sub] = {"type": "directory", "oid": hashlib.sha1(sub.encode()).hexdigest(), "path": sub}
                if recursive or len(parts) == 1:
                    entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        if prefix and not entries:
            raise HubError(404, f"{folder} does not exist", "EntryNotFound")
        return 200, {}, list(entries.values())

    def _preupload(self, key: str, revision: str, payload: dict):
        with self._lock:
            repo = self._repo(key, True)
            files = repo.commits[repo.resolve(revision)]
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                   "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None}
                  for f in payload.get("files", [])]
        return 200, {}, {"files": answer}

    def _commit(self, key: str, branch: str, body: bytes):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first ndjson line must be the commit header")
        with self._lock:
            repo = self._repo(key, True)
            if branch not in repo.refs:
                raise HubError(404, f"Invalid rev id: {branch} (commit to an existing branch)", "RevisionNotFound")
            parent = lines[0]["value"].get("parentCommit")
            if parent is not None and parent != repo.refs[branch]:
                raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files = dict(repo.commits[repo.refs[branch]])
            for line in lines[1:]:
                op, value = line.get("key"), line.get("value", {})
                if op == "file":
                    raw = value["content"]
                    files[value["path"]] = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
                elif op == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif op == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                else:
                    raise HubError(400, f"HubStandIn does not emulate {op!r} commit lines (no LFS/Xet storage)")
            sha = repo.commit(branch, files)
        return 200, {}, {"success": True, "commitOid": sha, "commitUrl": f"{self.endpoint}/{key}/commit/{sha}",
                         "hookOutput": "", "pullRequestUrl": None}

    def _resolve_file(self, key: str, revision: str, filename: str, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            sha = repo.resolve(revision)
            data = repo.commits[sha].get(filename)
        if data is None:  # X-Repo-Commit lets the client cache the absence (.no_exist)
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        etag = f'"{git_blob_sha(data)}"'
        return 200, {"X-Repo-Commit": sha, "ETag": etag, "Content-Type": "application/octet-stream"}, data


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins every request thread


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.0"  # one request per connection: no thread waits on a keep-alive socket
    timeout = 10

    def do_GET(self):
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def do_POST(self):
        self._serve("POST")

    def log_message(self, *args):
        pass

    def _serve(self, method: str) -> None:
        url, auth = urlsplit(self.path), self.headers.get("Authorization")
        self.hub.requests.append(RequestRecord(method, unquote(url.path), auth is not None, auth))
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload = self.hub.handle(method, url.path, parse_qs(url.query), auth, body)
        except HubError as e:
            status, payload = e.status, {"error": e.message}
            headers = {"X-Error-Message": e.message, **({"X-Error-Code": e.code} if e.code else {}), **e.headers}
        except Exception:
            self.hub.errors.append(traceback.format_exc())
            status, headers, payload = 400, {"X-Error-Message": "HubStandIn internal error"}, {"error": "bug"}
        if not isinstance(payload, bytes):
            payload, headers = json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)


def isolate_client(monkeypatch) -> None:
    """Make ``huggingface_hub`` safe to run against a stand-in (use from a pytest fixture).

    * only loopback host names resolve, so nothing can reach the real network;
    * ``HF_HUB_DISABLE_TELEMETRY``: otherwise building the user agent fetches an agent list from huggingface.co;
    * ``HF_HUB_DISABLE_IMPLICIT_TOKEN``: ``token=None`` sends no token from HF_TOKEN or ~/.cache/huggingface;
    * ``HF_HUB_OFFLINE`` off (set it back to True with monkeypatch to test offline mode).
    The client reads these env vars once, at import, so the ``constants`` attributes are patched instead.
    """
    from huggingface_hub import constants

    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"the test tried to reach {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
