"""Pure rules for crediting video watch time from player heartbeats.

Watch records are evidence in labour disputes: an employer has to show that an employee
really received the training. So every rule errs towards crediting *less*. Media time is
credited only when the server's own clock says it could have been played, and no
sequence of beats in one playback session can buy more than
``tolerance + max_rate × (elapsed server wall time)`` seconds of watched media, even
after the gap-joining in :func:`merge`.

Standard library only, so the rules can be tested without an app. The server calls
:func:`judge_beat` on every heartbeat, so it does O(1) work.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[float, float]

DEFAULT_GAP = 0.25
"""Pieces closer than this are joined by :func:`merge`, which counts the gap as watched."""

REANCHOR_COST = DEFAULT_GAP
"""Allowance charged each time a run is re-anchored (seek back, jump, long gap). Without it
a script could alternate a free forward jump of just under ``DEFAULT_GAP`` with 0.01 s of
credit, and :func:`merge` would fill each gap: a 25× speed-up. Keep this >= any gap
the caller merges with."""

MAX_RATE_LIMIT = 2.0
TAIL_FRACTION_CAP = 0.1  # the tail is at most this fraction of a (very short) video
TAIL_MIN_COVERED = 0.9  # share of the tail that must be covered

REJECTION_REASONS = ("replayed", "out_of_range", "jump", "superseded", "not_started")
"""``judge_beat`` uses the first three. The service layer uses the last two: a beat for a
session that is not the learner's active one, or a beat with no session."""

BEAT_EVENTS = ("tick", "play", "pause", "ended", "hide", "seeked")
"""Events the player sends. They are for the record only: the browser chooses them, so
they never change how a beat is judged."""

_INF = math.inf


# --- interval sets ------------------------------------------------------------------------


def merge(intervals: Iterable[Interval], gap: float = DEFAULT_GAP) -> list[Interval]:
    """Return the sorted union of the intervals. Pieces closer than ``gap`` are joined.

    Empty, reversed or non-finite pieces are dropped, because they cannot be watched time.
    The result is canonical: the same set gives the same list whatever the input order,
    and merging it again changes nothing.
    """
    if not 0.0 <= gap < _INF:
        raise ValueError(f"gap must be finite and >= 0, got {gap!r}")
    items = sorted(
        (a, b) for a, b in ((float(x), float(y)) for x, y in intervals) if -_INF < a < b < _INF
    )
    out: list[Interval] = []
    if not items:
        return out
    lo, hi = items[0]
    for a, b in items:
        if a <= hi or a - hi < gap:
            if b > hi:
                hi = b
        else:
            out.append((lo, hi))
            lo, hi = a, b
    out.append((lo, hi))
    return out


def add_interval(
    intervals: Sequence[Interval], new: Interval, gap: float = DEFAULT_GAP
) -> list[Interval]:
    """Return the watched set with one credited piece added, merged again."""
    return merge([*intervals, new], gap)


def _measure(merged: Iterable[Interval]) -> float:
    return math.fsum(b - a for a, b in merged)


def total(intervals: Iterable[Interval]) -> float:
    """Return the seconds covered by the union. Overlaps count once and gaps are never
    filled, so passing an unmerged list cannot inflate the figure."""
    return _measure(merge(intervals, 0.0))


def clip(intervals: Iterable[Interval], duration: float) -> list[Interval]:
    """Return the sorted union cut to ``[0, duration]``. Time outside the media is not
    evidence of anything."""
    if not duration > 0.0:
        return []
    return merge(((max(a, 0.0), min(b, duration)) for a, b in intervals), 0.0)


def coverage(intervals: Iterable[Interval], duration: float) -> float:
    """Return the covered fraction of ``[0, duration]``, in 0..1. A video with no
    usable duration has coverage 0, so nothing completes by accident."""
    if not 0.0 < duration < _INF:
        return 0.0
    return min(1.0, _measure(clip(intervals, duration)) / duration)


# --- storage --------------------------------------------------------------------------------


def _r3(x: float) -> float:
    # ``+ 0.0`` turns -0.0 into 0.0, so that equal sets always give the same text.
    return round(x, 3) + 0.0


def dumps(intervals: Iterable[Interval]) -> str:
    """Return canonical compact JSON such as ``[[0.0,5.0],[7.25,9.5]]``, rounded to
    milliseconds, so that equal records give byte-equal text to hash and compare.

    Raises ValueError for non-finite or reversed pieces, which must never be stored.
    """
    rows: list[list[float]] = []
    for x, y in intervals:
        a, b = float(x), float(y)
        if not -_INF < a <= b < _INF:
            raise ValueError(f"not a storable interval: ({x!r}, {y!r})")
        rows.append([_r3(a), _r3(b)])
    return json.dumps(rows, separators=(",", ":"), allow_nan=False)


