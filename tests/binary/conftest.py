"""The one-file executable, built once per change of what goes into it, and a Debian root.

Both are kept in the test fixture cache (tests/support/fixture_cache.py): the file under a
hash of the sources, the lock, the build script and spec files and this CPU (the bundled model
is optimised on it); the root of ``debootstrap --variant=minbase bookworm`` under the suite and
architecture. A first run builds them (about 3 minutes for the file, 2-4 for the root on 2
cores); later runs reuse them.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fixture_cache import ROOT, SOURCE, cached_dir, content_key, model_source_key

BUILD_INPUTS = (
    SOURCE,
    ROOT / "deploy" / "pyinstaller",
    ROOT / "scripts" / "build-binary.sh",
    ROOT / "scripts" / "setup.sh",
    ROOT / "requirements" / "lock.txt",
    ROOT / "pyproject.toml",
)
COMPRESSION = "gz"  # the default (xz: smaller, slower to unpack; figures in bench/NOTES.md)
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("AUDIOTOTEXT_DEBIAN_MIRROR", "http://deb.debian.org/debian")


class _BuildFailed(Exception):
    pass


def build_binary() -> Path:
    """The one file (built by scripts/build-binary.sh unless a complete one is cached)."""

    def build(path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUDIOTOTEXT_HOME")}
        env.update(
            BINARY_OUTPUT=str(path / "audiototext"),
            BINARY_WORK=str(path / "work"),
            BINARY_COMPRESSION=COMPRESSION,
        )
        out = subprocess.run(
            ["nice", "-n", "5", "bash", str(ROOT / "scripts" / "build-binary.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        (path / "build.log").write_text(out.stdout + out.stderr)
        shutil.rmtree(path / "work", ignore_errors=True)
        if out.returncode != 0:
            raise _BuildFailed(out.stdout[-3000:] + out.stderr[-3000:])

    key = content_key(model_source_key(), *BUILD_INPUTS, COMPRESSION)
    return cached_dir("binary", key, build) / "audiototext"


class _NoDebianRoot(Exception):
    pass


def debian_root() -> Path:
    """A ``debootstrap --variant=minbase`` Debian root: no Python in it."""

    def build(path: Path) -> None:
        out = subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(path / "root"), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if out.returncode != 0:
            raise _NoDebianRoot(f"debootstrap failed: {(out.stdout + out.stderr)[-1500:]}")

    key = content_key(DEBIAN_SUITE, "minbase", platform.machine(), DEBIAN_MIRROR)
    return cached_dir(f"debootstrap-{DEBIAN_SUITE}", key, build) / "root"


@pytest.fixture(scope="session")
def binary() -> Path:
    if platform.system() != "Linux":
        pytest.skip("the one-file build is made for Linux")
    try:
        return build_binary()
    except _BuildFailed as exc:
        raise AssertionError(f"scripts/build-binary.sh failed:\n{exc}") from None


@pytest.fixture(scope="session")
def debian() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("debootstrap and chroot need root")
    if shutil.which("debootstrap") is None or shutil.which("chroot") is None:
        pytest.skip(
            "debootstrap is not installed (Debian package debootstrap; test.sh installs it)"
        )
    try:
        root = debian_root()
    except _NoDebianRoot as exc:
        pytest.skip(f"debootstrap could not make a Debian root here: {exc}")
    yield root
