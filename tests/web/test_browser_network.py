"""The page measures its link to the server in Chromium, shows the figures in Diagnostics and
reports them; the server's recommendation (from a stored profile) is shown with its reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from audiototext.hardware.detect import detect
from audiototext.hardware.profile import (
    Measurement,
    PerformanceProfile,
    fingerprint,
    profile_path,
    save_profile,
)
from audiototext.models.cache import ModelCache
from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from support.speech import silence, write_wav
from web.browser import NEEDS_CHROMIUM, chromium, state_until

pytestmark = NEEDS_CHROMIUM

STATE = """(() => {
  const rows = (id) => [...document.querySelectorAll(`#${id} dt`)].map(
    (dt) => [dt.dataset.key, dt.nextElementSibling.textContent]);
  return { network: rows('network'), recommendation: rows('recommendation') };
})()"""


def test_the_page_measures_reports_and_shows_the_recommendation(
    tmp_path: Path, cache: ModelCache
) -> None:
    wav = write_wav(tmp_path / "quiet.wav", silence(1.0), 16_000)
    save_profile(
        PerformanceProfile(
            fingerprint=fingerprint(detect(), cache.scan()[0]),
            created_at="2026-12-07T12:00:00+00:00",
            elapsed_s=5.0,
            budget_s=45.0,
            usable_cores=2,
            measurements=(Measurement("tiny.en", "int8", "v", 1, 4.0, 0.06, 0.03, 5, 39.0),),
        ),
        profile_path(cache.root),
    )

    async def main() -> tuple[dict[str, Any], list[Any], list[str]]:
        srv = GrpcServer(config(http_port=0, cache_root=cache.root), recognizer=FakeRecognizer())
        await srv.start()
        try:
            assert srv.http is not None
            async with chromium(wav, url=f"http://127.0.0.1:{srv.http.port}/") as tab:
                state = await state_until(
                    tab.page,
                    STATE,
                    lambda s: len(s["network"]) == 3 and len(s["recommendation"]) == 4,
                )
                for _ in range(100):  # the report follows the measurement
                    if srv.network.recent():
                        break
                    await asyncio.sleep(0.1)
                return state, srv.network.recent(), list(tab.errors)
        finally:
            await srv.stop(2.0)

    state, reports, errors = run(main(), 120)
    assert not errors, errors
    network = dict(state["network"])
    assert network["rtt"].endswith("ms") and "Mbit/s" in network["down"]
    assert "Mbit/s" in network["up"]
    assert len(reports) == 1 and reports[0].client_id.startswith("page-")
    assert reports[0].download_mbps and reports[0].upload_mbps and reports[0].rtt_ms > 0
    rec = dict(state["recommendation"])
    assert rec["model"].startswith("tiny.en int8 — the most accurate variant")
    assert rec["interval"].split()[0].isdigit() and "—" in rec["threads"]
