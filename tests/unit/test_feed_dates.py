"""Chinese feed dates: read as their authors meant them (Asia/Shanghai, CST = UTC+8),
and ahead of feedparser's own handlers, which read several of them wrongly."""

from __future__ import annotations

from datetime import UTC, datetime

import feedparser
import pytest
from feedparser.datetimes import _parse_date as feedparser_parse_date

from integrations.feeds.dates import (
    feedparser_date_handler,
    install_date_handlers,
    parse_feed_date,
    published_from,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026/09/28 10:00", utc(2026, 9, 28, 2, 0)),
    ("2026-09-28 10:00:00", utc(2026, 9, 28, 2, 0)),
    ("2026年9月28日", utc(2026, 9, 27, 16, 0)),  # local midnight is 16:00 UTC the day before
    ("2026年09月28日 10:00", utc(2026, 9, 28, 2, 0)),
    ("2026年9月28日 10时30分", utc(2026, 9, 28, 2, 30)),
    ("2026.09.28", utc(2026, 9, 27, 16, 0)),
    ("2026-09-28", utc(2026, 9, 27, 16, 0)),
    ("2026-09-28T10:00:00", utc(2026, 9, 28, 2, 0)),  # no zone: Shanghai, not UTC
    ("2026-09-28T10:00:00+08:00", utc(2026, 9, 28, 2, 0)),
    ("2026-09-28T10:00:00Z", utc(2026, 9, 28, 10, 0)),
    ("2026-09-28 10:00:00 CST", utc(2026, 9, 28, 2, 0)),
    ("Mon, 28 Sep 2026 10:00:00 CST", utc(2026, 9, 28, 2, 0)),  # China, not US Central
    ("Mon, 28 Sep 2026 10:00:00", utc(2026, 9, 28, 2, 0)),
    ("  2026/9/8  9:05 ", utc(2026, 9, 8, 1, 5)),
])
def test_chinese_and_zoneless_formats(text, expected):
    assert parse_feed_date(text) == expected


@pytest.mark.parametrize("text", [
    "2026-02-30", "2026/13/01 10:00", "2026年9月31日", "2026-09-28 25:00",
    "下周一上午", "二〇二六年十月三十日", "2026/09-28", "", None, "1890-01-01",
])
def test_unreadable_dates_are_none_not_guesses(text):
    assert parse_feed_date(text) is None


def test_other_zones_are_left_to_feedparser():
    assert parse_feed_date("Mon, 28 Sep 2026 10:00:00 GMT") is None


def test_feedparser_alone_reads_these_wrongly():
    """The reason the handler exists: without it, feedparser makes up the current month
    for Chinese dates and reads CST as US Central time (UTC-6)."""
    from feedparser import datetimes

    saved = list(datetimes._date_handlers)
    try:
        datetimes._date_handlers[:] = [h for h in saved if h is not feedparser_date_handler]
        cst = feedparser_parse_date("Mon, 28 Sep 2026 10:00:00 CST")
        assert (cst.tm_mday, cst.tm_hour) == (28, 16)
        chinese = feedparser_parse_date("2026年9月28日")
        assert chinese is None or (chinese.tm_mon, chinese.tm_mday) != (9, 27)
    finally:
        datetimes._date_handlers[:] = saved


def test_installed_handler_wins_even_after_a_later_registration():
    install_date_handlers()
    cst = feedparser_parse_date("Mon, 28 Sep 2026 10:00:00 CST")
    assert (cst.tm_mday, cst.tm_hour) == (28, 2)

    from feedparser import datetimes
    from feedparser.datetimes.rfc822 import _parse_date_rfc822

    feedparser.registerDateHandler(_parse_date_rfc822)  # someone registers after us
    try:
        assert feedparser_parse_date("Mon, 28 Sep 2026 10:00:00 CST").tm_hour == 16
        install_date_handlers()
        assert datetimes._date_handlers[0] is feedparser_date_handler
        assert datetimes._date_handlers.count(feedparser_date_handler) == 1
        assert feedparser_parse_date("Mon, 28 Sep 2026 10:00:00 CST").tm_hour == 2
        slashed = feedparser_parse_date("2026/09/28 10:00")
        assert (slashed.tm_mon, slashed.tm_mday, slashed.tm_hour) == (9, 28, 2)
    finally:
        datetimes._date_handlers.remove(_parse_date_rfc822)


def test_handler_returns_utc_nine_tuples():
    value = feedparser_date_handler("2026年09月28日 10:00")
    assert tuple(value)[:6] == (2026, 9, 28, 2, 0, 0) and len(value) == 9
    assert feedparser_date_handler("下周一") is None


def test_published_from_flags_only_unreadable_text():
    assert published_from(None, None) == (None, False)
    assert published_from("  ", None) == (None, False)
    assert published_from("2026.09.28", None) == (utc(2026, 9, 27, 16), False)
    assert published_from("下周一上午", None) == (None, True)
    # feedparser's reading is used for shapes it reads correctly ...
    gmt = feedparser_parse_date("Tue, 29 Sep 2026 02:00:00 GMT")
    assert published_from("Tue, 29 Sep 2026 02:00:00 GMT", gmt) == (utc(2026, 9, 29, 2), False)
    # ... and not for one it made up (a "current month" guess for an odd Chinese date)
    invented = (2026, 11, 1, 0, 0, 0, 6, 305, 0)
    assert published_from("二〇二六年九月二十八日", invented) == (None, True)
