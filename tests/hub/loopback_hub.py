"""A loopback stand-in for the Hugging Face Hub, for tests: the real ``huggingface_hub`` client talks to it.

It speaks the subset of the Hub's HTTP protocol that ``HfApi.create_repo``, ``create_branch``,
``create_commit`` (preupload answered ``regular`` for every file, so content arrives inline in
the NDJSON commit), ``repo_info``, ``list_repo_tree`` and ``snapshot_download`` / ``hf_hub_download``
use, with the Hub's error shapes (JSON ``{"error": ...}``, ``X-Error-Code`` / ``X-Error-Message``).
Repos live in memory. Bearer tokens map to users; users may belong to organisations.
Fault injection: ``state.fail_commit`` (status code for the next commits) and
``state.tampered[(repo_id, path)]`` (bytes served instead of the stored file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

BAD_CREDENTIALS = "Invalid credentials in Authorization header"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the Hub uses as ETag and ``oid`` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    summary: str
    parent: str | None = None


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)

    def commit(self, branch: str, files: dict[str, bytes], summary: str) -> Commit:
        parent = self.branches.get(branch)
        blobs = sorted((path, git_blob_sha1(data)) for path, data in files.items())
        seed = json.dumps([parent, summary, len(self.commits), blobs])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), dict(files), summary, parent)
        self.commits[commit.oid] = commit
        self.branches[branch] = commit.oid
        return commit

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubState:
    """Everything the server knows and records; shared by the handler threads."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, set[str]] | None = None):
        self.tokens = dict(tokens)
        self.orgs = {org: set(members) for org, members in (orgs or {}).items()}
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.fail_commit: int | None = None
        self.tampered: dict[tuple[str, str], bytes] = {}

    def can_write(self, user: str, namespace: str) -> bool:
        return user == namespace or user in self.orgs.get(namespace, set())

    def add_repo(self, repo_id: str, owner: str | None = None, *, private: bool = False,
                 files: dict[str, bytes] | None = None) -> Repo:
        """Create a repo directly (as the Hub would on ``create_repo``: with a ``.gitattributes``)."""
        repo = Repo(repo_id, owner or repo_id.split("/")[0], private)
        repo.commit("main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                    "initial commit")
        if files:
            repo.commit("main", {**repo.resolve("main").files, **files}, "add files")
        self.repos[repo_id] = repo
        return repo

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].resolve(revision).files)

    def commit_count(self) -> int:
        return sum(1 for method, path in self.requests if method == "POST" and "/commit/" in path)


