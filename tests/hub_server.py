"""A small in-process Hugging Face Hub server for tests (standard library only).

It speaks enough of the Hub's HTTP protocol for the real client libraries (`huggingface_hub`, `transformers`, `peft`,
`diffusers`, `datasets`) to create repos, upload (regular files in the commit payload, binary and large files through
Git LFS) and download (`hf_hub_download`, `snapshot_download`, `HfFileSystem` range reads). Repos live in memory.

Layout:
    - `HubStorage`: repos, commits, branches and LFS objects, behind one lock. Raises `HubError` for HTTP errors.
    - `HubRequestHandler`: parses a request, routes it through `ROUTES` to one small `handle_*` method.
    - `HubServer`: binds 127.0.0.1 on a free port when constructed, serves from a daemon thread once started.

Unknown routes are logged at WARNING level, recorded in `HubServer.unhandled_requests` and answered with a 404, so
that a client call the server does not implement shows up instead of being silently misread.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import itertools
import json
import logging
import posixpath
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

logger = logging.getLogger(__name__)

DEFAULT_USER = "hf-wlora-tester"
DEFAULT_TOKEN = "hf_wloraDummyTestToken0123456789"

REPO_TYPES_BY_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# Files the real Hub stores with Git LFS by default (its `.gitattributes` of a new repo), plus binary or large files.
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lz4", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
)  # fmt: skip
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
TREE_PAGE_SIZE = 1000
TREE_PAGE_SIZE_EXPANDED = 50


class HubError(Exception):
    """An error answered as HTTP `status`, with the Hub's `X-Error-Code` / `X-Error-Message` headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _now() -> str:
    """Current UTC time in the Hub's ISO format (`2024-01-31T12:00:00.000Z`)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id (sha1) of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that git stores in place of an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def default_gitattributes() -> bytes:
    """`.gitattributes` of a freshly created repo: the LFS patterns."""
    return "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()


def choose_upload_mode(path: str, size: int, sample: bytes) -> str:
    """`"lfs"` for large, binary or LFS-pattern files, else `"regular"` (as the Hub's preupload endpoint decides)."""
    if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
        return "lfs"
    name = posixpath.basename(path)
    return "lfs" if any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS) else "regular"


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its content, whether git stores it through LFS, and the commit that last changed it."""

    content: bytes
    lfs: bool
    last_commit: str
    sha256: str = field(init=False)
    blob_id: str = field(init=False)

    def __post_init__(self) -> None:
        sha256 = hashlib.sha256(self.content).hexdigest()
        blob = lfs_pointer(sha256, len(self.content)) if self.lfs else self.content
        object.__setattr__(self, "sha256", sha256)
        object.__setattr__(self, "blob_id", git_blob_oid(blob))

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def oid(self) -> str:
        """The id the preupload endpoint reports: sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo: `files` maps each path to its `StoredFile`."""

    oid: str
    index: int
    title: str
    description: str
    date: str
    parent: str | None
    files: dict[str, StoredFile]

    def directories(self) -> set[str]:
        """All folder paths (without the root "") that contain at least one file."""
        folders: set[str] = set()
        for path in self.files:
            parent = posixpath.dirname(path)
            while parent and parent not in folders:
                folders.add(parent)
                parent = posixpath.dirname(parent)
        return folders


@dataclass
class Repo:
    """A repo: its commits and branches (branch name -> commit oid)."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    sdk: str | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    @property
    def url_path(self) -> str:
        return f"{URL_PREFIXES[self.repo_type]}{self.repo_id}"


