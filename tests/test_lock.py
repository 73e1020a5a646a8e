"""The lock (requirements/lock.txt) covers pyproject.toml and is what this environment runs."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PROJECT = "audiototext"
# Tools whose output the repository checks in: a new release would change that output.
GENERATORS = ("grpcio-tools",)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def declared() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = list(pyproject["build-system"]["requires"])
    lines += pyproject["project"]["dependencies"]
    for extra in pyproject["project"]["optional-dependencies"].values():
        lines += extra
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if canonicalize_name(r.name) != PROJECT]


def test_every_line_of_the_lock_is_an_exact_pin() -> None:
    entries = [
        line
        for line in LOCK.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    loose = [line for line in entries if not _PIN.match(line)]
    assert not loose, f"not exact pins (run scripts/lock.sh): {loose}"
    assert "file://" not in LOCK.read_text(), "the lock holds a path of one machine"


def test_the_lock_satisfies_every_declared_dependency() -> None:
    pins = locked()
    missing, outside = [], []
    for req in declared():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            missing.append(str(req))
        elif not req.specifier.contains(version, prereleases=True):
            outside.append(f"{req} (locked {version})")
    assert not missing and not outside, (
        "pyproject.toml changed without the lock: run scripts/lock.sh and commit "
        f"requirements/lock.txt; missing {missing}, outside their range {outside}"
    )


@pytest.mark.parametrize("name", GENERATORS)
def test_code_generators_are_pinned_exactly(name: str) -> None:
    specs = [r.specifier for r in declared() if canonicalize_name(r.name) == name]
    assert specs, f"{name} is not declared in pyproject.toml"
    for spec in specs:
        assert [s.operator for s in spec] == ["=="], f"{name} must be pinned with ==, not {spec}"


def test_this_environment_was_installed_from_the_lock() -> None:
    drift = []
    for name, version in locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not install
        if installed != version:
            drift.append(f"{name} {installed} (lock: {version})")
    assert not drift, f"installed versions differ from requirements/lock.txt: {drift}"
