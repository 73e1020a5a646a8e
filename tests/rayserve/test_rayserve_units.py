"""``serve --ray``'s refusals and settings, which need no Ray cluster, and the messages'
picklability Serve's proxy relies on."""

from __future__ import annotations

import pickle
import socket

import pytest

from audiototext.cli import main
from audiototext.errors import ConfigError
from audiototext.rayserve.deploy import ServeSettings
from audiototext.wire._proto import transcription_pb2 as pb


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


REDIS = ["--session-store", "redis://127.0.0.1:6379/0"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray", "auto"], "serve --ray needs --session-store redis://"),
        (["--ray", "auto", *REDIS, "--token", "t"], "TLS and --token are not applied"),
        (["--ray", "nowhere", *REDIS], "expected local, auto, HOST:PORT"),
        (
            ["--ray", f"127.0.0.1:{_closed_port()}", *REDIS],
            "cannot reach the Ray cluster at 127.0.0.1:",
        ),
        (["--ray", "auto", *REDIS, "--ray-replicas", "0"], "--ray-replicas 0: at least 1"),
        (
            ["--ray", "auto", *REDIS, "--ray-replicas", "3", "--ray-max-replicas", "2"],
            "--ray-max-replicas 2 is below --ray-replicas 3",
        ),
        (["--ray", "auto", *REDIS, "--ray-grpc-port", "70000"], "--ray-grpc-port 70000"),
        (["--ray", "auto", *REDIS, "--ray-cpus", "0"], "--ray-cpus 0"),
    ],
)
def test_serve_ray_refuses_what_cannot_work_and_says_why(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", *flags]) != 0
    err = capsys.readouterr().err
    assert message in err, err


def test_autoscaling_needs_a_maximum_at_least_the_floor() -> None:
    assert ServeSettings(replicas=2, max_replicas=2).max_replicas == 2
    with pytest.raises(ConfigError, match="at least as large"):
        ServeSettings(replicas=2, max_replicas=1)


def test_stream_messages_pickle_by_reference() -> None:
    # Serve's proxy hands each request message to the replica through Ray (pickle); the
    # generated classes must name the module they live in, or pickling fails.
    msg = pb.StreamingRequest(audio=pb.AudioChunk(seq=7, data=b"\x01\x02"))
    assert pb.StreamingRequest.__module__ == "audiototext.wire._proto.transcription_pb2"
    assert pickle.loads(pickle.dumps(msg)) == msg
