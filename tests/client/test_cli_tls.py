"""``audiototext stream`` against a TLS server that wants a token (engine double, in-process).

The server runs on its own event loop in a thread; the command runs its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from audiototext.cli import main
from audiototext.client import AsyncClient
from server.fake_engine import FakeRecognizer
from server.grpc_harness import (
    ThreadedServer,
    config,
    self_signed_cert,
    speech_like,
    stream_audio,
)
from support.speech import write_wav

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def test_stream_command_over_tls_with_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = self_signed_cert(tmp_path)
    audio = speech_like(6.0, seed=9)
    wav = write_wav(tmp_path / "speech.wav", audio, 16_000)
    cfg = config(tls_cert=cert, tls_key=key, token="tok")
    with ThreadedServer(FakeRecognizer, cfg) as srv:
        target = f"localhost:{srv.port}"
        base = ["stream", str(wav), "--server", target, "--speed", "0"]

        code = main([*base, "--tls-ca", str(cert), "--token", "tok"])
        out = capsys.readouterr()
        assert code == 0, out.err
        printed = out.out.splitlines()

        async def reference() -> list[str]:
            async with AsyncClient(target, root_certificates=cert.read_bytes(), token="tok") as c:
                _, finals, _ = await stream_audio(c, audio, speed=None)
            return [f.text for f in finals]

        assert printed and printed == asyncio.run(reference())

        code = main([*base, "--tls-ca", str(cert), "--token", "wrong"])
        err = capsys.readouterr().err
        assert code == 1 and "token is not valid" in err

        code = main([*base, "--tls-ca", str(cert)])
        err = capsys.readouterr().err
        assert code == 1 and "requires a bearer token" in err

        code = main([*base, "--token", "tok"])  # plaintext to a TLS port
        err = capsys.readouterr().err
        assert code == 1 and "cannot open a stream" in err
