"""Watch-time crediting rules (courses/watch.py): concrete cases for every heartbeat rule,
the interval algebra, storage, and property tests for SAFETY (no beat stream buys more
media time than the server clock allows), LIVENESS (an honest viewer always completes)
and known ATTACKS.

Wall times start at a realistic epoch (T0): float precision there is ~0.24 µs, which is
why bounds are checked with a 1 ms epsilon.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from courses.watch import (
    BEAT_EVENTS,
    DEFAULT_GAP,
    REANCHOR_COST,
    REJECTION_REASONS,
    Beat,
    BeatOutcome,
    Interval,
    RunState,
    WatchPolicy,
    add_interval,
    clip,
    coverage,
    dumps,
    intervals_digest,
    is_complete,
    judge_beat,
    loads,
    merge,
    total,
)

T0 = 1_700_000_000.0
EPS = 1e-3
POLICY = WatchPolicy(duration=600.0)


class Player:
    """Feeds beats to judge_beat like the service layer does and keeps the watched set."""

    def __init__(self, policy: WatchPolicy = POLICY, state: RunState | None = None) -> None:
        self.policy = policy
        self.state = state or RunState()
        self.watched: list[Interval] = []
        self.outcomes: list[BeatOutcome] = []
        self.seq = 0

    def send(self, beat: Beat) -> BeatOutcome:
        out = judge_beat(self.state, beat, self.policy)
        self.state = out.state
        if out.credited is not None:
            self.watched = add_interval(self.watched, out.credited)
        self.outcomes.append(out)
        return out

    def beat(self, position: float, at: float, event: str = "tick") -> BeatOutcome:
        """Next seq, ``at`` seconds after T0."""
        self.seq += 1
        return self.send(Beat(self.seq, position, T0 + at, event))

    def rejections(self) -> list[str | None]:
        return [o.rejected for o in self.outcomes]

    def complete(self) -> bool:
        return is_complete(self.watched, self.policy)


def after(*beats: tuple[float, float], policy: WatchPolicy = POLICY) -> Player:
    """A player that has sent ``(position, seconds after T0)`` beats with seqs 1, 2, ..."""
    p = Player(policy)
    for pos, at in beats:
        p.beat(pos, at)
    return p


# --- constants --------------------------------------------------------------------------------


def test_rejection_reasons_for_the_service_layer() -> None:
    assert REJECTION_REASONS == ("replayed", "out_of_range", "jump", "superseded", "not_started")
    assert "too_fast" not in REJECTION_REASONS


def test_reanchor_cost_pays_for_the_default_merge_gap() -> None:
    assert REANCHOR_COST >= DEFAULT_GAP == 0.25


# --- rule 1: replayed -------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [3, 2, 0, -5])
def test_seq_not_above_last_is_replayed_and_changes_nothing(seq: int) -> None:
    p = after((0, 0), (5, 5), (10, 10))
    before = p.state
    out = judge_beat(before, Beat(seq, 15.0, T0 + 15), POLICY)
    assert out == BeatOutcome(before, None, "replayed")
    assert out.state is before


def test_out_of_order_beat_is_replayed_even_if_plausible() -> None:
    p = Player()
    p.send(Beat(1, 0.0, T0))
    p.send(Beat(3, 10.0, T0 + 10))
    out = p.send(Beat(2, 5.0, T0 + 10.01))
    assert out.rejected == "replayed"
    assert out.credited is None
    assert p.state.last_seq == 3


def test_seqs_may_skip_numbers() -> None:
    p = Player()
    p.send(Beat(1, 0.0, T0))
    out = p.send(Beat(7, 5.0, T0 + 5))  # beats 2..6 were lost on the network
    assert out.credited == (0.0, 5.0)
    assert p.state.last_seq == 7


# --- rule 2: out_of_range ---------------------------------------------------------------------


@pytest.mark.parametrize("position", [math.nan, math.inf, -math.inf, -0.001, -600.0, 602.001, 1e9])
def test_impossible_position_is_out_of_range_and_does_not_consume_seq(position: float) -> None:
    p = after((0, 0), (5, 5))
    before = p.state
    out = judge_beat(before, Beat(3, position, T0 + 10), POLICY)
    assert out == BeatOutcome(before, None, "out_of_range")
    assert out.state is before
    retry = judge_beat(before, Beat(3, 10.0, T0 + 10), POLICY)  # the same seq still works
    assert retry.rejected is None
    assert retry.credited == (5.0, 10.0)


def test_out_of_range_on_first_beat_leaves_session_unstarted() -> None:
    out = judge_beat(RunState(), Beat(1, -1.0, T0), POLICY)
    assert out == BeatOutcome(RunState(), None, "out_of_range")


def test_position_up_to_duration_plus_tolerance_is_accepted_but_credit_stops_at_duration() -> None:
    p = after((596.0, 0))
    out = p.beat(602.0, 4)  # 600 + tolerance 2.0: timer drift past the end
    assert out.rejected is None
    assert out.credited == (596.0, 600.0)
    out = p.beat(602.0, 5)
    assert (out.rejected, out.credited) == (None, None)


def test_negative_zero_position_is_in_range() -> None:
    assert judge_beat(RunState(), Beat(1, -0.0, T0), POLICY).rejected is None


def test_server_wall_must_be_finite() -> None:
    with pytest.raises(ValueError, match="wall"):
        judge_beat(RunState(), Beat(1, 0.0, math.nan), POLICY)


@pytest.mark.parametrize("seq", [1.0, True, "1"])
def test_seq_must_be_an_int(seq: object) -> None:
    with pytest.raises(TypeError):
        judge_beat(RunState(), Beat(seq, 0.0, T0), POLICY)  # type: ignore[arg-type]


# --- rule 3: first beat -----------------------------------------------------------------------


@pytest.mark.parametrize("position", [0.0, 42.0, 600.0])
def test_first_beat_anchors_without_credit(position: float) -> None:
    out = judge_beat(RunState(), Beat(1, position, T0), POLICY)
    assert out == BeatOutcome(RunState(1, position, T0, position, T0), None, None)


def test_state_without_anchor_is_treated_as_a_fresh_run() -> None:
    """A caller that lost the anchor (e.g. only stored last_position) gets no credit."""
    half = RunState(last_seq=4, last_position=10.0, last_wall=T0)
    out = judge_beat(half, Beat(5, 15.0, T0 + 5), POLICY)
    assert out == BeatOutcome(RunState(5, 15.0, T0 + 5, 15.0, T0 + 5), None, None)


# --- rule 4: long wall-clock gap ---------------------------------------------------------------


def test_gap_longer_than_max_beat_gap_reanchors_without_credit() -> None:
    p = after((0, 0), (10, 10))
    out = p.beat(25.0, 25.001)  # 15.001 s since the last beat
    assert out == BeatOutcome(RunState(3, 25.0, T0 + 25.001, 25.0, T0 + 25.001), None, None)
    assert p.beat(30.0, 30.001).credited == (25.0, 30.0)


def test_gap_of_exactly_max_beat_gap_still_credits() -> None:
    p = after((0, 0), (10, 10))
    out = p.beat(25.0, 25.0)
    assert (out.rejected, out.credited) == (None, (10.0, 25.0))


def test_ten_minute_pause_then_ten_minutes_of_claimed_progress_gets_nothing() -> None:
    p = after((0, 0), (5, 5))
    out = p.beat(605.0 - 5.0, 605)
    assert (out.rejected, out.credited) == (None, None)
    assert p.watched == [(0.0, 5.0)]


# --- rule 5: seek back --------------------------------------------------------------------------


def test_seek_back_reanchors_without_credit() -> None:
    p = after((0, 0), (5, 5), (10, 10))
    out = p.beat(3.0, 11, "seeked")
    # The run had 2 s of slack left, so after the 0.25 s charge the bucket is refilled to full
    # and the anchor is exactly (wall, position).
    assert out == BeatOutcome(RunState(4, 3.0, T0 + 11, 3.0, T0 + 11), None, None)
    assert p.beat(8.0, 16).credited == (3.0, 8.0)
    assert p.watched == [(0.0, 10.0)]


def test_second_quick_seek_back_pays_the_reanchor_cost() -> None:
    p = after((0, 0), (10, 10), (3, 11))
    out = p.beat(1.0, 11)
    assert out.state.anchor_position == 1.0
    assert out.state.anchor_wall == pytest.approx(T0 + 11 + REANCHOR_COST)


# --- rule 6: crediting forward progress and "jump" ---------------------------------------------


def test_forward_progress_within_wall_clock_is_credited() -> None:
    p = after((0, 0))
    out = p.beat(5.0, 5)
    assert out == BeatOutcome(RunState(2, 5.0, T0 + 5, 0.0, T0), (0.0, 5.0), None)


def test_progress_of_exactly_wall_times_rate_plus_tolerance_is_credited() -> None:
    assert after((0, 0)).beat(7.0, 5).credited == (0.0, 7.0)
    p = after((0, 0), policy=WatchPolicy(600.0, max_rate=2.0))
    assert p.beat(12.0, 5).credited == (0.0, 12.0)


def test_progress_beyond_the_clock_is_a_jump_that_reanchors() -> None:
    p = after((0, 0))
    out = p.beat(7.5, 5)
    assert (out.rejected, out.credited) == ("jump", None)
    assert out.state.anchor_position == 7.5
    # The jump credits nothing, so the 5 s that passed refill the bucket: anchor at the wall.
    assert out.state.anchor_wall == T0 + 5
    assert p.beat(12.5, 10).credited == (7.5, 12.5)


def test_check_is_cumulative_over_the_run_not_per_beat() -> None:
    """Each beat claims +1.5 s per 1 s, within a per-beat slack of 2 s, but the run drifts."""
    p = after((0, 0))
    results = [p.beat(1.5 * i, i).rejected for i in range(1, 6)]
    assert results == [None, None, None, None, "jump"]  # 7.5 > 5 × 1.0 + 2


def test_forward_seek_within_video_is_a_jump() -> None:
    p = after((0, 0), (5, 5), (10, 10))
    out = p.beat(300.0, 11, "seeked")
    assert (out.rejected, out.credited) == ("jump", None)
    assert p.watched == [(0.0, 10.0)]


def test_scrubbing_runs_into_debt_but_a_still_player_is_not_flagged() -> None:
    p = after((0, 0), (10, 10))
    for i in range(12):  # twelve seek backs within a second, 0.25 s charged each
        assert p.beat(9.0 - 0.5 * i, 10.5).rejected is None
    assert p.state.anchor_wall > p.state.last_wall  # the slack is overdrawn
    out = p.beat(p.state.last_position, 11, "pause")
    assert (out.rejected, out.credited) == (None, None)
    # The debt is paid in wall time. 5 s after it is paid off, 5 s of progress credits again.
    assert p.beat(p.state.last_position + 5.0, 11 + 5 + 1.0).credited is not None


def test_idle_beats_at_the_same_position_are_accepted_without_credit() -> None:
    p = after((0, 0), (5, 5))
    out = p.beat(5.0, 10, "pause")
    assert (out.rejected, out.credited) == (None, None)
    assert out.state.anchor_position == 0.0


# --- rule 7: state advancement ---------------------------------------------------------------


def test_accepted_and_jump_beats_advance_seq_position_and_wall() -> None:
    p = after((0, 0))
    p.beat(5.0, 5)
    assert (p.state.last_seq, p.state.last_position, p.state.last_wall) == (2, 5.0, T0 + 5)
    p.beat(100.0, 6)  # jump
    assert (p.state.last_seq, p.state.last_position, p.state.last_wall) == (3, 100.0, T0 + 6)


def test_wall_going_backwards_counts_as_no_time() -> None:
    p = after((0, 0), (5, 5))
    out = p.beat(6.0, 4.9)  # a racing request received "earlier"
    assert out.credited == (5.0, 6.0)
    assert out.state.last_wall == T0 + 5


# --- rule 8: events change nothing -----------------------------------------------------------------


@pytest.mark.parametrize("event", BEAT_EVENTS)
@pytest.mark.parametrize(("position", "at"), [(5.0, 5.0), (300.0, 6.0), (2.0, 7.0), (5.0, 40.0)])
def test_event_never_changes_the_verdict(event: str, position: float, at: float) -> None:
    base = after((0, 0), (3, 3)).state
    tick = judge_beat(base, Beat(3, position, T0 + at, "tick"), POLICY)
    other = judge_beat(base, Beat(3, position, T0 + at, event), POLICY)
    assert other == tick


# --- tolerance is a bucket, not a bank --------------------------------------------------------


def test_idle_heartbeats_cannot_bank_time_for_a_later_jump() -> None:
    """Pause, keep beating every 14 s (under max_beat_gap) for 10 minutes, then claim it."""
    p = after((0, 0))
    for i in range(1, 44):
        assert p.beat(0.0, 14.0 * i).rejected is None
    out = p.beat(600.0, 14.0 * 43 + 1)
    assert (out.rejected, out.credited) == ("jump", None)
    assert p.watched == []


def test_watching_slower_than_the_cap_banks_nothing() -> None:
    policy = WatchPolicy(600.0, max_rate=2.0)
    p = after(*[(5.0 * i, 5.0 * i) for i in range(13)], policy=policy)  # 60 s at 1×
    assert p.watched == [(0.0, 60.0)]
    out = p.beat(125.0, 65)  # 60 s at 2× would be allowed if the unused 60 s were banked
    assert out.rejected == "jump"


# --- policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration": 0.0},
        {"duration": -1.0},
        {"duration": math.nan},
        {"duration": math.inf},
        {"duration": 60.0, "max_rate": 2.5},
        {"duration": 60.0, "max_rate": 0.0},
        {"duration": 60.0, "max_rate": math.nan},
        {"duration": 60.0, "tolerance": -1.0},
        {"duration": 60.0, "max_beat_gap": 0.0},
        {"duration": 60.0, "min_coverage": 1.01},
        {"duration": 60.0, "tail_seconds": -3.0},
    ],
)
def test_invalid_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WatchPolicy(**kwargs)


def test_policy_defaults() -> None:
    p = WatchPolicy(60.0)
    assert (p.max_rate, p.tolerance, p.max_beat_gap, p.min_coverage, p.tail_seconds) == (
        1.0,
        2.0,
        15.0,
        0.98,
        3.0,
    )


# --- is_complete -----------------------------------------------------------------------------------


def test_complete_needs_coverage_and_the_tail() -> None:
    pol = WatchPolicy(100.0)
    assert is_complete([(0, 100)], pol)
    assert is_complete([(0, 50), (51, 100)], pol)  # 99%
    assert not is_complete([(0, 50), (53, 100)], pol)  # 97%
    assert not is_complete([(0, 98)], pol)  # 98% but the last 3 s were skipped
    assert is_complete([(0, 97.3), (97.5, 100)], pol)  # 2.5 of 3 tail seconds: 83%
    assert not is_complete([(0, 97.3), (97.8, 100)], WatchPolicy(100.0, min_coverage=0.99))
    assert not is_complete([(0, 96.0), (96.2, 97.4), (97.8, 100)], pol)  # tail 2.2/3 = 73%


def test_tail_is_capped_for_very_short_videos() -> None:
    pol = WatchPolicy(10.0, min_coverage=0.9)  # tail = min(3, 1) = 1 s
    assert is_complete([(0, 9.05), (9.1, 10)], pol)
    assert not is_complete([(0, 9.0)], pol)


def test_complete_ignores_time_outside_the_video_and_overlaps() -> None:
    pol = WatchPolicy(100.0)
    assert not is_complete([(-50, 50), (50, 60), (0, 60), (100, 300)], pol)
    assert not is_complete([], pol)


# --- interval algebra ------------------------------------------------------------------------------


def test_merge_examples() -> None:
    assert merge([(5, 7), (0, 5)]) == [(0.0, 7.0)]
    assert merge([(0, 1), (1.2, 2)]) == [(0.0, 2.0)]  # 0.2 s apart: joined
    assert merge([(0, 1), (1.25, 2)]) == [(0.0, 1.0), (1.25, 2.0)]  # not closer than the gap
    assert merge([(0, 1), (1.1, 2)], gap=0.0) == [(0.0, 1.0), (1.1, 2.0)]
    assert merge([(0, 1), (1, 2)], gap=0.0) == [(0.0, 2.0)]  # touching always joins
    assert merge([(0, 10), (2, 3), (9, 12)]) == [(0.0, 12.0)]
    assert merge([(3, 3), (5, 4), (math.nan, 1), (0, math.inf), (-math.inf, 0)]) == []
    assert merge([]) == []


@pytest.mark.parametrize("gap", [-0.1, math.nan, math.inf])
def test_merge_refuses_a_bad_gap(gap: float) -> None:
    with pytest.raises(ValueError):
        merge([(0, 1)], gap)


def test_add_interval() -> None:
    assert add_interval([(0.0, 5.0)], (5.0, 10.0)) == [(0.0, 10.0)]
    assert add_interval([(0.0, 5.0), (20.0, 30.0)], (10.0, 12.0)) == [
        (0.0, 5.0),
        (10.0, 12.0),
        (20.0, 30.0),
    ]
    assert add_interval([(0.0, 5.0)], (8.0, 8.0)) == [(0.0, 5.0)]


def test_total_counts_overlaps_once_and_fills_no_gaps() -> None:
    assert total([(0, 5), (3, 8)]) == 8.0
    assert total([(0, 1), (1.1, 2)]) == pytest.approx(1.9)
    assert total([(2, 1)]) == 0.0
    assert total([]) == 0.0


def test_clip_and_coverage() -> None:
    assert clip([(-5, 5), (8, 20), (30, 40)], 10.0) == [(0.0, 5.0), (8.0, 10.0)]
    assert clip([(0, 5)], 0.0) == []
    assert coverage([(-5, 5), (8, 20)], 10.0) == pytest.approx(0.7)
    assert coverage([(0, 5), (0, 5)], 10.0) == 0.5
    assert coverage([(0, 100)], 10.0) == 1.0
    assert coverage([(0, 5)], 0.0) == 0.0
    assert coverage([(0, 5)], math.nan) == 0.0


# --- storage and digest ------------------------------------------------------------------------


def test_dumps_is_canonical_compact_json() -> None:
    assert dumps([(0, 5), (7.25, 9.5)]) == "[[0.0,5.0],[7.25,9.5]]"
    assert dumps([(1.23456, 2.0004)]) == "[[1.235,2.0]]"
    assert dumps([(-0.0001, 0.0)]) == "[[0.0,0.0]]"
    assert dumps([]) == "[]"


@pytest.mark.parametrize("bad", [[(math.nan, 1.0)], [(0.0, math.inf)], [(2.0, 1.0)], [(1.0,)]])
def test_dumps_refuses_what_must_never_be_stored(bad: list[tuple[float, ...]]) -> None:
    with pytest.raises(ValueError):
        dumps(bad)  # type: ignore[arg-type]


def test_loads_reads_dumps_output() -> None:
    assert loads("[[0.0,5.0],[7.25,9.5]]") == [(0.0, 5.0), (7.25, 9.5)]
    assert loads(" [ [0, 5] ] ") == [(0.0, 5.0)]
    assert loads("[]") == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "{}",
        "[1,2]",
        "[[1]]",
        "[[1,2,3]]",
        "[[2,1]]",
        '[["0",1]]',
        "[[true,1]]",
        "[[null,1]]",
        "[[NaN,1]]",
        "[[0,Infinity]]",
        "[[-Infinity,0]]",
        "[[1e999,2e999]]",
        "[[0," + "9" * 400 + "]]",
        "[[0,1]",
        "[[0,1]] x",
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_loads_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_digest_is_sha256_of_the_canonical_text() -> None:
    ivs = [(7.25, 9.5), (0, 5), (4, 5)]
    expected = hashlib.sha256(b"[[0.0,5.0],[7.25,9.5]]").hexdigest()
    assert intervals_digest(ivs) == expected


def test_digest_survives_store_and_reload_when_rounding_changes_the_set() -> None:
    tiny = [(0.0, 5.0), (10.0001, 10.0004)]  # rounds to an empty piece
    assert intervals_digest(tiny) == intervals_digest(loads(dumps(merge(tiny))))
    assert intervals_digest(tiny) == intervals_digest([(0.0, 5.0)])


# --- property tests: interval algebra -------------------------------------------------------------

coord = st.floats(min_value=-20.0, max_value=1000.0, allow_nan=False)
raw_interval = st.tuples(coord, coord)
interval_lists = st.lists(raw_interval, max_size=25)
gaps = st.sampled_from([0.0, 0.001, DEFAULT_GAP, 1.0])


def length_sum(ivs: Iterable[Interval]) -> float:
    return math.fsum(max(0.0, b - a) for a, b in ivs)


@given(interval_lists, gaps)
def test_merge_is_idempotent(ivs: list[Interval], gap: float) -> None:
    once = merge(ivs, gap)
    assert merge(once, gap) == once


@given(st.data(), interval_lists, gaps)
def test_merge_is_order_independent(data: st.DataObject, ivs: list[Interval], gap: float) -> None:
    shuffled = data.draw(st.permutations(ivs))
    assert merge(shuffled, gap) == merge(ivs, gap)


@given(interval_lists, gaps)
def test_merge_is_sorted_non_overlapping_and_separated_by_gap(
    ivs: list[Interval], gap: float
) -> None:
    out = merge(ivs, gap)
    for a, b in out:
        assert a < b
    for (_, b1), (a2, _) in itertools.pairwise(out):
        assert a2 > b1
        assert a2 - b1 >= gap


@given(interval_lists, gaps)
def test_merge_loses_nothing_and_fills_at_most_one_gap_per_join(
    ivs: list[Interval], gap: float
) -> None:
    out = merge(ivs, gap)
    for a, b in ivs:
        if a < b:
            assert any(x <= a and b <= y for x, y in out)
    n = sum(1 for a, b in ivs if a < b)
    assert total(merge(ivs, 0.0)) <= length_sum(ivs) + 1e-9
    # gap-joining counts the gap as watched: at most `gap` per piece joined
    assert total(out) <= length_sum(ivs) + gap * max(0, n - 1) + 1e-9
    assert total(out) == pytest.approx(length_sum(out))


@given(interval_lists, st.floats(min_value=0.001, max_value=2000.0))
def test_clip_and_coverage_stay_in_bounds(ivs: list[Interval], duration: float) -> None:
    clipped = clip(ivs, duration)
    assert all(0.0 <= a < b <= duration for a, b in clipped)
    assert 0.0 <= coverage(ivs, duration) <= 1.0
    assert coverage(ivs, duration) == pytest.approx(total(clipped) / duration)


@given(interval_lists, raw_interval, gaps)
def test_add_interval_is_merge_of_the_union(ivs: list[Interval], new: Interval, gap: float) -> None:
    assert add_interval(merge(ivs, gap), new, gap) == merge([*ivs, new], gap)


@given(interval_lists)
def test_dumps_loads_round_trip(ivs: list[Interval]) -> None:
    m = merge(ivs)
    back = loads(dumps(m))
    assert back == [(round(a, 3) + 0.0, round(b, 3) + 0.0) for a, b in m]
    assert all(
        abs(x - y) <= 0.0005
        for p, q in zip(m, back, strict=True)
        for x, y in zip(p, q, strict=True)
    )
    assert dumps(back) == dumps(m)


@given(st.data(), interval_lists)
def test_digest_is_stable_under_reordering_and_storage(
    data: st.DataObject, ivs: list[Interval]
) -> None:
    d = intervals_digest(ivs)
    assert intervals_digest(data.draw(st.permutations(ivs))) == d
    assert intervals_digest(loads(dumps(merge(ivs)))) == d
    assert len(d) == 64


@given(interval_lists)
def test_digest_is_the_hash_of_the_dumped_merge_when_rounding_is_harmless(
    ivs: list[Interval],
) -> None:
    m = merge(ivs)
    if merge(loads(dumps(m))) == loads(dumps(m)):
        assert intervals_digest(ivs) == hashlib.sha256(dumps(m).encode()).hexdigest()


# --- SAFETY: arbitrary beat streams ------------------------------------------------------------

# Weighted towards what an attacker would try: small forward claims, bursts with no wall
# time between them, tiny jumps around the merge gap, plus nonsense and replays.
position_spec = st.one_of(
    st.tuples(
        st.just("rel"),
        st.sampled_from([0.0, 0.01, 0.24, 0.26, -0.25, 1.0, 2.0, 2.5, 5.0, 7.0, 12.0, 30.0]),
    ),
    st.tuples(st.just("rel"), st.floats(min_value=-30.0, max_value=40.0)),
    st.tuples(st.just("abs"), st.floats(min_value=-5.0, max_value=8000.0)),
    st.tuples(st.just("abs"), st.sampled_from([math.nan, math.inf, -math.inf, 0.0])),
)
wall_step = st.one_of(
    st.sampled_from([0.0, 0.001, 0.1, 1.0, 5.0, 15.0, 15.001, 600.0]),
    st.floats(min_value=0.0, max_value=20.0),
    st.floats(min_value=-2.0, max_value=0.0),
)
seq_step = st.one_of(st.just(1), st.integers(-2, 3))
beat_step = st.tuples(seq_step, position_spec, wall_step, st.sampled_from(BEAT_EVENTS))
# An attacker's moves as (seq step, forward claim, wall seconds): random combinations
# of these find the known tricks (credit/jump alternation, gap farming, banking) quickly.
ATTACK_MOVES = [
    (1, 2.0, 0.0),  # spend the slack
    (1, 0.01, 0.0),  # tiny credit
    (1, 0.5, 0.1),  # 5x speed
    (1, 7.0, 0.0),  # jump
    (1, 0.24, 0.0),  # jump just under the merge gap
    (1, 30.0, 0.001),  # big jump
    (1, -0.25, 0.0),  # seek back
    (1, -5.0, 0.0),  # seek back
    (1, 0.0, 14.0),  # idle beat, just under max_beat_gap
    (1, 5.0, 5.0),  # honest
    (1, 0.0, 16.0),  # long pause
    (0, 2.0, 0.0),  # replay with a new claim
    (-1, 2.0, 0.0),  # out-of-order
]
attack_step = st.sampled_from(ATTACK_MOVES).map(lambda m: (m[0], ("rel", m[1]), m[2], "tick"))
beat_streams = st.one_of(
    st.lists(beat_step, max_size=80), st.lists(attack_step, min_size=20, max_size=80)
)


@st.composite
def policies(draw: st.DrawFn) -> WatchPolicy:
    return WatchPolicy(
        duration=draw(st.one_of(st.floats(min_value=1.0, max_value=7200.0), st.just(60.0))),
        max_rate=draw(st.sampled_from([0.5, 1.0, 1.5, 2.0])),
        tolerance=draw(st.sampled_from([0.0, 0.5, 2.0, 5.0])),
        max_beat_gap=draw(st.sampled_from([5.0, 15.0, 60.0])),
    )


def build_beats(steps: Sequence[tuple[int, tuple[str, float], float, str]]) -> list[Beat]:
    beats, seq, pos, wall = [], 0, 0.0, T0
    for dseq, (kind, p), dwall, event in steps:
        seq += dseq
        wall += dwall
        candidate = pos + p if kind == "rel" else p
        if math.isfinite(candidate):
            pos = candidate
        beats.append(Beat(seq, candidate, wall, event))
    return beats


@settings(max_examples=500, deadline=None)
@given(policies(), beat_streams)
def test_safety_no_stream_of_beats_outruns_the_server_clock(
    policy: WatchPolicy, steps: list[tuple[int, tuple[str, float], float, str]]
) -> None:
    """Required: credit <= elapsed × rate + tolerance × runs, and <= duration.
    Checked here in the stronger form with a single tolerance per session, after every
    beat, on the set merged with the default gap, as the service stores it."""
    p = Player(policy)
    first_wall: float | None = None
    runs = 0
    for beat in build_beats(steps):
        before = p.state
        watched_before = p.watched
        out = p.send(beat)
        assert out.rejected in (None, "replayed", "out_of_range", "jump")
        if out.rejected in ("replayed", "out_of_range"):
            assert out.state is before
            assert out.credited is None
            assert p.watched is watched_before
            continue
        assert out.state.last_seq == beat.seq
        if out.rejected == "jump":
            assert out.credited is None
        if first_wall is None:
            first_wall = out.state.last_wall
            assert out.credited is None
        if out.credited is not None:
            a, b = out.credited
            assert 0.0 <= a < b <= policy.duration
        assert p.state.last_wall is not None
        elapsed = p.state.last_wall - first_wall
        runs += out.credited is None and out.state.anchor_position == beat.position
        excess = total(p.watched) - elapsed * policy.max_rate - policy.tolerance
        assert excess <= EPS
        assert excess <= policy.tolerance * (runs - 1) + EPS  # the brief's bound
        assert total(p.watched) <= policy.duration
    # Sending the whole captured stream again adds nothing.
    again = Player(policy, p.state)
    for beat in build_beats(steps):
        assert again.send(beat).credited is None


# --- LIVENESS: honest playback ------------------------------------------------------------------


def honest_schedule(
    duration: float,
    speed: float,
    pause: tuple[float, float, float] | None = None,
    seek: tuple[float, float, float] | None = None,
    tick: float = 5.0,
) -> list[tuple[float, float, str]]:
    """(nominal seconds, media position, event) of a real player at ``speed``.

    ``pause`` = (media fraction, seconds into the tick, pause length);
    ``seek`` = (media fraction, seconds into the tick, seconds jumped back).
    """
    t, pos = 0.0, 0.0
    out = [(t, pos, "play")]
    while pos < duration:
        if pause and pos >= pause[0] * duration:
            adv = min(pause[1] * speed, duration - pos)
            t, pos = t + adv / speed, pos + adv
            out.append((t, pos, "pause"))
            t += pause[2]
            out.append((t, pos, "play"))
            pause = None
            continue
        if seek and pos >= seek[0] * duration:
            adv = min(seek[1] * speed, duration - pos)
            t, pos = t + adv / speed, max(0.0, pos + adv - seek[2])
            out.append((t, pos, "seeked"))
            seek = None
            continue
        adv = min(tick * speed, duration - pos)
        t, pos = t + adv / speed, pos + adv
        out.append((t, pos, "ended" if pos >= duration else "tick"))
    return out


def play_schedule(
    schedule: list[tuple[float, float, str]], policy: WatchPolicy, jitter: list[float]
) -> Player:
    p = Player(policy)
    for i, (t, pos, event) in enumerate(schedule, 1):
        p.send(Beat(i, pos, T0 + t + jitter[i % len(jitter)], event))
    return p


jitters = st.one_of(
    st.lists(st.floats(min_value=-0.5, max_value=0.5), min_size=1, max_size=40),
    st.sampled_from([[0.0], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5, -0.5], [-0.5, -0.5, 0.5]]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    duration=st.one_of(
        st.floats(min_value=10.0, max_value=7200.0), st.sampled_from([10.0, 7200.0])
    ),
    jitter=jitters,
    pause=st.tuples(st.floats(0.2, 0.8), st.floats(0.0, 4.99), st.floats(0.5, 900.0)),
    seek=st.one_of(
        st.none(), st.tuples(st.floats(0.3, 0.9), st.floats(0.0, 4.99), st.floats(1.0, 120.0))
    ),
)
def test_liveness_honest_viewer_completes_and_is_never_flagged(
    duration: float,
    jitter: list[float],
    pause: tuple[float, float, float],
    seek: tuple[float, float, float] | None,
) -> None:
    policy = WatchPolicy(duration)
    p = play_schedule(honest_schedule(duration, 1.0, pause, seek), policy, jitter)
    assert p.rejections() == [None] * len(p.outcomes)
    assert p.complete()
    assert coverage(p.watched, duration) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    duration=st.floats(min_value=10.0, max_value=7200.0),
    jitter=st.lists(st.floats(min_value=-0.25, max_value=0.25), min_size=1, max_size=40),
    seek=st.one_of(
        st.none(), st.tuples(st.floats(0.3, 0.9), st.floats(0.0, 4.99), st.floats(1.0, 120.0))
    ),
)
def test_liveness_double_speed_viewer_completes_in_half_the_time(
    duration: float, jitter: list[float], seek: tuple[float, float, float] | None
) -> None:
    """At 2× the media-time error is twice the receive jitter, so ±0.25 s uses what ±0.5 s
    uses at 1×."""
    fast = WatchPolicy(duration, max_rate=2.0)
    schedule = honest_schedule(duration, 2.0, seek=seek)
    p = play_schedule(schedule, fast, jitter)
    assert p.rejections() == [None] * len(p.outcomes)
    assert p.complete()
    if seek is None:
        assert p.state.last_wall - T0 <= duration / 2 + 1.0
    # The same 2× stream on a course capped at 1× is refused.
    slow = play_schedule(schedule, WatchPolicy(duration), jitter)
    assert not slow.complete()


def test_liveness_concrete_hour_with_pause_and_seek() -> None:
    rng = random.Random(7)
    policy = WatchPolicy(3600.0)
    schedule = honest_schedule(3600.0, 1.0, pause=(0.5, 2.0, 1800.0), seek=(0.7, 3.0, 60.0))
    p = play_schedule(schedule, policy, [rng.uniform(-0.5, 0.5) for _ in range(97)])
    assert set(p.rejections()) == {None}
    assert p.complete()
    assert p.watched == [(0.0, 3600.0)]


# --- ATTACKS --------------------------------------------------------------------------------------


def test_attack_seek_to_the_end() -> None:
    p = after((0, 0))
    out = p.beat(600.0, 1, "seeked")
    assert (out.rejected, out.credited) == ("jump", None)
    p.beat(600.0, 2, "ended")
    assert not p.complete()
    assert total(p.watched) == 0.0


def test_attack_forged_stream_of_fast_beats() -> None:
    """Beats 0.1 s apart each claiming +2 s. Per-run slack would let every other beat
    through (10× real time); the bucket keeps the total at wall × rate + tolerance."""
    p = after((0, 0))
    for i in range(1, 201):
        p.beat(min(2.0 * i, 602.0), 0.1 * i)
    rejected = sum(r == "jump" for r in p.rejections())
    assert rejected >= 0.9 * len(p.outcomes)
    assert total(p.watched) <= 20.0 * 1.0 + 2.0
    assert not p.complete()


@pytest.mark.parametrize("event", ["ended", "pause", "tick"])
def test_attack_ended_event_alone_completes_nothing(event: str) -> None:
    p = Player(WatchPolicy(10.0))
    p.beat(10.0, 0, event)
    p.beat(10.0, 20, event)
    assert p.watched == []
    assert not p.complete()


def test_attack_replaying_a_captured_honest_session() -> None:
    policy = WatchPolicy(120.0)
    honest = play_schedule(honest_schedule(120.0, 1.0), policy, [0.0])
    assert honest.complete()
    captured = [
        Beat(i, pos, T0 + t, ev) for i, (t, pos, ev) in enumerate(honest_schedule(120.0, 1.0), 1)
    ]
    # Into the same session: every beat is a replay.
    again = Player(policy, honest.state)
    for beat in captured:
        assert again.send(beat).rejected == "replayed"
    assert again.watched == []
    # Into a fresh session, as fast as the network allows: only the tolerance gets through.
    fresh = Player(policy)
    for i, beat in enumerate(captured):
        fresh.send(Beat(beat.seq, beat.position, T0 + 10_000 + 0.01 * i, beat.event))
    assert total(fresh.watched) <= 0.01 * len(captured) + policy.tolerance
    assert not fresh.complete()


def test_attack_long_pause_then_jump() -> None:
    p = after((0, 0), (5, 5))
    p.beat(5.0, 5.5, "pause")
    out = p.beat(300.0, 600, "play")
    assert out.credited is None
    out = p.beat(598.0, 601)
    assert (out.rejected, out.credited) == ("jump", None)
    assert total(p.watched) == 5.0


def test_attack_alternating_credit_and_jump_gets_no_fresh_tolerance() -> None:
    """+2 s credited, then a jump to re-anchor, then +2 s again ... with no time passing."""
    p = after((0, 0))
    pos = 0.0
    for i in range(1, 301):
        pos += 2.0 if i % 2 else 6.0
        p.beat(min(pos, 600.0), 0.01 * i)
    assert total(p.watched) <= 3.0 * 1.0 + 2.0 + EPS


def test_attack_gap_farming_with_tiny_credits_between_free_jumps() -> None:
    """Jump 0.24 s forward, earn 0.01 s, repeat: merge() would fill every 0.24 s gap."""
    p = after((0, 0))
    pos, at = 0.0, 0.0
    for _ in range(2000):
        pos += 0.24
        at += 0.001
        p.beat(pos, at)
        pos += 0.01
        at += 0.01
        p.beat(pos, at)
    elapsed = p.state.last_wall - T0
    assert total(p.watched) <= elapsed + 2.0 + EPS
    assert not p.complete()


def test_attack_seek_back_farming() -> None:
    """Start at the end and walk backwards: seek back 0.25 s, earn 0.01 s, repeat."""
    p = after((599.99, 0))
    pos, at = 599.99, 0.0
    for _ in range(2000):
        pos -= 0.25
        at += 0.001
        p.beat(pos, at)
        at += 0.01
        p.beat(pos + 0.01, at)
    elapsed = p.state.last_wall - T0
    assert total(p.watched) <= elapsed + 2.0 + EPS


def test_attack_new_seq_numbers_cannot_revive_a_replay() -> None:
    p = after((0, 0), (5, 5))
    out = p.send(Beat(10**9, 600.0, T0 + 6))
    assert out.rejected == "jump"
    assert p.send(Beat(10**9, 605.0, T0 + 11)).rejected == "replayed"
