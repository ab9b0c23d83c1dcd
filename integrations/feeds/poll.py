"""Polling feed sources: fetch, parse, deduplicate, and hand new items to intake.

Deduplication is decided here, per source: an item is known when its ``dedupe_key``
(guid, else link, else content hash) is, or — because some sites regenerate guids — when
an update from the same source has the same link and title. Only new items reach
``lms.compliance.regulation.intake.create_update``, which starts their clock.

A source's fetch outcome stays on its row: ``last_status`` ('ok', 'not_modified',
'error'), ``last_error``/``last_error_at`` and ``consecutive_failures``; after a failure
the next poll waits longer (``backoff_minutes``). A malformed feed whose entries could
still be read is 'ok' with the parser's complaint kept in ``last_error`` (same
``last_error_at`` as ``last_polled_at``: a warning of the latest poll).

``poll_source`` and ``ingest_bytes`` do not commit (the view or command does).
``poll_due_feeds`` is the tick's unit of work: it commits after each source, so a feed
that breaks in any way costs only its own poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from integrations.feeds.fetch import FetchPolicy, FetchResult, fetch_feed, normalize_host
from integrations.feeds.parse import FeedItem, FeedParseError, parse_feed
from lms.compliance.regulation.intake import create_update
from lms.compliance.regulation.models import FeedAllowedHost, FeedSource, RegulationUpdate
from lms.dbtypes import utcnow
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = [
    "FeedTickReport",
    "PollSummary",
    "allowed_hosts",
    "backoff_minutes",
    "clock",
    "due_source_ids",
    "ingest_bytes",
    "poll_due_feeds",
    "poll_source",
]

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000
MAX_BACKOFF_MINUTES = 24 * 60
DEFAULT_MAX_SOURCES_PER_TICK = 20

Fetcher = Callable[..., FetchResult]


def clock() -> datetime:
    """The time polls act at (UTC); tests replace it to stand on a given day."""
    return utcnow()


@dataclass
class PollSummary:
    """What one poll or import did. ``errors`` are item problems (skipped entries);
    ``error`` is the reason the whole poll failed."""

    source: str
    status: str = "ok"  # ok | not_modified | error
    new: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    error: str | None = None
    warning: str | None = None
    update_ids: list[int] = field(default_factory=list)

    def line(self) -> str:
        if self.status == "error":
            return f"{self.source}: error: {self.error}"
        if self.status == "not_modified":
            return f"{self.source}: not modified"
        text = f"{self.source}: {self.new} new, {self.duplicates} already known"
        if self.errors:
            text += f", {len(self.errors)} entries skipped"
        if self.warning:
            text += f" (malformed feed: {self.warning})"
        return text


def backoff_minutes(poll_minutes: int, failures: int) -> int:
    """Minutes to wait after ``failures`` consecutive failures: the interval doubled per
    failure, at most a day (or the interval itself when that is longer)."""
    if failures <= 0:
        return poll_minutes
    return min(poll_minutes * 2 ** min(failures, 16), max(poll_minutes, MAX_BACKOFF_MINUTES))


def allowed_hosts(session: Session) -> frozenset[str]:
    return frozenset(normalize_host(h) for h in session.scalars(select(FeedAllowedHost.host)))


def _known(session: Session, source: FeedSource, item: FeedItem) -> bool:
    same_key = RegulationUpdate.dedupe_key == item.dedupe_key
    condition = same_key
    if item.link:  # a regenerated guid: same link and title is the same item
        condition = or_(same_key, and_(RegulationUpdate.link == item.link,
                                       RegulationUpdate.title == item.title))
    return session.scalar(select(RegulationUpdate.id).where(
        RegulationUpdate.source_id == source.id, condition).limit(1)) is not None


def _lock(session: Session, source: FeedSource) -> None:
    """Serialise ingests of one source: a no-op UPDATE takes its row lock (PostgreSQL)
    or the write lock (SQLite), and opens the transaction the item savepoints nest in."""
    session.execute(update(FeedSource).where(FeedSource.id == source.id)
                    .values(items_seen=FeedSource.items_seen)
                    .execution_options(synchronize_session=False))


def ingest_bytes(session: Session, source: FeedSource, body: bytes,
                 headers: Mapping[str, str] | None, *, now: datetime,
                 calendar: WorkCalendar, base_url: str | None = None,
                 actor_id: int | None = None) -> PollSummary:
    """Record the new items of a feed body (a poll's, or a saved file's) as updates
    detected at ``now``. Raises ``FeedParseError`` when nothing can be read and
    ``UnknownYearError`` when a deadline falls in a year the calendar lacks; the caller
    rolls back then. Adds the new items to ``source.items_seen``."""
    parsed = parse_feed(body, headers, base_url=base_url or source.url)
    _lock(session, source)
    summary = PollSummary(source=source.name, warning=parsed.warning,
                          errors=list(parsed.skipped))
    for item in parsed.items:
        if _known(session, source, item):
            summary.duplicates += 1
            continue
        try:
            with session.begin_nested():
                created = create_update(
                    session, origin="feed", source=source, dedupe_key=item.dedupe_key,
                    title=item.title, link=item.link, guid=item.guid, summary=item.summary,
                    content_sha256=item.content_sha256, published_at=item.published_at,
                    published_raw=item.published_raw, date_flagged=item.date_flagged,
                    detected_at=now, calendar=calendar, actor_id=actor_id)
        except IntegrityError:  # a concurrent poll recorded it first
            if not _known(session, source, item):
                raise
            summary.duplicates += 1
            continue
        summary.new += 1
        summary.update_ids.append(created.id)
    source.items_seen = (source.items_seen or 0) + summary.new
    return summary


def _fail(source: FeedSource, summary: PollSummary, message: str, now: datetime) -> PollSummary:
    failures = (source.consecutive_failures or 0) + 1
    source.last_polled_at = now
    source.last_status = "error"
    source.last_error = message[:MAX_ERROR_LENGTH]
    source.last_error_at = now
    source.consecutive_failures = failures
    source.next_poll_at = now + timedelta(minutes=backoff_minutes(source.poll_minutes, failures))
    summary.status, summary.error = "error", message
    return summary


def _succeed(source: FeedSource, status: str, now: datetime, warning: str | None) -> None:
    source.last_polled_at = now
    source.last_status = status
    source.consecutive_failures = 0
    source.next_poll_at = now + timedelta(minutes=source.poll_minutes)
    if warning:
        source.last_error = f"malformed feed, entries read anyway: {warning}"[:MAX_ERROR_LENGTH]
        source.last_error_at = now


def poll_source(session: Session, source: FeedSource, *, now: datetime,
                calendar: WorkCalendar, fetcher: Fetcher = fetch_feed,
                policy: FetchPolicy | None = None) -> PollSummary:
    """Fetch one source (conditional GET) and ingest what is new. Any failure — the
    network, the feed, the calendar — is recorded on the source and returned, never
    raised; the items of earlier polls stay as they are. Database errors propagate."""
    summary = PollSummary(source=source.name)
    result = fetcher(source.url, etag=source.etag, last_modified=source.last_modified,
                     allowed_hosts=allowed_hosts(session), policy=policy or FetchPolicy())
    if result.status == "error":
        return _fail(source, summary, result.error or "fetch failed", now)
    if result.status == "not_modified":
        _succeed(source, "not_modified", now, None)
        summary.status = "not_modified"
        return summary
    # written before the savepoint: on SQLite this opens the real transaction, so the
    # savepoint below nests inside it instead of standing in for it
    source.last_polled_at = now
    session.flush()
    try:
        with session.begin_nested():
            summary = ingest_bytes(session, source, result.body, result.headers, now=now,
                                   calendar=calendar, base_url=result.final_url)
            # validators only with the items they describe: a failed ingest re-fetches
            source.etag = (result.etag or "")[:512] or None
            source.last_modified = (result.last_modified or "")[:128] or None
    except (FeedParseError, UnknownYearError) as exc:
        return _fail(source, summary, str(exc), now)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # a parser crash on a hostile feed must not stop the tick
        log.exception("feed %s: ingest failed", source.name)
        return _fail(source, summary, f"{type(exc).__name__}: {exc}", now)
    _succeed(source, "ok", now, summary.warning)
    return summary


def due_source_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Enabled sources whose next poll is due (never polled first, then oldest due)."""
    return list(session.scalars(
        select(FeedSource.id)
        .where(FeedSource.enabled.is_(True),
               or_(FeedSource.next_poll_at.is_(None), FeedSource.next_poll_at <= now))
        .order_by(FeedSource.next_poll_at.is_not(None), FeedSource.next_poll_at, FeedSource.id)
        .limit(limit)))


