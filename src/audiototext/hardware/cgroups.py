"""The CPU quota and memory limit a container puts on this process (cgroup v1 or v2).

A container sees the host's cores and memory in ``/proc``; what it may use is in its cgroup.
``/proc/self/cgroup`` names the process's group per hierarchy (``0::/path`` for v2, ``N:cpu,
cpuacct:/path`` for v1), found under the mount at ``/sys/fs/cgroup``. Inside a cgroup
namespace the named path is often not mounted (the group is the mount's root), so a missing
folder falls back to the mount's root. Limits nest: the tightest of the group and its
ancestors applies, so every level up to the mount's root is read.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "read_cgroup_limits"]

# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything this large
# is no limit in practice.
_UNLIMITED_BYTES = 1 << 60


@dataclass(frozen=True)
class CgroupLimits:
    version: int  # 1 or 2; 0 when no cgroup controller could be read
    cpu_quota_cores: float | None  # quota / period; None: no CPU quota
    memory_limit_bytes: int | None  # None: no memory limit
    memory_usage_bytes: int | None  # what the group uses now (page cache included)
    cpu_dir: str = ""  # the folders read, for a person checking the result
    memory_dir: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "cgroup_version": self.version,
            "cpu_quota_cores": self.cpu_quota_cores,
            "memory_limit_mb": _mb(self.memory_limit_bytes),
            "memory_usage_mb": _mb(self.memory_usage_bytes),
            "cpu_dir": self.cpu_dir,
            "memory_dir": self.memory_dir,
        }


def _mb(n: int | None) -> int | None:
    return None if n is None else n >> 20


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _groups(proc_cgroup: Path) -> tuple[str | None, dict[str, str]]:
    """(the v2 path or None, {v1 controller: path})."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v2, v1


def _levels(mount: Path, group: str) -> list[Path]:
    """The group's folder and its ancestors up to the mount's root (the root alone when the
    group's folder is not visible, as inside a cgroup namespace)."""
    rel = [p for p in group.strip("/").split("/") if p and p != ".."]
    folder = mount.joinpath(*rel) if rel else mount
    if not folder.is_dir():
        return [mount]
    levels = [folder]
    while folder != mount:
        folder = folder.parent
        levels.append(folder)
    return levels


def _tightest(values: list[float]) -> float | None:
    return min(values) if values else None


def _v2(mount: Path, group: str) -> CgroupLimits:
    levels = _levels(mount, group)
    quotas: list[float] = []
    limits: list[float] = []
    for folder in levels:
        cpu = (_read(folder / "cpu.max") or "").split()
        if len(cpu) == 2 and cpu[0] != "max":
            with contextlib.suppress(ValueError, ZeroDivisionError):
                quotas.append(int(cpu[0]) / int(cpu[1]))
        memory = _read(folder / "memory.max")
        if memory and memory != "max" and memory.isdigit():
            limits.append(int(memory))
    usage = _read(levels[0] / "memory.current")
    limit = _tightest(limits)
    return CgroupLimits(
        version=2,
        cpu_quota_cores=_tightest(quotas),
        memory_limit_bytes=None if limit is None else int(limit),
        memory_usage_bytes=int(usage) if usage and usage.isdigit() else None,
        cpu_dir=str(levels[0]),
        memory_dir=str(levels[0]),
    )


def _v1_mount(root: Path, controller: str) -> Path | None:
    """The v1 hierarchy holding ``controller``: ``cpu`` may be mounted as ``cpu,cpuacct``."""
    plain = root / controller
    if plain.is_dir():
        return plain
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if controller in folder.name.split(",") and folder.is_dir():
                return folder
    return None


def _v1(root: Path, v1: dict[str, str]) -> CgroupLimits:
    quotas: list[float] = []
    limits: list[float] = []
    usage: int | None = None
    cpu_dir = memory_dir = ""
    cpu_mount = _v1_mount(root, "cpu")
    if cpu_mount is not None:
        levels = _levels(cpu_mount, v1.get("cpu", "/"))
        cpu_dir = str(levels[0])
        for folder in levels:
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            try:
                q, p = int(quota or "-1"), int(period or "0")
            except ValueError:
                continue
            if q > 0 and p > 0:
                quotas.append(q / p)
    memory_mount = _v1_mount(root, "memory")
    if memory_mount is not None:
        levels = _levels(memory_mount, v1.get("memory", "/"))
        memory_dir = str(levels[0])
        for folder in levels:
            text = _read(folder / "memory.limit_in_bytes")
            if text and text.isdigit() and int(text) < _UNLIMITED_BYTES:
                limits.append(int(text))
        current = _read(levels[0] / "memory.usage_in_bytes")
        usage = int(current) if current and current.isdigit() else None
    limit = _tightest(limits)
    return CgroupLimits(
        version=1,
        cpu_quota_cores=_tightest(quotas),
        memory_limit_bytes=None if limit is None else int(limit),
        memory_usage_bytes=usage,
        cpu_dir=cpu_dir,
        memory_dir=memory_dir,
    )


def read_cgroup_limits(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> CgroupLimits:
    """This process's cgroup limits (``root`` and ``proc_cgroup`` are parameters for tests).

    v1 controllers win where the process is in both (a hybrid host mounts v2 at
    ``unified/`` with no controllers); pure v2 mounts the unified tree at ``root`` itself.
    """
    v2, v1 = _groups(proc_cgroup)
    if ("cpu" in v1 or "memory" in v1) and (
        _v1_mount(root, "cpu") is not None or _v1_mount(root, "memory") is not None
    ):
        return _v1(root, v1)
    if (root / "cgroup.controllers").is_file():
        return _v2(root, v2 or "/")
    return CgroupLimits(
        version=0, cpu_quota_cores=None, memory_limit_bytes=None, memory_usage_bytes=None
    )
