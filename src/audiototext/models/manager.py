"""Pull, list, verify and remove models: the use cases behind ``audiototext models``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiototext._version import __version__
from audiototext.errors import (
    AudioToTextError,
    CacheError,
    ConversionError,
    DownloadError,
    IntegrityError,
    ModelError,
    NotWhisperError,
    RevisionNotFoundError,
    UnknownModelError,
    ValidationError,
)
from audiototext.hardware import detect, pick_precision
from audiototext.models import hub
from audiototext.models.cache import CacheEntry, ModelCache
from audiototext.models.convert import (
    CONVERTER_VERSION,
    compare_variant,
    convert,
    make_probe,
    run_probe,
    validate_against_reference,
)
from audiototext.models.graph import GRAPH_VERSION, OPSET
from audiototext.models.metadata import ModelMetadata
from audiototext.models.optimize import PRECISIONS, quantise_and_optimise
from audiototext.models.packaged import PackageUnusable, packaged_dir, release
from audiototext.models.registry import ModelSpec, Source, resolve
from audiototext.models.versions import CONFIG_FILE, DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE
from audiototext.progress import NullProgress, ProgressSink

__all__ = ["PullResult", "VerifyReport", "pull", "verify"]

log = logging.getLogger(__name__)

SELFCHECK = "selfcheck.npz"

# Relative max-abs error allowed when `verify` re-runs the probe on a cached variant. Same
# machine and same files give identical numbers; the margin covers a copy moved to a CPU with
# other SIMD kernels (int8 paths differ most between AVX2 and VNNI).
VERIFY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}


class _SourceUnusable(ModelError):
    """This source cannot provide the model (layout, missing files); try the next one."""


@dataclass(frozen=True)
class PullResult:
    entry: CacheEntry
    cached: bool  # True when nothing had to be built
    attempts: tuple[str, ...] = ()  # why earlier sources were skipped


def resolve_precision(precision: str, device: str = "auto") -> str:
    if precision == "auto":
        return pick_precision(detect(), device)
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be auto or one of {', '.join(PRECISIONS)}, not {precision!r}"
        )
    return precision


# --------------------------------------------------------------------------- sources


def _pick_transformers(names: Sequence[str]) -> list[str]:
    top = set(names)
    if "config.json" not in top:
        raise NotWhisperError("no config.json: not a transformers checkpoint")
    if "model.safetensors" in top:
        weights = ["model.safetensors"]
    else:
        weights = sorted(
            n for n in top if "/" not in n and n.startswith("model-") and n.endswith(".safetensors")
        )
    if not weights:
        raise _SourceUnusable(
            "no safetensors weights (PyTorch .bin pickles are not loaded: they need torch)"
        )
    if "tokenizer.json" not in top:
        raise _SourceUnusable("no tokenizer.json")
    optional = ["generation_config.json", "preprocessor_config.json"]
    return ["config.json", "tokenizer.json", *weights, *(n for n in optional if n in top)]


def _pick_ctranslate2(names: Sequence[str]) -> list[str]:
    top = set(names)
    if "model.bin" not in top:
        raise NotWhisperError("no model.bin: not a CTranslate2 checkpoint")
    if "tokenizer.json" not in top:
        raise _SourceUnusable("no tokenizer.json")
    optional = ["preprocessor_config.json", "vocabulary.json", "vocabulary.txt"]
    return ["model.bin", "config.json", "tokenizer.json", *(n for n in optional if n in top)]


def _fetch(
    src: Source, revision: str, cache: ModelCache, progress: ProgressSink
) -> tuple[Path, str]:
    """Local folder and commit id of a source's files, downloading them if needed."""
    if src.kind == "package":
        try:
            return packaged_dir(src.repo_id, cache.root)
        except PackageUnusable as exc:
            raise _SourceUnusable(str(exc)) from exc
    if src.kind == "transformers":
        # The small config first: a repo of another architecture is refused before any
        # weights are downloaded.
        snap = hub.fetch(
            src.repo_id,
            revision,
            lambda n: ["config.json"] if "config.json" in n else _pick_transformers(n),
            cache.hub_dir,
            progress,
        )
        try:
            model_type = json.loads((snap.path / "config.json").read_text(encoding="utf-8")).get(
                "model_type"
            )
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise _SourceUnusable(f"config.json is unreadable: {exc}") from exc
        if model_type != "whisper":
            raise NotWhisperError(
                f"{src.repo_id} is a {model_type or 'non-transformers'} model; "
                "only Whisper-architecture models can be transcribed"
            )
        snap = hub.fetch(src.repo_id, snap.commit, _pick_transformers, cache.hub_dir, progress)
        return snap.path, snap.commit
    if src.kind == "onnx":
        from audiototext.models.onnx_import import pick_onnx_files

        def pick(names: Sequence[str]) -> list[str]:
            try:
                return pick_onnx_files(names)
            except ConversionError as exc:  # e.g. only quantised graphs: try the next source
                raise _SourceUnusable(str(exc)) from exc

        snap = hub.fetch(src.repo_id, revision, pick, cache.hub_dir, progress)
        return snap.path, snap.commit
    snap = hub.fetch(src.repo_id, revision, _pick_ctranslate2, cache.hub_dir, progress)
    return snap.path, snap.commit


