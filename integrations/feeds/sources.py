"""Admin services for feed sources and the allow-list of private hosts.

Each change is checked in full first (every problem named by its field), then written
with a ledger entry in the caller's transaction; nothing here commits. The web forms
and the ``flask feeds add`` command share these functions.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from courses.models import RISK_TOPICS
from integrations.feeds.fetch import normalize_host, url_problem
from lms import ledger
from lms.compliance.regulation.models import (
    MAX_POLL_MINUTES,
    MIN_POLL_MINUTES,
    FeedAllowedHost,
    FeedSource,
)
from lms.field_errors import ErrorCollector, FieldErrors

__all__ = ["SourceInput", "allow_host", "create_source", "remove_host", "source_by_name",
           "update_source"]

URL_MESSAGES = {
    "empty": _l("Enter the feed's address."),
    "too_long": _l("The address may have at most 2000 characters."),
    "invalid": _l("This is not a valid web address."),
    "scheme": _l("Only http:// and https:// addresses can be polled."),
    "no_host": _l("The address has no host name."),
}
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class SourceInput:
    name: str
    url: str
    default_topic: str = "other"
    poll_minutes: int | None = 60
    enabled: bool = True


def source_by_name(session: Session, name: str) -> FeedSource | None:
    return session.scalar(select(FeedSource).where(FeedSource.name == name.strip()))


def _check(session: Session, data: SourceInput, current: FeedSource | None) -> SourceInput:
    errors = ErrorCollector()
    name, url = data.name.strip(), data.url.strip()
    if not name:
        errors.add("name", _l("Enter a name for the feed."))
    elif len(name) > 100:
        errors.add("name", _l("The name may have at most 100 characters."))
    else:
        clash = session.scalar(select(FeedSource.id).where(
            func.lower(FeedSource.name) == name.lower()))
        if clash is not None and (current is None or clash != current.id):
            errors.add("name", _l("Another feed is already called %(name)s.", name=name))
    problem = url_problem(url)
    if problem:
        errors.add("url", URL_MESSAGES[problem])
    if data.default_topic not in RISK_TOPICS:
        errors.add("default_topic", _l("Choose a risk topic from the list."))
    minutes = data.poll_minutes
    if minutes is None or not MIN_POLL_MINUTES <= minutes <= MAX_POLL_MINUTES:
        errors.add("poll_minutes", _l("Poll every %(low)d to %(high)d minutes.",
                                      low=MIN_POLL_MINUTES, high=MAX_POLL_MINUTES))
    errors.raise_if_any()
    return SourceInput(name=name, url=url, default_topic=data.default_topic,
                       poll_minutes=minutes, enabled=data.enabled)


def _payload(source: FeedSource) -> dict[str, object]:
    return {"name": source.name, "url": source.url, "default_topic": source.default_topic,
            "poll_minutes": source.poll_minutes, "enabled": source.enabled}


def create_source(session: Session, data: SourceInput, *, actor_id: int | None) -> FeedSource:
    """A new source, due at once (``next_poll_at`` NULL)."""
    clean = _check(session, data, None)
    source = FeedSource(name=clean.name, url=clean.url, default_topic=clean.default_topic,
                        poll_minutes=clean.poll_minutes, enabled=clean.enabled,
                        consecutive_failures=0, items_seen=0, created_by_id=actor_id)
    session.add(source)
    session.flush()
    ledger.append(session, kind="feed.source_created", subject=f"feed_source:{source.id}",
                  payload=_payload(source), actor_id=actor_id)
    return source


def update_source(session: Session, source: FeedSource, data: SourceInput, *,
                  actor_id: int | None) -> bool:
    """Apply an edit; False when nothing changed. A new address forgets the old one's
    validators and failures and is polled at the next tick; so is a re-enabled feed."""
    clean = _check(session, data, source)
    before = _payload(source)
    if clean.url != source.url:
        source.etag = source.last_modified = None
        source.consecutive_failures = 0
        source.next_poll_at = None
    if clean.enabled and not source.enabled:
        source.next_poll_at = None
    source.name, source.url = clean.name, clean.url
    source.default_topic, source.poll_minutes = clean.default_topic, clean.poll_minutes
    source.enabled = clean.enabled
    after = _payload(source)
    if after == before:
        return False
    session.flush()
    ledger.append(session, kind="feed.source_updated", subject=f"feed_source:{source.id}",
                  payload={"before": before, "after": after}, actor_id=actor_id)
    return True


def _host_problem(host: str) -> str | None:
    if not host:
        return str(_l("Enter a host name, e.g. intranet.example.com or 10.0.0.5."))
    if len(host) > 255:
        return str(_l("A host name has at most 255 characters."))
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not ascii_host or not all(_HOST_LABEL.match(p) for p in ascii_host.split(".")):
        return str(_l("Enter only the host name (no http://, port or path), "
                      "e.g. intranet.example.com."))
    return None


def allow_host(session: Session, host: str, note: str, *, actor_id: int | None
               ) -> FeedAllowedHost:
    """Let feeds reach ``host`` although it resolves to a private address."""
    clean = normalize_host(host)
    problem = _host_problem(clean)
    if problem:
        raise FieldErrors.one(problem, "host")
    if session.get(FeedAllowedHost, clean) is not None:
        raise FieldErrors.one(_l("%(host)s is already on the allow-list.", host=clean), "host")
    row = FeedAllowedHost(host=clean, note=(note or "").strip()[:200], created_by_id=actor_id)
    session.add(row)
    session.flush()
    ledger.append(session, kind="feed.host_allowed", subject=f"feed_host:{clean}",
                  payload={"host": clean, "note": row.note}, actor_id=actor_id)
    return row


def remove_host(session: Session, host: str, *, actor_id: int | None) -> None:
    row = session.get(FeedAllowedHost, normalize_host(host))
    if row is None:
        raise FieldErrors.one(_l("%(host)s is not on the allow-list.", host=host))
    session.delete(row)
    session.flush()
    ledger.append(session, kind="feed.host_removed", subject=f"feed_host:{row.host}",
                  payload={"host": row.host}, actor_id=actor_id)
