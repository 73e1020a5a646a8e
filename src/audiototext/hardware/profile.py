"""The performance profile: measured speeds of the cached models here, kept in the cache.

``audiototext doctor --benchmark`` measures (:mod:`audiototext.hardware.benchmark`) and
stores the result as ``<cache home>/profile.json`` with a *fingerprint* of what the figures
depend on: the CPU, cores and container limits, the execution providers, the versions of
ONNX Runtime and audiototext, and the cached models (their manifests' checksums). A profile
whose fingerprint differs from this machine's now is stale and rebuilt; a file that cannot be
read as a profile is reported by name and treated as missing, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from audiototext.hardware.detect import HardwareProfile
    from audiototext.models.cache import CacheEntry

__all__ = [
    "PROFILE_FILE",
    "LoadedProfile",
    "Measurement",
    "PerformanceProfile",
    "fingerprint",
    "load_profile",
    "profile_path",
    "save_profile",
    "stored_profile",
]

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1


@dataclass(frozen=True)
class Measurement:
    """One model variant at one thread count, timed on a synthetic utterance as streaming
    decodes it: partials while it grows, then its final."""

    model: str
    precision: str
    version: str  # the cache entry's version id
    threads: int  # ONNX Runtime intra-op threads
    utterance_s: float  # audio seconds of the utterance
    final_s: float  # compute seconds of its final (median of the timed runs)
    partial_s: float  # compute seconds of one partial, averaged over the utterance's growth
    runs: int  # timed runs (a warm-up run comes first and is not counted)
    params_millions: float = 0.0  # model size, the proxy for accuracy (0: unknown)
    ram_mb: int = 0  # expected resident size (registry), 0 if unknown

    @property
    def final_rtf(self) -> float:
        """Compute seconds per audio second for finals alone."""
        return self.final_s / self.utterance_s

    def stream_rtf(self, partial_interval_s: float) -> float:
        """Compute seconds per audio second of one stream: its finals, plus a partial every
        ``partial_interval_s`` of speech."""
        return self.final_rtf + self.partial_s / partial_interval_s


@dataclass(frozen=True)
class PerformanceProfile:
    fingerprint: dict[str, str]
    created_at: str  # ISO 8601, UTC
    elapsed_s: float  # how long the benchmark ran
    budget_s: float
    usable_cores: int
    measurements: tuple[Measurement, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)  # variants not timed, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "fingerprint": dict(self.fingerprint),
            "fingerprint_id": fingerprint_id(self.fingerprint),
            "created_at": self.created_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "budget_s": self.budget_s,
            "usable_cores": self.usable_cores,
            "measurements": [
                {
                    **asdict(m),
                    "final_rtf": round(m.final_rtf, 4),
                }
                for m in self.measurements
            ],
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_json(cls, data: Any) -> PerformanceProfile:
        """The profile in ``data``; ValueError naming what is wrong otherwise."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != PROFILE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {PROFILE_FORMAT}")
        try:
            fp = data["fingerprint"]
            if not isinstance(fp, dict) or not all(isinstance(v, str) for v in fp.values()):
                raise ValueError("fingerprint is not an object of strings")
            rows = []
            for row in data["measurements"]:
                m = Measurement(
                    model=str(row["model"]),
                    precision=str(row["precision"]),
                    version=str(row["version"]),
                    threads=int(row["threads"]),
                    utterance_s=float(row["utterance_s"]),
                    final_s=float(row["final_s"]),
                    partial_s=float(row["partial_s"]),
                    runs=int(row["runs"]),
                    params_millions=float(row.get("params_millions", 0.0)),
                    ram_mb=int(row.get("ram_mb", 0)),
                )
                if m.threads < 1 or m.utterance_s <= 0 or m.final_s <= 0 or m.partial_s < 0:
                    raise ValueError(f"impossible measurement {row!r}")
                rows.append(m)
            return cls(
                fingerprint={str(k): str(v) for k, v in fp.items()},
                created_at=str(data["created_at"]),
                elapsed_s=float(data["elapsed_s"]),
                budget_s=float(data["budget_s"]),
                usable_cores=max(1, int(data["usable_cores"])),
                measurements=tuple(rows),
                skipped=tuple(str(s) for s in data.get("skipped", ())),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or mistyped field: {exc}") from exc


def fingerprint(hardware: HardwareProfile, entries: Sequence[CacheEntry]) -> dict[str, str]:
    """What the profile's figures depend on; any change makes it stale."""
    import onnxruntime as ort

    from audiototext._version import __version__

    models = sorted(
        f"{e.name}/{e.version_id}/{e.precision}:{e.manifest.get('checksum', '')}" for e in entries
    )
    quota = hardware.cgroup.cpu_quota_cores
    return {
        "machine": hardware.machine,
        "cpu_model": hardware.cpu_model,
        "cores": f"{hardware.physical_cores}/{hardware.logical_cores}/{hardware.usable_cores}",
        "cpu_quota": "none" if quota is None else f"{quota:g}",
        "instruction_sets": ",".join(hardware.instruction_sets),
        "providers": ",".join(hardware.providers),
        "onnxruntime": str(ort.__version__),
        "audiototext": __version__,
        "models": hashlib.sha256("\n".join(models).encode()).hexdigest()[:16],
    }


def fingerprint_id(fp: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def profile_path(cache_root: Path | None = None) -> Path:
    from audiototext.models.cache import cache_home

    return (cache_root or cache_home()) / PROFILE_FILE


ProfileState = Literal["fresh", "missing", "stale", "corrupt"]


@dataclass(frozen=True)
class LoadedProfile:
    state: ProfileState
    path: Path
    profile: PerformanceProfile | None  # only when fresh
    message: str  # for a person: what was found and what to do

    @property
    def needs_rebuild(self) -> bool:
        return self.state != "fresh"


def load_profile(path: Path, expected: dict[str, str]) -> LoadedProfile:
    """The stored profile if its fingerprint is ``expected``; a corrupt file is logged as a
    warning naming it (and is replaced by the next :func:`save_profile`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedProfile(
            "missing", path, None, f"no performance profile yet ({path}): run doctor --benchmark"
        )
    except (OSError, UnicodeDecodeError) as exc:
        return _corrupt(path, f"cannot read it: {exc}")
    try:
        profile = PerformanceProfile.from_json(json.loads(text))
    except (json.JSONDecodeError, ValueError) as exc:
        return _corrupt(path, str(exc))
    if profile.fingerprint != expected:
        changed = sorted(
            k
            for k in set(expected) | set(profile.fingerprint)
            if expected.get(k) != profile.fingerprint.get(k)
        )
        return LoadedProfile(
            "stale",
            path,
            None,
            f"the performance profile {path} was measured with other "
            f"{', '.join(changed)}: it will be rebuilt",
        )
    return LoadedProfile("fresh", path, profile, f"performance profile {path}")


def _corrupt(path: Path, why: str) -> LoadedProfile:
    message = f"the performance profile {path} is corrupt ({why}); ignored until rebuilt"
    log.warning("%s", message)
    return LoadedProfile("corrupt", path, None, message)


def save_profile(profile: PerformanceProfile, path: Path) -> None:
    """Write ``profile`` to ``path`` in one step (a reader sees the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(profile.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stored_profile(cache_root: Path | None = None) -> LoadedProfile:
    """The profile stored in the cache at ``cache_root``, checked against this machine and
    the models cached there now."""
    from audiototext.hardware.detect import detect
    from audiototext.models.cache import ModelCache

    cache = ModelCache(cache_root)
    entries, _ = cache.scan()
    return load_profile(profile_path(cache.root), fingerprint(detect(), entries))
