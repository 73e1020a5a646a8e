"""The page keeps its session through a dropped connection, in a real browser.

Chromium's fake microphone (Chromium driven by Playwright) plays espeak-ng sentences with
pauses into the page, which streams them into the real engine (tiny.en). While a sentence is
being spoken (a partial is on screen) the test cuts the connection on the server's side, as a
network failure would: the WebSocket's TCP connection is aborted (no close frame), or the
WebRTC peer is closed. The page reconnects by itself and resumes the same server session.

Over the WebSocket nothing is lost: the page resends every chunk the server had not
acknowledged and asks for the events it had not received. So the final transcript must be
exactly that of an uninterrupted stream of the same audio: the test records the chunks the
server accepted from the page and streams them again, without a cut, into the same server and
engine. (A second page run of the same WAV without a cut is not sample-identical: Chromium's
fake microphone starts at a slightly different point of the file each time, tens of ms, and
tiny.en hears "Stella ... her" in one run and "stellar ... for" in another. Against that run
the test compares what does not depend on it: the number of finals and the words it knows
tiny.en gets right.) Over WebRTC this test checks the session goes on; that no word of the
outage is lost (it is resent as the resume's prefix) is test_browser_webrtc_resume.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from audiototext.server.app import GrpcServer
from audiototext.server.sessions import ServerSession
from audiototext.server.streams import StreamService
from server.grpc_harness import run
from server.real_engine import settled, words
from server.ws_harness import WsStreamer, cut_webrtc_peers, cut_websockets, http_server, ws_url
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer
from web.browser import REALTIME_BROWSER, Tab, chromium, microphone_wav
from web.test_browser import EXPECTED, SENTENCES, _stopped, _text_of

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytestmark = REALTIME_BROWSER

# Silence after the last sentence, so Stop (pressed once the last final is in, a little later
# in a run with cuts) falls in silence in both runs, before the fake microphone loops.
TAIL_S = 8.0

# Records, in the page, every text the status pill and the note took and every final
# paragraph added (a 0.1-s poll could miss a short "Reconnecting…" or a repeated final).
WATCH = """(() => {
  const seen = (window.__seen = { transport: [], notes: [], finals: [] });
  const watch = (id, key) => {
    const el = document.getElementById(id);
    const note = () => {
      const list = seen[key];
      if (list[list.length - 1] !== el.textContent) list.push(el.textContent);
    };
    note();
    new MutationObserver(note).observe(el, { childList: true, characterData: true, subtree: true });
  };
  watch("transport-text", "transport");
  watch("transcript-note", "notes");
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) seen.finals.push(n.textContent);
  }).observe(document.getElementById("finals"), { childList: true });
})()"""

FINAL_LINES = "[...document.querySelectorAll('#finals p')].map(p => p.textContent)"

Cut = Callable[[GrpcServer], Awaitable[int]]


async def _cut_websocket(srv: GrpcServer) -> int:
    return cut_websockets(srv)


@pytest.fixture
def accepted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[bytes]]]:
    """The audio chunks each session accepted, in order (session id -> chunk bytes)."""
    chunks: dict[str, list[bytes]] = {}
    accept = StreamService._accept

    def recording(self: StreamService, session: ServerSession, chunk: Any) -> None:
        before = session.next_seq
        accept(self, session, chunk)
        if session.next_seq > before:  # taken, not a resent chunk the server had
            chunks.setdefault(session.id, []).append(bytes(chunk.data))

    monkeypatch.setattr(StreamService, "_accept", recording)
    yield chunks


async def _replay(srv: GrpcServer, chunks: list[bytes]) -> list[str]:
    """The finals of the same audio streamed again at the page's pace, without a cut."""
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    streamer = WsStreamer(ws_url(srv))
    out = await streamer.run((pcm.astype(np.float64) / 32767).astype(np.float32), speed=1.0)
    return [text for r in out.finals if (text := str(r["text"]).strip())]


async def _stream(
    srv: GrpcServer,
    tab: Tab,
    query: str,
    *,
    cut: Cut | None,
    cuts_wanted: int,
    done_words: set[str] = EXPECTED,
) -> dict[str, Any]:
    """Start, speak every sentence (cutting the connection ``cuts_wanted`` times, each while a
    partial shown since the previous resume is on screen), Stop once the finals hold
    ``done_words`` and no partial is left."""
    assert srv.http is not None
    seen: dict[str, Any] = {"cuts": 0, "cut_during": []}
    page = tab.page
    await page.goto(f"http://127.0.0.1:{srv.http.port}/{query}")
    for _ in range(100):  # the health poll and the panels fill in
        if "tiny.en" in await _text_of(page, "health-text"):
            break
        await asyncio.sleep(0.1)
    await page.evaluate(WATCH)
    await page.click("#start")
    for _ in range(900):
        await asyncio.sleep(0.1)
        partial = await _text_of(page, "partials")
        lines = await page.evaluate(FINAL_LINES)
        transport = await _text_of(page, "transport-text")
        if (
            cut is not None
            and partial
            and seen["cuts"] < cuts_wanted
            # A partial shown since the last cut: the page resumed and speech goes on (the
            # short second sentence may show none, so two cuts may fall in the first).
            and partial not in seen["cut_during"]
            and transport.endswith("Connected")
        ):
            seen["cuts"] += await cut(srv)
            seen["cut_during"].append(partial)
        if words(" ".join(lines)) >= done_words and not partial:
            break
    await page.click("#start")  # Stop
    try:
        await _stopped(page)
    except AssertionError as exc:  # what the page went through, for the failure's reader
        state = await page.evaluate("window.__seen")
        raise AssertionError(f"{exc}; cuts {seen['cuts']}; the page saw {state}") from exc
    seen["final_lines"] = await page.evaluate(FINAL_LINES)
    seen["partials_left"] = await _text_of(page, "partials")
    seen.update(await page.evaluate("window.__seen"))
    assert srv.store is not None
    seen["sessions"] = srv.store.streams_total
    seen["errors"] = list(tab.errors)
    return seen