class _Reply(Exception):
    """Raised inside a route to answer with an error."""

    def __init__(self, status: int, message: str, code: str | None = None, header_message: bool = False,
                 **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.header_message = status, message, code, header_message
        self.extra = extra


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1"

    @property
    def state(self) -> HubState:
        return self.server.state  # type: ignore[attr-defined]

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body() if method == "POST" else b""
        with self.state.lock:
            self.state.requests.append((method, url.path))
            self.state.bodies.append(body)
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(method, segments, query, body)
        except _Reply as reply:
            headers = {"X-Error-Code": reply.code} if reply.code else {}
            if reply.header_message:
                headers["X-Error-Message"] = reply.message
            self._json(reply.status, {"error": reply.message, **reply.extra}, headers)

    def _route(self, method: str, seg: list[str], query: dict, body: bytes) -> None:
        if seg[:2] == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if seg[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if len(seg) >= 4 and seg[:2] == ["api", "models"]:
            repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
            if method == "GET" and not rest:
                return self._model_info(repo_id, "main")
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return self._model_info(repo_id, rest[1])
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return self._preupload(repo_id, rest[1], json.loads(body or b"{}"))
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                return self._commit(repo_id, rest[1], body, query)
            if method == "POST" and len(rest) == 2 and rest[0] == "branch":
                return self._create_branch(repo_id, rest[1], json.loads(body or b"{}"))
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise _Reply(404, f"Sorry, we can't find the page you are looking for ({method} {'/'.join(seg)}).")

    def _user(self, required: bool) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            if required:
                raise _Reply(401, "Invalid username or password.")
            return None
        scheme, _, token = auth.partition(" ")
        user = self.state.tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            raise _Reply(401, BAD_CREDENTIALS, header_message=True)
        return user

    def _readable_repo(self, repo_id: str, user: str | None) -> Repo:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not (user and self.state.can_write(user, repo.owner))):
            raise _Reply(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, repo_id: str) -> Repo:
        user = self._user(required=True)
        repo = self._readable_repo(repo_id, user)
        if not self.state.can_write(user, repo.owner):
            raise _Reply(403, f"You don't have the rights to write to {repo_id}: it belongs to {repo.owner}",
                         header_message=True)
        return repo

    @staticmethod
    def _revision(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _Reply(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _whoami(self) -> None:
        user = self._user(required=True)
        orgs = [{"type": "org", "name": org} for org, members in self.state.orgs.items() if user in members]
        self._json(200, {"type": "user", "id": f"id-{user}", "name": user, "fullname": user, "orgs": orgs,
                         "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _create_repo(self, payload: dict) -> None:
        user = self._user(required=True)
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        if payload.get("type", "model") != "model":
            raise _Reply(400, "Only model repos are supported by the loopback hub")
        if not self.state.can_write(user, namespace):
            raise _Reply(403, f"You don't have the rights to create a model under the namespace \"{namespace}\"",
                         header_message=True)
        with self.state.lock:
            if repo_id in self.state.repos:
                raise _Reply(409, "You already created this model repo", url=f"{self.base}/{repo_id}")
            self.state.add_repo(repo_id, namespace, private=payload.get("visibility") == "private")
        self._json(200, {"url": f"{self.base}/{repo_id}", "name": repo_id, "id": f"id-{repo_id}"})

    def _validate_yaml(self, payload: dict) -> None:
        self._user(required=False)
        match = _FRONT_MATTER.match(payload.get("content", ""))
        errors = []
        if match:
            try:
                if not isinstance(yaml.safe_load(match.group(1)) or {}, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._readable_repo(repo_id, self._user(required=False))
        commit = self._revision(repo, revision)
        card = _FRONT_MATTER.match(commit.files.get("README.md", b"").decode("utf-8", "replace"))
        self._json(200, {
            "_id": f"id-{repo_id}", "id": repo_id, "modelId": repo_id, "author": repo.owner, "sha": commit.oid,
            "lastModified": _now(), "createdAt": repo.created_at, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "cardData": (yaml.safe_load(card.group(1)) or {}) if card else None,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        })

    def _tree(self, repo_id: str, revision: str, prefix: str, query: dict) -> None:
        repo = self._readable_repo(repo_id, self._user(required=False))
        commit = self._revision(repo, revision)
        recursive = query.get("recursive", "").lower() in ("1", "true")
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        entries, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(base):
                continue
            parts = path[len(base):].split("/")
            for depth in range(1, len(parts)):
                if depth == 1 or recursive:
                    folders.add(base + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                data = commit.files[path]
                entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": p} for p in sorted(folders)]
        self._json(200, entries)

    def _preupload(self, repo_id: str, revision: str, payload: dict) -> None:
        repo = self._writable_repo(repo_id)
        current = repo.resolve(revision)
        files = []
        for item in payload.get("files", []):
            existing = current.files.get(item["path"]) if current else None
            files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_sha1(existing) if existing is not None else None})
        self._json(200, {"files": files, "commitOid": current.oid if current else None})

    def _create_branch(self, repo_id: str, branch: str, payload: dict) -> None:
        repo = self._writable_repo(repo_id)
        if branch in repo.branches:
            raise _Reply(409, f"Reference already exists: refs/heads/{branch}")
        start = self._revision(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        self._json(200, {})

    def _commit(self, repo_id: str, revision: str, body: bytes, query: dict) -> None:
        repo = self._writable_repo(repo_id)
        if query.get("create_pr"):
            raise _Reply(400, "Pull requests are not supported by the loopback hub")
        if revision not in repo.branches:
            raise _Reply(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if self.state.fail_commit:
            raise _Reply(self.state.fail_commit, "Internal Error - We're working hard to fix this soon!")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _Reply(400, "The first line of the commit payload must be its header")
        header = lines[0]["value"]
        with self.state.lock:
            head = repo.branches[revision]
            if header.get("parentCommit") and not head.startswith(header["parentCommit"]):
                raise _Reply(412, "A commit has happened since the parent commit")
            files = dict(repo.commits[head].files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _Reply(400, "Only base64-encoded file content is supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    raise _Reply(400, f"Unsupported commit operation {key!r} (the loopback hub has no LFS storage)")
            commit = repo.commit(revision, files, header.get("summary", ""))
        commit_url = f"{self.base}/{repo_id}/commit/{commit.oid}"
        self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": commit_url, "hookOutput": "",
                         "pullRequestUrl": None})

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._readable_repo(repo_id, self._user(required=False))
        commit = self._revision(repo, revision)
        if path not in commit.files:
            raise _Reply(404, "Entry not found", "EntryNotFound")
        stored = commit.files[path]
        served = self.state.tampered.get((repo_id, path), stored)
        self._send(200, served, {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(stored)}"',
                                 "Accept-Ranges": "bytes"}, content_type="application/octet-stream")


class LoopbackHub:
    """The server on 127.0.0.1 (a free port), served from a daemon thread; use as a context manager."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, set[str]] | None = None):
        self.state = HubState(tokens, orgs)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="loopback-hub",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
