"""Load control of the streaming recognizer: how busy the engine is, and what gives way.

Partials give way first (their interval is stretched while the worker or the lanes are busy,
or recent finals are slow); then finals are reduced (cheaper settings) while they queue up;
overload, which refuses new streams, means finals themselves fall behind. Finals are never
reduced while partials run at their full rate: the first reduction stretches partials too.
Each change is kept in :attr:`LoadMonitor.changes` with its reason (the server's controller
logs them). No threads or I/O: the worker reports rounds and finals, and the clock is passed
in. The batch cap (:meth:`LoadMonitor.max_batch`) is set from outside (free memory).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence

from audiototext.audio import SAMPLE_RATE_HZ
from audiototext.streaming.options import RecognizerOptions

__all__ = ["BUSY_HIGH", "BUSY_WINDOW_S", "LoadChange", "LoadMonitor"]

BUSY_WINDOW_S = 5.0  # the busy share and recent finals are measured over this window
BUSY_HIGH = 0.75  # stretch partial intervals (and stop speculating) above this busy share
BUSY_LOW = 0.5  # and relax them again below this
MAX_PARTIAL_SCALE = 8.0
SCALE_STEP = 1.5
# One step per period: the busy share is a 5-s average, so reacting to every round would
# compound the same measurement many times.
SCALE_PERIOD_S = 1.0
# Overload is held for a while: lag drains between bursts, and a stream admitted in such a
# pause would push every stream behind again.
OVERLOAD_HOLD_S = 5.0
LATENCY_WINDOW = 200  # finals remembered for the latency percentiles
CHANGES_KEPT = 256  # changes remembered for whoever reads them (the server's controller)

LoadChange = tuple[float, str, str]  # (clock time, what changed, why)


class LoadMonitor:
    """The engine's recent load and the decisions that follow from it."""

    def __init__(
        self, options: RecognizerOptions, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self._clock = clock
        self._started_at = clock()
        # (end of round, its wall seconds, audio seconds it read)
        self._busy: collections.deque[tuple[float, float, float]] = collections.deque()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._recent_finals: collections.deque[tuple[float, float]] = collections.deque()
        self._scale_changed_at = self._started_at
        self.partial_scale = 1.0  # partial intervals are stretched by this
        self.share = 0.0  # busy share of the worker or the lanes, whichever is higher
        self._lagging = False  # the median stream's unread audio is beyond overload_lag_s
        self._overloaded = False
        self._overload_until = 0.0
        self._reduced_until = 0.0  # finals were reduced lately: speculations are too
        self._reducing = False  # a period of reduced finals was reported and not yet ended
        self._reduce_why = ""
        self.batch_limit: int | None = None  # a cap on batch sizes (set from outside)
        self.changes: collections.deque[LoadChange] = collections.deque(maxlen=CHANGES_KEPT)
        self.changes_total = 0  # changes ever noted (readers keep their own position)
        self._changes_lock = threading.Lock()  # the worker notes, another thread reads

    # ---- what the worker reports

    def observe_lag(self, unread_samples: Sequence[int]) -> None:
        """At the start of a round: each stream's audio not yet read by the VAD."""
        lags = sorted(unread_samples)
        self._lagging = bool(lags) and lags[len(lags) // 2] > self.options.overload_lag_s * (
            SAMPLE_RATE_HZ
        )

    def record_final(self, triggered_at: float, speech_end_at: float | None = None) -> None:
        """A final went out for an utterance whose endpoint came at ``triggered_at`` (clock
        time) and whose speech ended in audio accepted at ``speech_end_at``.

        The latency figures (``latency_percentile``: stats, the streams' metrics) run from the
        end of speech, as a speaker waits; the load policy's recent finals from the endpoint,
        as its thresholds were set (a final speculated in the pause is due at once).
        """
        now = self._clock()
        since = triggered_at if speech_end_at is None else min(triggered_at, speech_end_at)
        self._latencies.append(max(0.0, now - since))
        self._recent_finals.append((now, max(0.0, now - triggered_at)))

    def record_round(
        self,
        began: float,
        audio_s: float,
        lane_walls: Sequence[collections.deque[tuple[float, float]]] = (),
    ) -> None:
        """A round that began at ``began`` read ``audio_s``; ``lane_walls`` are the lanes'
        (end, wall seconds) records, pruned here to the window."""
        now = self._clock()
        if self._busy and began - self._busy[-1][0] >= BUSY_WINDOW_S:
            # Rounds run only while there is work: after a whole idle window, the load that
            # stretched partials is gone, and the next stream's first partial must not wait.
            if self.partial_scale != 1.0:
                self._note("partial_interval", f"×{self.partial_scale:.2f} → ×1.00: idle")
            self.partial_scale = 1.0
        self._busy.append((now, now - began, audio_s))
        while self._busy and self._busy[0][0] < now - BUSY_WINDOW_S:
            self._busy.popleft()
        wall = min(BUSY_WINDOW_S, now - self._started_at)
        share = sum(b for _, b, _ in self._busy) / wall if wall > 0.5 else 0.0
        if lane_walls:
            # The worker and the lanes share the machine's cores (with whatever else runs
            # there): partials are stretched when either is short of time.
            busy = 0.0
            for walls in lane_walls:
                while walls and walls[0][0] < now - BUSY_WINDOW_S:
                    walls.popleft()
                busy += sum(b for _, b in walls)
            lanes = busy / (wall * len(lane_walls)) if wall > 0.5 else 0.0
            share = max(share, lanes)
        self.share = share
        while self._recent_finals and self._recent_finals[0][0] < now - BUSY_WINDOW_S:
            self._recent_finals.popleft()
        late = sorted(lat for _, lat in self._recent_finals)
        median_late = late[len(late) // 2] if late else 0.0
        # Slow finals stretch partials too: the busy share does not see cores taken by others.
        slow = median_late > self.options.adaptive_final_s
        if self.options.adaptive_partials and now - self._scale_changed_at >= SCALE_PERIOD_S:
            if share > BUSY_HIGH or slow:
                why = (
                    f"busy share {share:.2f} above {BUSY_HIGH}"
                    if share > BUSY_HIGH
                    else f"recent finals {median_late:.2f} s late (median), above "
                    f"{self.options.adaptive_final_s:g} s"
                )
                self._rescale(min(MAX_PARTIAL_SCALE, self.partial_scale * SCALE_STEP), why)
            elif share < BUSY_LOW and self.partial_scale > 1.0:
                why = f"busy share {share:.2f} below {BUSY_LOW}"
                self._rescale(max(1.0, self.partial_scale / SCALE_STEP), why)
        if self._reducing and now >= self._reduced_until:
            self._reducing = False
            self._note("finals_full", f"no final reduced for {BUSY_WINDOW_S:g} s")
        # Overload is about finals only: a busy worker with stretched partials is the policy
        # working. Finals fall behind when the median stream's audio waits for the VAD or
        # recent finals come late.
        if median_late > self.options.overload_final_s or self._lagging:
            if now >= self._overload_until:
                self._note(
                    "overload",
                    f"recent finals {median_late:.2f} s late (median), above "
                    f"{self.options.overload_final_s:g} s: new streams refused"
                    if median_late > self.options.overload_final_s
                    else f"the median stream's audio waits beyond {self.options.overload_lag_s:g}"
                    " s for the VAD: new streams refused",
                )
            self._overload_until = now + OVERLOAD_HOLD_S
        elif self._overloaded and now >= self._overload_until:
            self._note("overload_cleared", f"finals on time for {OVERLOAD_HOLD_S:g} s")
        self._overloaded = now < self._overload_until

    def _rescale(self, scale: float, why: str) -> None:
        if scale != self.partial_scale:
            self._note("partial_interval", f"×{self.partial_scale:.2f} → ×{scale:.2f}: {why}")
        self.partial_scale = scale
        self._scale_changed_at = self._clock()

    def _note(self, what: str, why: str) -> None:
        with self._changes_lock:
            self.changes.append((self._clock(), what, why))
            self.changes_total += 1

    def changes_since(self, seen: int) -> tuple[list[LoadChange], int]:
        """The changes after the first ``seen`` ever noted (those still kept), and the count
        to pass next time."""
        with self._changes_lock:
            fresh = self.changes_total - seen
            return (list(self.changes)[-fresh:] if fresh > 0 else []), self.changes_total

    # ---- decisions

    def overloaded(self, streams_open: bool) -> bool:
        # Rounds only run while there is work, so the flag is re-read against the clock: it
        # ends when its hold time does, and with no stream open nothing can be behind.
        return self._overloaded and streams_open and self.holding()

    def holding(self) -> bool:
        """Whether the overload hold still runs: a stream opened beside another now is refused
        (true after load ends, while the hold lasts; tests wait for it between cases)."""
        return self._clock() < self._overload_until

    def interval_samples(self, partial_interval_ms: int) -> int:
        """A stream's partial interval, stretched by load, in samples."""
        return round(partial_interval_ms * self.partial_scale * SAMPLE_RATE_HZ / 1000)

    def speculation_allowed(self) -> bool:
        """Speculations may be wasted work: none while the engine is short of time."""
        return not (self.options.adaptive_partials and self.share > BUSY_HIGH)

    def reduce_finals(self, due: int, streams: int, idle_threads: int) -> bool:
        """Whether ``due`` finals handed out now get the cheaper settings (adaptive_finals).

        Never with one stream: its finals cannot queue behind others', and its results then
        depend on its audio alone whatever the machine's load.
        """
        o = self.options
        if not o.adaptive_finals or streams < 2:
            return False
        if due > idle_threads or self._lagging:
            # Some of them would wait for a whole final's decoding.
            self._reduce_why = (
                f"{due} finals due, {idle_threads} decoder(s) idle"
                if due > idle_threads
                else f"audio waits beyond {o.overload_lag_s:g} s for the VAD"
            )
            return True
        now = self._clock()
        recent = sorted(lat for at, lat in self._recent_finals if at >= now - BUSY_WINDOW_S)
        late = recent[len(recent) // 2] if recent else 0.0
        self._reduce_why = f"recent finals {late:.2f} s late, above {o.adaptive_final_s:g} s"
        return bool(recent) and late > o.adaptive_final_s

    def finals_reduced(self) -> None:
        """Finals were just reduced: speculations are too for the next window; partials
        give way first, so they are stretched now if they were not yet."""
        if not self._reducing:
            if self.options.adaptive_partials and self.partial_scale == 1.0:
                self._rescale(SCALE_STEP, f"finals queue ({self._reduce_why})")
            self._reducing = True
            self._note("finals_reduced", self._reduce_why)
        self._reduced_until = self._clock() + BUSY_WINDOW_S

    def reducing(self) -> bool:
        """Whether finals were reduced within the last window."""
        return self._clock() < self._reduced_until

    def max_batch(self) -> int:
        """The most utterances decoded together now (the options', or the cap if lower)."""
        cap = self.batch_limit
        return self.options.max_batch if cap is None else max(1, min(cap, self.options.max_batch))

    def speculations_reduced(self, streams: int) -> bool:
        """Speculations are reduced while finals are: a full one costs two to three reduced
        finals, and with finals that close together it rarely comes out earlier."""
        return self.options.adaptive_finals and streams > 1 and self._clock() < self._reduced_until

    # ---- figures for stats()

    def rtf(self) -> float:
        """Compute seconds per audio second over the window."""
        busy = sum(b for _, b, _ in self._busy)
        audio = sum(a for _, _, a in self._busy)
        return busy / audio if audio > 0 else 0.0

    def latency_percentile(self, q: float) -> float:
        values = sorted(self._latencies)
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]