@dataclass
class FeedTickReport:
    summaries: list[PollSummary] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)  # unexpected failures (logged)

    def line(self) -> str:
        if not self.summaries:
            return "feeds: none due"
        new = sum(s.new for s in self.summaries)
        failed = sum(1 for s in self.summaries if s.status == "error")
        return (f"feeds: {len(self.summaries)} polled, {new} new updates, "
                f"{failed} failed")


def poll_due_feeds(session: Session, *, now: datetime, calendar: WorkCalendar,
                   commit: Callable[[], None], fetcher: Fetcher = fetch_feed,
                   policy: FetchPolicy | None = None,
                   max_sources: int = DEFAULT_MAX_SOURCES_PER_TICK) -> FeedTickReport:
    """Poll every due source, each in its own transaction (``commit`` after each one),
    so one broken feed never costs another's items. An unexpected database error rolls
    back that source only and is recorded on it in a fresh transaction."""
    report = FeedTickReport()
    ids = due_source_ids(session, now, max_sources)
    commit()  # the fetches below must not hold a transaction open
    for source_id in ids:
        source = session.get(FeedSource, source_id)
        if source is None or not source.enabled:
            continue
        name = source.name
        try:
            report.summaries.append(poll_source(session, source, now=now, calendar=calendar,
                                                fetcher=fetcher, policy=policy))
            commit()
        except Exception as exc:
            session.rollback()
            log.exception("feed %s: poll failed", name)
            report.crashed.append(f"{name}: {type(exc).__name__}: {exc}")
            source = session.get(FeedSource, source_id)
            if source is not None:
                report.summaries.append(_fail(source, PollSummary(source=name),
                                              f"internal error: {type(exc).__name__}", now))
                commit()
    return report