class HubStorage:
    """In-memory repos and LFS objects. All public methods are thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._lfs_objects: dict[str, bytes] = {}

    # Repos ---------------------------------------------------------------------------------------------------------

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False, sdk: str | None = None) -> Repo:
        """Create a repo with an initial commit holding `.gitattributes`; 409 if it exists."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(HTTPStatus.CONFLICT, f"You already created this {repo_type} repo")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now(), sdk=sdk)
            self._repos[(repo_type, repo_id)] = repo
            self._add_commit(
                repo, "main", {}, "initial commit", "", {".gitattributes": (default_gitattributes(), False)}
            )
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            if self._repos.pop((repo_type, repo_id), None) is None:
                raise HubError(HTTPStatus.NOT_FOUND, "Repository not found", code="RepoNotFound")

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        """The repo, or a 404 with `X-Error-Code: RepoNotFound`."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(HTTPStatus.NOT_FOUND, f"Repository {repo_type}/{repo_id} not found", code="RepoNotFound")
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """The commit a branch name or full commit oid points to, or a 404 `RevisionNotFound`."""
        with self._lock:
            oid = repo.branches.get(revision, revision)
            commit = repo.commits.get(oid)
        if commit is None:
            raise HubError(HTTPStatus.NOT_FOUND, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    def create_branch(self, repo: Repo, branch: str, starting_point: str | None) -> None:
        with self._lock:
            if branch in repo.branches:
                raise HubError(HTTPStatus.CONFLICT, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = self.resolve(repo, starting_point or "main").oid

    # LFS -----------------------------------------------------------------------------------------------------------

    def has_lfs_object(self, oid: str) -> bool:
        with self._lock:
            return oid in self._lfs_objects

    def put_lfs_object(self, oid: str, data: bytes) -> None:
        """Store an uploaded LFS object after checking that its sha256 is `oid`."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != oid:
            raise HubError(HTTPStatus.BAD_REQUEST, f"LFS object sha256 mismatch: expected {oid}, got {actual}")
        with self._lock:
            self._lfs_objects[oid] = data

    def get_lfs_object(self, oid: str) -> bytes:
        with self._lock:
            data = self._lfs_objects.get(oid)
        if data is None:
            raise HubError(HTTPStatus.UNPROCESSABLE_ENTITY, f"LFS object {oid} was never uploaded")
        return data

    # Commits -------------------------------------------------------------------------------------------------------

    def commit(
        self,
        repo: Repo,
        branch: str,
        title: str,
        description: str,
        additions: dict[str, tuple[bytes, bool]],
        deletions: list[tuple[str, bool]],
        parent_commit: str | None = None,
    ) -> Commit:
        """Apply `additions` (path -> (content, is_lfs)) and `deletions` ((path, is_folder)) on top of `branch`."""
        with self._lock:
            head = self.resolve(repo, branch)
            if branch not in repo.branches:
                raise HubError(HTTPStatus.BAD_REQUEST, f"Can only commit to a branch, not to {branch}")
            if parent_commit is not None and parent_commit != head.oid:
                raise HubError(HTTPStatus.PRECONDITION_FAILED, "A commit has happened since. Please refresh and retry.")
            files = dict(head.files)
            for path, is_folder in deletions:
                removed = [p for p in files if p.startswith(path.rstrip("/") + "/")] if is_folder else [path]
                if not removed or any(p not in files for p in removed):
                    kind = "folder" if is_folder else "file"
                    raise HubError(
                        HTTPStatus.NOT_FOUND, f"A {kind} with this name doesn't exist: {path}", code="EntryNotFound"
                    )
                for p in removed:
                    del files[p]
            return self._add_commit(repo, branch, files, title, description, additions)

    def _add_commit(
        self,
        repo: Repo,
        branch: str,
        files: dict[str, StoredFile],
        title: str,
        description: str,
        additions: dict[str, tuple[bytes, bool]],
    ) -> Commit:
        date = _now()
        parent = repo.branches.get(branch)
        oid = hashlib.sha1(f"{repo.repo_id}\n{parent}\n{title}\n{date}\n{uuid.uuid4()}".encode()).hexdigest()
        for path, (content, lfs) in additions.items():
            files[path] = StoredFile(content=content, lfs=lfs, last_commit=oid)
        commit = Commit(oid, len(repo.commits), title, description, date, parent, dict(sorted(files.items())))
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def history(self, repo: Repo, commit: Commit) -> Iterator[Commit]:
        """`commit` and its ancestors, newest first."""
        current: Commit | None = commit
        while current is not None:
            yield current
            current = repo.commits.get(current.parent) if current.parent else None


