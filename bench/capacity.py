"""Capacity that keeps its accuracy: real-time streams against a real gRPC server, with the
streaming WER of their finals beside the file transcription of the same audio (issue 20, 6).

    PYTHONPATH=src .venv/bin/python bench/capacity.py [--streams 1,16,24] [--rounds 2]
        [--arms default] [--seconds 40]

Every stream speaks real speech with pauses: the recordings of people of
``bench/corpus_real.py`` (``human``: LibriVox readings and spoken playing cards, fetched from
Debian's ``pocketsphinx-testdata``) and the espeak-ng streaming WER clip set
(``tests/streaming/corpus.py``: 20 sentences in 4 clips with 1.2-s pauses), interleaved, each
clip whole, 1-2 s of low room noise between clips, stream k starting k clips further on, until
``--seconds``. The same clips are transcribed as files with the same model (tiny.en int8,
``Transcriber`` defaults) in the same run; a level's *file WER* counts each clip as often as
its streams spoke it, so both WERs are over the very same audio. A final is scored with the
clip its time span overlaps most.

Per level and arm (``--arms``: ``RecognizerOptions`` overrides, ``ARMS``; each a server of its
own, taking turns, the order reversed every other turn): end of speech → final p50 / p95
(``bench/streaming.py``'s clock: from sending the chunk holding the last sample above -40 dBFS),
speech start → first text and → first partial (p50 / p90) and the share of utterances with a
partial before their final, finals reduced by the load policy (the engine's own record), the
streaming and file WER (human, espeak, both), their difference in points, CPU wait/s (time the
server's threads were runnable but got no CPU: the machine's other load) and the load average.
The capacity line: the largest stream count whose every run had no refused stream, final p95
under 1 s and streaming WER (both sets) within 1 point of the file WER; then the same with the
WER against one stream's (a rough figure for what load costs: more streams speak more clips).
``--arms default,full`` puts never-reduced finals beside (the fair measure of what reduced
finals cost: same audio, same load).

Clients run in a child process (``--one-level``), as in ``bench/streaming.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# bench/ first: its corpus.py (the fables, for corpus_real) shares a name with the clip set's
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

from streaming_helpers import edit_distance, normalise  # noqa: E402

import corpus_real  # noqa: E402
import streaming as harness  # noqa: E402
from audiototext.client import AsyncClient  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402


def _clip_set_module() -> Any:
    """tests/streaming/corpus.py (the streaming WER clip set), under a name of its own."""
    spec = importlib.util.spec_from_file_location(
        "streaming_clip_set", ROOT / "tests" / "streaming" / "corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RATE = corpus_real.SAMPLE_RATE
PAUSE_S = (1.0, 2.0)  # silence between clips (seeded), longer than the endpoint silence
SPLIT_S = 0.5  # quiet this long inside a clip separates two sentences for the latency clock
CORPUS = Path(tempfile.gettempdir()) / "audiototext-capacity-corpus"
WER_MARGIN_PP = 1.0
P95_LIMIT_MS = 1000.0
# Load-policy variants to compare (RecognizerOptions overrides), one server each.
ARMS: dict[str, dict[str, Any]] = {
    "default": {},
    "full": {"adaptive_finals": False},  # never reduce: the accuracy reference
    "ctx": {"reduced_final_context_s": 12.0},  # reduced finals keep the full context
    "beam": {"reduced_final_beam_size": 5},  # reduced finals keep beam search
}


@dataclass(frozen=True)
class Item:
    name: str
    kind: str  # "human" or "espeak"
    text: str
    audio: np.ndarray


def catalogue(kinds: str = "both") -> list[Item]:
    """The human recordings and the espeak clip set, interleaved (two human clips, then one
    espeak clip: each set is then spoken for about the same time), or one set (``kinds``)."""
    human = [
        Item(c.path.stem, "human", c.text, corpus_real._read(c.path))
        for c in corpus_real.human_clips(CORPUS / "pkg")
    ]
    clip_set = _clip_set_module()
    sentences = list(clip_set.SENTENCES)
    synth = SpeechSynthesizer(CORPUS / "espeak")
    (CORPUS / "espeak").mkdir(parents=True, exist_ok=True)
    espeak = [
        Item(f"clipset{i}", "espeak", text, np.asarray(audio, np.float32))
        for i, (audio, text, _, _) in enumerate(clip_set.clips_with_spans(synth, sentences))
    ]
    items: list[Item] = []
    while human or espeak:
        items += human[:2] + espeak[:1]
        human, espeak = human[2:], espeak[1:]
    return [i for i in items if kinds in ("both", i.kind)]


def speech_spans(audio: np.ndarray) -> tuple[list[float], list[float]]:
    """Sentence starts and ends (s): runs of samples above -40 dBFS, split at quiet of at least
    ``SPLIT_S``."""
    loud = np.nonzero(np.abs(audio) > harness.SPEECH_LEVEL)[0]
    if loud.size == 0:
        return [], []
    breaks = np.nonzero(np.diff(loud) > SPLIT_S * RATE)[0]
    starts = [int(loud[0])] + [int(loud[b + 1]) for b in breaks]
    ends = [int(loud[b]) + 1 for b in breaks] + [int(loud[-1]) + 1]
    return [s / RATE for s in starts], [e / RATE for e in ends]


@dataclass
class Program:
    audio: np.ndarray
    starts: list[float]
    ends: list[float]
    placed: list[tuple[int, float, float]]  # (catalogue index, start s, end s) per clip spoken


def program(items: list[Item], k: int, seconds: float) -> Program:
    """Stream ``k``'s audio: clips from the ``k``-th on, cyclically, with seeded pauses."""
    rng = np.random.default_rng(20 + k)
    parts: list[np.ndarray] = []
    placed: list[tuple[int, float, float]] = []
    t = 0.0
    i = k
    while t < seconds:
        gap = (rng.standard_normal(int(rng.uniform(*PAUSE_S) * RATE)) * 1e-3).astype(np.float32)
        item = items[i % len(items)]
        parts += [gap, item.audio]
        t += gap.shape[0] / RATE
        placed.append((i % len(items), t, t + item.audio.shape[0] / RATE))
        t += item.audio.shape[0] / RATE
        i += 1
    parts.append(np.zeros(RATE, np.float32))  # the last endpoint's silence
    audio = np.concatenate(parts)
    starts, ends = speech_spans(audio)
    return Program(audio, starts, ends, placed)


