"""Dates as Chinese feeds write them, read the way their authors meant them.

feedparser's own handlers get several of these wrong without saying so: ``2026/09/28
10:00``, ``2026年9月28日`` or ``2026.09.28`` come out as the first day of the *current*
month, ``CST`` is read as US Central Time (UTC-6) instead of China Standard Time (UTC+8),
and a time without a zone is taken as UTC. A regulation's publication date decides
nothing by itself (the clock runs from detection) but it is shown and kept as evidence,
so a wrong date is worse than none: what cannot be read is returned as ``None`` and the
caller flags it.

Everything here is pure. ``install_date_handlers`` puts ``feedparser_date_handler`` in
front of feedparser's handlers (feedparser tries them in order and takes the first
answer), and ``parse.parse_feed`` calls it before every parse so ours keep winning.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate

__all__ = [
    "SHANGHAI",
    "feedparser_date_handler",
    "install_date_handlers",
    "parse_feed_date",
    "published_from",
]

# China has had one offset and no daylight saving time since 1991.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
MIN_YEAR, MAX_YEAR = 1970, 2100

_ZONE = r"(?P<zone>Z|UTC|GMT|CST|[+-]\d{2}:?\d{2}|[(（]?北京时间[)）]?)"
_TIME = (r"(?P<H>\d{1,2})\s*[:：时点]\s*(?P<M>\d{1,2})\s*分?"
         r"(?:\s*[:：]?\s*(?P<S>\d{1,2})(?:[.,]\d+)?\s*秒?)?")

# 2026-09-28, 2026/09/28, 2026.09.28 (one separator throughout), with an optional time
# after a space or "T", and an optional zone.
_NUMERIC = re.compile(
    r"^(?:北京时间\s*)?(?P<y>\d{4})\s*(?P<sep>[-/.])\s*(?P<m>\d{1,2})\s*(?P=sep)\s*(?P<d>\d{1,2})"
    rf"(?:(?:\s+|T){_TIME})?\s*{_ZONE}?$"
)
# 2026年9月28日, 2026年09月28日 10:00, 2026年9月28日 10时30分
_CJK = re.compile(
    r"^(?:北京时间\s*)?(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    rf"(?:\s*{_TIME})?\s*{_ZONE}?$"
)
# RFC 822 as RSS 2.0 uses it, ending in CST or in no zone at all (the cases feedparser
# reads wrongly); other zones are left to feedparser, which reads them correctly.
_RFC822_LOCAL = re.compile(
    r"^(?:[A-Za-z]{3},?\s+)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?"
    r"(?:\s+(?:CST|\(CST\)|\+0800 \(CST\)))?$"
)

# Date texts feedparser's own handlers read correctly.
_TRUSTED_SHAPE = re.compile(
    r"^\d{4}-\d{2}(?:-\d{2})?(?:T|$)|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b",
    re.IGNORECASE)


def _zone(code: str | None) -> timezone:
    """The offset a zone token names; none and CST (China Standard Time) are UTC+8."""
    if code is None or code in ("CST", "北京时间") or "北京时间" in code:
        return SHANGHAI
    if code in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if code[0] == "-" else 1
    digits = code[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 14 or minutes > 59:
        raise ValueError(f"offset out of range: {code}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _from_match(match: re.Match[str]) -> datetime | None:
    parts = match.groupdict()
    year = int(parts["y"])
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        local = datetime(year, int(parts["m"]), int(parts["d"]),
                         int(parts["H"] or 0), int(parts["M"] or 0), int(parts["S"] or 0),
                         tzinfo=_zone(parts["zone"]))
    except ValueError:  # 2026-02-30, 25:00, an offset of +99:00
        return None
    return local.astimezone(UTC)


def parse_feed_date(text: str | None) -> datetime | None:
    """A UTC datetime for the Chinese and zone-less formats feeds use, else ``None``.

    Understood: ``2026/09/28 10:00``, ``2026-09-28 10:00:00``, ``2026.09.28``,
    ``2026年9月28日``, ``2026年09月28日 10:00``, ISO ``2026-09-28T10:00:00[+08:00]``, and
    RFC 822 dates in ``CST`` or without a zone. ``CST`` and no zone mean Asia/Shanghai.
    Anything else (an RFC 822 date in GMT, say) returns ``None`` so feedparser reads it.
    """
    if not text:
        return None
    value = " ".join(text.split())
    for pattern in (_NUMERIC, _CJK):
        match = pattern.match(value)
        if match:
            return _from_match(match)
    if _RFC822_LOCAL.match(value):
        core = re.sub(r"\s+(?:CST|\(CST\)|\+0800 \(CST\))$", "", value)
        fields = parsedate(core)
        if fields is None or not MIN_YEAR <= fields[0] <= MAX_YEAR:
            return None
        try:
            return datetime(*fields[:6], tzinfo=SHANGHAI).astimezone(UTC)
        except ValueError:
            return None
    return None


def feedparser_date_handler(text: str) -> time.struct_time | None:
    """``parse_feed_date`` in the shape feedparser wants: a 9-tuple in UTC, or None."""
    parsed = parse_feed_date(text)
    return parsed.timetuple() if parsed is not None else None


def install_date_handlers() -> None:
    """Make ``feedparser_date_handler`` the first handler feedparser tries.

    ``registerDateHandler`` puts a handler in front of those registered before it, so
    one registered later (by another library) would otherwise win; this moves ours back
    to the front and never adds it twice."""
    from feedparser import datetimes

    handlers = getattr(datetimes, "_date_handlers", None)
    if handlers is None:  # a feedparser without the list: register once, as documented
        if not getattr(install_date_handlers, "_done", False):
            datetimes.registerDateHandler(feedparser_date_handler)
            install_date_handlers._done = True  # type: ignore[attr-defined]
        return
    if handlers and handlers[0] is feedparser_date_handler:
        return
    while feedparser_date_handler in handlers:
        handlers.remove(feedparser_date_handler)
    datetimes.registerDateHandler(feedparser_date_handler)


def published_from(raw: str | None, parsed: tuple | time.struct_time | None
                   ) -> tuple[datetime | None, bool]:
    """(published_at in UTC, date_flagged) for an entry's date text and feedparser's
    9-tuple reading of it. A text nobody can read is flagged; no text is not.

    feedparser's reading is used only for the shapes it reads correctly (RFC 822 with
    an English month, ISO 8601): for anything else its handlers are known to make up a
    month, so the date is flagged instead."""
    raw = (raw or "").strip()
    if not raw:
        return None, False
    ours = parse_feed_date(raw)
    if ours is not None:
        return ours, False
    if parsed and _TRUSTED_SHAPE.search(raw):
        try:
            theirs = datetime(*tuple(parsed)[:6], tzinfo=UTC)
        except (TypeError, ValueError):
            return None, True
        if MIN_YEAR <= theirs.year <= MAX_YEAR:
            return theirs, False
    return None, True
