"""Python client of the audiototext gRPC server.

``AsyncClient`` (asyncio) and ``Client`` (blocking) open streams that survive dropped
connections: unacknowledged audio waits in a ring buffer, the client reconnects with
exponential backoff and resumes the same server session, and every result arrives exactly
once. With ``compression="auto"`` the wire encoding follows the link: PCM16 while it keeps
up, Opus bit rates when acknowledgements slow down.
"""

from __future__ import annotations

from audiototext.client._adaptive import AdaptiveEncoding, Level
from audiototext.client._client import AsyncClient
from audiototext.client._errors import ClientError
from audiototext.client._results import StreamSpeechEvent, StreamStats, TranscriptUpdate
from audiototext.client._settings import ReconnectPolicy, StreamSettings
from audiototext.client._stream import Stream
from audiototext.client._sync import Client, SyncStream

__all__ = [
    "AdaptiveEncoding",
    "AsyncClient",
    "Client",
    "ClientError",
    "Level",
    "ReconnectPolicy",
    "Stream",
    "StreamSettings",
    "StreamSpeechEvent",
    "StreamStats",
    "SyncStream",
    "TranscriptUpdate",
]
