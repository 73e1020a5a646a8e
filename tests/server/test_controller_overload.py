"""Synthetic overload on the real engine: tiny.en fp32 behind a throttled encoder (each
encoder call sleeps, as on a machine with too little compute), three streams at the pace of
speech over gRPC with the real client. The server must shed work in order (partials
stretched, then finals reduced; after sustained overload a new stream is moved to the cheaper
cached tiny.en int8), recover once the throttle is lifted (overload cleared, finals full, new
streams back on the default model), and lose no session and no final.

The timeline (what was shed when, and when it recovered) is written to
``$AUDIOTOTEXT_OVERLOAD_TIMELINE`` when that is set (bench/NOTES.md quotes one).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from numpy.typing import NDArray

from audiototext.models.cache import entry_precision
from server.real_engine import SENTENCES
from support.speech import SpeechSynthesizer, join_with_gaps

if TYPE_CHECKING:
    from audiototext.client import TranscriptUpdate
    from audiototext.server.app import GrpcServer

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

RATE = 16_000
GAP_S = 1.2
THROTTLE_S = 2.0  # each encoder call of the throttled engine sleeps this long


class Throttle:
    """Makes every encoder call of one model sleep while on (finals and partials alike)."""

    def __init__(self, model: Any) -> None:
        self.on = threading.Event()
        self.calls = 0
        encode: Callable[..., Any] = model.encode

        def slow(mel: Any) -> Any:
            if self.on.is_set():
                self.calls += 1
                time.sleep(THROTTLE_S)
            return encode(mel)

        model.encode = slow


@dataclass
class StreamRun:
    audio: NDArray[np.float32]
    spans: list[tuple[float, float]]  # each sentence's (start, end) in stream seconds
    texts: list[str]
    session_id: str = ""
    finals: list[TranscriptUpdate] = field(default_factory=list)
    error: BaseException | None = None


def program(speech: SpeechSynthesizer, sentences: int, offset: int) -> StreamRun:
    texts = [SENTENCES[(offset + i) % len(SENTENCES)] for i in range(sentences)]
    audio, spans = join_with_gaps([speech.speak(t).audio for t in texts], GAP_S)
    return StreamRun(audio, [(a / RATE, b / RATE) for a, b in spans], texts)


async def stream(target: str, run: StreamRun, started: asyncio.Event | None = None) -> None:
    from audiototext.client import AsyncClient, StreamSettings, TranscriptUpdate

    try:
        async with AsyncClient(target) as client:
            s = await client.stream(StreamSettings(compression="pcm16"))
            run.session_id = s.session_id
            if started is not None:
                started.set()

            async def collect() -> None:
                async for ev in s.results():
                    if isinstance(ev, TranscriptUpdate) and ev.is_final:
                        run.finals.append(ev)

            reader = asyncio.create_task(collect())
            t0 = time.monotonic()
            step = RATE // 10
            for n, i in enumerate(range(0, run.audio.shape[0], step)):
                await s.send(run.audio[i : i + step])
                ahead = (n + 1) * 0.1 - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await s.finish()
            await reader
            await s.close()
    except BaseException as exc:  # recorded: the test reports which stream failed and why
        run.error = exc
        if started is not None:
            started.set()


def check_finals(run: StreamRun, name: str) -> float:
    """Every sentence's final came (a final with text overlaps its span), and together they
    say what was spoken (word error rate at most 50 %: reduced finals are greedy, and tiny.en
    mishears some of espeak-ng's words); returns that rate."""
    from audiototext.evaluation import wer

    assert run.error is None, f"stream {name} failed: {run.error!r}"
    for start, end in run.spans:
        heard = [f.text for f in run.finals if f.end_s > start and f.start_s < end and f.text]
        assert heard, (name, start, end, run.finals)
    rate = wer(" ".join(run.texts), " ".join(f.text for f in run.finals))
    finals = [(f.utterance_id, round(f.start_s, 2), round(f.end_s, 2), f.text) for f in run.finals]
    assert rate <= 0.5, (name, rate, run.texts, run.spans, finals)
    return rate


async def wait_for(what: Callable[[], bool], limit_s: float, why: str) -> None:
    for _ in range(int(limit_s / 0.2)):
        if what():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {limit_s:g} s: {why}")


def test_overload_sheds_in_order_moves_new_streams_and_recovers(
    built_cache: Path, speech: SpeechSynthesizer
) -> None:
    from audiototext.server.app import GrpcServer, ServerConfig
    from audiototext.server.control_policy import ControlSettings
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    engine = StreamingRecognizer.load(
        "tiny.en", RecognizerOptions(max_sessions=24), precision="fp32", cache_root=built_cache
    )
    throttle = Throttle(engine.model)
    config = ServerConfig(
        port=0,
        precision="fp32",
        cache_root=built_cache,
        # The machine is shared with other tests: its CPU share is not this engine's load,
        # so only the engine's own figures count here (the CPU rule has unit tests).
        control=ControlSettings(
            fallback_after_s=2.0, restore_after_s=4.0, cpu_saturated_percent=1000.0
        ),
    )
    busy = [program(speech, 8, k) for k in range(3)]  # about 30 s each
    moved = program(speech, 2, 1)
    back = program(speech, 1, 3)

    marks: list[tuple[float, str]] = []  # what the test did when, for the timeline file

    async def main() -> GrpcServer:
        server = GrpcServer(config, recognizer=engine)
        await server.start()
        target = f"127.0.0.1:{server.port}"
        controller = server.controller
        assert controller is not None
        try:
            throttle.on.set()
            marks.append((time.monotonic(), "test: encoder throttled, 3 streams open 1.5 s apart"))
            tasks = []
            for run in busy:  # staggered: the load comes as a real one would
                tasks.append(asyncio.create_task(stream(target, run)))
                await asyncio.sleep(1.5)
            await wait_for(
                lambda: controller.policy.fallback_active, 60, "new streams moved off fp32"
            )
            opened = asyncio.Event()
            marks.append((time.monotonic(), "test: a 4th stream opens"))
            moved_task = asyncio.create_task(stream(target, moved, opened))
            await opened.wait()
            assert moved.error is None, f"the stream opened under overload failed: {moved.error}"
            session = server.store.get(moved.session_id) if server.store else None
            assert session is not None and session.recognizer is not engine
            model_path = getattr(getattr(session.recognizer, "model", None), "path", None)
            assert isinstance(model_path, Path) and entry_precision(model_path) == "int8", (
                model_path
            )
            throttle.on.clear()  # the load goes
            marks.append((time.monotonic(), "test: 4th stream runs on int8; throttle lifted"))
            await wait_for(
                lambda: not controller.policy.fallback_active, 90, "the default model restored"
            )
            opened = asyncio.Event()
            back_task = asyncio.create_task(stream(target, back, opened))
            await opened.wait()
            marks.append((time.monotonic(), "test: a 5th stream opened, on fp32"))
            assert back.error is None, back.error
            session = server.store.get(back.session_id) if server.store else None
            assert session is not None and session.recognizer is engine
            await asyncio.gather(*tasks, moved_task, back_task)
            return server
        finally:
            await server.stop(5.0)
            await engine.close()  # given to the server ready-made: ours to close

    server = asyncio.run(asyncio.wait_for(main(), 600))
    assert server.controller is not None
    timeline = list(server.controller.timeline)
    events = sorted(
        [(e.clock_at, f"{e.action:17} {e.reason}") for e in timeline]
        + [(at, f"{'':17} {what}") for at, what in marks]
    )
    start = min(at for at, _ in events)
    shown = "".join(f"{at - start:7.2f} s  {what}\n" for at, what in events)
    out = os.environ.get("AUDIOTOTEXT_OVERLOAD_TIMELINE")
    if out:
        Path(out).write_text(shown)
    assert throttle.calls > 0

    def first(action: str, reason: str = "") -> float:
        times = [e.clock_at for e in timeline if e.action == action and reason in e.reason]
        assert times, f"no {action} in the timeline:\n{shown}"
        return times[0]

    def last(action: str) -> float:
        times = [e.clock_at for e in timeline if e.action == action]
        assert times, f"no {action} in the timeline:\n{shown}"
        return times[-1]

    stretched = first("partial_interval", "→ ×1.50")
    reduced = first("finals_reduced")
    overload = first("overload")
    fallback = first("model_fallback")
    # Partials give way before finals are degraded; the cheaper model only after overload held.
    assert stretched <= reduced, shown
    assert stretched <= fallback and overload < fallback, shown
    # Recovery: overload over, finals full again, the default model back, in that order of need.
    restored = last("model_restored")
    assert last("overload_cleared") <= restored and last("finals_full") > reduced, shown
    assert restored > fallback, shown
    # No session and no final lost.
    rates = [check_finals(run, f"busy {k}") for k, run in enumerate(busy)]
    rates += [check_finals(moved, "moved to int8"), check_finals(back, "back on fp32")]
    if out:
        with Path(out).open("a") as f:
            f.write(
                "WER per stream (busy 0-2, moved, back): "
                + ", ".join(f"{r:.2f}" for r in rates)
                + "\n"
            )
    assert engine.final_trace, "the throttled engine decoded no final"
