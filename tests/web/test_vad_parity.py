"""The page's VAD (``js/vad.js`` on ONNX Runtime Web, under Node) and the server's
(``audio/vad.py`` on onnxruntime) give the same speech probabilities on an espeak-ng clip.

The Python side is computed here, now, and handed to ``tests/web/vad-parity.mjs`` as a JSON
file: both sides get the clip as the page sends it (PCM16, 100-ms chunks)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audiototext.audio.vad import FRAME_SAMPLES, SileroVad, VadState
from audiototext.wire.codec import decode_pcm16
from support.speech import SpeechSynthesizer, espeak_available, silence
from web.test_node_units import REPO, _node

CHUNK_SAMPLES = 1600  # the page's 100-ms chunks at 16 kHz
LEAD_S = 0.7


def test_page_vad_matches_server_vad(tmp_path: Path) -> None:
    node = _node()
    if not espeak_available():
        pytest.skip("needs espeak-ng (Debian package espeak-ng)")
    speech = SpeechSynthesizer(tmp_path).speak(
        "Please call Stella and ask her to bring these things."
    )
    audio = np.concatenate([silence(LEAD_S), speech.audio, silence(1.5)])
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()

    vad = SileroVad()
    state = VadState()
    pending = np.zeros(0, dtype=np.float32)
    probabilities: list[float] = []
    for at in range(0, len(pcm), CHUNK_SAMPLES * 2):
        pending = np.concatenate([pending, decode_pcm16(pcm[at : at + CHUNK_SAMPLES * 2])])
        whole = pending.shape[0] - pending.shape[0] % FRAME_SAMPLES
        probabilities += vad.process(pending[:whole], state).tolist()
        pending = pending[whole:]
    assert max(probabilities) > 0.9 and min(probabilities) < 0.05  # speech and silence both

    fixture = tmp_path / "vad.json"
    fixture.write_text(
        json.dumps(
            {
                "pcm16": base64.b64encode(pcm).decode(),
                "chunk_samples": CHUNK_SAMPLES,
                "probabilities": probabilities,
                "speech_start_s": LEAD_S,
                "speech_end_s": LEAD_S + speech.duration_s,
            }
        )
    )
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", "tests/web/vad-parity.mjs"],
        cwd=REPO,
        env={**os.environ, "AUDIOTOTEXT_VAD_FIXTURE": str(fixture)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    assert re.search(r"\bpass 1\b", output) and re.search(r"\bfail 0\b", output), output
