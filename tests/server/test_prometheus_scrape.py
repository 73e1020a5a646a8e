"""Debian's real ``prometheus`` scrapes ``/metrics`` every second; its HTTP API is asked for
stream metrics. Once with the engine double and ``--token`` (the scrape must send it), once
with real speech streams through the real engine (tiny.en int8)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.metrics_harness import tones
from server.real_engine import SENTENCES, settled
from server.ws_harness import WsStreamer, http_server, ws_url
from support.prometheus import Prometheus, prometheus_binary, running_prometheus
from support.speech import SpeechSynthesizer, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer


def _value(samples: list[dict[str, object]]) -> float:
    (sample,) = samples
    value = sample["value"]
    assert isinstance(value, list)
    return float(value[1])


def test_prometheus_scrapes_stream_metrics_with_the_token() -> None:
    prometheus_binary()
    audio = tones(3)

    async def main() -> tuple[float, float, float]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="sc4pe")) as srv:
            assert srv.http is not None
            with running_prometheus(f"127.0.0.1:{srv.http.port}", token="sc4pe") as prom:
                await WsStreamer(ws_url(srv, "?token=sc4pe")).run(audio, speed=None)

                # Bounded waits, polled in a thread: the server runs on this loop.
                async def wait(expr: str) -> float:
                    return _value(await asyncio.to_thread(prom.wait_for, expr, 60.0))

                up = await wait('up{job="audiototext"} == 1')
                received = await wait("audiototext_audio_received_seconds_total > 0")
                finals = await wait("audiototext_final_latency_seconds_count >= 3")
                return up, received, finals

    up, received, finals = run(main(), 180)
    assert up == 1
    assert received == pytest.approx(tones(3).shape[0] / 16000)
    assert finals == 3


@pytest.mark.slow
def test_prometheus_sees_real_streams_through_the_real_engine(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    prometheus_binary()
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.5, 1.5)

    async def main() -> tuple[int, int, dict[str, float]]:
        async with http_server(recognizer) as srv:
            assert srv.http is not None
            await settled(recognizer)
            with running_prometheus(f"127.0.0.1:{srv.http.port}") as prom:
                # Two streams side by side at the pace of speech (partials come as it is
                # spoken); nothing here depends on how fast the engine is.
                runs = await asyncio.gather(
                    *(WsStreamer(ws_url(srv)).run(audio, speed=1.0) for _ in range(2))
                )
                finals = sum(len(r.finals) for r in runs)
                partials = sum(len({p["utterance_id"] for p in r.partials}) for r in runs)

                async def wait(expr: str) -> float:
                    return _value(await asyncio.to_thread(prom.wait_for, expr, 60.0))

                seen = {
                    "started": await wait("audiototext_streams_started_total >= 2"),
                    # Partials come before their finals: the scrape that has every final
                    # has every first partial too.
                    "finals": await wait(f"audiototext_final_latency_seconds_count >= {finals}"),
                    "partials": await wait("audiototext_first_partial_seconds_count"),
                    "processed": await wait("audiototext_audio_processed_seconds_total > 0"),
                    # Over the totals, not a rate: all finals may fall between two scrapes.
                    "p95": await wait(
                        "histogram_quantile(0.95, audiototext_final_latency_seconds_bucket)"
                    ),
                    "rss": await wait("process_resident_memory_bytes"),
                }
                return finals, partials, seen

    finals, partials, seen = run(main(), 600)
    assert finals >= 2
    assert seen["started"] == 2
    assert seen["finals"] == finals
    assert seen["partials"] == partials
    assert seen["processed"] == pytest.approx(2 * audio.shape[0] / 16000, rel=0.05)
    assert seen["p95"] > 0
    assert seen["rss"] > 50e6


def test_prometheus_helper_is_what_the_tests_need() -> None:
    """The helper's config is valid for this Prometheus (a target that is down is fine)."""
    prometheus_binary()
    with running_prometheus("127.0.0.1:9") as prom:
        assert isinstance(prom, Prometheus)
        up = prom.wait_for('up{job="audiototext"}', 30)
        assert _value(up) == 0