# --------------------------------------------------------------------------- building


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _build(
    spec: ModelSpec,
    src: Source,
    revision: str,
    commit: str,
    source_dir: Path,
    precision: str,
    cache: ModelCache,
    dest: Path,
    progress: ProgressSink,
) -> CacheEntry:
    import onnx
    import onnxruntime

    started = time.perf_counter()
    steps = ["convert", "validate", precision, "self-check"]
    progress.task("build", f"Building {spec.name} ({precision})", len(steps), unit="step")
    with cache.staging() as tmp:
        work, out = tmp / "fp32", tmp / "entry"
        work.mkdir()
        out.mkdir()
        conv = convert(source_dir, src.kind, work, fused=precision != "fp16")
        progress.advance("build", 1)
        report = validate_against_reference(work, conv)
        progress.advance("build", 1)
        for f in (ENCODER_FILE, DECODER_FILE):
            quantise_and_optimise(work / f, out / f, precision)
        progress.advance("build", 1)
        meta = conv.metadata
        (out / CONFIG_FILE).write_text(json.dumps(meta.to_json(), indent=2), encoding="utf-8")
        shutil.copyfile(source_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
        probe = make_probe(meta)
        got = run_probe(out, meta, probe)
        drift: dict[str, float] = {}
        if precision != "fp32":
            drift = compare_variant(run_probe(work, meta, probe), got)
            # A working int8/fp16 variant keeps the logits' direction; below this it is broken.
            # The mean over positions, not the minimum: after the probe's random text tokens
            # the logits are flat and base's int8 falls to 0.72 at one position (its prompt
            # positions stay above 0.99) while transcribing real speech as fp32 does.
            if drift["logits_mean_cosine"] < 0.9:
                raise ValidationError(f"the {precision} variant drifted too far from fp32: {drift}")
        arrays: dict[str, Any] = {"mel": probe.mel, "tokens": np.asarray(probe.tokens), **got}
        np.savez(out / SELFCHECK, **arrays)
        progress.advance("build", 1)
        shutil.rmtree(work)
        manifest = {
            "name": spec.name,
            "precision": precision,
            "source": {
                "kind": src.kind,
                "repo_id": src.repo_id,
                "revision": revision,
                "commit": commit,
            },
            "converter_version": f"audiototext {__version__} / graphs v{CONVERTER_VERSION}",
            "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "opset": OPSET,
            "graph_version": GRAPH_VERSION,
            "graph_optimization": "extended" if precision != "fp16" else "none",
            "dims": meta.dims.to_json(),
            "validation": {"fp32_vs_reference": report}
            | ({f"{precision}_vs_fp32": drift} if drift else {}),
            "build": {
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "cpu_flags": list(detect().cpu_flags),
            },
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        entry = cache.install(out, manifest, dest)
    progress.done("build")
    return entry


# --------------------------------------------------------------------------- use cases


def pull(
    name: str,
    *,
    revision: str | None = None,
    precision: str = "auto",
    force: bool = False,
    update: bool = False,
    cache: ModelCache | None = None,
    progress: ProgressSink | None = None,
) -> PullResult:
    """Make ``name`` available in the cache in ``precision``; return its entry.

    Without ``revision``, ``update`` or ``force`` an entry already in the cache is returned
    with no network access. Sources are tried in registry order; a source that is unreachable
    or unusable is skipped and the reason kept in ``PullResult.attempts``.
    """
    spec = resolve(name)
    cache = cache or ModelCache()
    progress = progress or NullProgress()
    prec = resolve_precision(precision)
    cache.ensure_writable()
    if not (force or update or revision):
        existing = cache.entries(spec.name, prec)
        if existing:
            return PullResult(existing[0], cached=True)

    attempts: list[str] = []
    first_error: AudioToTextError | None = None
    for src in spec.sources:
        rev = revision or src.revision
        if src.kind == "package" and revision:
            attempts.append(
                f"{src.repo_id}: skipped (a pinned revision applies to Hugging Face sources)"
            )
            continue
        label = src.repo_id if src.kind == "package" else f"{src.repo_id}@{rev} ({src.kind})"
        try:
            source_dir, commit = _fetch(src, rev, cache, progress)
        except RevisionNotFoundError:
            if revision:
                raise
            attempts.append(f"{label}: revision not found")
            continue
        except NotWhisperError as exc:
            # A transformers config of another architecture is final; a missing file only
            # means this layout does not apply (the next source kind may).
            if "model_type" in str(exc) or " is a " in str(exc):
                raise
            attempts.append(f"{label}: {exc}")
            first_error = first_error or exc
            continue
        except (DownloadError, IntegrityError, UnknownModelError, _SourceUnusable) as exc:
            attempts.append(f"{label}: {exc}")
            first_error = first_error or exc
            progress.note(f"{label} unavailable, trying the next source")
            continue
        with cache.lock(spec.name):
            dest = cache.entry_dir(spec.name, src.kind, commit, prec)
            try:
                if not force:
                    try:
                        found = cache.find(spec.name, prec, dest.parent.name)
                        if found.path == dest:
                            return PullResult(found, cached=True, attempts=tuple(attempts))
                    except ModelError:
                        pass
                try:
                    entry = _build(spec, src, rev, commit, source_dir, prec, cache, dest, progress)
                except (ConversionError, NotWhisperError) as exc:
                    if src.kind == "package":
                        raise
                    attempts.append(f"{label}: {exc}")
                    first_error = first_error or exc
                    continue
                return PullResult(entry, cached=False, attempts=tuple(attempts))
            finally:
                if src.kind == "package":
                    release(source_dir, cache.root)

    detail = "; ".join(attempts)
    if isinstance(first_error, NotWhisperError):
        raise NotWhisperError(f"{spec.name} is not a usable Whisper model: {detail}")
    if isinstance(first_error, UnknownModelError) and all("no repository" in a for a in attempts):
        raise UnknownModelError(f"{spec.name}: {detail}")
    raise DownloadError(f"could not get {spec.name} from any source: {detail}")


@dataclass(frozen=True)
class VerifyReport:
    entry: CacheEntry
    bad_files: tuple[str, ...] = ()
    max_rel_err: float | None = None
    tolerance: float | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            **self.entry.to_json(),
            "ok": self.ok,
            "bad_files": list(self.bad_files),
            "max_rel_err": self.max_rel_err,
            "tolerance": self.tolerance,
            "problems": list(self.problems),
        }


def verify_entry(entry: CacheEntry, cache: ModelCache) -> VerifyReport:
    bad = tuple(cache.verify_files(entry))
    if bad:
        return VerifyReport(
            entry, bad, problems=(f"files changed since they were written: {', '.join(bad)}",)
        )
    try:
        meta = ModelMetadata.from_json(
            json.loads(entry.file(CONFIG_FILE).read_text(encoding="utf-8"))
        )
        ref = np.load(entry.file(SELFCHECK))
        from audiototext.models.convert import Probe

        got = run_probe(entry.path, meta, Probe(ref["mel"], [int(t) for t in ref["tokens"]]))
    except Exception as exc:  # any failure to load or run is a verification failure
        return VerifyReport(
            entry, problems=(f"self-check could not run: {type(exc).__name__}: {exc}",)
        )
    worst = 0.0
    for key, value in got.items():
        r = ref[key].astype(np.float64)
        err = float(np.abs(value - r).max() / max(float(np.abs(r).max()), 1e-6))
        worst = max(worst, err if np.isfinite(err) else float("inf"))
    tol = VERIFY_TOLERANCE[entry.precision]
    problems = (
        ()
        if worst <= tol
        else (f"outputs differ from the recorded self-check by {worst:.2e} (tolerance {tol:.0e})",)
    )
    return VerifyReport(entry, (), worst, tol, problems)


def verify(
    name: str | None = None,
    precision: str | None = None,
    version: str | None = None,
    cache: ModelCache | None = None,
) -> tuple[list[VerifyReport], list[tuple[Path, str]]]:
    """Verify matching entries (all if ``name`` is None); also returns damaged folders."""
    cache = cache or ModelCache()
    spec_name = resolve(name).name if name else None
    good, damaged = cache.scan()
    chosen = [
        e
        for e in good
        if (spec_name is None or e.name == spec_name)
        and (precision is None or e.precision == precision)
        and e.matches_version(version)
    ]
    if spec_name and not chosen and not damaged:
        raise CacheError(
            f"no cached entry of {spec_name} matches; run: audiototext models pull {spec_name}"
        )
    return [verify_entry(e, cache) for e in chosen], damaged
