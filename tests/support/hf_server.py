"""A local, Hugging Face Hub compatible HTTP server for tests.

`FakeHub` serves model repos from memory (or from files on disk) on ``127.0.0.1`` so that tests can
run the *real* ``huggingface_hub`` download code (``hf_hub_download``, ``snapshot_download``,
``HfApi.model_info`` / ``repo_info`` / ``list_repo_tree``) without access to huggingface.co.

Endpoints (model repos only; ``repo_id`` is ``"org/name"``):

* ``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{revision}``
  (``model_info`` / ``repo_info``; ``?blobs=true``, i.e. ``files_metadata=True``, adds ``size``,
  ``blobId`` and ``lfs`` to each sibling).
* ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=..&expand=..``
  (``list_repo_tree``; ``snapshot_download`` uses it to list the files of the resolved commit).
* ``HEAD`` / ``GET /{repo_id}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``, a quoted
  ``ETag`` (git blob sha1, or sha256 for LFS files), ``X-Linked-Etag`` / ``X-Linked-Size`` for LFS
  files, ``Content-Length``, ``Accept-Ranges`` and ``Range: bytes=..`` support (206 / 416).
  Files are served directly (no CDN redirect) and no Xet headers are ever sent, so the client
  always uses its plain HTTP download path.

Errors carry ``X-Error-Code`` / ``X-Error-Message`` like the Hub, so ``hf_raise_for_status`` maps
them to ``RepositoryNotFoundError`` (401 without ``Authorization``, 404 with one — also used for
private repos the caller may not read), ``RevisionNotFoundError`` and ``RemoteEntryNotFoundError``.

Client-side caveats (huggingface_hub 2.x):

* ``huggingface_hub.constants`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and
  ``HF_HUB_DISABLE_TELEMETRY`` once, at import time.  Setting ``HF_ENDPOINT`` in a test is
  therefore too late: pass ``endpoint=hub.endpoint`` explicitly to every call.
* Unless telemetry is disabled, the first request builds a user agent that fetches
  ``{constants.ENDPOINT}/api/agent-harnesses`` (huggingface.co by default, 3 s timeout).  Tests
  should set ``huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY = True`` (e.g. monkeypatch).
* ``token=None`` means "use the locally saved token / ``HF_TOKEN``"; pass ``token=False`` to be
  sure a request is anonymous.

Fault injection: `FakeHub.fail_next` (connection dropped mid-body), `FakeHub.corrupt_next`
(wrong bytes, same length) and `FakeHub.set_offline` (connections refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, cast
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from socketserver import _RequestType

__all__ = ["LFS_SIZE_THRESHOLD", "LFS_SUFFIXES", "FakeHub", "RecordedRequest"]

# Files stored with Git LFS on the real Hub: weights by extension, plus anything the Hub would
# refuse as a regular git blob (it rejects non-LFS files above 10 MB).
LFS_SUFFIXES = frozenset({".bin", ".safetensors", ".onnx", ".onnx_data", ".npz"})
LFS_SIZE_THRESHOLD = 10 * 1000 * 1000

_CHUNK_SIZE = 64 * 1024
_COMMIT_SHA_RE = re.compile(r"[0-9a-f]{40}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_INVERT_TABLE = bytes(range(255, -1, -1))
# Fixed clock: commit dates only need to be valid and ordered, and fixed values keep JSON stable.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

FileContent = bytes | Path


class RecordedRequest(NamedTuple):
    """One request as received: raw path (percent-encoded, with query) and lower-cased headers."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class _Blob:
    size: int
    sha256: str
    # Git object id: sha1 of the content as a git blob or, for LFS files, of the LFS pointer file.
    git_oid: str
    lfs_pointer_size: int | None
    data: bytes | None = None
    path: Path | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_pointer_size is not None

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.git_oid

    def iter_bytes(self, start: int, length: int) -> Iterator[bytes]:
        end = start + length
        if self.data is not None:
            view = memoryview(self.data)
            for offset in range(start, end, _CHUNK_SIZE):
                yield bytes(view[offset : min(offset + _CHUNK_SIZE, end)])
            return
        assert self.path is not None
        # Re-open per request: files may be tens of MB and requests run concurrently.
        with self.path.open("rb") as fh:
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(_CHUNK_SIZE, remaining))
                if not chunk:
                    raise OSError(f"{self.path} shrank after it was registered with FakeHub")
                remaining -= len(chunk)
                yield chunk


@dataclass(frozen=True)
class _Commit:
    sha: str
    parent: str | None
    files: Mapping[str, _Blob]
    date: datetime
    title: str