# -------------------------------------------------------------------------------------------------------------------
# JSON views of storage objects, as the Hub API shapes them.


def file_entry(path: str, stored: StoredFile, commit_info: dict[str, str] | None = None) -> dict[str, Any]:
    """A `tree` / `paths-info` entry for a file (`lfs` only for LFS files, `lastCommit` only when expanded)."""
    entry: dict[str, Any] = {"type": "file", "oid": stored.blob_id, "size": stored.size, "path": path}
    if stored.lfs:
        entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": stored.pointer_size}
    if commit_info is not None:
        entry["lastCommit"] = commit_info
    return entry


def folder_entry(commit: Commit, path: str, commit_info: dict[str, str] | None = None) -> dict[str, Any]:
    """A `tree` / `paths-info` entry for a folder; its oid is a hash of the blob ids below it."""
    below = "\n".join(f"{p}:{f.blob_id}" for p, f in commit.files.items() if p.startswith(path + "/"))
    entry: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(below.encode()).hexdigest(), "size": 0}
    entry["path"] = path
    if commit_info is not None:
        entry["lastCommit"] = commit_info
    return entry


def sibling_entry(path: str, stored: StoredFile, with_blobs: bool) -> dict[str, Any]:
    """A `siblings` item of repo info (`?blobs=true` adds size, blob id and LFS info)."""
    sibling: dict[str, Any] = {"rfilename": path}
    if with_blobs:
        sibling.update(size=stored.size, blobId=stored.blob_id)
        if stored.lfs:
            sibling["lfs"] = {"sha256": stored.sha256, "size": stored.size, "pointerSize": stored.pointer_size}
    return sibling


def commit_summary(commit: Commit) -> dict[str, str]:
    return {"id": commit.oid, "title": commit.title, "date": commit.date}


# -------------------------------------------------------------------------------------------------------------------
# HTTP


_TYPES = r"(?P<types>models|datasets|spaces)"
_PREFIX = r"(?P<prefix>datasets/|spaces/)?"
_ID = r"(?P<repo_id>[^/]+/[^/]+?)"
_REV = r"(?P<rev>[^/]+)"

# (method, path regex, handler method name); the first full match wins. Paths are matched still percent-encoded.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"/api/whoami-v2", "handle_whoami"),
    ("POST", r"/api/repos/create", "handle_create_repo"),
    ("DELETE", r"/api/repos/delete", "handle_delete_repo"),
    ("POST", r"/api/validate-yaml", "handle_validate_yaml"),
    ("GET", rf"/api/{_TYPES}/{_ID}(?:/revision/{_REV})?", "handle_repo_info"),
    ("POST", rf"/api/{_TYPES}/{_ID}/preupload/{_REV}", "handle_preupload"),
    ("POST", rf"/api/{_TYPES}/{_ID}/commit/{_REV}", "handle_commit"),
    ("GET", rf"/api/{_TYPES}/{_ID}/tree/{_REV}(?:/(?P<path>.*))?", "handle_tree"),
    ("POST", rf"/api/{_TYPES}/{_ID}/paths-info/{_REV}", "handle_paths_info"),
    ("GET", rf"/api/{_TYPES}/{_ID}/refs", "handle_refs"),
    ("GET", rf"/api/{_TYPES}/{_ID}/commits/{_REV}", "handle_commits"),
    ("POST", rf"/api/{_TYPES}/{_ID}/branch/{_REV}", "handle_create_branch"),
    ("POST", rf"/{_PREFIX}{_ID}\.git/info/lfs/objects/batch", "handle_lfs_batch"),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "handle_lfs_upload"),
    ("GET", rf"/{_PREFIX}{_ID}/resolve/{_REV}/(?P<path>.+)", "handle_resolve"),
    ("HEAD", rf"/{_PREFIX}{_ID}/resolve/{_REV}/(?P<path>.+)", "handle_resolve"),
]
_COMPILED_ROUTES = [(method, re.compile(pattern), name) for method, pattern, name in ROUTES]


