"""Test helpers for file uploads over HTTP: multipart bodies, raw requests (chunked bodies
that stop half way), and a file transcriber that decodes for real but recognises nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from audiototext.errors import ConfigError
from audiototext.server.app import GrpcServer, ServerConfig
from audiototext.server.engine import Engine
from audiototext.server.files import FileRequest, FileTranscribeFn, FileTranscript
from server.grpc_harness import config


class DecodingTranscriber:
    """A ``FileTranscribeFn`` that decodes the file with the real decoder (so undecodable
    input fails as in production) and answers a fixed text over its duration."""

    def __init__(self) -> None:
        self.requests: list[FileRequest] = []
        self.hold: asyncio.Event | None = None  # set: each call waits for it

    async def __call__(self, request: FileRequest) -> FileTranscript:
        from audiototext.audio.decode import load_audio

        self.requests.append(request)
        if request.language not in (None, "en"):
            raise ConfigError(f"this model (tiny.en) is English-only: not {request.language}")
        if request.task == "translate":
            raise ConfigError("this model (tiny.en) is English-only: it cannot translate")
        audio = await asyncio.to_thread(load_audio, request.audio)
        if self.hold is not None:
            await self.hold.wait()
        duration = audio.shape[0] / 16_000
        half = round(duration / 2, 3)
        return FileTranscript(
            text="Hello there. General Kenobi.",
            language="en",
            duration_s=duration,
            segments=((0.0, half, "Hello there."), (half, duration, "General Kenobi.")),
            words=(
                ((0.0, half / 2, "Hello"), (half / 2, half, "there."))
                if request.word_timestamps
                else ()
            ),
        )


@contextlib.asynccontextmanager
async def upload_server(
    recognizer: Engine,
    transcribe_file: FileTranscribeFn | None,
    cfg: ServerConfig | None = None,
    **changes: Any,
) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(
        cfg or config(http_port=0, **changes),
        recognizer=recognizer,
        transcribe_file=transcribe_file,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(2.0)


def multipart(
    fields: dict[str, str] | None = None,
    files: Sequence[tuple[str, str, bytes]] = (),
) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data form; files are (field, name, data)."""
    boundary = f"----audiototext{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for key, value in (fields or {}).items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for key, name, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def raw_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunks: Sequence[bytes] | None = None,
    finish: bool = True,
    pause_s: float = 0.0,
    timeout_s: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on its own connection: ``body`` with a Content-Length, or
    ``chunks`` sent with chunked transfer coding, ``pause_s`` apart (``finish=False``: the
    body never ends, as a client still uploading). (status, headers, body) of the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
        if chunks is None:
            head.setdefault("Content-Length", str(len(body)))
        else:
            head["Transfer-Encoding"] = "chunked"
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        if chunks is None:
            writer.write(body)
        else:
            for chunk in chunks:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
                await asyncio.sleep(pause_s)  # a paced client: the server reads all it gets
            if finish:
                writer.write(b"0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            response_headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                response_headers[key.strip().lower()] = value.strip()
            length = int(response_headers.get("content-length", "-1"))
            data = await (reader.readexactly(length) if length >= 0 else reader.read())
        return status, response_headers, data
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def error_of(body: bytes) -> dict[str, str]:
    """The ``error`` object of a JSON error body (asserting its shape)."""
    doc = json.loads(body)
    assert set(doc) == {"error"}, doc
    error: dict[str, str] = doc["error"]
    assert set(error) == {"code", "message"} and error["message"].strip(), doc
    return error