def hypotheses(
    placed: list[tuple[int, float, float]], texts: list[tuple[float, float, str]]
) -> list[str]:
    """Each spoken clip's finals, joined: a final goes to the clip its span overlaps most
    (or, overlapping none, the nearest)."""
    out: list[list[str]] = [[] for _ in placed]
    for start, end, text in texts:

        def fit(p: tuple[int, float, float], start: float = start, end: float = end) -> float:
            overlap = min(end, p[2]) - max(start, p[1])
            return overlap if overlap > 0 else -abs((start + end) / 2 - (p[1] + p[2]) / 2)

        out[max(range(len(placed)), key=lambda j: fit(placed[j]))].append(text)
    return [" ".join(t) for t in out]


# ---- the clients (child process)


async def client_level(target: str, n: int, seconds: float, kinds: str) -> dict[str, Any]:
    items = catalogue(kinds)
    programs = [program(items, k, seconds) for k in range(n)]
    async with AsyncClient(target) as client:
        runs = await asyncio.gather(
            *(harness.one_stream(client, p.audio, p.ends, p.starts) for p in programs),
            return_exceptions=True,
        )
    streams = []
    for p, r in zip(programs, runs, strict=True):
        if isinstance(r, BaseException):
            streams.append({"refused": f"{type(r).__name__}: {r}"})
        else:
            streams.append({"placed": p.placed, **asdict(r)})
    return {"streams": streams}


# ---- the server side and the report


def file_texts(items: list[Item]) -> list[str]:
    """Each clip transcribed as a file (tiny.en int8, default options)."""
    from audiototext.inference import Transcriber

    transcriber = Transcriber.load("tiny.en", precision="int8")
    return [" ".join(s.text for s in transcriber.transcribe(item.audio)) for item in items]


