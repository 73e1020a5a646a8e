"""The test helper that waits out an earlier test's overload reads the engine's real hold."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from server.real_engine import settled

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer


def test_settled_waits_for_the_overload_hold(recognizer: StreamingRecognizer) -> None:
    monitor = recognizer.load_monitor
    monitor._overload_until = time.monotonic() + 3600.0  # an hour-long hold
    try:
        assert monitor.holding()
        with pytest.raises(AssertionError, match="still refuses"):
            asyncio.run(settled(recognizer, limit_s=0.3))
    finally:
        monitor._overload_until = 0.0
    asyncio.run(settled(recognizer, limit_s=0.3))
