"""Intake: every regulation update, from a feed or typed in by a trainer, enters here.

The clock starts at detection: the deadline is N Chinese working days after the local
(Asia/Shanghai) detection date, so a feed item found on a Friday evening in Beijing or
during the National Day holiday gets the same full N working days. N is kept on the row
(``deadline_working_days``) so a later change of the setting never moves old deadlines.

Deduplication is the caller's decision (the feed poller knows guid/link/hash); this
module only inserts. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, time
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from lms.compliance.engine import SHANGHAI, local_date
from lms.compliance.regulation.history import record_event
from lms.compliance.regulation.models import FeedSource, RegulationUpdate
from lms.field_errors import ErrorCollector, FieldErrors
from lms.ledger_core import canonical_json
from lms.workdays import WorkCalendar

__all__ = ["DEFAULT_DEADLINE_WORKING_DAYS", "ManualEntryError", "configured_deadline_days",
           "create_update", "deadline_for", "enter_manually", "valid_http_url"]

DEFAULT_DEADLINE_WORKING_DAYS = 7
CONFIG_KEY = "REGULATION_DEADLINE_WORKING_DAYS"
MAX_TITLE = 500
MAX_SUMMARY = 20_000
MAX_LINK = 2000


def configured_deadline_days() -> int:
    """N from the app config when an app is active, else the default."""
    try:
        from flask import current_app

        return int(current_app.config.get(CONFIG_KEY, DEFAULT_DEADLINE_WORKING_DAYS))
    except RuntimeError:  # no application context (a script, a pure test)
        return DEFAULT_DEADLINE_WORKING_DAYS


def deadline_for(detected_at: datetime, working_days: int, calendar: WorkCalendar) -> date:
    """The last local day on which pushing the update is on time.

    Raises ``lms.workdays.UnknownYearError`` when the calendar does not know a year the
    count passes through (never a guess)."""
    return calendar.add_workdays(local_date(detected_at), working_days)


def create_update(
    session: Session,
    *,
    origin: str,
    source: FeedSource | None,
    dedupe_key: str,
    title: str,
    link: str | None,
    guid: str | None,
    summary: str,
    content_sha256: str,
    published_at: datetime | None,
    published_raw: str | None,
    date_flagged: bool,
    detected_at: datetime,
    calendar: WorkCalendar,
    actor_id: int | None = None,
    deadline_working_days: int | None = None,
) -> RegulationUpdate:
    """Insert one update in state ``new`` with its deadline, its first history event
    and the ledger entry ``regulation.detected`` (the caller commits).

    ``deadline_working_days`` defaults to the app's ``REGULATION_DEADLINE_WORKING_DAYS``
    (7 without an app). A duplicate (source, dedupe_key) raises IntegrityError from the
    unique key; callers that poll check first.
    """
    if detected_at.tzinfo is None:
        raise ValueError("detected_at must be timezone-aware (UTC)")
    days = deadline_working_days if deadline_working_days is not None \
        else configured_deadline_days()
    if days < 1:
        raise ValueError("deadline_working_days must be at least 1")
    deadline = deadline_for(detected_at, days, calendar)
    update = RegulationUpdate(
        origin=origin, source_id=source.id if source is not None else None,
        dedupe_key=dedupe_key, guid=guid, link=link, title=title, summary=summary or "",
        content_sha256=content_sha256, published_at=published_at,
        published_raw=published_raw, date_flagged=date_flagged, detected_at=detected_at,
        deadline_working_days=days, deadline_date=deadline, state="new",
        topic=source.default_topic if source is not None else None,
        created_by_id=actor_id, updated_at=detected_at,
    )
    if source is not None:
        update.source = source
    session.add(update)
    session.flush()
    record_event(session, update, kind="regulation.detected", from_state=None, to_state="new",
                 actor_id=actor_id, at=detected_at, payload={
                     "origin": origin,
                     "source_id": update.source_id,
                     "title": title,
                     "link": link,
                     "content_sha256": content_sha256,
                     "detected_at": detected_at.isoformat(),
                     "deadline_date": deadline.isoformat(),
                     "deadline_working_days": days,
                     "date_flagged": date_flagged,
                 })
    return update


# --- entered by hand ------------------------------------------------------------------------


class ManualEntryError(FieldErrors):
    """A hand-entered update refused; messages keyed by form field."""


def valid_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host, no spaces or control characters."""
    if not url or len(url) > MAX_LINK or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        return False


def enter_manually(session: Session, *, title: str | None, summary: str | None,
                   link: str | None, published_on: date | None, actor_id: int,
                   detected_at: datetime, calendar: WorkCalendar,
                   deadline_working_days: int | None = None) -> RegulationUpdate:
    """A trainer's update typed in by hand (a circular, a court case read elsewhere):
    validated in full, then ``create_update(origin="manual")``; its clock starts now."""
    errors = ErrorCollector(ManualEntryError)
    title = " ".join((title or "").split())
    if not title:
        errors.add("title", _l("Enter the title of the regulation or case."))
    elif len(title) > MAX_TITLE:
        errors.add("title", _l("At most %(n)d characters.", n=MAX_TITLE))
    summary = (summary or "").replace("\r\n", "\n").strip()
    if len(summary) > MAX_SUMMARY:
        errors.add("summary", _l("At most %(n)d characters.", n=MAX_SUMMARY))
    link = (link or "").strip()
    if not link:
        errors.add("link", _l("Enter the address (URL) of the source."))
    elif not valid_http_url(link):
        errors.add("link", _l("Enter a full web address starting with http:// or https://."))
    if published_on is not None and published_on > local_date(detected_at):
        errors.add("published_on", _l("The publication date cannot be in the future."))
    errors.raise_if_any()
    published_at = (datetime.combine(published_on, time(0), SHANGHAI).astimezone(UTC)
                    if published_on is not None else None)
    digest = hashlib.sha256(canonical_json(
        {"title": title, "summary": summary, "link": link}).encode("utf-8")).hexdigest()
    return create_update(
        session, origin="manual", source=None, dedupe_key=f"manual:{uuid.uuid4().hex}",
        title=title, link=link, guid=None, summary=summary, content_sha256=digest,
        published_at=published_at,
        published_raw=published_on.isoformat() if published_on is not None else None,
        date_flagged=False, detected_at=detected_at, calendar=calendar, actor_id=actor_id,
        deadline_working_days=deadline_working_days)
