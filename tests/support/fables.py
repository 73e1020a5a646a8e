"""The benchmark's speech corpus (bench/corpus.py: Aesop's fables, espeak-ng) for tests that
need more words than their own clip sets: a WER difference of 1 pp is 2 words of a 173-word set
and 30 of these 2,592."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_BENCH_CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus.py"


def bench_fables(out_dir: Path, repeat: int = 1) -> list[tuple[str, str]]:
    """The 12 fables (``repeat`` times, other voices each time) as (wav path, text)."""
    spec = importlib.util.spec_from_file_location("bench_corpus", _BENCH_CORPUS)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    clips = module.build_corpus(out_dir, repeat=repeat)
    return [(str(c.path), c.text) for c in clips]