@dataclass
class _Repo:
    repo_id: str
    private: bool
    token: str | None
    created: datetime
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: Literal["truncate", "corrupt"]
    filename: str
    repo_id: str | None
    remaining: int
    after_bytes: int = 0
    reset: bool = False

    def matches(self, repo_id: str, filename: str) -> bool:
        return self.filename == filename and self.repo_id in (None, repo_id)


class _HubError(Exception):
    def __init__(
        self,
        status: int,
        error_code: str | None,
        message: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers


class FakeHub:
    """In-process fake of the Hugging Face Hub download API.

    Usage::

        with FakeHub() as hub:
            sha = hub.add_repo("org/model", {"config.json": b"{}", "model.bin": Path(...)})
            path = hf_hub_download("org/model", "config.json", endpoint=hub.endpoint, ...)

    All methods are thread-safe; the server handles each connection in its own daemon thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._faults: list[_Fault] = []
        self._log: list[RecordedRequest] = []
        # Hashing a large on-disk file is the slow part of add_repo; several commits often share it.
        self._path_hashes: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._server: _HubServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._offline = False
        self._clock = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None or self._offline:
            raise RuntimeError("FakeHub is already started")
        self._serve(port=0)
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections. Idempotent.

        `endpoint` keeps returning the old address, so tests can point a client at a port where
        nothing listens any more (connection refused).
        """
        self._halt()
        self._offline = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL to pass as ``endpoint=`` to huggingface_hub, e.g. ``http://127.0.0.1:43117``."""
        if self._port is None:
            raise RuntimeError("FakeHub has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def offline(self) -> bool:
        return self._offline

    def set_offline(self, offline: bool) -> None:
        """Emulate an unreachable network, keeping repos, faults and the port.

        While offline nothing listens on the port, so new connections are refused (the client sees
        ``httpx2.ConnectError``, which huggingface_hub treats as "no internet" and answers from
        its cache) and kept-alive connections are closed.
        """
        if offline == self._offline:
            return
        if offline:
            if self._server is None:
                raise RuntimeError("FakeHub is not running")
            self._halt()
            self._offline = True
        else:
            assert self._port is not None
            # Rebinding the same port keeps `endpoint` valid for clients that captured it.
            self._serve(port=self._port)
            self._offline = False

    def _serve(self, port: int) -> None:
        server = _HubServer(("127.0.0.1", port), self)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeHub:{self._port}",
            daemon=True,
        )
        self._thread.start()

    def _halt(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    # -- repository content ------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileContent],
        *,
        revision_names: Sequence[str] = ("main",),
        private: bool | None = None,
        token: str | None = None,
    ) -> str:
        """Register a snapshot of a model repo and return its 40-hex commit sha.

        Calling it again for the same repo creates a new commit (parent: the current head of
        ``revision_names[0]``, else the latest commit) and moves every given branch to it; older
        commits stay reachable by sha.  An empty `revision_names` adds a commit reachable by sha
        only.  The sha is derived from repo id, parent and file hashes, so it is reproducible.

        A private repo is only visible with ``Authorization: Bearer <token>``.  `private` and
        `token` apply to the whole repo; ``None`` keeps the current setting (new repos: public),
        so adding a commit to a private repo does not silently publish it.

        `Path` values are hashed now and streamed from disk on each request, so they must not
        change afterwards.
        """
        _validate_repo_id(repo_id)
        for name in revision_names:
            _validate_revision_name(name)
        blobs = {
            _validate_filename(name): self._make_blob(name, content)
            for name, content in files.items()
        }
        with self._lock:
            repo = self._repos.get(repo_id)
            new_private = private if private is not None else bool(repo and repo.private)
            new_token = token if token is not None else (repo.token if repo else None)
            if new_private and not new_token:
                raise ValueError("a private repo needs a token, otherwise nobody can read it")
            if repo is None:
                repo = _Repo(repo_id=repo_id, private=False, token=None, created=self._next_date())
                self._repos[repo_id] = repo
            repo.private, repo.token = new_private, new_token
            parent = repo.branches.get(revision_names[0]) if revision_names else None
            if parent is None and repo.commits:
                parent = next(reversed(repo.commits))
            manifest = {
                "repo": repo_id,
                "parent": parent,
                "files": sorted((name, blob.git_oid) for name, blob in blobs.items()),
            }
            sha = hashlib.sha1(json.dumps(manifest).encode(), usedforsecurity=False).hexdigest()
            if sha not in repo.commits:
                repo.commits[sha] = _Commit(
                    sha=sha,
                    parent=parent,
                    files=dict(blobs),
                    date=self._next_date(),
                    title=f"Commit #{len(repo.commits) + 1}",
                )
            for name in revision_names:
                repo.branches[name] = sha
            return sha

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        """Point `tag` at the commit `revision` currently resolves to; returns that sha."""
        _validate_revision_name(tag)
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                raise KeyError(f"unknown repo {repo_id!r}")
            commit = _find_commit(repo, revision)
            if commit is None:
                raise KeyError(f"unknown revision {revision!r} in {repo_id!r}")
            repo.tags[tag] = commit.sha
            return commit.sha

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """Commit sha that a branch name, tag or full sha resolves to (KeyError if none)."""
        with self._lock:
            repo = self._repos.get(repo_id)
            commit = _find_commit(repo, revision) if repo is not None else None
            if commit is None:
                raise KeyError(f"cannot resolve {revision!r} in {repo_id!r}")
            return commit.sha

    def _next_date(self) -> datetime:
        # Fake clock: dates only need to be valid and increasing. Called with the lock held.
        self._clock += 1
        return _EPOCH + timedelta(seconds=self._clock)

    def _make_blob(self, name: str, content: FileContent) -> _Blob:
        if isinstance(content, Path):
            path = content.resolve()
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                cached = self._path_hashes.get(key)
            if cached is None:
                cached = _hash_file(path, stat.st_size)
                with self._lock:
                    self._path_hashes[key] = cached
            sha256, git_sha1 = cached
            size, data, file_path = stat.st_size, None, path
        elif isinstance(content, bytes | bytearray | memoryview):
            data = bytes(content)
            sha256 = hashlib.sha256(data).hexdigest()
            git_sha1 = _git_blob_sha1(data)
            size, file_path = len(data), None
        else:
            raise TypeError(f"{name}: expected bytes or pathlib.Path, got {type(content).__name__}")

        is_lfs = PurePosixPath(name).suffix.lower() in LFS_SUFFIXES or size > LFS_SIZE_THRESHOLD
        if not is_lfs:
            return _Blob(size, sha256, git_sha1, None, data, file_path)
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
        ).encode()
        return _Blob(size, sha256, _git_blob_sha1(pointer), len(pointer), data, file_path)

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        filename: str,
        *,
        after_bytes: int,
        times: int = 1,
        repo_id: str | None = None,
        reset: bool = False,
    ) -> None:
        """Drop the connection of the next `times` GETs of `filename` after `after_bytes` of body.

        Status line and headers are complete (``Content-Length`` announces the full or ranged
        length), then the socket is closed.  By default it is closed with a FIN, which the client
        sees as a truncated body (``httpx2.RemoteProtocolError``); ``reset=True`` sends a TCP RST
        instead (``httpx2.ReadError``; bytes already sent may then be discarded by the client's
        kernel).  HEAD requests are never affected.
        """
        if after_bytes < 0 or times < 1:
            raise ValueError("after_bytes must be >= 0 and times >= 1")
        with self._lock:
            self._faults.append(
                _Fault("truncate", filename, repo_id, times, after_bytes=after_bytes, reset=reset)
            )

    def corrupt_next(self, filename: str, *, times: int = 1, repo_id: str | None = None) -> None:
        """Serve wrong bytes (every byte inverted, same length) for the next `times` GETs."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(_Fault("corrupt", filename, repo_id, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, repo_id: str, filename: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(repo_id, filename):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- request log ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot (copy) of every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._log.append(request)

    # -- lookups used by the request handler ---------------------------------------------------

    def _lookup(
        self, repo_id: str, revision: str, authorization: str | None
    ) -> tuple[_Repo, _Commit]:
        with self._lock:
            repo = self._repos.get(repo_id)
            visible = repo is not None and (
                not repo.private or authorization == f"Bearer {repo.token}"
            )
            if repo is None or not visible:
                # Like the Hub: never reveal whether a private repo exists, and answer 401 (not
                # 404) to anonymous callers; both carry X-Error-Code: RepoNotFound.
                if authorization is None:
                    raise _HubError(401, "RepoNotFound", "Invalid username or password.")
                raise _HubError(404, "RepoNotFound", "Repository not found")
            commit = _find_commit(repo, revision)
            if commit is None:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return repo, commit

    def _known_repo(self, repo_id: str) -> bool:
        with self._lock:
            return repo_id in self._repos


# -- HTTP plumbing ---------------------------------------------------------------------------


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: FakeHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _HubRequestHandler)

    def process_request(self, request: _RequestType, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _RequestType) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive connections so that clients cannot keep talking to a stopped hub."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: _RequestType, client_address: Any) -> None:
        # Clients hanging up mid-response are routine here (fault injection, aborted downloads).
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _HubRequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that connections are kept alive and Content-Length is enforced by the client,
    # which is what makes a truncated body detectable.
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> FakeHub:
        return cast(_HubServer, self.server).hub

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # The request log is the way to inspect traffic; stderr noise would hide test output.

    def _dispatch(self, *, head: bool) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.hub._record(RecordedRequest(self.command, self.path, headers))
        if self.hub.offline:
            # Raced with set_offline(True) on a kept-alive connection: behave like a dead peer.
            self._abort_connection(reset=True)
            return
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/api/models/"):
                self._handle_api(url.path.removeprefix("/api/models/"), query, head=head)
            elif "/resolve/" in url.path:
                self._handle_resolve(url.path, head=head)
            else:
                raise _HubError(404, None, "Not Found")
        except _HubError as error:
            self._send_json(
                error.status,
                {"error": error.message},
                head=head,
                extra_headers=[
                    *([("X-Error-Code", error.error_code)] if error.error_code else []),
                    ("X-Error-Message", error.message),
                    *error.headers,
                ],
            )

    # -- /api/models/... -----------------------------------------------------------------------

    def _handle_api(self, rest: str, query: Mapping[str, str], *, head: bool) -> None:
        segments = rest.split("/")
        # Prefer a registered repo id so that "org/name" and single-segment ids both route, and
        # unknown ids still get a RepoNotFound answer rather than a bare 404.
        if len(segments) >= 2 and (
            self.hub._known_repo(f"{segments[0]}/{segments[1]}")
            or (not self.hub._known_repo(segments[0]) and segments[1] not in {"revision", "tree"})
        ):
            repo_id, tail = unquote(f"{segments[0]}/{segments[1]}"), segments[2:]
        else:
            repo_id, tail = unquote(segments[0]), segments[1:]
        authorization = self.headers.get("Authorization")

        if not tail or (len(tail) == 2 and tail[0] == "revision"):
            revision = unquote(tail[1]) if tail else "main"
            repo, commit = self.hub._lookup(repo_id, revision, authorization)
            payload: Any = _model_info(repo, commit, blobs=_is_true(query.get("blobs")))
        elif len(tail) >= 2 and tail[0] == "tree":
            repo, commit = self.hub._lookup(repo_id, unquote(tail[1]), authorization)
            payload = _tree(
                commit,
                unquote("/".join(tail[2:])).strip("/"),
                recursive=_is_true(query.get("recursive")),
                expand=_is_true(query.get("expand")),
            )
        else:
            raise _HubError(404, None, "Not Found")
        self._send_json(200, payload, head=head)

    # -- /{repo_id}/resolve/{revision}/{filename} ---------------------------------------------

    def _handle_resolve(self, path: str, *, head: bool) -> None:
        repo_part, _, rest = path.partition("/resolve/")
        revision_part, _, filename_part = rest.partition("/")
        repo_id, revision, filename = (
            unquote(repo_part.lstrip("/")),
            unquote(revision_part),
            unquote(filename_part),
        )
        _repo, commit = self.hub._lookup(repo_id, revision, self.headers.get("Authorization"))
        blob = commit.files.get(filename)
        if blob is None:
            # The Hub sends the commit along, and the client caches the miss under .no_exist/<sha>.
            raise _HubError(
                404, "EntryNotFound", "Entry not found", headers=[("X-Repo-Commit", commit.sha)]
            )

        start, length, status = 0, blob.size, 200
        range_header = self.headers.get("Range")
        if range_header is not None and not head:
            parsed = _parse_range(range_header, blob.size)
            if parsed == "unsatisfiable":
                raise _HubError(
                    416,
                    None,
                    "Requested Range Not Satisfiable",
                    headers=[("Content-Range", f"bytes */{blob.size}")],
                )
            if parsed is not None:
                start, end = parsed
                length, status = end - start + 1, 206

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{blob.etag}"')
        self.send_header("X-Repo-Commit", commit.sha)
        if blob.is_lfs:
            self.send_header("X-Linked-Etag", f'"{blob.sha256}"')
            self.send_header("X-Linked-Size", str(blob.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{blob.size}")
        self.end_headers()
        if head:
            return

        fault = self.hub._take_fault(repo_id, filename)
        limit = length
        if fault is not None and fault.kind == "truncate":
            limit = min(length, fault.after_bytes)
        try:
            for chunk in blob.iter_bytes(start, limit):
                if fault is not None and fault.kind == "corrupt":
                    chunk = chunk.translate(_INVERT_TABLE)
                self.wfile.write(chunk)
        except OSError:
            self.close_connection = True  # Client went away; nothing left to serve on this socket.
            return
        if limit < length:
            assert fault is not None
            self._abort_connection(reset=fault.reset)

    # -- helpers -----------------------------------------------------------------------------

    def _send_json(
        self,
        status: int,
        payload: Any,
        *,
        head: bool,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra_headers:
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _abort_connection(self, *, reset: bool) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            if reset:
                # Linger 0 turns close() into a RST; the makefile() reader holds a reference to
                # the socket, so it has to go first or close() would not release the descriptor.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.rfile.close()
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# -- pure helpers ----------------------------------------------------------------------------


def _find_commit(repo: _Repo, revision: str) -> _Commit | None:
    sha = repo.branches.get(revision) or repo.tags.get(revision)
    if sha is None and _COMMIT_SHA_RE.fullmatch(revision):
        sha = revision
    return repo.commits.get(sha) if sha is not None else None


def _model_info(repo: _Repo, commit: _Commit, *, blobs: bool) -> dict[str, Any]:
    siblings: list[dict[str, Any]] = []
    for name in sorted(commit.files):
        blob = commit.files[name]
        sibling: dict[str, Any] = {"rfilename": name}
        if blobs:
            sibling["size"] = blob.size
            sibling["blobId"] = blob.git_oid
            if blob.is_lfs:
                sibling["lfs"] = {
                    "sha256": blob.sha256,
                    "size": blob.size,
                    "pointerSize": blob.lfs_pointer_size,
                }
        siblings.append(sibling)
    author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
    return {
        "_id": hashlib.sha1(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": author,
        "sha": commit.sha,
        "lastModified": _iso(commit.date),
        "createdAt": _iso(repo.created),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(blob.size for blob in commit.files.values()),
    }


def _tree(commit: _Commit, path_in_repo: str, *, recursive: bool, expand: bool) -> list[Any]:
    prefix = f"{path_in_repo}/" if path_in_repo else ""
    if prefix and not any(name.startswith(prefix) for name in commit.files):
        raise _HubError(404, "EntryNotFound", f"{path_in_repo} does not exist on {commit.sha}")
    last_commit = {"id": commit.sha, "title": commit.title, "date": _iso(commit.date)}

    directories: set[str] = set()
    entries: list[dict[str, Any]] = []
    for name in sorted(commit.files):
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            directories.add(prefix + "/".join(parts[:depth]))
        if len(parts) > 1 and not recursive:
            continue
        blob = commit.files[name]
        entry: dict[str, Any] = {
            "type": "file",
            "oid": blob.git_oid,
            "size": blob.size,
            "path": name,
        }
        if blob.is_lfs:
            entry["lfs"] = {
                "oid": blob.sha256,
                "size": blob.size,
                "pointerSize": blob.lfs_pointer_size,
            }
        if expand:
            entry["lastCommit"] = last_commit
        entries.append(entry)

    folders: list[dict[str, Any]] = []
    for directory in sorted(directories):
        oid = hashlib.sha1(f"{commit.sha}:{directory}".encode(), usedforsecurity=False).hexdigest()
        folder: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": directory}
        if expand:
            folder["lastCommit"] = last_commit
        folders.append(folder)
    return folders + entries


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """Inclusive (start, end) for a single byte range; None means "ignore it, send 200"."""
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None  # Multi-range or malformed: RFC 9110 allows answering with the full body.
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
        return "unsatisfiable" if start >= size else (start, end)
    if not last:
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return (max(0, size - suffix), size - 1)


def _git_blob_sha1(data: bytes) -> str:
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def _hash_file(path: Path, size: int) -> tuple[str, str]:
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return sha256.hexdigest(), git_sha1.hexdigest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true"}


def _validate_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) > 2 or not all(parts) or any(part in {".", ".."} for part in parts):
        raise ValueError(f"invalid repo id {repo_id!r}, expected 'org/name'")


def _validate_revision_name(name: str) -> None:
    if not name or _COMMIT_SHA_RE.fullmatch(name):
        raise ValueError(f"invalid branch/tag name {name!r} (empty or looks like a commit sha)")


def _validate_filename(name: str) -> str:
    parts = name.split("/")
    if "\\" in name or not all(parts) or any(part in {".", ".."} for part in parts):
        raise ValueError(f"invalid repo file name {name!r}")
    return name