def score(
    result: dict[str, Any], items: list[Item], file_text: list[str], dump: Any = None
) -> dict[str, Any]:
    """A level's figures from its streams' raw results (each clip's texts to ``dump``)."""
    file_err = [
        edit_distance(normalise(i.text), normalise(t))
        for i, t in zip(items, file_text, strict=True)
    ]
    words: collections.Counter[str] = collections.Counter()
    stream_err: collections.Counter[str] = collections.Counter()
    file_e: collections.Counter[str] = collections.Counter()
    lat: list[float] = []
    first_text: list[float] = []
    first_partial: list[float] = []
    sentences = finals = refused = 0
    for s in result["streams"]:
        if "refused" in s:
            refused += 1
            continue
        placed = [tuple(p) for p in s["placed"]]
        texts = [tuple(t) for t in s["texts"]]
        if dump is not None:
            print(json.dumps({"placed": s["placed"], "finals": s["texts"]}), file=dump)
        for (idx, _, _), hyp in zip(placed, hypotheses(placed, texts), strict=True):  # type: ignore[arg-type]
            item = items[idx]
            ref = normalise(item.text)
            if dump is not None:
                record = {"clip": item.name, "ref": item.text, "stream": hyp}
                print(json.dumps({**record, "file": file_text[idx]}), file=dump)
            for kind in (item.kind, "all"):
                words[kind] += len(ref)
                stream_err[kind] += edit_distance(ref, normalise(hyp))
                file_e[kind] += file_err[idx]
        lat += s["latencies"]
        first_text += s["first_text"]
        first_partial += s["first_partial"]
        sentences += s["sentences"]
        finals += s["finals"]

    def rate(err: collections.Counter[str], kind: str) -> float:
        return 100.0 * err[kind] / words[kind] if words[kind] else float("nan")

    return {
        "refused": refused,
        "finals": finals,
        "final_p50": harness.pct(lat, 50),
        "final_p95": harness.pct(lat, 95),
        "text_p50": harness.pct(first_text, 50),
        "text_p90": harness.pct(first_text, 90),
        "partial_p50": harness.pct(first_partial, 50),
        "partial_p90": harness.pct(first_partial, 90),
        "with_partial": f"{len(first_partial)}/{sentences}",
        **{f"s_{k}": rate(stream_err, k) for k in ("human", "espeak", "all")},
        **{f"f_{k}": rate(file_e, k) for k in ("human", "espeak", "all")},
        "words": words["all"],
    }


async def start_arm(name: str, max_sessions: int) -> Any:
    """A real server (metrics scraped every second, the controller on, as deployed) whose
    engine has the arm's options."""
    from audiototext._blas import limit_blas_threads
    from audiototext.server.app import GrpcServer, ServerConfig
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    limit_blas_threads(1)
    engine = StreamingRecognizer.load(
        "tiny.en", RecognizerOptions(max_sessions=max_sessions, **ARMS[name]), precision="int8"
    )
    config = ServerConfig(
        port=0, max_sessions=max_sessions, precision="int8", metrics=True, http_port=0
    )
    server = GrpcServer(config, recognizer=engine)
    await server.start()
    return server


HEADER = (
    f"{'arm':>8} {'N':>3} {'ref':>3} {'finals':>6} {'reduced':>7} {'final p50':>9} {'p95':>5}"
    f" {'1st text p50':>12} {'p90':>5} {'1st partial p50':>15} {'p90':>5} {'w/ partial':>10}"
    f" {'WER human':>9} {'espeak':>6} {'all':>5} {'file h':>6} {'e':>5} {'all':>5} {'Δ pp':>5}"
    f" {'wait/s':>6} {'load':>5}"
)


def row(arm: str, n: int, r: dict[str, Any]) -> str:
    return (
        f"{arm:>8} {n:>3} {r['refused']:>3} {r['finals']:>6} {r['reduced']:>7}"
        f" {r['final_p50']:>9.0f} {r['final_p95']:>5.0f} {r['text_p50']:>12.0f}"
        f" {r['text_p90']:>5.0f} {r['partial_p50']:>15.0f} {r['partial_p90']:>5.0f}"
        f" {r['with_partial']:>10} {r['s_human']:>9.2f} {r['s_espeak']:>6.2f} {r['s_all']:>5.2f}"
        f" {r['f_human']:>6.2f} {r['f_espeak']:>5.2f} {r['f_all']:>5.2f}"
        f" {r['s_all'] - r['f_all']:>+5.2f} {r['cpu_wait']:>6.2f}"
        f" {r['load']:>5.2f}"
    )