def _no_constants(name: str) -> float:
    raise ValueError(f"non-finite number {name} in stored intervals")


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"interval bound is not a number: {v!r}")
    try:
        f = float(v)
    except OverflowError as exc:
        raise ValueError(f"interval bound out of range: {v!r}") from exc
    if not -_INF < f < _INF:
        raise ValueError(f"interval bound is not finite: {v!r}")
    return f


def loads(text: str) -> list[Interval]:
    """Parse :func:`dumps` output. Raises ValueError on anything else, so a corrupted or
    edited record fails loudly instead of being read as a different watch history."""
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError("stored intervals nested too deeply") from exc
    if not isinstance(data, list):
        raise ValueError("stored intervals must be a JSON array")
    out: list[Interval] = []
    for item in data:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(f"stored interval must be a [start, end] pair: {item!r}")
        a, b = _number(item[0]), _number(item[1])
        if a > b:
            raise ValueError(f"stored interval is reversed: {item!r}")
        out.append((a, b))
    return out


def intervals_digest(intervals: Iterable[Interval]) -> str:
    """Return the SHA-256 hex of ``dumps(merge(intervals))``, for tamper evidence.

    The set is merged again after rounding to milliseconds. Normally that changes
    nothing. In rare cases rounding empties a tiny piece or brings two pieces within the
    gap, and re-merging then makes the digest of the stored text, ``loads(dumps(merge(x)))``,
    always equal the digest of ``x``. So a correct record can never look tampered with.
    """
    canonical = merge([(_r3(a), _r3(b)) for a, b in merge(intervals)])
    return hashlib.sha256(dumps(canonical).encode("ascii")).hexdigest()


# --- heartbeats -----------------------------------------------------------------------------


def _finite(x: float) -> bool:
    return -_INF < x < _INF


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """How strict crediting is for one video. Invalid values raise here rather than
    credit strangely later."""

    duration: float  # seconds, read from the file on the server
    max_rate: float = 1.0  # course's playback-rate cap (<= 2.0)
    tolerance: float = 2.0  # seconds of slack per session (network jitter, timer drift)
    max_beat_gap: float = 15.0  # a longer wall-clock gap re-anchors and credits nothing
    min_coverage: float = 0.98
    tail_seconds: float = 3.0  # the last seconds must have been watched

    def __post_init__(self) -> None:
        if not 0.0 < self.duration < _INF:
            raise ValueError(f"duration must be finite and > 0, got {self.duration!r}")
        if not 0.0 < self.max_rate <= MAX_RATE_LIMIT:
            raise ValueError(f"max_rate must be in (0, {MAX_RATE_LIMIT}], got {self.max_rate!r}")
        if not 0.0 <= self.tolerance < _INF:
            raise ValueError(f"tolerance must be finite and >= 0, got {self.tolerance!r}")
        if not 0.0 < self.max_beat_gap < _INF:
            raise ValueError(f"max_beat_gap must be finite and > 0, got {self.max_beat_gap!r}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {self.min_coverage!r}")
        if not 0.0 <= self.tail_seconds < _INF:
            raise ValueError(f"tail_seconds must be finite and >= 0, got {self.tail_seconds!r}")


@dataclass(frozen=True, slots=True)
class RunState:
    """Per playback session, stored by the caller between beats.

    ``anchor_wall`` is the server time from which the current run's allowance is measured.
    It equals the receive time of the run's first beat while the run has its full
    ``tolerance`` of slack. It moves later when allowance must not be banked (idle or
    slow playback) and when a re-anchor carries over spent slack. It may lie in the
    future. Store and return it unchanged.
    """

    last_seq: int = 0
    last_position: float | None = None  # None before the first beat of the session
    last_wall: float | None = None  # server receive time of the last accepted beat
    anchor_position: float | None = None  # start of the current continuous run
    anchor_wall: float | None = None


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat. ``wall`` is the SERVER receive time: the browser's clock is the
    attacker's clock."""

    seq: int
    position: float  # media time claimed by the browser
    wall: float  # SERVER receive time, epoch seconds
    event: str = "tick"  # see BEAT_EVENTS; never changes the verdict


@dataclass(frozen=True, slots=True)
class BeatOutcome:
    state: RunState  # new state to store (the same object if the beat was ignored)
    credited: Interval | None  # media interval to add to the learner's watched set
    rejected: str | None  # None if fine, else a code from REJECTION_REASONS