class _HubHTTPServer(ThreadingHTTPServer):
    """The HTTP server, holding a reference to its `HubServer` for the handlers."""

    daemon_threads = True
    hub: HubServer


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to a `handle_*` method; `HubError`s become Hub-style error responses."""

    protocol_version = "HTTP/1.1"  # keep-alive: every response sets Content-Length
    server: _HubHTTPServer
    query: dict[str, str]  # the last value of each query parameter
    body: bytes

    # Request plumbing ----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.body = self._read_body()  # always drain the body: the connection is kept alive
        handler, params = self._route(method, url.path)
        if handler is None:
            self._unhandled(method)
            return
        try:
            handler(**params)
        except HubError as error:
            self._send_error(error)
        except Exception as error:  # a server bug or a payload it does not understand: fail loudly and fast
            self._crashed(method, error)

    def _route(self, method: str, path: str) -> tuple[Callable[..., None] | None, dict[str, str]]:
        for route_method, pattern, name in _COMPILED_ROUTES:
            match = pattern.fullmatch(path) if route_method == method else None
            if match:
                params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                return getattr(self, name), params
        return None, {}

    def _read_body(self) -> bytes:
        """The request body, from `Content-Length` or chunked transfer encoding."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
                if size == 0:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _unhandled(self, method: str) -> None:
        description = f"{method} {self.path}"
        self.server.hub.unhandled_requests.append(description)
        logger.warning("hub_server: UNHANDLED ROUTE %s (answering 404)", description)
        print(f"hub_server: UNHANDLED ROUTE {description}", file=sys.stderr)
        self._send_error(HubError(HTTPStatus.NOT_FOUND, f"Unhandled route: {description}"))

    def _crashed(self, method: str, error: Exception) -> None:
        """Answer 501 (which clients do not retry, unlike 500) and record the failure like an unhandled route."""
        description = f"{method} {self.path} (server error: {type(error).__name__}: {error})"
        self.server.hub.unhandled_requests.append(description)
        logger.exception("hub_server: FAILED %s", description)
        print(f"hub_server: FAILED {description}", file=sys.stderr)
        self._send_error(HubError(HTTPStatus.NOT_IMPLEMENTED, f"hub_server failed on {description}"))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("hub_server: %s", format % args)

    # Responses -----------------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, data: Any, status: int = HTTPStatus.OK, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8", headers)

    def _send_error(self, error: HubError) -> None:
        header_safe_message = " ".join(error.message.split()).encode("ascii", "replace").decode()
        headers = {"X-Error-Message": header_safe_message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send_json({"error": error.message}, status=error.status, headers=headers)

    # Request helpers -----------------------------------------------------------------------------------------------

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    @property
    def storage(self) -> HubStorage:
        return self.server.hub.storage

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(HTTPStatus.BAD_REQUEST, f"Invalid JSON body: {error}") from error

    def _is_authenticated(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _require_auth(self) -> None:
        """Writes need the server's token, as on the Hub."""
        if not self._is_authenticated():
            raise HubError(HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str, types: str | None = None, prefix: str | None = None) -> Repo:
        """The repo named by the route; private repos are invisible (404) without the token, as on the Hub."""
        plural = types or (prefix or "models/").rstrip("/")
        repo = self.storage.get_repo(REPO_TYPES_BY_PLURAL[plural], repo_id)
        if repo.private and not self._is_authenticated():
            raise HubError(HTTPStatus.NOT_FOUND, f"Repository {repo_id} not found", code="RepoNotFound")
        return repo

    def _flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")

    # Account and repos ---------------------------------------------------------------------------------------------

    def handle_whoami(self) -> None:
        self._require_auth()
        token_info = {"displayName": "hub_server", "role": "write"}
        self._send_json(
            {
                "type": "user",
                "name": self.hub.user,
                "fullname": "Hub server test user",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": token_info},
            }
        )

    def handle_create_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        private = payload.get("private", payload.get("visibility") == "private")
        url = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        try:
            self.storage.create_repo(repo_type, repo_id, private=bool(private), sdk=payload.get("sdk"))
        except HubError as error:
            self._send_json({"error": error.message, "url": url}, status=error.status)
            return
        self._send_json({"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def handle_delete_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        self.storage.delete_repo(payload.get("type") or "model", repo_id)
        self._send_json({})

    def handle_validate_yaml(self) -> None:
        """Accept any card metadata (no YAML parser in the standard library)."""
        self._send_json({"errors": [], "warnings": []})

    def handle_repo_info(self, types: str, repo_id: str, rev: str = "main") -> None:
        repo = self._repo(repo_id, types)
        commit = self.storage.resolve(repo, rev)
        with_blobs = self._flag("blobs")
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [sibling_entry(path, stored, with_blobs) for path, stored in commit.files.items()],
            "usedStorage": sum(stored.size for stored in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if repo.repo_type == "space":
            info.update(sdk=repo.sdk, runtime={"stage": "NO_APP_FILE", "hardware": {"current": None}})
        self._send_json(info)

    def handle_refs(self, types: str, repo_id: str) -> None:
        repo = self._repo(repo_id, types)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()]
        self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def handle_commits(self, types: str, repo_id: str, rev: str) -> None:
        repo = self._repo(repo_id, types)
        commits = [
            {
                "id": commit.oid,
                "title": commit.title,
                "message": commit.description,
                "date": commit.date,
                "authors": [{"user": self.hub.user}],
            }
            for commit in self.storage.history(repo, self.storage.resolve(repo, rev))
        ]
        self._send_json(commits)

    def handle_create_branch(self, types: str, repo_id: str, rev: str) -> None:
        self._require_auth()
        repo = self._repo(repo_id, types)
        self.storage.create_branch(repo, rev, self._json_body().get("startingPoint"))
        self._send_json({})

    # Listing -------------------------------------------------------------------------------------------------------

    def handle_tree(self, types: str, repo_id: str, rev: str, path: str = "") -> None:
        """List a folder (`recursive`, `expand`), paginated with a `Link: <...>; rel="next"` header."""
        repo = self._repo(repo_id, types)
        commit = self.storage.resolve(repo, rev)
        path = path.strip("/")
        if path and path not in commit.directories():
            raise HubError(HTTPStatus.NOT_FOUND, f"{path} does not exist on {rev}", code="EntryNotFound")
        expand = self._flag("expand")
        entries = list(self._list_folder(repo, commit, path, recursive=self._flag("recursive"), expand=expand))
        page_size = int(self.query.get("limit") or (TREE_PAGE_SIZE_EXPANDED if expand else TREE_PAGE_SIZE))
        start = int(self.query.get("cursor") or 0)
        headers = {}
        if start + page_size < len(entries):
            next_query = urlencode({**self.query, "cursor": str(start + page_size)})
            headers["Link"] = f'<{self.hub.url}{urlsplit(self.path).path}?{next_query}>; rel="next"'
        self._send_json(entries[start : start + page_size], headers=headers)

    def _list_folder(self, repo: Repo, commit: Commit, folder: str, recursive: bool, expand: bool) -> Iterator[dict]:
        """Folders first, then files, of `folder` (all levels below it when `recursive`)."""
        prefix = f"{folder}/" if folder else ""

        def is_listed(path: str) -> bool:
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

        for directory in sorted(d for d in commit.directories() if is_listed(d)):
            yield folder_entry(commit, directory, self._last_commit(repo, commit, directory) if expand else None)
        for path, stored in commit.files.items():
            if is_listed(path):
                yield file_entry(path, stored, self._last_commit(repo, commit, path) if expand else None)

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        """The newest commit that changed the file, or any file below the folder, at `path`."""
        stored = commit.files.get(path)
        below = [f.last_commit for p, f in commit.files.items() if p.startswith(path + "/")]
        oids = [stored.last_commit] if stored else below
        newest = max((repo.commits[oid] for oid in oids), key=lambda c: c.index)
        return commit_summary(newest)

    def handle_paths_info(self, types: str, repo_id: str, rev: str) -> None:
        """Info on the given paths (form-encoded or JSON body); unknown paths are left out, as on the Hub."""
        repo = self._repo(repo_id, types)
        commit = self.storage.resolve(repo, rev)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = self._json_body()
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(self.body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() in ("1", "true")
        directories = commit.directories()
        entries = []
        for path in (p.strip("/") for p in paths):
            if path not in commit.files and path not in directories:
                continue
            info = self._last_commit(repo, commit, path) if expand else None
            stored = commit.files.get(path)
            entries.append(file_entry(path, stored, info) if stored else folder_entry(commit, path, info))
        self._send_json(entries)

    # Upload --------------------------------------------------------------------------------------------------------

    def handle_preupload(self, types: str, repo_id: str, rev: str) -> None:
        """Tell the client, per file, whether to send it in the commit ("regular") or through LFS ("lfs")."""
        self._require_auth()
        repo = self._repo(repo_id, types)
        head = self.storage.resolve(repo, rev)
        if "create_pr" in self.query:
            raise HubError(HTTPStatus.BAD_REQUEST, "hub_server does not support pull requests")
        files = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            answer = {"path": item["path"], "uploadMode": choose_upload_mode(item["path"], item["size"], sample)}
            answer["shouldIgnore"] = False
            existing = head.files.get(item["path"])
            if existing is not None:
                answer["oid"] = existing.oid
            files.append(answer)
        self._send_json({"files": files, "commitOid": head.oid})

    def handle_lfs_batch(self, repo_id: str, prefix: str = "") -> None:
        """Git LFS batch API: an upload action (a PUT back to this server) for each object not stored yet."""
        self._require_auth()
        self._repo(repo_id, prefix=prefix)
        request = self._json_body()
        if request.get("operation") != "upload":
            raise HubError(HTTPStatus.BAD_REQUEST, "hub_server only supports the LFS 'upload' operation")
        objects = []
        for obj in request.get("objects", []):
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.storage.has_lfs_object(obj["oid"]):
                href = f"{self.hub.url}/lfs-upload/{obj['oid']}?{urlencode({'size': obj['size']})}"
                answer["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(answer)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def handle_lfs_upload(self, oid: str) -> None:
        """The PUT of one LFS object (the Hub's signed storage URL); the sha256 and size must match."""
        expected_size = self.query.get("size")
        if expected_size is not None and int(expected_size) != len(self.body):
            raise HubError(HTTPStatus.BAD_REQUEST, f"LFS object size mismatch: expected {expected_size}")
        self.storage.put_lfs_object(oid, self.body)
        self._send(HTTPStatus.OK, b"", "text/plain", {"ETag": f'"{oid}"'})

    def handle_commit(self, types: str, repo_id: str, rev: str) -> None:
        """Apply an NDJSON commit: a `header`, then `file` (base64), `lfsFile`, `deletedFile`, `deletedFolder`."""
        self._require_auth()
        repo = self._repo(repo_id, types)
        if "create_pr" in self.query:
            raise HubError(HTTPStatus.BAD_REQUEST, "hub_server does not support pull requests")
        header: dict[str, Any] | None = None
        additions: dict[str, tuple[bytes, bool]] = {}
        deletions: list[tuple[str, bool]] = []
        for line in self.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                additions[value["path"]] = (self._decode_file_content(value), False)
            elif key == "lfsFile":
                additions[value["path"]] = (self.storage.get_lfs_object(value["oid"]), True)
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append((value["path"], key == "deletedFolder"))
            else:
                raise HubError(HTTPStatus.BAD_REQUEST, f"Unknown commit operation: {key}")
        if header is None:
            raise HubError(HTTPStatus.BAD_REQUEST, "The commit payload has no header line")
        commit = self.storage.commit(
            repo,
            rev,
            title=header.get("summary", ""),
            description=header.get("description", ""),
            additions=additions,
            deletions=deletions,
            parent_commit=header.get("parentCommit"),
        )
        commit_url = f"{self.hub.url}/{repo.url_path}/commit/{commit.oid}"
        self._send_json({"success": True, "commitOid": commit.oid, "commitUrl": commit_url, "hookOutput": ""})

    @staticmethod
    def _decode_file_content(value: dict[str, Any]) -> bytes:
        if value.get("encoding", "base64") == "base64":
            return base64.b64decode(value["content"])
        return value["content"].encode()

    # Download ------------------------------------------------------------------------------------------------------

    def handle_resolve(self, repo_id: str, rev: str, path: str, prefix: str = "") -> None:
        """Serve a file (HEAD or GET, with `Range`), with the Hub's `X-Repo-Commit` / `ETag` / `X-Linked-*` headers."""
        repo = self._repo(repo_id, prefix=prefix)
        commit = self.storage.resolve(repo, rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(
                HTTPStatus.NOT_FOUND,
                f"Entry not found: {path}",
                code="EntryNotFound",
                headers={"X-Repo-Commit": commit.oid},
            )
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.blob_id}"', "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
        content_range = self._parse_range(stored.size)
        if content_range is None:
            self._send(HTTPStatus.OK, stored.content, "application/octet-stream", headers)
            return
        start, end = content_range
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
        self._send(HTTPStatus.PARTIAL_CONTENT, stored.content[start:end], "application/octet-stream", headers)

    def _parse_range(self, size: int) -> tuple[int, int] | None:
        """`(start, end)` (end exclusive) from a `Range: bytes=...` header, None without one; 416 if unsatisfiable."""
        header = self.headers.get("Range")
        if not header:
            return None
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if match is None or match.groups() == ("", ""):
            raise HubError(HTTPStatus.BAD_REQUEST, f"Unsupported Range header: {header}")
        first, last = match.groups()
        if first == "":  # suffix range: the last N bytes
            start, end = max(size - int(last), 0), size
        else:
            start, end = int(first), min(int(last) + 1, size) if last else size
        if start >= size and size > 0:
            raise HubError(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                "Range not satisfiable",
                headers={"Content-Range": f"bytes */{size}"},
            )
        return start, end


class HubServer:
    """The test Hub: binds 127.0.0.1 (a free port unless given) at construction, serves after `start()`.

    Binding early lets a conftest put `url` into `HF_ENDPOINT` before huggingface_hub is imported, while the
    serving thread only starts when a test needs it.
    """

    def __init__(self, port: int = 0, user: str = DEFAULT_USER, token: str = DEFAULT_TOKEN) -> None:
        self.user = user
        self.token = token
        self.storage = HubStorage()
        self.unhandled_requests: list[str] = []
        self._httpd = _HubHTTPServer(("127.0.0.1", port), HubRequestHandler)
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None
        self._repo_counter = itertools.count()

    def start(self) -> HubServer:
        """Start serving from a daemon thread (idempotent)."""
        if self._thread is None:
            serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
            self._thread = threading.Thread(target=serve, name="hub_server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def unique_repo_id(self, name: str = "repo") -> str:
        """A repo id (`user/name-N-xxxxxxxx`) that no other test uses."""
        return f"{self.user}/{name}-{next(self._repo_counter)}-{uuid.uuid4().hex[:8]}"

    def repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        return f"{self.url}/{URL_PREFIXES[repo_type]}{quote(repo_id)}"

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
