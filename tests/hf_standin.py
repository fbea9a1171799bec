"""In-memory stand-in for the Hugging Face Hub HTTP API, for tests (stdlib only).

``HubStandIn`` serves, on 127.0.0.1 and an ephemeral port, the endpoints that the real
``huggingface_hub`` client (written against 2.4.0) calls for these operations:

* ``HfApi.create_repo``            POST /api/repos/create (409 when it exists, so ``exist_ok=True`` works)
* ``HfApi.upload_file`` / ``upload_folder`` / ``create_commit``
                                   POST /api/{models|datasets|spaces}/{id}/preupload/{rev}, always answering
                                   ``uploadMode: "regular"``, so the client never starts an LFS or Xet transfer
                                   (with hf_xet installed ``upload_folder`` still takes its pipelined path, but
                                   with only "regular" files it sends nothing to Xet: HF_HUB_DISABLE_XET is not
                                   needed), then POST .../commit/{rev} (ndjson: a header line then ``file``,
                                   ``deletedFile`` and ``deletedFolder`` lines); POST /api/validate-yaml
                                   (README.md commits) accepts anything.
* ``HfApi.repo_info`` / ``model_info``  GET /api/{type}s/{id} and GET /api/{type}s/{id}/revision/{rev}
* ``HfApi.list_repo_tree`` / ``list_repo_files`` (used by ``snapshot_download``)  GET .../tree/{rev}[/{path}]
* ``hf_hub_download`` / ``snapshot_download``  HEAD and GET /[datasets/|spaces/]{id}/resolve/{rev}/{filename},
                                   with the ETag (git blob sha1), X-Repo-Commit and Content-Length headers the
                                   client reads; no X-Xet-Hash header, so downloads are plain HTTP.

Errors carry the ``X-Error-Code`` header the client maps to exception classes: ``RepoNotFound``,
``RevisionNotFound`` and ``EntryNotFound`` (404). Writes need ``Authorization: Bearer <token>``; a wrong
token is refused everywhere, as on the Hub (401, "Invalid credentials in Authorization header"); reads of
public repos need none, private repos read as missing without the token.

A revision is a branch name or a full 40-hex commit sha; every commit keeps its own snapshot, so pinning
to an old sha serves the old bytes. Each request is recorded in ``hub.requests``.

Limits: no LFS/Xet storage (an ``lfsFile`` commit line is refused with 400), no tags, pull requests,
branch creation, paths-info, deletion of repos, Range requests or pagination (the whole tree comes in one
page); repo ids must be ``namespace/name``; new repos start with an empty commit (no ``.gitattributes``).
HTTP/1.0, one connection per request, so no handler thread outlives a request.
An unexpected failure inside the stand-in answers 400 (not 500, which the client would retry with
back-off) and is kept in ``hub.errors``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_TYPE_PREFIX = {"models": "", "datasets": "datasets/", "spaces": "spaces/"}  # URL segment -> repo key prefix
_CREATE_PREFIX = {None: "", "model": "", "dataset": "datasets/", "space": "spaces/"}  # create_repo "type"


class RequestRecord(NamedTuple):
    method: str
    path: str  # percent-decoded, without the query string
    has_auth: bool
    authorization: str | None  # the raw header value, e.g. "Bearer hf_test_token"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def git_blob_sha(data: bytes) -> str:
    """The git blob id of ``data``, which the Hub uses as ETag and ``oid`` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, private: bool = False):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}  # commit sha -> {path: bytes}
        self.refs: dict[str, str] = {}  # branch -> commit sha


