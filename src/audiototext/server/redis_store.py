"""Session states in Redis (``serve --session-store redis://host:port/db``), shared by servers.

One hash per session (``audiototext:session:<id>``: ``meta`` JSON, ``audio``/``vad``/
``vad_pending`` float32 bytes, :mod:`.session_state`) that expires ``ttl_s`` after its last
write or touch. Saves never wait for Redis: they are queued (a newer state of a session
replaces the queued one) and a writer thread encodes and sends whatever is queued as one
pipeline. When Redis cannot be reached the writer reports it through ``on_health`` (the
server raises the ``session_store_down`` alert), answers the queued saves with ``done(False)``
(the streams carry on, resumable on this process only) and tries again at most every
``retry_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

from audiototext.server.session_state import (
    SessionState,
    StoreUnavailableError,
    check_store_url,
    decode_state,
    encode_state,
)

__all__ = ["RedisStateStore"]

log = logging.getLogger(__name__)

KEY_PREFIX = "audiototext:session:"
_TIMEOUT_S = 1.0  # connect and socket timeouts: a dead store is noticed within a second


class RedisStateStore:
    durable = True

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        on_health: Callable[[str | None], None] = lambda _error: None,
        retry_s: float = 1.0,
    ) -> None:
        self.url = check_store_url(url)
        self.ttl_ms = max(1000, round(ttl_s * 1000))
        self._on_health = on_health
        self._retry_s = retry_s
        self._client = redis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
        )
        self._cv = threading.Condition()
        self._saves: dict[str, tuple[SessionState, list[Callable[[bool], None]]]] = {}
        self._deletes: set[str] = set()
        self._touches: set[str] = set()
        self._closing = False
        self._down_since: float | None = None
        self._last_attempt = 0.0
        self.writes = 0  # pipelines sent (benchmarks)
        self._thread = threading.Thread(target=self._run, name="session-store", daemon=True)
        self._thread.start()

    def ping(self) -> str | None:
        """None if Redis answers, else why not (blocking)."""
        try:
            self._client.ping()
        except (redis.RedisError, OSError) as exc:
            self._report(str(exc))
            return str(exc)
        self._report(None)
        return None

    def save(self, state: SessionState, done: Callable[[bool], None]) -> None:
        with self._cv:
            if self._closing:
                _answer(done, False)
                return
            queued = self._saves.get(state.session_id)
            callbacks = queued[1] if queued is not None else []
            callbacks.append(done)
            self._saves[state.session_id] = (state, callbacks)
            self._deletes.discard(state.session_id)
            self._cv.notify()

    def load(self, session_id: str) -> SessionState | None:
        try:
            fields = self._client.hgetall(KEY_PREFIX + session_id)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailableError(str(exc)) from exc
        if not fields:
            return None
        return decode_state(
            session_id,
            {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()},
        )

    def delete(self, session_id: str) -> None:
        with self._cv:
            self._saves.pop(session_id, None)
            self._deletes.add(session_id)
            self._cv.notify()

    def touch(self, session_ids: Iterable[str]) -> None:
        with self._cv:
            self._touches.update(session_ids)
            self._cv.notify()

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (bounded), then stop the writer."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout_s)
        self._client.close()

    # ---- writer thread

    def _run(self) -> None:
        while True:
            with self._cv:
                if not (self._saves or self._deletes or self._touches or self._closing):
                    # Down and idle: wake up now and then to see whether it is back (which
                    # clears the alert).
                    self._cv.wait(None if self._down_since is None else self._retry_s)
                saves, self._saves = self._saves, {}
                deletes, self._deletes = self._deletes, set()
                touches, self._touches = self._touches, set()
                closing = self._closing
            if saves or deletes or touches:
                self._write(saves, deletes, touches)
            elif self._down_since is not None and not closing:
                self.ping()
            if closing:
                return

    def _write(
        self,
        saves: dict[str, tuple[SessionState, list[Callable[[bool], None]]]],
        deletes: set[str],
        touches: set[str],
    ) -> None:
        now = time.monotonic()
        ok = False
        if self._down_since is None or now - self._last_attempt >= self._retry_s:
            self._last_attempt = now
            try:
                pipe = self._client.pipeline(transaction=False)
                for session_id, (state, _) in saves.items():
                    key = KEY_PREFIX + session_id
                    pipe.delete(key)  # no field of an older layout survives
                    pipe.hset(key, mapping=encode_state(state))  # type: ignore[arg-type]
                    pipe.pexpire(key, self.ttl_ms)
                for session_id in deletes:
                    pipe.delete(KEY_PREFIX + session_id)
                for session_id in touches - deletes - saves.keys():
                    pipe.pexpire(KEY_PREFIX + session_id, self.ttl_ms)
                pipe.execute()
                self.writes += 1
                ok = True
                self._report(None)
            except (redis.RedisError, OSError) as exc:
                self._report(str(exc))
        for _, callbacks in saves.values():
            for done in callbacks:
                _answer(done, ok)

    def _report(self, error: str | None) -> None:
        if error is None:
            if self._down_since is not None:
                log.info("session store %s reachable again", self.url)
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "session store %s unreachable (%s): sessions are kept in this process only "
                "until it is back",
                self.url,
                error,
            )
        self._on_health(error)


def _text(key: bytes | str) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


def _answer(done: Callable[[bool], None], ok: bool) -> None:
    """Call a save's callback; one that fails (its loop closed) must not stop the writer."""
    try:
        done(ok)
    except Exception:
        log.exception("a session store callback failed")
