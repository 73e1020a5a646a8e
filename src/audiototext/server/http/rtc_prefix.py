"""The audio a page captured before its WebRTC track connected: the stream's first audio.

A browser's track carries audio only once ICE and DTLS are up (0.3 s on a LAN, seconds on a
slow network); what the microphone heard before would be lost. An offer with ``"prefix":
true`` promises that audio on the data channel: binary messages of PCM16 16-kHz mono, from
the first sample captured up to the capture time the track connected, then the text message
``{"prefix": {"bytes": N}}`` (N: the bytes sent in all). The stream gets the prefix first and
the track's audio after it; track audio that arrives before the prefix's end is held, not
dropped. :class:`PrefixIntake` checks and orders both; its errors end the stream, not the
server.
"""

from __future__ import annotations

from typing import Any

from audiototext.server.http.rtc_audio import CHUNK_SAMPLES, RATE_HZ
from audiototext.server.status import Status, StatusError

__all__ = ["HOLD_MAX_S", "MAX_PREFIX_S", "PrefixIntake"]

# The page falls back to the WebSocket when WebRTC is not up in ~7 s (gathering + connect
# timeouts): its prefix is shorter than this.
MAX_PREFIX_S = 10.0
MAX_PREFIX_BYTES = int(MAX_PREFIX_S * RATE_HZ) * 2
# The prefix's end comes a moment after the data channel opens; track audio held longer than
# this means the client will not send it.
HOLD_MAX_S = 5.0
CHUNK_BYTES = CHUNK_SAMPLES * 2
END_EXAMPLE = '{"prefix": {"bytes": 38400}}'


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
        self.ended = True
        data = bytes(self._data)
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
        held, self._held = self._held, []
        return chunks + held

    def before_finish(self) -> None:
        """FINISH may not overtake the prefix: the stream would end without its start."""
        if self.waiting:
            raise _refuse(
                f"FINISH before the prefix's end ({END_EXAMPLE}); send the prefix and its end first"
            )
