"""The page's local transcription engine (``js/log-mel.js``, ``js/whisper-tokens.js``,
``js/whisper-local.js`` on the vendored ONNX Runtime Web, under Node, one thread) against the
server's engine on the same converted tiny.en files and the same espeak-ng clips: log-mel
within 1e-4; with the fp32 graphs identical greedy tokens with and without timestamps and
identical text after detokenisation (each clip with the streaming engine's token budget for
its length, and one clip that loops to Whisper's full budget); with the int8 graphs, the text
within a small WER of the server's (ORT Web's integer kernels quantise the encoder's
activations a little differently from MLAS's: its output differs by ~3 % of its range,
against 4e-6 for fp32, so a near-tie token may go the other way).

The Python side is computed here, now, by the real engine, and handed to
``tests/web/local-asr-parity.mjs`` as a JSON file."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from audiototext.evaluation import wer
from audiototext.inference.whisper import WhisperModel
from support.model_fixtures import tiny_en_cache
from support.speech import espeak_available
from web.local_asr_reference import (
    DETOKENISE,
    SENTENCES,
    budget,
    clip_json,
    clips,
    model_dir,
    reference,
    rules_cases,
)
from web.test_node_units import REPO, _node

pytestmark = pytest.mark.slow

# (precision, timestamps, exact): int8 is what the page keeps; fp32 proves the rules exactly.
CASES = (("fp32", True, True), ("fp32", False, True), ("int8", True, False), ("int8", False, False))
INT8_MAX_WER = 0.25  # local against the server's text, over every clip


def test_local_engine_matches_server_engine(tmp_path: Path) -> None:
    node = _node()
    if not espeak_available():
        pytest.skip("needs espeak-ng (Debian package espeak-ng)")
    root = tiny_en_cache()
    made = clips(tmp_path)
    fixture: dict[str, object] = {
        "clips": [clip_json(t, a) for t, a in made],
        "cases": [],
        "sentences": list(range(len(SENTENCES))),
    }
    for precision, timestamps, exact in CASES:
        path = model_dir(root, precision)
        model = WhisperModel(path)
        if precision == "fp32" and timestamps:  # the vocabulary and rules are the same in both
            fixture["rules"] = rules_cases(model)
            fixture["detokenise"] = [
                {"ids": ids, "text": model.tokenizer.decode(ids)}
                for ids in (model.tokenizer.encode(t) for t in DETOKENISE)
            ]
        # Every clip where tokens must be identical; the sentences only where WER bounds them
        # (a repetition loop that ends one token earlier or later is dozens of words).
        chosen = list(range(len(made) if exact else len(SENTENCES)))
        expected = [reference(model, made[k][1], timestamps, budget(*made[k])) for k in chosen]
        for (sentence, _), ref in zip([made[k] for k in chosen], expected, strict=True):
            assert ref["text"], f"the server's engine heard nothing in {sentence!r}"
        fixture["cases"].append(  # type: ignore[attr-defined]
            {
                "precision": precision,
                "timestamps": timestamps,
                "exact": exact,
                "clips": chosen,
                "dir": str(path),
                "expected": expected,
            }
        )
    path = tmp_path / "local-asr.json"
    path.write_text(json.dumps(fixture))
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", "tests/web/local-asr-parity.mjs"],
        cwd=REPO,
        env={
            **os.environ,
            "AUDIOTOTEXT_LOCAL_ASR_FIXTURE": str(path),
            "AUDIOTOTEXT_LOCAL_ASR_OUT": str(tmp_path / "local.json"),
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    assert re.search(r"\bpass [1-9]", output) and re.search(r"\bfail 0\b", output), output
    local = json.loads((tmp_path / "local.json").read_text())
    cases = {(c["precision"], c["timestamps"]): c for c in fixture["cases"]}  # type: ignore[attr-defined]
    for precision, timestamps, exact in CASES:
        mine = [r for r in local if (r["precision"], r["timestamps"]) == (precision, timestamps)]
        assert len(mine) == len(cases[precision, timestamps]["clips"]), mine
        theirs = [e["text"] for e in cases[precision, timestamps]["expected"]]
        ours = [r["text"] for r in mine]
        same = sum(
            r["tokens"] == e["tokens"]
            for r, e in zip(mine, cases[precision, timestamps]["expected"], strict=True)
        )
        print(
            f"{precision} timestamps={timestamps}: {same}/{len(mine)} identical,"
            f" WER {wer(theirs, ours):.3f}"
        )
        assert wer(theirs, ours) <= (0.0 if exact else INT8_MAX_WER)
