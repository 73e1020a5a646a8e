"""``WS /v1/realtime?intent=transcription`` end to end: the official ``openai`` client (GA
``client.realtime`` and beta ``client.beta.realtime``) against a real server with the real
engine (tiny.en int8), espeak-ng speech as 24-kHz PCM16 or 8-kHz G.711."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any

import pytest
import websockets

from server.grpc_harness import run
from server.real_engine import SENTENCES, settled, words
from server.realtime_harness import (
    RealtimeRun,
    check_shape,
    connect,
    g711,
    pcm24k,
    receive_until,
    send_audio,
    stream,
)
from server.ws_harness import http_get, http_server
from support.speech import SpeechSynthesizer, join_with_gaps, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytestmark = [pytest.mark.slow]

FOX = {"quick", "fox", "jumps", "jump", "over", "lazy", "dog"}
STELLA = {"please", "call", "stella", "ask", "her", "to", "bring", "these", "things"}
# Transcripts keep the words partials committed (so the deltas add up to them), which costs
# tiny.en some words on espeak's "brown fox jumps" (partials hear "round-fuck stump"). A first
# final that writes its sentence twice is now decoded again in a 30-s window and kept once
# ("The quick ground arc stump the lazy nog."): the doubled misreading had carried "over".
FOX_MIN = 2
PCM_BYTES_S = 48_000  # 24 kHz × 2 bytes
GA_VAD = {"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": 24000},
    "transcription": {"model": "whisper-1", "language": "en"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
}}}  # fmt: skip


def _port(srv: Any) -> int:
    assert srv.http is not None
    return int(srv.http.port)


def _assert_items_consistent(out: RealtimeRun, *, beta: bool = False) -> None:
    """Every event has the SDK's shape; each completed transcript is exactly its item's
    deltas, and its item was committed and created before it completed."""
    for _, event in out.events:
        check_shape(event, beta=beta)
    deltas = out.deltas_by_item()
    order = out.types()
    for done in out.completed():
        item = done["item_id"]
        assert deltas.get(item, "") == done["transcript"], (item, deltas, done)
        committed = [e["item_id"] for e in out.of("input_audio_buffer.committed")]
        created = [e["item"]["id"] for e in out.of("conversation.item.created")]
        assert item in committed and item in created
    assert order.index("input_audio_buffer.committed") < order.index(
        "conversation.item.input_audio_transcription.completed"
    )


@pytest.mark.realtime
def test_server_vad_streams_deltas_and_completed_transcripts(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    parts = [speech.speak(SENTENCES[0]).audio, speech.speak(SENTENCES[1]).audio]
    audio, _ = join_with_gaps(parts, 1.2)

    async def main() -> RealtimeRun:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            async with connect(_port(srv)) as conn:
                created = (await conn.recv()).to_dict()
                assert created["type"] == "session.created"
                await conn.session.update(session=GA_VAD)
                updated = (await conn.recv()).to_dict()
                assert updated["type"] == "session.updated", updated
                check_shape(created)
                check_shape(updated)
                vad = updated["session"]["audio"]["input"]["turn_detection"]
                assert vad["silence_duration_ms"] == 300
                return await stream(
                    conn, pcm24k(audio), PCM_BYTES_S, lambda r: len(r.completed()) >= 2
                )

    out = run(main(), 300)
    completed = out.completed()
    assert len(completed) == 2, out.types()
    assert len(words(completed[0]["transcript"]) & FOX) >= FOX_MIN, completed[0]
    assert len(words(completed[1]["transcript"]) & STELLA) >= 5, completed[1]
    _assert_items_consistent(out)
    # Deltas came while the person spoke: some before the item's speech stopped.
    types = out.types()
    assert types.index("conversation.item.input_audio_transcription.delta") < types.index(
        "input_audio_buffer.speech_stopped"
    )
    started = out.of("input_audio_buffer.speech_started")
    stopped = out.of("input_audio_buffer.speech_stopped")
    assert [e["item_id"] for e in started] == [c["item_id"] for c in completed]
    # Speech starts after the 1.2 s of leading silence; times are in the connection's audio.
    assert 900 <= started[0]["audio_start_ms"] <= 1500, started[0]
    assert stopped[0]["audio_end_ms"] > started[0]["audio_start_ms"]
    assert started[1]["audio_start_ms"] > stopped[0]["audio_end_ms"]


@pytest.mark.realtime
def test_manual_commit_transcribes_the_committed_buffer(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    first = with_silence(speech.speak(SENTENCES[0]).audio, 0.3, 0.3)
    second = with_silence(speech.speak(SENTENCES[1]).audio, 0.3, 0.3)
    manual = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}

    async def main() -> tuple[RealtimeRun, RealtimeRun]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            async with connect(_port(srv)) as conn:
                await conn.session.update(session=manual)
                runs = []
                for audio in (first, second):
                    runs.append(
                        await stream(
                            conn, pcm24k(audio), PCM_BYTES_S,
                            lambda r: bool(r.completed()), commit=True,
                        )
                    )  # fmt: skip
                return runs[0], runs[1]

    a, b = run(main(), 300)
    for out, expected, least in ((a, FOX, FOX_MIN), (b, STELLA, 5)):
        assert not out.of("input_audio_buffer.speech_started"), "no VAD events without VAD"
        (done,) = out.completed()
        assert len(words(done["transcript"]) & expected) >= least, done
        _assert_items_consistent(out)
        assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] > 2
    # The second item follows the first.
    assert (
        b.of("input_audio_buffer.committed")[0]["previous_item_id"] == (a.completed()[0]["item_id"])
    )


@pytest.mark.realtime
@pytest.mark.parametrize("beta_format", ["g711_ulaw", "g711_alaw"])
def test_beta_session_with_g711_audio(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, beta_format: str
) -> None:
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.5, 1.5)
    codec = {"g711_ulaw": "pcm_mulaw", "g711_alaw": "pcm_alaw"}[beta_format]
    session = {
        "input_audio_format": beta_format,
        "input_audio_transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
    }

    async def main() -> tuple[dict[str, Any], RealtimeRun]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            async with connect(_port(srv), beta=True) as conn:
                created = (await conn.recv()).to_dict()
                assert created["type"] == "transcription_session.created", created
                await conn.transcription_session.update(session=session)
                updated = (await conn.recv()).to_dict()
                out = await stream(conn, g711(audio, codec), 8000, lambda r: bool(r.completed()))
                return updated, out

    updated, out = run(main(), 300)
    assert updated["type"] == "transcription_session.updated", updated
    assert updated["session"]["input_audio_format"] == beta_format
    assert updated["session"]["turn_detection"]["silence_duration_ms"] == 400
    check_shape(updated, beta=True)
    (done,) = out.completed()
    assert len(words(done["transcript"]) & FOX) >= FOX_MIN, done
    _assert_items_consistent(out, beta=True)


def test_bad_events_are_answered_with_errors_and_the_socket_keeps_serving(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.5, 1.0)
    errors: list[dict[str, Any]] = []

    def append(audio: str, event_id: str | None = None) -> str:
        event = {"type": "input_audio_buffer.append", "audio": audio}
        return json.dumps(event | ({"event_id": event_id} if event_id else {}))

    async def expect_error(conn: Any, raw: str, event_id: str | None = None) -> None:
        await conn.send_raw(raw)
        event = (await conn.recv()).to_dict()
        assert event["type"] == "error", event
        check_shape(event)
        assert event["error"]["event_id"] == event_id
        errors.append(event["error"])

    async def main() -> RealtimeRun:
        # A small chunk limit, so that an oversized append fits a WebSocket frame.
        async with http_server(recognizer, max_chunk_bytes=64 << 10) as srv:
            await settled(recognizer)
            async with connect(_port(srv)) as conn:
                assert (await conn.recv()).type == "session.created"
                await expect_error(conn, "{not json")
                await expect_error(conn, json.dumps(["a list"]))
                await expect_error(
                    conn, json.dumps({"type": "response.create", "event_id": "e1"}), "e1"
                )
                await expect_error(conn, append("%%%", "e2"), "e2")
                big = base64.b64encode(bytes(70_000)).decode()
                await expect_error(conn, append(big, "e3"), "e3")
                odd = base64.b64encode(b"\x00\x01\x02").decode()
                await expect_error(conn, append(odd))
                bad_model = {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"model": "no-such-model"}}},
                }
                await expect_error(conn, json.dumps({"type": "session.update", "event_id": "e4",
                                                     "session": bad_model}), "e4")  # fmt: skip
                portuguese = {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"language": "pt"}}},
                }
                await expect_error(
                    conn, json.dumps({"type": "session.update", "session": portuguese})
                )
                await expect_error(conn, json.dumps({"type": "input_audio_buffer.commit"}))
                bad_rate = {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                }
                await expect_error(
                    conn, json.dumps({"type": "session.update", "session": bad_rate})
                )
                # Audio before any session.update: taken with the defaults (24-kHz PCM16,
                # server_vad), as OpenAI does; the good exchange on the same socket.
                return await stream(
                    conn, pcm24k(audio), PCM_BYTES_S,
                    lambda r: bool(r.completed()), speed=None,
                )  # fmt: skip

    out = run(main(), 300)
    codes = [e["code"] for e in errors]
    assert codes == [
        "invalid_json", "invalid_json", "invalid_value", "invalid_value", "audio_too_large",
        "invalid_value", "model_not_found", "invalid_value", "input_audio_buffer_commit_empty",
        "invalid_value",
    ], errors  # fmt: skip
    assert "English-only" in errors[7]["message"], errors[7]
    assert all(e["message"] for e in errors)
    assert "no-such-model" in errors[6]["message"] and errors[6]["param"]
    assert "65536" in errors[4]["message"]
    (done,) = out.completed()
    assert len(words(done["transcript"]) & FOX) >= FOX_MIN, done


def test_token_by_bearer_or_subprotocol_and_a_wrong_one_refused(
    recognizer: StreamingRecognizer,
) -> None:
    async def main() -> None:
        async with http_server(recognizer, token="s3cret") as srv:
            port = _port(srv)
            async with connect(port, api_key="wrong") as conn:
                event = (await conn.recv()).to_dict()
                assert event["type"] == "error", event
                assert event["error"]["code"] == "invalid_api_key"
                with pytest.raises(Exception, match="1008"):
                    await conn.recv()
            async with connect(port, api_key="s3cret") as conn:
                assert (await conn.recv()).type == "session.created"
            # A browser's way: the key as a subprotocol entry beside "realtime".
            url = f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription"
            async with websockets.connect(
                url,
                subprotocols=["realtime", "openai-insecure-api-key.s3cret"],  # type: ignore[list-item]
            ) as ws:
                assert ws.subprotocol == "realtime"
                assert json.loads(await ws.recv())["type"] == "session.created"
            # A foreign page is refused like the page's own WebSocket.
            async with websockets.connect(
                url, origin=websockets.Origin("http://evil.example"),
                additional_headers={"Authorization": "Bearer s3cret"},
            ) as ws:  # fmt: skip
                event = json.loads(await ws.recv())
                assert event["error"]["code"] == "forbidden_origin"

    run(main(), 120)


def test_sessions_count_in_metrics_and_land_in_the_history(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.3, 1.0)

    async def main() -> tuple[RealtimeRun, dict[str, Any], dict[str, Any], str]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            async with connect(_port(srv)) as conn:
                out = await stream(
                    conn, pcm24k(audio), PCM_BYTES_S, lambda r: bool(r.completed()), speed=None
                )
            await asyncio.sleep(0.5)  # the socket closed: the stream finishes
            _, _, page = await http_get(srv, "/api/v1/history")
            rows = json.loads(page)["sessions"]
            row = next(r for r in rows if r["session"]["transport"] == "openai-realtime")
            _, _, one = await http_get(srv, f"/api/v1/history/{row['session']['id']}")
            _, _, metrics = await http_get(srv, "/metrics")
            return out, row, json.loads(one), metrics.decode()

    out, row, transcript, metrics = run(main(), 300)
    (done,) = out.completed()
    assert row["session"]["ended_at"] is not None
    assert done["transcript"] in json.dumps(transcript), transcript
    started = [ln for ln in metrics.splitlines() if ln.startswith("audiototext_streams_started")]
    assert started and float(started[0].split()[-1]) >= 1, started


def test_shutdown_completes_the_open_item_then_closes(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """A graceful stop finalises the audio received so far: the item in progress completes
    before the socket closes."""
    from audiototext.server.app import GrpcServer
    from server.grpc_harness import config

    audio = with_silence(speech.speak(SENTENCES[3]).audio, 0.5, 0.0)  # no pause at the end

    async def main() -> RealtimeRun:
        srv = GrpcServer(config(http_port=0), recognizer=recognizer)
        await srv.start()
        try:
            await settled(recognizer)
            async with connect(_port(srv)) as conn:
                out = RealtimeRun()
                await send_audio(conn, pcm24k(audio), PCM_BYTES_S, speed=None)
                await receive_until(
                    conn, out, lambda r: bool(r.of("input_audio_buffer.speech_started"))
                )
                stopping = asyncio.create_task(srv.stop(10.0))
                with contextlib.suppress(websockets.ConnectionClosed):
                    await receive_until(conn, out, lambda r: bool(r.completed()))
                await stopping
                return out
        finally:
            await srv.stop(1.0)

    out = run(main(), 300)
    (done,) = out.completed()
    assert len(words(done["transcript"]) & {"meet", "train", "station", "tomorrow"}) >= 3, done


def test_a_busy_server_refuses_with_an_error_and_the_socket_serves_once_free(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[1]).audio, 0.5, 1.0)
    piece = base64.b64encode(bytes(4800)).decode()

    async def main() -> tuple[dict[str, Any], RealtimeRun]:
        async with http_server(recognizer, max_sessions=1) as srv:
            await settled(recognizer)
            async with connect(_port(srv)) as first, connect(_port(srv)) as second:
                assert (await first.recv()).type == "session.created"
                assert (await second.recv()).type == "session.created"
                await first.input_audio_buffer.append(audio=piece)  # holds the only stream
                await asyncio.sleep(0.5)
                await second.input_audio_buffer.append(audio=piece)
                refused = (await second.recv()).to_dict()
                await first.input_audio_buffer.clear()
                assert (await first.recv()).type == "input_audio_buffer.cleared"
                await asyncio.sleep(1.0)  # the cleared stream finishes
                # Same settings: the refused stream is gone, the next append opens another.
                out = await stream(
                    second, pcm24k(audio), PCM_BYTES_S, lambda r: bool(r.completed()),
                    speed=None,
                )  # fmt: skip
                return refused, out

    refused, out = run(main(), 300)
    assert refused["type"] == "error", refused
    assert refused["error"]["code"] == "server_busy" and "--max-sessions" in str(refused), refused
    (done,) = out.completed()
    assert len(words(done["transcript"]) & STELLA) >= 5, done