async def main_async(args: argparse.Namespace) -> None:
    if args.one_level:
        level = await client_level(args.server, args.one_level, args.seconds, args.corpus)
        print(json.dumps(level))
        return
    items = catalogue(args.corpus)
    file_text = file_texts(items)
    dump = open(args.dump, "w") if args.dump else None  # noqa: SIM115 (closed below)
    servers = {name: await start_arm(name, max(args.streams) + 2) for name in args.arms}
    scrapers = [asyncio.create_task(harness.scrape_forever(s)) for s in servers.values()]
    one, five, _ = os.getloadavg()
    arms = ", ".join(f"{a} {ARMS[a] or '(defaults)'}" for a in args.arms)
    print(
        f"{len(items)} clips ({sum(i.kind == 'human' for i in items)} recorded human, "
        f"{sum(i.kind == 'espeak' for i in items)} espeak-ng), about {args.seconds:g} s of speech"
        f" with 1-2 s pauses per stream, real time, 100-ms chunks; tiny.en int8; arms "
        f"{arms}; load {one:.2f} "
        f"{five:.2f}\nlatencies in ms; WER in %; file = the same clips transcribed as files; "
        f"Δ = streaming − file (all); wait/s = server CPU wait per second"
    )
    print(HEADER)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    turn = 0
    try:
        for _ in range(args.rounds):
            for n in args.streams:
                order = list(args.arms) if turn % 2 == 0 else list(args.arms)[::-1]
                turn += 1
                for arm in order:
                    server = servers[arm]
                    await asyncio.sleep(6.0)  # drain the previous level; overload holds 5 s
                    traced = len(harness.final_traces(server))
                    wait0, wall0 = harness.run_queue_wait_s(), time.monotonic()
                    raw = await harness.run_child(
                        __file__,
                        "--server",
                        f"127.0.0.1:{server.port}",
                        "--one-level",
                        str(n),
                        "--seconds",
                        str(args.seconds),
                        "--corpus",
                        args.corpus,
                    )
                    if dump is not None:
                        print(json.dumps({"arm": arm, "streams": n}), file=dump)
                    r = score(raw, items, file_text, dump)
                    r["cpu_wait"] = (harness.run_queue_wait_s() - wait0) / (
                        time.monotonic() - wall0
                    )
                    r["load"] = os.getloadavg()[0]
                    traces = harness.final_traces(server)[traced:]
                    r["reduced"] = sum(t.reduced for t in traces)
                    runs[(arm, n)].append(r)
                    print(row(arm, n, r), flush=True)
        for arm in args.arms:
            # The load's own cost: the streaming WER beside one stream's (same arm, same run).
            alone = [r["s_all"] for r in runs.get((arm, 1), [])]
            lone = float(np.mean(alone)) if alone else float("nan")
            best = best_vs_one = 0
            for n in sorted(args.streams):
                level = runs[(arm, n)]
                fast = [r["refused"] == 0 and r["final_p95"] < P95_LIMIT_MS for r in level]
                if all(
                    f and r["s_all"] - r["f_all"] <= WER_MARGIN_PP
                    for f, r in zip(fast, level, strict=True)
                ):
                    best = n
                if all(
                    f and r["s_all"] - lone <= WER_MARGIN_PP
                    for f, r in zip(fast, level, strict=True)
                ):
                    best_vs_one = n
            print(
                f"capacity ({arm}): {best} streams (every run: none refused, final p95 < "
                f"{P95_LIMIT_MS:.0f} ms, streaming WER within {WER_MARGIN_PP:g} pp of file); "
                f"{best_vs_one} with the WER within {WER_MARGIN_PP:g} pp of one stream's "
                f"({lone:.2f} %) instead"
            )
    finally:
        if dump is not None:
            dump.close()
        for task in scrapers:
            task.cancel()
        for server in servers.values():
            await server.stop(5.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--streams", default="1,16,24", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--rounds", type=int, default=2, help="levels repeated (default 2)")
    p.add_argument("--seconds", type=float, default=40.0, help="speech per stream")
    p.add_argument(
        "--arms",
        default=["default"],
        type=lambda s: s.split(","),
        help=f"load-policy variants, comma-separated: {', '.join(ARMS)}",
    )
    p.add_argument(
        "--corpus",
        choices=("both", "human", "espeak"),
        default="both",
        help="the clips streams speak: recorded people, espeak-ng, or both interleaved",
    )
    p.add_argument("--dump", help="write each clip's reference, finals and file text here")
    p.add_argument("--one-level", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    if any(n < 1 for n in args.streams):
        p.error("--streams: stream counts must be positive")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
