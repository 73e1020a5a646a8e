"""The page's network measurement (web/js/network.js) run by Node against the real server:
its figures reach the server's reports (what diagnostics and the controller read)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from audiototext.server.network import NetworkReport
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_server
from web.test_node_units import _node

NETWORK_JS = Path(__file__).resolve().parents[2] / "src/audiototext/web/js/network.js"

SCRIPT = """
const N = await import(process.argv[1]);
const base = process.argv[2];
const got = await N.measureNetwork({ base, headers: { Authorization: "Bearer k3y" } });
const stored = await N.reportNetwork(got, {
  base, headers: { Authorization: "Bearer k3y" }, client: "node-1", session: "sess-9",
});
console.log(JSON.stringify({ got, stored }));
"""


def test_node_measures_the_real_server_and_reports() -> None:
    node = _node()

    async def main() -> tuple[dict[str, Any], NetworkReport | None]:
        async with http_server(FakeRecognizer(), token="k3y") as srv:
            assert srv.http is not None
            base = f"http://127.0.0.1:{srv.http.port}/api/v1"
            proc = await asyncio.to_thread(
                subprocess.run,
                [node, "--input-type=module", "-e", SCRIPT, NETWORK_JS.as_uri(), base],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout), srv.network.for_session("sess-9")

    out, report = run(main(), 90)
    got = out["got"]
    assert got["rtt_ms"] > 0 and got["download_mbps"] > 0 and got["upload_mbps"] > 0
    assert report is not None and report.client_id == "node-1"
    assert report.rtt_ms == got["rtt_ms"] and report.download_mbps == got["download_mbps"]