def judge_beat(state: RunState, beat: Beat, policy: WatchPolicy) -> BeatOutcome:
    """Decide what one heartbeat proves. Each rule stops a cheat:

    1. ``seq <= last_seq`` → "replayed": stops replayed and reordered beats from
       counting twice. The state is unchanged.
    2. Position NaN, infinite, negative or beyond ``duration + tolerance`` →
       "out_of_range". The state is unchanged and the seq is not consumed.
    3. First beat of the session: accepted, anchors the run, credits nothing.
    4. More than ``max_beat_gap`` since the last beat (pause, sleep, lost network):
       re-anchor and credit nothing, so a long pause cannot be claimed as progress.
    5. Position went back (seek back): re-anchor, credit nothing.
    6. Forward progress is credited as ``(last_position, min(position, duration))`` only
       while the whole run fits the wall clock:
       ``position - anchor_position <= (wall - anchor_wall) * max_rate + tolerance``.
       Otherwise → "jump": credit nothing and re-anchor at the new position.
    7. Accepted and "jump" beats advance ``last_seq``, ``last_position`` and ``last_wall``.
    8. Events (``ended``, ``pause``...) are not trusted, and every beat is judged alike.

    The rule-6 allowance is a token bucket that holds at most ``tolerance`` seconds. It
    fills at ``max_rate`` per wall second and drains by credited progress. It is stored
    in ``anchor_wall``, so the stored fields are the same as for a plain anchor. Three
    refinements close holes that the plain per-run check leaves open:

    * Unused allowance beyond ``tolerance`` is dropped (``anchor_wall`` moves later).
      Otherwise idle beats every 14 s, or 1× playback under a 2× cap, would bank time
      for a later forward jump.
    * A re-anchor keeps the bucket's current level and charges ``REANCHOR_COST``. It does
      not refill the bucket. Otherwise each free jump or seek back would grant a fresh
      ``tolerance``: beats 0.1 s apart claiming +2 s would be credited every other beat,
      10× real time. The charge also pays for the gap :func:`merge` fills between pieces.
      After a real pause longer than ``max_beat_gap`` the bucket is full again, and the
      anchor is exactly ``(wall, position)``.
    * Walls that run backwards (racing requests, clock steps) count as no time passed.

    Together these mean that credit within one session, merged with a gap no larger
    than ``REANCHOR_COST``, never exceeds ``tolerance + max_rate × (last_wall -
    first_wall)``. An honest player at 1× keeps about 1 s of slack against ±0.5 s of
    receive jitter.
    """
    seq = beat.seq
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"beat seq must be an int, got {seq!r}")
    wall = beat.wall
    if not _finite(wall):
        raise ValueError(f"beat wall must be the server's finite receive time, got {wall!r}")
    if seq <= state.last_seq:
        return BeatOutcome(state, None, "replayed")
    position = beat.position
    if not 0.0 <= position <= policy.duration + policy.tolerance:
        return BeatOutcome(state, None, "out_of_range")
    position = float(position)
    wall = float(wall)

    last_position = state.last_position
    last_wall = state.last_wall
    anchor_position = state.anchor_position
    anchor_wall = state.anchor_wall
    if last_position is None or last_wall is None or anchor_position is None or anchor_wall is None:
        # First beat, or a state without a full anchor. Start a run with full slack.
        return BeatOutcome(RunState(seq, position, wall, position, wall), None, None)

    wall = max(wall, last_wall)
    rate = policy.max_rate
    tolerance = policy.tolerance
    # How far past the anchor the clock allows the run to be by now.
    allowed = (wall - anchor_wall) * rate + tolerance
    reason: str | None = None

    if wall - last_wall <= policy.max_beat_gap and position >= last_position:
        progress = position - anchor_position
        if progress <= allowed or position == last_position:
            if allowed - progress > tolerance:
                anchor_wall = wall - progress / rate  # drop allowance banked beyond tolerance
            end = min(position, policy.duration)
            credited = (last_position, end) if end > last_position else None
            new = RunState(seq, position, wall, anchor_position, anchor_wall)
            return BeatOutcome(new, credited, None)
        reason = "jump"

    # Re-anchor (long gap, seek back, or jump), keeping the bucket's level minus the charge.
    level = min(tolerance, allowed - (last_position - anchor_position) - REANCHOR_COST)
    new = RunState(seq, position, wall, position, wall + (tolerance - level) / rate)
    return BeatOutcome(new, None, reason)


def is_complete(intervals: Iterable[Interval], policy: WatchPolicy) -> bool:
    """Return True when at least ``min_coverage`` of the video is covered and
    ``TAIL_MIN_COVERED`` of its tail is covered too. The tail is the last
    ``tail_seconds``, capped at 10% of the duration.

    Only credited intervals count. An "ended" event proves nothing, and the tail rule
    stops a learner who skips the ending while staying above the coverage threshold.
    """
    duration = policy.duration
    merged = clip(intervals, duration)
    if _measure(merged) / duration < policy.min_coverage:
        return False
    tail = min(policy.tail_seconds, TAIL_FRACTION_CAP * duration)
    if tail <= 0.0:
        return True
    start = duration - tail
    covered = math.fsum(max(0.0, min(b, duration) - max(a, start)) for a, b in merged)
    return covered >= TAIL_MIN_COVERED * tail
