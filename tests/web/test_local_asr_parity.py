"""The page's local transcription engine (``js/log-mel.js``, ``js/whisper-tokens.js``,
``js/whisper-local.js`` on the vendored ONNX Runtime Web, under Node, one thread) against the
server's engine on the same converted tiny.en files and the same espeak-ng clips: log-mel
within 1e-4, identical greedy tokens with and without timestamps (int8) and without (fp32),
identical text after detokenisation.

The Python side is computed here, now, by the real engine, and handed to
``tests/web/local-asr-parity.mjs`` as a JSON file."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from audiototext.inference.whisper import WhisperModel
from support.model_fixtures import tiny_en_cache
from support.speech import espeak_available
from web.local_asr_reference import clip_json, clips, model_dir, reference
from web.test_node_units import REPO, _node

pytestmark = pytest.mark.slow

# (precision, timestamps): int8 is what the page keeps; fp32 where there is no int8.
CASES = (("int8", True), ("int8", False), ("fp32", False))


def test_local_engine_matches_server_engine(tmp_path: Path) -> None:
    node = _node()
    if not espeak_available():
        pytest.skip("needs espeak-ng (Debian package espeak-ng)")
    root = tiny_en_cache()
    made = clips(tmp_path)
    fixture: dict[str, object] = {"clips": [clip_json(t, a) for t, a in made], "cases": []}
    for precision, timestamps in CASES:
        path = model_dir(root, precision)
        model = WhisperModel(path)
        expected = [reference(model, audio, timestamps) for _, audio in made]
        for (sentence, _), ref in zip(made, expected, strict=True):
            assert ref["text"], f"the server's engine heard nothing in {sentence!r}"
        fixture["cases"].append(  # type: ignore[attr-defined]
            {
                "precision": precision,
                "timestamps": timestamps,
                "dir": str(path),
                "expected": expected,
            }
        )
    path = tmp_path / "local-asr.json"
    path.write_text(json.dumps(fixture))
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", "tests/web/local-asr-parity.mjs"],
        cwd=REPO,
        env={**os.environ, "AUDIOTOTEXT_LOCAL_ASR_FIXTURE": str(path)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    assert re.search(r"\bpass [1-9]", output) and re.search(r"\bfail 0\b", output), output
