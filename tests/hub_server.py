"""A small local stand-in for the Hugging Face Hub HTTP API, for tests (standard library only).

It implements just the routes that `huggingface_hub` (2.x) calls to create a repo, commit files and download them:

    GET  /api/whoami-v2                                   who owns the bearer token
    GET  /api/agent-harnesses                             an empty registry (the client's best-effort telemetry)
    POST /api/repos/create                                create a model repo (initial commit with .gitattributes)
    POST /api/validate-yaml                               accept any README metadata (tests parse it themselves)
    GET  /api/models/{ns}/{name}[/revision/{rev}]         repo info (sha, private, siblings)
    GET  /api/models/{ns}/{name}/tree/{rev}[/{path}]      list files (and folders)
    POST /api/models/{ns}/{name}/preupload/{rev}          answer "regular" for every file, so there is no LFS
    POST /api/models/{ns}/{name}/commit/{rev}             NDJSON commit: header, file (base64), deletedFile/Folder
    HEAD/GET /{ns}/{name}/resolve/{rev}/{path}            file download with ETag, X-Repo-Commit, Content-Length

The real Hub is unreachable from the test machines, and no library offers a fake Hub, hence this file.

Storage: blobs live in a temporary folder, addressed by their git blob sha1 (the Hub's ETag for regular files);
every commit is an immutable snapshot {path: blob sha1}. A commit builds the new snapshot aside and only then moves
the branch head under a lock, so a commit applies all of its files or none (`fail_commits_midway` checks that).
Every request is recorded in `requests`, and any route the server does not know lands in `unhandled`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

MAIN = "main"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"

ROUTE_MODEL_API = re.compile(
    r"^/api/models/([^/]+)/([^/]+)(?:/(tree|preupload|commit|revision)/([^/]+)(?:/(.*))?)?$"
)
ROUTE_RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the Hub sends as the ETag of regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, str]  # path in repo -> blob sha1
    date: str  # ISO 8601 in the Hub's format, e.g. 2024-05-01T12:00:00.000Z


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first; the last one is the head of main

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def find(self, revision: str) -> Commit | None:
        if revision == MAIN:
            return self.head
        return next((c for c in self.commits if c.oid == revision), None)


@dataclass
class RecordedRequest:
    method: str
    path: str
    authorized_as: str | None  # user name of a valid bearer token, None without a (valid) token


class HubError(Exception):
    """An error answer, with the X-Error-Code header huggingface_hub maps to its exception classes."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        error_code: str | None = None,
        commit: str | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.error_code, self.commit = status, message, error_code, commit
        self.extra = extra or {}  # more fields for the JSON body


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port). Use as a context manager or call start()/stop().

    `tokens` maps each valid bearer token to its user name; a user may write only to repos in its own namespace.
    """

    def __init__(self, tokens: dict[str, str], root: str | Path | None = None):
        self.tokens = dict(tokens)
        self._tempdir = tempfile.TemporaryDirectory(prefix="fake-hub-") if root is None else None
        self.blob_dir = Path(root if root is not None else self._tempdir.name) / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        # Test switch: when True, commits stage half of their files and then fail with a 500.
        self.fail_commits_midway = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ----------------------------------------------------------------- inspection helpers for tests

    def head(self, repo_id: str) -> str:
        return self.repos[repo_id].head.oid

    def read_files(self, repo_id: str, revision: str = MAIN) -> dict[str, bytes]:
        commit = self.repos[repo_id].find(revision)
        return {path: self._read_blob(sha) for path, sha in commit.files.items()}

    # ----------------------------------------------------------------- storage

    def _write_blob(self, data: bytes) -> str:
        sha = git_blob_sha1(data)
        path = self.blob_dir / sha
        if not path.exists():
            tmp = path.with_suffix(f".tmp-{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def _read_blob(self, sha: str) -> bytes:
        return (self.blob_dir / sha).read_bytes()

    def _new_commit(self, repo: Repo, parent: Commit | None, message: str, files: dict[str, str]) -> Commit:
        payload = json.dumps({"parent": parent.oid if parent else None, "message": message, "files": files})
        oid = hashlib.sha1(f"{repo.repo_id}\n{len(repo.commits)}\n{payload}".encode()).hexdigest()
        date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        commit = Commit(
            oid=oid, parent=parent.oid if parent else None, message=message, files=files, date=date
        )
        repo.commits.append(commit)
        return commit

    # ----------------------------------------------------------------- access control

    def _repo_for_read(self, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            # Like the Hub: a private repo looks absent to anyone but its owner.
            raise HubError(HTTPStatus.NOT_FOUND, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _repo_for_write(self, repo_id: str, user: str | None) -> Repo:
        if user is None:
            raise HubError(HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header")
        repo = self._repo_for_read(repo_id, user)
        if repo.owner != user:
            raise HubError(HTTPStatus.FORBIDDEN, f"You don't have the rights to write to {repo_id}")
        return repo

    @staticmethod
    def _commit_for(repo: Repo, revision: str) -> Commit:
        commit = repo.find(revision)
        if commit is None:
            raise HubError(HTTPStatus.NOT_FOUND, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ----------------------------------------------------------------- routes

    def whoami(self, user: str | None) -> dict:
        if user is None:
            raise HubError(HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header")
        return {"type": "user", "name": user, "fullname": user, "orgs": [], "auth": {"type": "access_token"}}

    def create_repo(self, body: dict, user: str | None, base_url: str) -> dict:
        if user is None:
            raise HubError(HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header")
        if body.get("type", "model") != "model":
            raise HubError(HTTPStatus.BAD_REQUEST, "This fake Hub only hosts model repos")
        namespace = body.get("organization") or user
        if namespace != user:
            raise HubError(
                HTTPStatus.FORBIDDEN, f"You don't have the rights to create a repo under {namespace}"
            )
        repo_id = f"{namespace}/{body['name']}"
        with self._lock:
            if repo_id in self.repos:
                # The Hub's 409 still names the repo: create_repo(exist_ok=True) reads the url from it.
                raise HubError(
                    HTTPStatus.CONFLICT,
                    "You already created this model repo",
                    extra={"url": f"{base_url}/{repo_id}"},
                )
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = Repo(repo_id=repo_id, owner=user, private=private)
            self._new_commit(
                repo, None, "initial commit", {".gitattributes": self._write_blob(GITATTRIBUTES)}
            )
            self.repos[repo_id] = repo
        return {"url": f"{base_url}/{repo_id}", "name": repo_id}

    def repo_info(self, repo: Repo, revision: str) -> dict:
        commit = self._commit_for(repo, revision)
        return {
            "id": repo.repo_id,
            "author": repo.owner,
            "sha": commit.oid,
            "private": repo.private,
            "lastModified": commit.date,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }

    def tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> list[dict]:
        commit = self._commit_for(repo, revision)
        prefix = f"{folder.strip('/')}/" if folder else ""
        entries: dict[str, dict] = {}
        for path, sha in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):  # the folders on the way
                folder_path = prefix + "/".join(parts[:i])
                entries.setdefault(folder_path, {"type": "directory", "path": folder_path, "oid": "0" * 40})
            if recursive or len(parts) == 1:
                size = (self.blob_dir / sha).stat().st_size
                entries[path] = {"type": "file", "path": path, "size": size, "oid": sha}
        if prefix and not entries:
            raise HubError(HTTPStatus.NOT_FOUND, f"{folder} does not exist", "EntryNotFound")
        return list(entries.values())

    def preupload(self, repo: Repo, revision: str, body: dict) -> dict:
        commit = self._commit_for(repo, revision)
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": commit.files.get(f["path"]),
            }
            for f in body["files"]
        ]
        return {"files": files, "commitOid": commit.oid}

    def commit(self, repo: Repo, revision: str, ndjson: bytes, base_url: str) -> dict:
        lines = [json.loads(line) for line in ndjson.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(HTTPStatus.BAD_REQUEST, "The commit payload must start with a header line")
        header = lines[0]["value"]
        operations = lines[1:]
        with self._lock:
            parent = self._commit_for(repo, revision)
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HubError(
                    HTTPStatus.PRECONDITION_FAILED, "The parent commit is not the head of the branch"
                )
            # Build the new snapshot aside; the branch only moves once every operation went through.
            files = dict(parent.files)
            for index, operation in enumerate(operations):
                if self.fail_commits_midway and index == len(operations) // 2:
                    raise HubError(
                        HTTPStatus.INTERNAL_SERVER_ERROR, "Simulated failure in the middle of a commit"
                    )
                key, value = operation["key"], operation["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(HTTPStatus.BAD_REQUEST, f"Unsupported encoding for {value['path']}")
                    files[value["path"]] = self._write_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(
                            HTTPStatus.NOT_FOUND, "A file with this name doesn't exist", "EntryNotFound"
                        )
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: s for p, s in files.items() if not p.startswith(prefix)}
                else:  # lfsFile: preupload never asks for LFS, so a client sending one is a bug worth seeing
                    raise HubError(HTTPStatus.BAD_REQUEST, f"Unsupported commit operation {key!r}")
            commit = self._new_commit(repo, parent, header["summary"], files)
        return {"commitUrl": f"{base_url}/{repo.repo_id}/commit/{commit.oid}", "commitOid": commit.oid}

    def resolve(self, repo: Repo, revision: str, path: str) -> tuple[Commit, bytes]:
        commit = self._commit_for(repo, revision)
        if path not in commit.files:
            raise HubError(
                HTTPStatus.NOT_FOUND, f"Entry not found: {path}", "EntryNotFound", commit=commit.oid
            )
        return commit, self._read_blob(commit.files[path])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries a Content-Length
    fake_hub: FakeHub

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # ----------------------------------------------------------------- plumbing

    def _user(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        return self.fake_hub.tokens.get(token) if token else None

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _dispatch(self, method: str) -> None:
        hub = self.fake_hub
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        user = self._user()
        hub.requests.append(RecordedRequest(method, url.path, user))
        body = self._body() if method == "POST" else b""
        base_url = f"http://{self.headers.get('Host')}"
        try:
            self._route(method, url.path, query, body, user, base_url)
        except HubError as error:
            headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            self._send(
                error.status,
                json.dumps({"error": error.message, **error.extra}).encode(),
                headers,
                head=method == "HEAD",
            )

    def _route(
        self, method: str, path: str, query: dict, body: bytes, user: str | None, base_url: str
    ) -> None:
        hub = self.fake_hub
        if method == "GET" and path == "/api/whoami-v2":
            return self._send_json(hub.whoami(user))
        if method == "GET" and path == "/api/agent-harnesses":
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if method == "POST" and path == "/api/repos/create":
            return self._send_json(hub.create_repo(json.loads(body), user, base_url))
        if method == "POST" and path == "/api/validate-yaml":
            return self._send_json({"errors": [], "warnings": []})

        match = ROUTE_MODEL_API.match(path)
        if match:
            namespace, name, action, revision, rest = (unquote(g) if g else g for g in match.groups())
            repo_id = f"{namespace}/{name}"
            if method == "GET" and action in (None, "revision"):
                return self._send_json(hub.repo_info(hub._repo_for_read(repo_id, user), revision or MAIN))
            if method == "GET" and action == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                return self._send_json(
                    hub.tree(hub._repo_for_read(repo_id, user), revision, rest or "", recursive)
                )
            if method == "POST" and action == "preupload":
                repo = hub._repo_for_write(repo_id, user)
                return self._send_json(hub.preupload(repo, revision, json.loads(body)))
            if method == "POST" and action == "commit":
                repo = hub._repo_for_write(repo_id, user)
                return self._send_json(hub.commit(repo, revision, body, base_url))

        match = ROUTE_RESOLVE.match(path)
        if match and method in ("GET", "HEAD") and not path.startswith("/api/"):
            namespace, name, revision, file_path = (unquote(g) for g in match.groups())
            repo = hub._repo_for_read(f"{namespace}/{name}", user)
            commit, data = hub.resolve(repo, revision, file_path)
            headers = {
                "ETag": f'"{git_blob_sha1(data)}"',
                "X-Repo-Commit": commit.oid,
                "Content-Type": "application/octet-stream",
            }
            return self._send(200, data, headers, head=method == "HEAD")

        hub.unhandled.append(f"{method} {path}")
        raise HubError(HTTPStatus.NOT_FOUND, f"The fake Hub has no route for {method} {path}")

    def do_GET(self):  # http.server's naming
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")