def test_a_websocket_cut_mid_utterance_resumes_and_the_transcript_is_whole(
    recognizer: StreamingRecognizer,
    speech: SpeechSynthesizer,
    accepted: dict[str, list[bytes]],
    tmp_path: Path,
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES, tail_s=TAIL_S)
    query = "?transport=websocket"

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        runs = []
        for cut in (None, _cut_websocket):
            async with http_server(recognizer) as srv, chromium(wav) as tab:
                await settled(recognizer)
                runs.append(await _stream(srv, tab, query, cut=cut, cuts_wanted=2))
                if cut is not None:
                    assert srv.store is not None
                    (session_id,) = [s for s in accepted if s not in runs[0]["session_ids"]]
                    await settled(recognizer)
                    runs[-1]["replayed"] = await _replay(srv, accepted[session_id])
            runs[-1]["session_ids"] = set(accepted)
        return runs[0], runs[1]

    whole, cut = run(main(), 300)
    assert whole["cuts"] == 0 and whole["sessions"] == 1
    assert not any("Reconnecting" in t for t in whole["transport"]), whole["transport"]
    assert whole["final_lines"], "no finals without a cut"

    # Both utterances were cut while being spoken, and the page came back each time.
    assert cut["cuts"] == 2, cut
    assert cut["transport"].count("WebSocket · Reconnecting…") == 2, cut["transport"]
    after = cut["transport"][cut["transport"].index("WebSocket · Reconnecting…") :]
    assert "WebSocket · Connected" in after, cut["transport"]
    assert cut["notes"].count("Reconnected: the session continues.") == 2, cut["notes"]
    assert not any("no longer had the session" in n for n in cut["notes"]), cut["notes"]
    assert cut["sessions"] == 1, "the page opened a new session instead of resuming"

    # The transcript of the same audio without a cut, each final shown once.
    assert cut["final_lines"] == cut["replayed"], (cut["final_lines"], cut["replayed"])
    assert cut["finals"] == cut["final_lines"], cut["finals"]  # nothing added twice, or removed
    assert len(cut["final_lines"]) == len(whole["final_lines"]), (cut, whole)
    for lines in (cut["final_lines"], whole["final_lines"]):
        assert words(" ".join(lines)) >= EXPECTED, lines
    assert not cut["partials_left"] and not whole["partials_left"]
    assert not whole["errors"], whole["errors"]
    assert not cut["errors"], cut["errors"]


def test_a_webrtc_cut_mid_utterance_resumes_the_session(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    pytest.importorskip("aiortc")
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES, tail_s=TAIL_S)
    last = {"meet", "noon"}  # the second sentence, spoken well after the cut

    async def main(name: str) -> dict[str, Any]:
        # The browser starts from this thread, inside the namespace.
        async with http_server(recognizer) as srv, chromium(wav) as tab:
            await settled(recognizer)
            return await _stream(srv, tab, "", cut=cut_webrtc_peers, cuts_wanted=1, done_words=last)

    with namespace(veth=True) as name:
        seen = run_inside(name, lambda: main(name), 240)
    assert seen["cuts"] == 1, seen
    transports = seen["transport"]
    assert "WebRTC · Reconnecting…" in transports, transports
    after = transports[transports.index("WebRTC · Reconnecting…") :]
    assert "WebRTC · Connected" in after, transports
    assert not any("WebSocket" in t for t in transports), transports
    assert "Reconnected: the session continues." in seen["notes"], seen["notes"]
    assert seen["sessions"] == 1, "the page opened a new session instead of resuming"
    # Whether the outage's words came (the resume's prefix) is test_browser_webrtc_resume's:
    # here: what came after the cut is transcribed, in the same session, each final once.
    lines = seen["final_lines"]
    assert words(" ".join(lines)) >= last, lines
    assert seen["finals"] == lines, seen["finals"]
    assert len(set(lines)) == len(lines), lines
    assert not seen["partials_left"]
    assert not seen["errors"], seen["errors"]
