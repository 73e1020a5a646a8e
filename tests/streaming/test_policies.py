"""The scheduler's decisions, called directly: load, lane hand-out, partials, speculations.

They are plain objects with an injected clock and no threads, so every rule is checked here
without a model; the recognizer's tests check that the worker follows them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest

from audiototext.streaming._decode import Hypothesis
from audiototext.streaming._final_plan import FinalPlanner
from audiototext.streaming._lanes import FinalBatch, FinalJob, LaneDispatcher, PartialBatch
from audiototext.streaming._load import LoadMonitor
from audiototext.streaming._partials import PartialPlanner
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.state import OpenUtterance, PendingFinal, Speculation, StreamSchedule

if TYPE_CHECKING:
    from audiototext.streaming.stream import RecognitionStream


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _monitor(clock: Clock, **options: Any) -> LoadMonitor:
    return LoadMonitor(RecognizerOptions(**options), clock)


# ---- LoadMonitor


def test_overload_means_finals_fall_behind_not_a_busy_worker() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_partials=True)
    clock.now += 10.0
    # A worker busy all the time (rounds of 1 s of wall each second), finals on time.
    for _ in range(5):
        load.record_final(clock.now - 0.3)
        clock.now += 1.0
        load.record_round(clock.now - 1.0, 1.0)
    assert load.share > 0.75
    assert load.partial_scale > 1.0  # partials gave way
    assert not load.overloaded(streams_open=True)
    # Finals of the last seconds took 2.5 s: overloaded (new streams are refused) ...
    for _ in range(20):
        load.record_final(clock.now - 2.5)
    load.record_round(clock.now - 1.0, 1.0)
    assert load.overloaded(streams_open=True)
    assert not load.overloaded(streams_open=False)  # with no stream nothing can be behind
    # ... and held for a while after the last late round, not beyond.
    clock.now += 4.0
    assert load.overloaded(streams_open=True) and load.holding()
    clock.now += 1.5
    assert not load.overloaded(streams_open=True) and not load.holding()


def test_partials_are_not_stretched_after_an_idle_window() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_partials=True)
    for _ in range(10):  # busy the whole time: partials stretched
        clock.now += 1.0
        load.record_round(clock.now - 1.0, 1.0)
    assert load.partial_scale > 1.0
    clock.now += 60.0  # no round for a minute (no stream had audio)
    load.record_round(clock.now - 0.01, 0.1)
    assert load.partial_scale == 1.0


def test_load_changes_are_recorded_with_their_reasons_in_order() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_partials=True)
    clock.now += 10.0
    for _ in range(3):  # busy: partials stretched twice
        clock.now += 1.0
        load.record_round(clock.now - 1.0, 1.0)
    for _ in range(5):  # finals 2.5 s late: overload
        load.record_final(clock.now - 2.5)
    clock.now += 1.0
    load.record_round(clock.now - 1.0, 1.0)
    for _ in range(12):  # idle but for short rounds, finals on time: relaxed, cleared
        load.record_final(clock.now - 0.1)
        clock.now += 1.0
        load.record_round(clock.now - 0.01, 0.1)
    kinds = [what for _, what, _ in load.changes]
    assert kinds[0] == "partial_interval"
    assert kinds.count("partial_interval") >= 4  # stretched, then relaxed step by step
    assert "overload" in kinds and "overload_cleared" in kinds
    assert kinds.index("overload") < kinds.index("overload_cleared")
    assert load.changes_total == len(load.changes)
    fresh, seen = load.changes_since(0)
    assert fresh == list(load.changes) and seen == load.changes_total
    assert load.changes_since(seen) == ([], seen)
    assert load.changes_since(seen - 2) == (list(load.changes)[-2:], seen)
    _, _, why = load.changes[0]
    assert why.startswith("×1.00 → ×1.50: busy share")
    assert [why for _, what, why in load.changes if what == "partial_interval"][-1].startswith(
        "×1.50 → ×1.00: busy share"
    )
    (overload,) = [why for _, what, why in load.changes if what == "overload"]
    assert "2.50 s late (median), above 1 s" in overload
    times = [at for at, _, _ in load.changes]
    assert times == sorted(times)


def test_the_first_reduced_final_stretches_partials_first() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_partials=True, adaptive_finals=True)
    assert load.partial_scale == 1.0
    assert load.reduce_finals(due=3, streams=3, idle_threads=2)
    load.finals_reduced()
    assert load.partial_scale > 1.0 and load.reducing()
    kinds = [(what, why) for _, what, why in load.changes]
    assert kinds[0][0] == "partial_interval" and "finals queue (3 finals due" in kinds[0][1]
    assert kinds[1] == ("finals_reduced", "3 finals due, 2 decoder(s) idle")
    load.finals_reduced()  # the same period: no new change
    assert len(load.changes) == 2
    clock.now += 6.0  # a window without reduced finals: full again
    load.record_round(clock.now - 0.01, 0.1)
    assert not load.reducing()
    assert [what for _, what, _ in load.changes][-1] == "finals_full"


def test_batch_cap_set_from_outside() -> None:
    load = _monitor(Clock(), max_batch=8)
    assert load.max_batch() == 8
    load.batch_limit = 2
    assert load.max_batch() == 2
    load.batch_limit = 0  # never below one
    assert load.max_batch() == 1
    load.batch_limit = 50  # never above the options'
    assert load.max_batch() == 8
    load.batch_limit = None
    assert load.max_batch() == 8


def test_lag_of_the_median_stream_is_overload() -> None:
    clock = Clock()
    load = _monitor(clock, overload_lag_s=2.0)
    load.observe_lag([0, 16_000 * 3, 16_000 * 3])
    load.record_round(clock.now, 0.0)
    assert load.overloaded(streams_open=True)
    clock.now += 10.0
    load.observe_lag([0, 0, 16_000 * 3])  # one stream behind is not the median
    load.record_round(clock.now, 0.0)
    assert not load.overloaded(streams_open=True)


def test_partial_interval_stretches_one_step_per_period_and_relaxes() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_partials=True)
    assert load.interval_samples(500) == 8_000
    clock.now += 5.0
    load.record_round(clock.now - 5.0, 5.0)  # busy the whole window
    assert load.partial_scale == 1.5
    load.record_round(clock.now - 5.0, 5.0)  # same period: no second step
    assert load.partial_scale == 1.5
    assert load.interval_samples(500) == 12_000
    assert not load.speculation_allowed()  # no spare compute for work that may be wasted
    for _ in range(30):
        clock.now += 1.0
        load.record_round(clock.now - 5.0, 5.0)
    assert load.partial_scale == 8.0  # the limit
    for _ in range(30):
        clock.now += 1.0
        load.record_round(clock.now, 1.0)  # idle rounds
    assert load.partial_scale == 1.0 and load.speculation_allowed()
    off = _monitor(clock, adaptive_partials=False)
    clock.now += 5.0
    off.record_round(clock.now - 5.0, 5.0)
    assert off.partial_scale == 1.0 and off.speculation_allowed()


def test_busy_lanes_stretch_partials_too() -> None:
    import collections

    clock = Clock()
    load = _monitor(clock)
    clock.now += 5.0
    walls = [collections.deque([(clock.now, 4.5)]), collections.deque([(clock.now, 4.5)])]
    load.record_round(clock.now, 0.1, walls)  # the worker idle, both lanes busy
    assert load.share == 0.9 and load.partial_scale == 1.5
    clock.now += 10.0
    load.record_round(clock.now, 0.1, walls)
    assert all(not w for w in walls)  # records beyond the window are dropped


def test_reduced_finals_only_with_several_streams_and_finals_queuing() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_finals=True)
    assert not load.reduce_finals(5, 1, idle_threads=2)  # one stream: never
    assert not load.reduce_finals(2, 4, idle_threads=2)  # the two idle lanes take one each
    assert load.reduce_finals(3, 4, idle_threads=2)
    assert load.reduce_finals(2, 4, idle_threads=1)  # a lane is busy: one of two would wait
    assert not load.reduce_finals(1, 4, idle_threads=1)
    for _ in range(3):
        load.record_final(clock.now - 0.9)  # recent finals were late
    assert load.reduce_finals(1, 4, idle_threads=2)
    assert not load.reduce_finals(1, 1, idle_threads=2)
    clock.now += 6.0  # out of the window
    assert not load.reduce_finals(1, 4, idle_threads=2)
    off = _monitor(clock, adaptive_finals=False)
    assert not off.reduce_finals(8, 8, idle_threads=0)


def test_speculations_are_reduced_while_finals_are() -> None:
    clock = Clock()
    load = _monitor(clock, adaptive_finals=True)
    assert not load.speculations_reduced(4)
    load.finals_reduced()
    assert load.speculations_reduced(4) and not load.speculations_reduced(1)
    clock.now += 5.1
    assert not load.speculations_reduced(4)


def test_latency_percentiles_and_rtf() -> None:
    clock = Clock()
    load = _monitor(clock)
    for latency in (0.1, 0.2, 0.3, 0.4, 1.0):
        load.record_final(clock.now - latency)
    assert load.latency_percentile(0.5) == pytest.approx(0.3)
    assert load.latency_percentile(0.95) == pytest.approx(1.0)
    clock.now += 1.0
    load.record_round(clock.now - 0.5, 2.0)
    assert load.rtf() == 0.25


# ---- LaneDispatcher


def _final_job(triggered_at: float) -> FinalJob:
    """A stand-in with only what the dispatcher reads."""
    return cast(FinalJob, SimpleNamespace(final=SimpleNamespace(triggered_at=triggered_at)))


def test_a_pile_of_finals_is_handed_out_oldest_first_in_small_batches() -> None:
    dispatcher = LaneDispatcher()
    jobs = [_final_job(float(t)) for t in (5, 3, 9, 1, 7, 2, 8, 4, 6, 0, 11, 10)]
    shares = dispatcher.hand_out_finals(jobs, idle=2)
    # Two idle lanes, twelve finals waiting: four each, the oldest first; the rest wait.
    assert [[j.final.triggered_at for j in s] for s in shares] == [
        [0.0, 1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0, 7.0],
    ]
    # With both lanes busy nothing is handed out.
    assert dispatcher.hand_out_finals(jobs, idle=0) == []
    # Few finals: one lane each, no empty shares.
    assert [len(s) for s in dispatcher.hand_out_finals(jobs[:3], idle=2)] == [2, 1]


def test_speculations_are_split_over_the_idle_lanes() -> None:
    # Four streams in a pause at once: two for each idle lane, not four on one.
    assert LaneDispatcher().split([0, 1, 2, 3], idle=2) == [[0, 1], [2, 3]]
    assert LaneDispatcher().split([0, 1, 2, 3], idle=1) == [[0, 1, 2, 3]]
    assert LaneDispatcher().split([], idle=2) == []


def test_partials_never_take_the_last_idle_lane_and_give_way_to_finals() -> None:
    dispatcher = LaneDispatcher()
    assert not dispatcher.partials_may_start(1) and dispatcher.partials_may_start(2)
    partials = PartialBatch([], np.zeros((0, 80, 0), np.float32), [], [], [], [])
    finals = FinalBatch([], [])
    assert dispatcher.partials_to_stop([partials, finals, None]) == [partials]


# ---- PartialPlanner


def _stream(**fields: object) -> RecognitionStream:
    """A stand-in with only the fields the planners read."""
    base: dict[str, object] = {
        "options": SimpleNamespace(interim_results=True, partial_interval_ms=500),
        "utterance": OpenUtterance(0, 0),
        "pending_finals": [],
        "finishing": False,
        "tentative_end": None,
        "vad_position": 0,
        "schedule": StreamSchedule(),
        "closed": False,
    }
    base.update(fields)
    return cast("RecognitionStream", SimpleNamespace(**base))


def test_partials_are_due_per_interval_of_new_speech_stalest_first() -> None:
    planner = PartialPlanner(RecognizerOptions(), _monitor(Clock()))
    young = _stream(vad_position=4_000)  # below min_partial_ms
    fresh = _stream(vad_position=20_000, utterance=OpenUtterance(1, 0, last_partial_at=16_000))
    due = _stream(vad_position=20_000, utterance=OpenUtterance(2, 0, last_partial_at=8_000))
    far = _stream(vad_position=40_000, utterance=OpenUtterance(3, 0, last_partial_at=0))
    paused = _stream(vad_position=40_000, tentative_end=30_000)
    quiet = _stream(vad_position=40_000, options=SimpleNamespace(interim_results=False))
    jobs = planner.due([young, fresh, due, far, paused, quiet])
    assert [(j.session, j.start, j.stop, j.missed) for j in jobs] == [
        (far, 0, 40_000, 4),  # five intervals passed: one partial for the newest audio
        (due, 0, 20_000, 0),
    ]
    final = PendingFinal(0, 0, 40_000, 0.0, (), "", False, last_partial_at=8_000)
    assert planner.missed_before(due, final) == 4
    assert planner.missed_before(quiet, final) == 0


def test_partial_encoder_lengths_come_in_half_second_buckets() -> None:
    bucket = PartialPlanner.bucket_frames
    assert bucket(16_000, 0.5, 3000) == 150
    assert bucket(16_160, 0.5, 3000) == 200
    assert bucket(16_000 * 40, 0.5, 3000) == 3000


def test_looping_or_noisy_partials_do_not_reach_the_agreement() -> None:
    def hyp(**k: Any) -> Hypothesis:
        fields: dict[str, Any] = {
            "prefix_tokens": (),
            "new_tokens": (1, 2),
            "text": "Hello there.",
            "prefix_text": "",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "compression_ratio": 1.0,
            "truncated": False,
        }
        fields.update(k)
        return Hypothesis(**fields)

    assert PartialPlanner.usable(hyp())
    assert not PartialPlanner.usable(hyp(truncated=True))
    assert not PartialPlanner.usable(hyp(compression_ratio=2.1))
    assert not PartialPlanner.usable(hyp(no_speech_prob=0.9, avg_logprob=-1.5))
    assert PartialPlanner.usable(hyp(prefix_tokens=(5,), no_speech_prob=0.9, avg_logprob=-1.5))


# ---- FinalPlanner


def _pausing(k: int, **fields: object) -> RecognitionStream:
    return _stream(**{"tentative_end": 16_000 + k, "vad_position": 20_000, **fields})


def test_speculations_due_together_beyond_the_idle_lanes_are_reduced() -> None:
    """Streams that pause together (opened together): their speculations are reduced as
    finals due together are, so that first finals skip the temperature fallback."""

    def due(n: int, streams: int, adaptive: bool = True) -> list[bool]:
        clock = Clock()
        options = RecognizerOptions(adaptive_finals=adaptive)
        planner = FinalPlanner(options, LoadMonitor(options, clock), clock)
        others = [_stream(utterance=None) for _ in range(streams - n)]
        jobs = planner.due_speculations([*(_pausing(k) for k in range(n)), *others], 2)
        assert len(jobs) == n
        return [j.reduced for j in jobs]

    assert due(1, 1) == [False]  # one stream: never
    assert due(2, 4) == [False, False]  # the two idle lanes take one each
    assert due(3, 4) == [True, True, True]
    assert due(3, 4, adaptive=False) == [False, False, False]


def test_a_speculation_waits_for_its_pause_and_is_made_once() -> None:
    clock = Clock()
    options = RecognizerOptions(speculation_pause_ms=50)
    planner = FinalPlanner(options, LoadMonitor(options, clock), clock)
    s = _pausing(0, vad_position=16_000 + 799)
    assert planner.due_speculations([s], 2) == []
    s.vad_position = 16_000 + 800  # 50 ms of pause
    (job,) = planner.due_speculations([s], 2)
    assert (job.final.stop, job.final.triggered_at, job.speculative) == (16_000, clock.now, True)
    # With several streams open, at least 100 ms.
    assert planner.due_speculations([s, _stream(utterance=None)], 2) == []
    planner.keep_speculation(job, "Hello.")
    assert planner.due_speculations([s], 2) == []  # decoded already
    s.schedule.speculation = None
    s.schedule.speculation_in_flight = (0, 16_000)
    assert planner.due_speculations([s], 2) == []  # one at a time
    off = RecognizerOptions(speculative_finals=False)
    assert FinalPlanner(off, LoadMonitor(off, clock), clock).due_speculations([s], 2) == []


def test_a_final_uses_the_speculation_on_exactly_its_audio() -> None:
    options = RecognizerOptions()
    planner = FinalPlanner(options, LoadMonitor(options))
    schedule = StreamSchedule()
    final = PendingFinal(3, 100, 900, 0.0, (), "", False, 100)
    assert planner.take_speculation(schedule, final) is None
    schedule.speculation = Speculation(3, 100, 800, "Early.", 0)  # the speaker went on
    assert planner.take_speculation(schedule, final) is None
    assert schedule.speculation is None and planner.speculations_wasted == 1
    schedule.speculation = Speculation(3, 100, 900, "Right.", 0)
    spec = planner.take_speculation(schedule, final)
    assert spec is not None and spec.text == "Right." and planner.speculations_used == 1
    # A newer speculation replacing an unused one wastes it.
    job = cast(
        FinalJob,
        SimpleNamespace(
            session=SimpleNamespace(schedule=schedule),
            final=final,
            audio_start=0,
            began_at=0,
            cpu_s=0.0,
            reduced=False,
            decode_s=0.0,
            batch=1,
        ),
    )
    planner.keep_speculation(job, "One.")
    planner.keep_speculation(job, "Two.")
    assert planner.speculations_wasted == 2 and schedule.speculation.text == "Two."


def test_void_speculations_are_cancelled_only_when_every_stream_went_on() -> None:
    def job(stream: RecognitionStream, stop: int) -> FinalJob:
        final = SimpleNamespace(utterance_id=0, stop=stop)
        return cast(FinalJob, SimpleNamespace(session=stream, final=final))

    still = _stream(tentative_end=16_000)
    went_on = _stream(tentative_end=None)
    ended_there = _stream(pending_finals=[SimpleNamespace(utterance_id=0, stop=16_000)])
    ended_later = _stream(pending_finals=[SimpleNamespace(utterance_id=0, stop=30_000)])
    closed = _stream(closed=True)
    is_void = FinalPlanner.is_void
    assert not is_void(job(still, 16_000)) and not is_void(job(ended_there, 16_000))
    assert is_void(job(went_on, 16_000)) and is_void(job(ended_later, 16_000))
    assert is_void(job(closed, 16_000)) and is_void(job(_stream(utterance=None), 16_000))
    options = RecognizerOptions()
    planner = FinalPlanner(options, LoadMonitor(options))
    mixed = FinalBatch([job(still, 16_000), job(went_on, 16_000)], [])
    void = FinalBatch([job(went_on, 16_000), job(closed, 16_000)], [])
    assert planner.to_cancel([mixed, void]) == [void]
    void.cancel = True
    assert planner.to_cancel([mixed, void]) == []


def test_an_utterances_first_partial_is_due_at_min_partial_ms_and_goes_first() -> None:
    clock = Clock()
    early = PartialPlanner(RecognizerOptions(), _monitor(clock))
    late = PartialPlanner(RecognizerOptions(early_partials=False), _monitor(clock))
    new = _stream(vad_position=4_800)  # 300 ms of utterance: min_partial_ms, not an interval
    assert [j.session for j in early.due([new])] == [new]
    assert late.due([new]) == []
    # A try that showed nothing: the next after min_partial_ms of new audio, not an interval.
    tried = OpenUtterance(1, 0, last_partial_at=4_800)
    assert early.due([_stream(vad_position=9_000, utterance=tried)]) == []
    assert len(early.due([_stream(vad_position=9_600, utterance=tried)])) == 1
    # Once text is shown, the interval again.
    shown = OpenUtterance(2, 0, last_partial_at=9_600, shown_text=True)
    assert early.due([_stream(vad_position=14_400, utterance=shown)]) == []
    # A stream's first partial goes before other streams' refreshes, however stale.
    stale = _stream(
        vad_position=40_000, utterance=OpenUtterance(3, 0, last_partial_at=8_000, shown_text=True)
    )
    fresh = _stream(vad_position=40_000, utterance=OpenUtterance(4, 30_000, last_partial_at=30_000))
    assert [j.session for j in early.due([stale, fresh])] == [fresh, stale]
    assert [j.session for j in late.due([stale, fresh])] == [stale, fresh]


def test_an_utterances_first_shown_partial_must_be_likely() -> None:
    def hyp(avg_logprob: float) -> Hypothesis:
        return Hypothesis((), (1, 2), "Go tomorrow", "", avg_logprob, 0.3, 1.0, False)

    planner = PartialPlanner(RecognizerOptions(), _monitor(Clock()))
    assert planner.confident(hyp(-0.6))
    assert not planner.confident(hyp(-0.96))
    anything = PartialPlanner(RecognizerOptions(first_partial_logprob=None), _monitor(Clock()))
    assert anything.confident(hyp(-3.0))
    with pytest.raises(ValueError, match="first_partial_logprob"):
        RecognizerOptions(first_partial_logprob=0.5)


def test_the_words_before_a_greedy_loop_are_the_first_text() -> None:
    from audiototext.streaming._partials import loop_start

    def words(text: str) -> list[str]:
        return [" " + w for w in text.split()]

    assert loop_start(words("The weather forecast, the weather forecast, the weather fore")) == 3
    assert loop_start(words("My phone, my phone, my phone, my")) == 2
    assert loop_start(words("Please take a seat")) == 0
    loop = Hypothesis((), (1,) * 20, "My phone, my phone, my phone", "", -0.5, 0.2, 3.2, True)
    assert PartialPlanner(RecognizerOptions(), _monitor(Clock())).salvage(loop, words(loop.text))
    late = PartialPlanner(RecognizerOptions(early_partials=False), _monitor(Clock()))
    assert late.salvage(loop, words(loop.text)) == 0


def test_an_unsure_first_try_is_shown_as_far_as_the_next_agrees() -> None:
    agree = PartialPlanner(RecognizerOptions(first_partial_agreement=True), _monitor(Clock()))
    assert agree.agreed_with_unsure((" Good", " mor-"), (" good", " morning", " every")) == 1
    assert agree.agreed_with_unsure((), (" Good",)) == 0  # the first unsure try: held back
    assert agree.agreed_with_unsure((" Go", " tomorrow"), (" Good", " morning")) == 0
    default = PartialPlanner(RecognizerOptions(), _monitor(Clock()))
    assert default.agreed_with_unsure((" Good",), (" Good",)) == 0
