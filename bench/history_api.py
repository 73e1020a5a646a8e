"""The transcript history over gRPC (``History``) against REST (``/api/v1/history``).

    python bench/history_api.py [--sessions 2000] [--segments 20] [--rounds 7] [--calls 30]

A history file is filled with ``--sessions`` sessions of ``--segments`` finals each (the
store's own writes: the same file ``serve --history`` keeps), then one ``audiototext serve
--history FILE`` answers both APIs. Per round, alternating which goes first, each operation
is called ``--calls`` times over one connection of each kind (a sync gRPC channel; one HTTP
keep-alive connection): List (a page of 50, then a page deep in the file), Search (one word),
Export (srt and json of one session: the bytes are checked equal). Prints the median time per
call of each, and gRPC/REST. Notes: bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import grpc  # noqa: E402

from audiototext.history.records import Final, SessionInfo, Word  # noqa: E402
from audiototext.history.store import HistoryStore  # noqa: E402
from audiototext.wire._proto import history_pb2, history_pb2_grpc  # noqa: E402

CLI = [sys.executable, "-m", "audiototext.cli"]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "near",
    "seven",
    "silver",
    "lakes",
]


def _fill(path: Path, sessions: int, segments: int) -> str:
    """The file with ``sessions`` sessions; returns the id of one in the middle."""
    store = HistoryStore.open(path)
    start = time.time() - sessions * 60.0
    with store.transaction():
        for s in range(sessions):
            info = SessionInfo(
                f"s{s:06d}",
                start + s * 60.0,
                start + s * 60.0 + 50.0,
                "tiny.en",
                "en",
                "grpc",
                "stream",
            )
            for n in range(1, segments + 1):
                text = " ".join(WORDS[(s + n + k) % len(WORDS)] for k in range(8))
                words = tuple(
                    Word(w, n * 2.0 + k * 0.2, n * 2.0 + k * 0.2 + 0.18)
                    for k, w in enumerate(text.split())
                )
                store.add_final(info, Final(n, n * 2.0, n * 2.0 + 1.8, " " + text, words))
    store.close()
    return f"s{sessions // 2:06d}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(db: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, http_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--model",
            "tiny.en",
            "--history",
            str(db),
            "--no-controller",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return proc, grpc_port, http_port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def _timed(call: Callable[[], bytes], n: int) -> tuple[float, bytes]:
    out = b""
    t0 = time.perf_counter()
    for _ in range(n):
        out = call()
    return (time.perf_counter() - t0) / n, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "history.sqlite3"
        sid = _fill(db, args.sessions, args.segments)
        print(
            f"history: {args.sessions} sessions × {args.segments} finals "
            f"({db.stat().st_size / 2**20:.1f} MiB)"
        )
        proc, grpc_port, http_port = _serve(db)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            stub: Any = history_pb2_grpc.HistoryStub(channel)
            rest = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)

            def get(path: str) -> bytes:
                rest.request("GET", path)
                response = rest.getresponse()
                body = response.read()
                assert response.status == 200, (path, body[:200])
                return body

            deep = args.sessions - 60
            ops: dict[str, tuple[Callable[[], bytes], Callable[[], bytes]]] = {
                "list 50": (
                    lambda: stub.List(history_pb2.ListHistoryRequest(limit=50)).SerializeToString(),
                    lambda: get("/api/v1/history?limit=50"),
                ),
                f"list 50 @{deep}": (
                    lambda: stub.List(
                        history_pb2.ListHistoryRequest(limit=50, offset=deep)
                    ).SerializeToString(),
                    lambda: get(f"/api/v1/history?limit=50&offset={deep}"),
                ),
                "search 50": (
                    lambda: stub.Search(
                        history_pb2.SearchHistoryRequest(query="silver lakes")
                    ).SerializeToString(),
                    lambda: get("/api/v1/history/search?q=silver%20lakes"),
                ),
                "export srt": (
                    lambda: (
                        stub.Export(history_pb2.ExportTranscriptRequest(id=sid, format="srt")).data
                    ),
                    lambda: get(f"/api/v1/history/{sid}?format=srt"),
                ),
                "export json": (
                    lambda: (
                        stub.Export(history_pb2.ExportTranscriptRequest(id=sid, format="json")).data
                    ),
                    lambda: get(f"/api/v1/history/{sid}?format=json"),
                ),
            }
            for g, r in ops.values():  # warm both paths (imports, the first connections)
                g(), r()
            times: dict[str, dict[str, list[float]]] = {k: {"grpc": [], "rest": []} for k in ops}
            for rnd in range(args.rounds):
                for name, (g, r) in ops.items():
                    order = (
                        (("grpc", g), ("rest", r)) if rnd % 2 == 0 else (("rest", r), ("grpc", g))
                    )
                    got = {}
                    for kind, call in order:
                        dt, got[kind] = _timed(call, args.calls)
                        times[name][kind].append(dt)
                    if name.startswith("export"):
                        assert got["grpc"] == got["rest"], f"{name}: the bytes differ"
            print(f"{'operation':<16}{'gRPC ms':>9}{'REST ms':>9}{'gRPC/REST':>11}")
            for name, t in times.items():
                g_ms = statistics.median(t["grpc"]) * 1000
                r_ms = statistics.median(t["rest"]) * 1000
                print(f"{name:<16}{g_ms:>9.2f}{r_ms:>9.2f}{g_ms / r_ms:>11.2f}")
            channel.close()
            rest.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
