"""The audio a page captured before its WebRTC track connected: the stream's first audio.

A browser's track carries audio only once ICE and DTLS are up (0.3 s on a LAN, seconds on a
slow network); what the microphone heard before would be lost. An offer with ``"prefix":
true`` promises that audio on the data channel: binary messages of PCM16 16-kHz mono, from
the first sample captured up to the capture time the track connected, then the text message
``{"prefix": {"bytes": N}}`` (N: the bytes sent in all). The stream gets the prefix first and
the track's audio after it; track audio that arrives before the prefix's end is held, not
dropped. :class:`PrefixIntake` checks and orders both; its errors end the stream, not the
server.

A resumed session's prefix is the audio captured while the connection was down: from the
session's next chunk (``session_started``'s ``next_seq``, chunk S starting (S - 1) x 100 ms
into the stream, as the WebSocket's resume numbers its chunks) up to the new track's
connection. Its end says where it starts, ``{"prefix": {"bytes": N, "next_seq": S}}``, so a
page that cut it from another point is refused rather than heard twice or with a gap.
"""

from __future__ import annotations

from typing import Any

from audiototext.server.http.rtc_audio import CHUNK_SAMPLES, RATE_HZ
from audiototext.server.status import Status, StatusError

__all__ = ["CHUNK_BYTES", "HOLD_MAX_S", "MAX_PREFIX_S", "PrefixIntake"]

# The page falls back to the WebSocket when WebRTC is not up in ~7 s (gathering + connect
# timeouts): its prefix is shorter than this.
MAX_PREFIX_S = 10.0
MAX_PREFIX_BYTES = int(MAX_PREFIX_S * RATE_HZ) * 2
# The prefix's end comes a moment after the data channel opens; track audio held longer than
# this means the client will not send it.
HOLD_MAX_S = 5.0
CHUNK_BYTES = CHUNK_SAMPLES * 2
END_EXAMPLE = '{"prefix": {"bytes": 38400}}'
RESUME_END_EXAMPLE = '{"prefix": {"bytes": 38400, "next_seq": 42}}'


def _refuse(message: str) -> StatusError:
    return StatusError(Status.INVALID_ARGUMENT, message)


class PrefixIntake:
    """The prefix of one WebRTC stream: collected, checked, then handed on before the track."""

    def __init__(self, expected: bool) -> None:
        self.expected = expected
        self.ended = not expected
        self._data = bytearray()
        self._held: list[bytes] = []
        self._held_bytes = 0
        # The session's next chunk when this connection started, and whether it resumed.
        self.next_seq = 1
        self.resumed = False

    def started(self, next_seq: int, resumed: bool) -> None:
        """Where the session's stream stands: a resumed session's prefix starts there."""
        self.next_seq = next_seq
        self.resumed = resumed

    @property
    def waiting(self) -> bool:
        """True while the track's audio must wait for the prefix."""
        return not self.ended

    @property
    def received_bytes(self) -> int:
        return len(self._data)

    def add(self, data: bytes) -> None:
        """One binary data channel message: a piece of the prefix."""
        if not self.expected:
            raise _refuse(
                "binary data channel messages are the audio captured before the track "
                'connected, and only after an offer with "prefix": true; audio goes on the '
                "audio track"
            )
        if self.ended:
            raise _refuse(
                f"prefix audio after its end ({END_EXAMPLE}); send the whole prefix first"
            )
        if len(data) % 2:
            raise _refuse(
                f"a prefix message of {len(data)} bytes: the prefix is PCM16 (2 bytes a "
                "sample), 16 kHz mono"
            )
        if len(self._data) + len(data) > MAX_PREFIX_BYTES:
            raise _refuse(
                f"the prefix is longer than {MAX_PREFIX_S:g} s ({MAX_PREFIX_BYTES} bytes of "
                "PCM16 at 16 kHz); send only what was captured before the track connected"
            )
        self._data += data

    def hold(self, chunk: bytes) -> bool:
        """Keep a track chunk until the prefix ends; False when it may go on at once."""
        if self.ended:
            return False
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        if self._held_bytes > HOLD_MAX_S * RATE_HZ * 2:
            raise _refuse(
                f"the offer promised a prefix but its end ({END_EXAMPLE}) did not come within "
                f"{HOLD_MAX_S:g} s of track audio; send it as soon as the data channel opens"
            )
        return True

    def end(self, body: Any) -> list[bytes]:
        """The ``{"prefix": {...}}`` message's value: the stream's audio up to now, in order
        (the prefix in 100-ms chunks, then the track's held chunks)."""
        if not self.expected or self.ended:
            raise _refuse(
                'a prefix end without a prefix to end: the offer must say "prefix": true, '
                "and the end comes once"
            )
        count = body.get("bytes") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _refuse(f"the prefix end must say how many bytes were sent: {END_EXAMPLE}")
        if count != len(self._data):
            raise _refuse(
                f"the prefix end says {count} bytes but {len(self._data)} came; a message was "
                "lost or the count is wrong"
            )
        self._check_start(body.get("next_seq"))
        self.ended = True
        data = bytes(self._data)
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
        held, self._held = self._held, []
        return chunks + held

    def _check_start(self, seq: Any) -> None:
        """The prefix must start where the session's audio stopped (``next_seq``)."""
        if seq is None:
            if self.resumed:
                raise _refuse(
                    "a resumed session's prefix must say which chunk it starts at, the "
                    f"session_started's next_seq ({self.next_seq}): {RESUME_END_EXAMPLE}"
                )
            return
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise _refuse(
                f'the prefix end\'s "next_seq" must be a chunk number (1 or more): '
                f"{RESUME_END_EXAMPLE}"
            )
        if seq != self.next_seq:
            raise _refuse(
                f"the prefix starts at chunk {seq} but the session's next chunk is "
                f"{self.next_seq} (session_started's next_seq); send the audio from "
                f"{(self.next_seq - 1) * CHUNK_SAMPLES / RATE_HZ:g} s of the stream on"
            )

    def before_finish(self) -> None:
        """FINISH may not overtake the prefix: the stream would end without its start."""
        if self.waiting:
            raise _refuse(
                f"FINISH before the prefix's end ({END_EXAMPLE}); send the prefix and its end first"
            )
