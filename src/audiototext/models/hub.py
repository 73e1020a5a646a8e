"""Downloads from the Hugging Face Hub (or any compatible server), checked by hash.

Environment, read at call time (so a running server and the tests can change it):
``HF_ENDPOINT`` (default https://huggingface.co), ``HF_TOKEN``, ``HF_HUB_OFFLINE``.

Downloads go through ``huggingface_hub`` (resumable: an interrupted file continues from its
``.incomplete`` part, and a connection dropped mid-file is resumed with a Range request inside
the same call). Every file is then checked against the hash the Hub names it by (sha256 for
LFS files, git blob sha1 otherwise); a mismatch deletes the bad copy and downloads it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiototext.errors import (
    DownloadError,
    IntegrityError,
    RevisionNotFoundError,
    UnknownModelError,
)
from audiototext.progress import NullProgress, ProgressSink

__all__ = ["Snapshot", "endpoint", "fetch", "is_offline", "verify_blob"]

log = logging.getLogger(__name__)

# huggingface_hub reads this once, at import: a tool that runs on the user's machine sends no
# telemetry, and the telemetry user-agent probe would otherwise call the default endpoint even
# when HF_ENDPOINT points to a mirror.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    commit: str
    path: Path
    files: tuple[str, ...]


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _token() -> str | bool | None:
    return os.environ.get("HF_TOKEN") or None


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_blob(path: Path) -> bool:
    """True if a file in the Hub cache matches the hash its blob is named after.

    Files in a ``huggingface_hub`` snapshot are links to ``blobs/<etag>``; the etag is the
    sha256 of LFS files and the git blob sha1 of the others. Unknown naming counts as valid.
    """
    blob = path.resolve()
    name = blob.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return sha256_file(blob) == name
    if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
        return _git_blob_sha1(blob) == name
    return True


def _tqdm_for(progress: ProgressSink, key: str, label: str) -> type[Any]:
    """A tqdm class that forwards huggingface_hub's byte counts to a ProgressSink."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class _Forward(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            total = kwargs.get("total")
            initial = kwargs.get("initial", 0) or 0
            kwargs["disable"] = True
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)
            progress.task(key, label, float(total) if total else None)
            if initial:
                progress.advance(key, float(initial))

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                progress.advance(key, float(n))
            return None

        def close(self) -> None:
            progress.done(key)
            super().close()

    return _Forward


def _map_error(exc: BaseException, repo_id: str, revision: str) -> Exception:
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFoundError(
            f"revision {revision!r} does not exist in {repo_id} (use a branch, tag or full commit)"
        )
    if isinstance(exc, hf.GatedRepoError):
        return DownloadError(
            f"{repo_id} is gated: accept its licence on the Hub and set HF_TOKEN to a token "
            "with access"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return UnknownModelError(
            f"no repository {repo_id!r} on {endpoint()} (or it is private: set HF_TOKEN)"
        )
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return DownloadError(f"{repo_id}@{revision}: {exc}")
    if isinstance(exc, hf.OfflineModeIsEnabled | hf.LocalEntryNotFoundError):
        return DownloadError(
            f"{repo_id} is not in the local download cache and HF_HUB_OFFLINE is set; "
            "unset HF_HUB_OFFLINE to download it"
        )
    return DownloadError(
        f"cannot reach {endpoint()} to download {repo_id}: {type(exc).__name__}: {exc}. "
        "Check the network, or set HF_ENDPOINT to a reachable mirror."
    )


def _is_transport_error(exc: BaseException) -> bool:
    from huggingface_hub import errors as hf

    return isinstance(exc, OSError | hf.HfHubHTTPError) or type(exc).__module__.startswith(
        ("httpx", "httpcore", "requests", "urllib3")
    )


def fetch(
    repo_id: str,
    revision: str,
    select: Callable[[Sequence[str]], Sequence[str]],
    cache_dir: Path,
    progress: ProgressSink | None = None,
) -> Snapshot:
    """Download the files ``select`` picks from the repo listing, pinned to one commit.

    ``select`` receives every file name in the repository and returns those to fetch (it raises
    when the layout is not one it can use). Offline, the newest cached snapshot of that
    revision is used if every selected file is present.
    """
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub import errors as hf

    progress = progress or NullProgress()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if is_offline():
        try:
            local_dir = Path(
                snapshot_download(
                    repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True
                )
            )
        except Exception as exc:
            raise _map_error(exc, repo_id, revision) from exc
        names = [str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file()]
        files = tuple(select(names))
        bad = [f for f in files if not verify_blob(local_dir / f)]
        if bad:
            raise IntegrityError(
                f"cached files of {repo_id} are corrupt ({', '.join(bad)}) and HF_HUB_OFFLINE "
                "is set; unset it to download them again"
            )
        return Snapshot(repo_id, local_dir.name, local_dir, files)

    try:
        info = HfApi(endpoint=endpoint(), token=_token()).model_info(repo_id, revision=revision)
    except Exception as exc:
        raise _map_error(exc, repo_id, revision) from exc
    commit = str(info.sha)
    names = [s.rfilename for s in (info.siblings or [])]
    files = tuple(select(names))

    path: Path | None = None
    for fname in files:
        for attempt in (1, 2):
            try:
                local = Path(
                    hf_hub_download(
                        repo_id,
                        fname,
                        revision=commit,
                        cache_dir=cache_dir,
                        endpoint=endpoint(),
                        token=_token(),
                        force_download=attempt == 2,
                        tqdm_class=_tqdm_for(progress, f"download:{repo_id}:{fname}", fname),
                    )
                )
            except hf.HfHubHTTPError as exc:
                raise _map_error(exc, repo_id, revision) from exc
            except Exception as exc:
                if _is_transport_error(exc):
                    raise _map_error(exc, repo_id, revision) from exc
                raise
            if verify_blob(local):
                break
            log.warning("%s/%s failed its hash check; downloading it again", repo_id, fname)
            progress.note(f"{fname}: hash mismatch, downloading again")
            with contextlib.suppress(OSError):
                local.resolve().unlink()
        else:
            raise IntegrityError(
                f"{repo_id}/{fname} does not match its published hash after two downloads"
            )
        path = local.parents[len(Path(fname).parts) - 1]
    if path is None:
        raise DownloadError(f"{repo_id}: nothing to download")
    if revision != commit:
        # Files were fetched by commit (so a branch moving mid-download cannot mix two
        # versions); record which commit the branch named, so offline mode can find it.
        refs = path.parent.parent / "refs" / revision
        try:
            refs.parent.mkdir(parents=True, exist_ok=True)
            refs.write_text(commit, encoding="utf-8")
        except OSError as exc:
            log.warning("could not record %s@%s in the download cache: %s", repo_id, revision, exc)
    return Snapshot(repo_id, commit, path, files)
