"""``audiototext stream FILE`` and ``audiototext mic``: live transcription through a server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE_HZ = 16_000


def register(sub: Any) -> None:
    """Add the ``stream`` and ``mic`` commands to the CLI's sub-parsers."""
    p = sub.add_parser(
        "stream",
        help="stream an audio file to a server in real time and print the transcript",
        description="Partials are rewritten in place on a terminal; finals end with a newline.",
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="times real time (default 1; 0 sends as fast as the server accepts)",
    )
    _common(p)
    p.set_defaults(func=_run_stream)

    p = sub.add_parser(
        "mic",
        help="transcribe the microphone through a server (PortAudio)",
        description="Captures with PortAudio (the sounddevice package). Ctrl-C stops.",
    )
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    p.add_argument("--device", help="input device index or name (default: the system default)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    _common(p)
    p.set_defaults(func=_run_mic)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server", default="127.0.0.1:50051", help="host:port (default 127.0.0.1:50051)"
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AUDIOTOTEXT_TOKEN"),
        help="bearer token the server was started with (or $AUDIOTOTEXT_TOKEN)",
    )
    p.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's roots"
    )
    p.add_argument(
        "--tls-ca",
        "--ca-cert",
        dest="ca_cert",
        type=Path,
        help="PEM certificate to trust, e.g. the server's self-signed --tls-cert (implies --tls)",
    )
    p.add_argument("--language", help="a language code (default: auto)")
    p.add_argument(
        "--model", default="", help="a model of the server's cache (default: the server's)"
    )
    p.add_argument(
        "--task",
        default="transcribe",
        choices=["transcribe", "translate"],
        help="translate: English text (multilingual models only)",
    )
    p.add_argument(
        "--compression",
        default="auto",
        choices=["auto", "pcm16", "opus", "float32"],
        help="wire encoding; auto switches to Opus when the link is slow (default)",
    )
    p.add_argument(
        "--partials",
        action="store_true",
        help="print partials as lines even when stdout is not a terminal",
    )


class _Printer:
    """Partials in place on a terminal; finals on their own lines."""

    def __init__(self, out: TextIO, partial_lines: bool) -> None:
        self.out = out
        self.tty = out.isatty()
        self.partial_lines = partial_lines
        self.finals: list[str] = []

    def partial(self, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[2K{text}")
            self.out.flush()
        elif self.partial_lines:
            self.out.write(f"~ {text}\n")
            self.out.flush()

    def final(self, text: str) -> None:
        self.finals.append(text)
        self.out.write(f"\r\x1b[2K{text}\n" if self.tty else f"{text}\n")
        self.out.flush()


async def _transcribe(
    args: argparse.Namespace, audio_blocks: AsyncIterator[NDArray[np.float32]]
) -> int:
    from audiototext.client import AsyncClient, ClientError, StreamSettings, TranscriptUpdate

    printer = _Printer(sys.stdout, args.partials)
    root = args.ca_cert.read_bytes() if args.ca_cert else None
    async with AsyncClient(
        args.server, token=args.token, tls=args.tls, root_certificates=root
    ) as client:
        try:
            stream = await client.stream(
                StreamSettings(
                    language=args.language,
                    model=args.model,
                    task=args.task,
                    compression=args.compression,
                )
            )
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

        async def show() -> None:
            async for ev in stream.results():
                if isinstance(ev, TranscriptUpdate):
                    text = ev.text.strip()
                    if ev.is_final:
                        if text:
                            printer.final(text)
                    elif text:
                        printer.partial(text)

        shower = asyncio.create_task(show())
        try:
            async for block in audio_blocks:
                if shower.done():
                    break
                await stream.send(block)
            if not shower.done():
                await stream.finish()
            await shower
        except ClientError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        finally:
            await stream.close()
    return 0


def _run_stream(args: argparse.Namespace) -> int:
    from audiototext.audio.decode import load_audio

    audio = load_audio(args.file)
    speed = float(args.speed)

    async def blocks() -> AsyncIterator[NDArray[np.float32]]:
        step = SAMPLE_RATE_HZ // 10
        t0 = time.monotonic()
        for i in range(0, audio.shape[0], step):
            yield audio[i : i + step]
            if speed > 0:
                ahead = (i + step) / SAMPLE_RATE_HZ / speed - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)

    return asyncio.run(_transcribe(args, blocks()))


def _device(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _run_mic(args: argparse.Namespace) -> int:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        print(
            f"error: microphone capture needs PortAudio and the sounddevice package ({exc}); "
            "install libportaudio2 and `pip install audiototext[mic]`",
            file=sys.stderr,
        )
        return 1
    if args.list_devices:
        default_in = sd.default.device[0]
        for index, dev in enumerate(sd.query_devices()):
            if dev["max_input_channels"] > 0:
                mark = "*" if index == default_in else " "
                print(
                    f"{mark} {index:>3}  {dev['name']}  "
                    f"({dev['max_input_channels']} in, {dev['default_samplerate']:.0f} Hz)"
                )
        return 0

    async def blocks() -> AsyncIterator[NDArray[np.float32]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[NDArray[np.float32]] = asyncio.Queue(maxsize=600)

        def callback(indata: Any, frames: int, t: Any, status: Any) -> None:
            block = np.array(indata[:, 0], dtype=np.float32)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, queue, block)

        deadline = None if args.duration is None else time.monotonic() + args.duration
        with sd.InputStream(
            samplerate=SAMPLE_RATE_HZ,
            channels=1,
            dtype="float32",
            blocksize=SAMPLE_RATE_HZ // 10,
            device=_device(args.device),
            callback=callback,
        ):
            print("listening (Ctrl-C to stop)", file=sys.stderr, flush=True)
            while deadline is None or time.monotonic() < deadline:
                timeout = 0.5 if deadline is None else max(0.01, deadline - time.monotonic())
                try:
                    yield await asyncio.wait_for(queue.get(), min(0.5, timeout))
                except TimeoutError:
                    continue

    try:
        return asyncio.run(_transcribe(args, blocks()))
    except sd.PortAudioError as exc:
        print(
            f"error: cannot capture audio: {exc} (see: audiototext mic --list-devices)",
            file=sys.stderr,
        )
        return 1


def _offer(queue: asyncio.Queue[NDArray[np.float32]], block: NDArray[np.float32]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # the consumer fell behind: drop, never block
        queue.put_nowait(block)
