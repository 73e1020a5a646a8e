"""A WebRTC connection dropped mid-sentence loses no word: the page resumes the session and
sends the audio captured while it was down (and while the new connection came up) as the
resume's prefix, from the server's next chunk on. The transcript holds every word once, and
equals that of the same audio streamed again without a cut.

Headless Chromium (Playwright) with the fake microphone playing espeak-ng sentences, the real
aiortc server with tiny.en, in a network namespace (ICE needs an address other than
127.0.0.1). The cut closes the server's peer while the first sentence's partial is on screen
(tests/web/test_browser_resume.py's ``_stream``); every connection after the first takes
1.5 s more to come up (SLOW_RESUME), so ~2 s of speech falls in the outage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from server.real_engine import settled
from server.ws_harness import cut_webrtc_peers, http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer
from web.browser import REALTIME_BROWSER, chromium, microphone_wav
from web.test_browser import SENTENCES
from web.test_browser_handover import WATCH_CHANNEL, _each_once
from web.test_browser_resume import TAIL_S, _replay, _stream, accepted

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytest.importorskip("aiortc")

pytestmark = REALTIME_BROWSER

__all__ = ["accepted"]  # the fixture, shared with test_browser_resume

# Every connection but the first takes 1.5 s longer to come up (a slow network on the way
# back): the outage then spans ~2 s of speech.
SLOW_RESUME = """(() => {
  const set = RTCPeerConnection.prototype.setRemoteDescription;
  let calls = 0;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
    calls += 1;
    if (calls === 1) return set.apply(this, args);
    return new Promise((r) => setTimeout(r, 1500)).then(() => set.apply(this, args));
  };
})();"""


def test_a_webrtc_drop_mid_sentence_loses_no_word(
    recognizer: StreamingRecognizer,
    speech: SpeechSynthesizer,
    accepted: dict[str, list[bytes]],
    tmp_path: Path,
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES, tail_s=TAIL_S)

    async def main() -> dict[str, Any]:
        async with (
            http_server(recognizer) as srv,
            chromium(wav, init_scripts=[SLOW_RESUME, WATCH_CHANNEL]) as tab,
        ):
            await settled(recognizer)
            seen = await _stream(srv, tab, "", cut=cut_webrtc_peers, cuts_wanted=1)
            seen["prefix"] = await tab.page.evaluate("window.__prefix")
            (session_id,) = accepted
            await settled(recognizer)
            seen["replayed"] = await _replay(srv, accepted[session_id])
            return seen

    with namespace() as name:
        seen = run_inside(name, main, 320)
    print({k: seen[k] for k in ("final_lines", "replayed", "transport", "notes", "prefix")})
    assert seen["cuts"] == 1, seen
    transports = seen["transport"]
    assert "WebRTC · Reconnecting…" in transports, transports
    assert not any("WebSocket" in t for t in transports), transports
    assert "Reconnected: the session continues." in seen["notes"], seen["notes"]
    assert seen["sessions"] == 1, "the page opened a new session instead of resuming"
    lines = seen["final_lines"]
    # Every word of both sentences once: the outage's audio came as the resume's prefix.
    assert _each_once(" ".join(SENTENCES), " ".join(lines)) == [], lines
    assert seen["finals"] == lines, seen["finals"]  # nothing added twice, or removed
    # What the server heard is the uninterrupted audio: streamed again, the same finals.
    assert lines == seen["replayed"], (lines, seen["replayed"])
    # The second connection's prefix: at least the 1.5 s its slow set-up added.
    assert seen["prefix"]["channels"][-1] >= 1.5 * 32_000, seen["prefix"]
    assert not seen["partials_left"]
    assert not seen["errors"], seen["errors"]
