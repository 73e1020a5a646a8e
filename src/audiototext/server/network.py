"""The network between clients and the server, as the clients measured it.

The page (and any client) times a few small round trips and a bounded download and upload
against ``/api/v1/network/*`` and reports the result here: per client, and per stream session
when it has one. The adaptive controller reads a stream's figures through
:class:`ClientNetwork` (``for_session``) and nothing else; the diagnostics show them all.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = [
    "DOWNLOAD_MAX_BYTES",
    "ClientNetwork",
    "NetworkReport",
    "NetworkReports",
    "parse_report",
]

DOWNLOAD_MAX_BYTES = 8 << 20  # the largest /network/download a client may ask for
DOWNLOAD_DEFAULT_BYTES = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_MAX_RTT_MS = 600_000.0  # ten minutes: anything longer is not a measurement
_MAX_MBPS = 1_000_000.0  # a terabit per second


@dataclass(frozen=True)
class NetworkReport:
    client_id: str
    session_id: str  # "" when the client measured before (or without) a stream
    rtt_ms: float  # median of the round trips
    download_mbps: float | None  # megabits per second, None when not measured
    upload_mbps: float | None
    received_at: float  # Unix time the server got the report
    peer: str = ""  # the client's address as the server saw it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ClientNetwork(Protocol):
    """What the adaptive controller may ask about a stream's network."""

    def for_session(self, session_id: str) -> NetworkReport | None: ...


def _number(doc: dict[str, Any], key: str, top: float, *, required: bool) -> float | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, not {value!r}")
    if not 0 <= value <= top:
        raise ValueError(f"{key} must be between 0 and {top:g}, not {value:g}")
    return float(value)


def parse_report(doc: Any, peer: str = "", now: Callable[[], float] = time.time) -> NetworkReport:
    """A client's report ``{client_id, session_id?, rtt_ms, download_mbps?, upload_mbps?}``;
    ValueError saying which field is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("the report must be a JSON object")
    unknown = set(doc) - {"client_id", "session_id", "rtt_ms", "download_mbps", "upload_mbps"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    client = doc.get("client_id")
    if not isinstance(client, str) or not _ID.match(client):
        raise ValueError("client_id must be 1-64 letters, digits or ._:-")
    session = doc.get("session_id", "") or ""
    if not isinstance(session, str) or (session and not _ID.match(session)):
        raise ValueError("session_id must be a stream's session id (1-64 letters, digits, ._:-)")
    rtt = _number(doc, "rtt_ms", _MAX_RTT_MS, required=True)
    assert rtt is not None  # required
    return NetworkReport(
        client_id=client,
        session_id=session,
        rtt_ms=rtt,
        download_mbps=_number(doc, "download_mbps", _MAX_MBPS, required=False),
        upload_mbps=_number(doc, "upload_mbps", _MAX_MBPS, required=False),
        received_at=now(),
        peer=peer,
    )


class NetworkReports:
    """The latest report of each of the last ``capacity`` clients (event-loop state)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._by_client: OrderedDict[str, NetworkReport] = OrderedDict()
        # Called with each report as it comes (the controller: a stream's uplink).
        self.listeners: list[Callable[[NetworkReport], None]] = []

    def add(self, report: NetworkReport) -> None:
        self._by_client.pop(report.client_id, None)
        self._by_client[report.client_id] = report
        while len(self._by_client) > self.capacity:
            self._by_client.popitem(last=False)
        for listener in self.listeners:
            listener(report)

    def for_client(self, client_id: str) -> NetworkReport | None:
        return self._by_client.get(client_id)

    def for_session(self, session_id: str) -> NetworkReport | None:
        if not session_id:
            return None
        for report in reversed(self._by_client.values()):
            if report.session_id == session_id:
                return report
        return None

    def recent(self, limit: int = 20) -> list[NetworkReport]:
        """Newest first."""
        return list(reversed(self._by_client.values()))[:limit]