class HubStandIn:
    """Fake Hub; use as ``with HubStandIn(token="hf_test_token") as hub: HfApi(endpoint=hub.endpoint, ...)``.

    Repos are keyed like their web URL path: ``"user/model"``, ``"datasets/user/data"``.
    """

    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[str, _Repo] = {}
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []  # tracebacks of unexpected failures inside the stand-in
        self.endpoint: str | None = None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "HubStandIn":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> "HubStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests
    def add_files(self, repo_id: str, files: dict[str, bytes], *, private: bool = False) -> str:
        """Commit ``files`` on top of ``main`` (creating a public repo if needed); return the commit sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, _Repo(private))
            base = repo.commits[repo.refs["main"]] if "main" in repo.refs else {}
            return self._commit(repo, "main", {**base, **files})

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            repo = self.repos[repo_id]
            return dict(repo.commits[self._resolve(repo, revision)])

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """Commit sha that ``revision`` points at."""
        with self._lock:
            return self._resolve(self.repos[repo_id], revision)

    # ---------------------------------------------------------------- internals
    def _commit(self, repo: _Repo, branch: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
        repo.commits[sha] = files
        repo.refs[branch] = sha
        return sha

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> str:
        if revision in repo.refs:
            return repo.refs[revision]
        if _COMMIT_SHA.fullmatch(revision) and revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _repo(self, key: str, authorized: bool) -> _Repo:
        repo = self.repos.get(key)
        if repo is None or (repo.private and not authorized):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _authorized(self, auth: str | None) -> bool:
        if auth is None:
            return False
        if auth == f"Bearer {self.token}":
            return True
        raise HubError(401, "Invalid credentials in Authorization header")

    def handle(self, method: str, raw_path: str, query: dict, auth: str | None, body: bytes):
        """Route one request; return ``(status, headers, payload)`` where payload is bytes or JSON-able."""
        authorized = self._authorized(auth)
        segs = [unquote(s) for s in raw_path.strip("/").split("/")]
        if segs[0] == "api":
            if method == "POST" and segs[1:] == ["validate-yaml"]:
                return 200, {}, {"errors": [], "warnings": []}
            if method == "POST" and segs[1:] == ["repos", "create"]:
                return self._create_repo(authorized, json.loads(body or b"{}"))
            if len(segs) >= 4 and segs[1] in _TYPE_PREFIX:
                key = _TYPE_PREFIX[segs[1]] + "/".join(segs[2:4])
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
                        raise HubError(401, "You must be authenticated to write to a repo (no token sent)")
                    if "create_pr" in query:
                        raise HubError(400, "HubStandIn does not emulate pull requests")
                    handler = self._preupload if action == "preupload" else self._commit_request
                    return handler(key, rest[0], json.loads(body) if action == "preupload" else body)
        else:
            start = 1 if segs[0] in ("datasets", "spaces") else 0
            if method in ("GET", "HEAD") and len(segs) > start + 4 and segs[start + 2] == "resolve":
                key = "/".join(segs[: start + 2])
                return self._resolve_file(key, segs[start + 3], "/".join(segs[start + 4 :]), authorized)
        raise HubError(404, f"HubStandIn: no route for {method} {raw_path}")

    def _create_repo(self, authorized: bool, payload: dict):
        if not authorized:
            raise HubError(401, "You must be authenticated to create a repo (no token sent)")
        if not payload.get("organization"):
            raise HubError(400, "HubStandIn needs repo ids of the form 'namespace/name'")
        key = f"{_CREATE_PREFIX[payload.get('type')]}{payload['organization']}/{payload['name']}"
        with self._lock:
            if key in self.repos:
                raise HubError(409, "You already created this model repo", headers={"X-Error-Code": "RepoExists"})
            repo = self.repos[key] = _Repo(private=payload.get("visibility") == "private" or payload.get("private"))
            self._commit(repo, "main", {})
        return 200, {}, {"url": f"{self.endpoint}/{key}", "name": key}

    def _info(self, key: str, revision: str, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            sha = self._resolve(repo, revision)
            files = repo.commits[sha]
        repo_id = key.split("/", 1)[1] if key.startswith(("datasets/", "spaces/")) else key
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_blob_sha(d)} for p, d in sorted(files.items())]
        return 200, {}, {"_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                         "private": bool(repo.private), "gated": False, "disabled": False, "tags": [],
                         "downloads": 0, "likes": 0, "siblings": siblings}

    def _tree(self, key: str, revision: str, folder: str, recursive: bool, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            files = repo.commits[self._resolve(repo, revision)]
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(files.items()):
            if not path.startswith(prefix):
                continue
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
            files = repo.commits[self._resolve(repo, revision)]
        return 200, {}, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None}
            for f in payload.get("files", [])
        ]}

    def _commit_request(self, key: str, branch: str, body: bytes):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first ndjson line must be the commit header")
        with self._lock:
            repo = self._repo(key, True)
            if branch not in repo.refs:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to an existing branch)", "RevisionNotFound")
            parent = lines[0]["value"].get("parentCommit")
            if parent is not None and parent != repo.refs[branch]:
                raise HubError(412, f"A commit has happened since. Please refresh and try again. ({parent})")
            files = dict(repo.commits[repo.refs[branch]])
            for line in lines[1:]:
                op, value = line.get("key"), line.get("value", {})
                if op == "file":
                    content = value["content"]
                    files[value["path"]] = (
                        base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    )
                elif op == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif op == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                else:
                    raise HubError(400, f"HubStandIn does not emulate {op!r} commit lines (no LFS/Xet storage)")
            sha = self._commit(repo, branch, files)
        return 200, {}, {"success": True, "commitOid": sha, "commitUrl": f"{self.endpoint}/{key}/commit/{sha}",
                         "hookOutput": "", "pullRequestUrl": None}

    def _resolve_file(self, key: str, revision: str, filename: str, authorized: bool):
        with self._lock:
            repo = self._repo(key, authorized)
            sha = self._resolve(repo, revision)
            data = repo.commits[sha].get(filename)
        if data is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(data)}"', "Content-Type": "application/octet-stream"}
        return 200, headers, data


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins every request thread
    block_on_close = True


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers in keep-alive
    timeout = 10

    def do_GET(self):
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def do_POST(self):
        self._serve("POST")

    def log_message(self, *args):  # keep test output quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        auth = self.headers.get("Authorization")
        self.hub.requests.append(RequestRecord(method, unquote(url.path), auth is not None, auth))
        try:
            status, headers, payload = self.hub.handle(method, url.path, parse_qs(url.query), auth, self._body())
        except HubError as e:
            status, payload = e.status, {"error": e.message}
            headers = {"X-Error-Message": e.message, **({"X-Error-Code": e.code} if e.code else {}), **e.headers}
        except Exception:  # a bug in the stand-in: 400 rather than 500, which the client would retry for seconds
            self.hub.errors.append(traceback.format_exc())
            status, headers, payload = 400, {"X-Error-Message": "HubStandIn internal error"}, {"error": "internal"}
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **headers}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)
