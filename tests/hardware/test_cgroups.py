"""cgroup limits read from fake /sys/fs/cgroup trees, and from this machine's real one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audiototext.hardware.cgroups import read_cgroup_limits
from audiototext.hardware.detect import detect, usable_cores


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_v2_quota_and_memory_of_the_group(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(
        root,
        {
            "cgroup.controllers": "cpu memory",
            "app/web/cpu.max": "150000 100000\n",
            "app/web/memory.max": "536870912\n",
            "app/web/memory.current": "104857600\n",
        },
    )
    got = read_cgroup_limits(root, _proc(tmp_path, "0::/app/web\n"))
    assert got.version == 2
    assert got.cpu_quota_cores == 1.5
    assert got.memory_limit_bytes == 512 << 20
    assert got.memory_usage_bytes == 100 << 20
    assert got.to_json()["memory_limit_mb"] == 512


def test_v2_the_tightest_ancestor_wins_and_max_means_none(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(
        root,
        {
            "cgroup.controllers": "cpu memory",
            "pod/cpu.max": "50000 100000",
            "pod/memory.max": "max",
            "pod/box/cpu.max": "max 100000",
            "pod/box/memory.max": "max",
        },
    )
    got = read_cgroup_limits(root, _proc(tmp_path, "0::/pod/box\n"))
    assert got.cpu_quota_cores == 0.5
    assert got.memory_limit_bytes is None


def test_v2_in_a_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    """Inside a cgroup namespace /proc/self/cgroup names a path the mount does not show."""
    root = tmp_path / "cg"
    _tree(root, {"cgroup.controllers": "cpu", "cpu.max": "200000 100000"})
    got = read_cgroup_limits(root, _proc(tmp_path, "0::/kubepods/burstable/pod1/abc\n"))
    assert got.cpu_quota_cores == 2.0
    assert got.cpu_dir == str(root)


def test_v1_with_cpu_cpuacct_mount_and_no_limits(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(
        root,
        {
            "cpu,cpuacct/docker/1/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/docker/1/cpu.cfs_period_us": "100000",
            "memory/docker/1/memory.limit_in_bytes": "9223372036854771712",
            "memory/docker/1/memory.usage_in_bytes": "4096",
        },
    )
    proc = _proc(tmp_path, "4:memory:/docker/1\n3:cpu,cpuacct:/docker/1\n0::/\n")
    got = read_cgroup_limits(root, proc)
    assert got.version == 1
    assert got.cpu_quota_cores is None and got.memory_limit_bytes is None
    assert got.memory_usage_bytes == 4096


def test_v1_limits(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(
        root,
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/box/cpu.cfs_quota_us": "250000",
            "cpu/box/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": "2147483648",
            "memory/box/memory.limit_in_bytes": "4294967296",
        },
    )
    proc = _proc(tmp_path, "5:memory:/box\n2:cpu:/box\n")
    got = read_cgroup_limits(root, proc)
    assert got.cpu_quota_cores == 2.5
    assert got.memory_limit_bytes == 2 << 30  # the parent's limit is tighter


def test_garbage_and_missing_files_read_as_no_limit(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(root, {"cgroup.controllers": "", "cpu.max": "lots of cpu", "memory.max": "-3"})
    got = read_cgroup_limits(root, _proc(tmp_path, "garbage\n0::/\n"))
    assert (got.version, got.cpu_quota_cores, got.memory_limit_bytes) == (2, None, None)
    none = read_cgroup_limits(tmp_path / "absent", tmp_path / "absent-proc")
    assert none.version == 0


def test_quota_lowers_usable_cores() -> None:
    from audiototext.hardware.cgroups import CgroupLimits

    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(64, CgroupLimits(2, None, None, None)) == affinity
    assert usable_cores(64, CgroupLimits(2, 0.5, None, None)) == 1
    assert usable_cores(64, CgroupLimits(2, 1.2, None, None)) == min(affinity, 2)


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="Linux only")
def test_this_machine() -> None:
    """The real /sys/fs/cgroup: some version is found, and what it says is sane."""
    got = read_cgroup_limits()
    assert got.version in (1, 2)
    assert got.cpu_quota_cores is None or got.cpu_quota_cores > 0
    assert got.memory_limit_bytes is None or got.memory_limit_bytes > 1 << 20
    hw = detect()
    assert 1 <= hw.usable_cores <= hw.logical_cores
    assert 0 < hw.memory_limit_mb <= hw.memory_total_mb
