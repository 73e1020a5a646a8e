"""Variant selection by hardware, the fp16 variant, and a runtime that never needs torch."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiototext.hardware import detect, pick_precision
from audiototext.models.cache import ModelCache
from audiototext.models.manager import pull, resolve_precision, verify


def test_precision_follows_the_hardware() -> None:
    cpu = dataclasses.replace(detect(), providers=("CPUExecutionProvider",))
    cuda = dataclasses.replace(
        detect(), providers=("CUDAExecutionProvider", "CPUExecutionProvider")
    )
    coreml = dataclasses.replace(
        detect(), providers=("CoreMLExecutionProvider", "CPUExecutionProvider")
    )
    assert pick_precision(cpu) == "int8"
    assert pick_precision(cuda) == "fp16"
    assert pick_precision(cuda, "cpu") == "int8"
    assert pick_precision(coreml) == "int8"  # CoreML runs the CPU variant's graph
    with pytest.raises(ValueError):
        pick_precision(cpu, "tpu")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int4")
    # This machine has no GPU provider.
    assert resolve_precision("auto") == "int8"


def test_fp16_variant_builds_validates_and_verifies(cache: ModelCache) -> None:
    result = pull("tiny.en", precision="fp16", cache=cache)
    m = result.entry.manifest
    drift = m["validation"]["fp16_vs_fp32"]
    assert drift["logits_min_cosine"] > 0.999 and drift["top1_agreement"] == 1.0
    fp16_size = result.entry.size_bytes
    assert fp16_size < 100 * 2**20  # half of fp32's 147 MiB
    reports, _ = verify("tiny.en", precision="fp16", cache=cache)
    assert reports and reports[0].ok


def test_runtime_pull_never_imports_torch_or_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from audiototext.models import pull, verify\n"
        "pull('tiny.en', precision='int8')\n"
        "assert all(r.ok for r in verify('tiny.en')[0])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'ctranslate2', 'faster_whisper', 'optimum'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
