"""Reading a fetched feed: bytes and response headers in, plain dataclasses out.

Pure: no database, no Flask and no network. feedparser reads RSS 0.9x/1.0/2.0 and
Atom in any declared encoding (GBK and GB2312 included); it is always handed the body
wrapped in ``io.BytesIO``. feedparser treats a *string* argument as a URL to fetch or
a file name to open (a feed body that happens to read ``/etc/passwd`` would be opened),
so ``parse_feed`` refuses anything but ``bytes``.

Each item gets the keys the poller deduplicates on: ``dedupe_key`` is ``guid:<sha256>``
when the feed gives a guid/id, else ``link:<sha256>``, else ``hash:<content sha256>``;
``content_sha256`` covers the normalised title, link and summary.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser

from integrations.feeds.dates import install_date_handlers, published_from

__all__ = ["FeedItem", "FeedParseError", "ParsedFeed", "html_to_text", "parse_feed"]

MAX_TITLE = 500
MAX_LINK = 2000
MAX_GUID = 1000
MAX_RAW_DATE = 200
MAX_SUMMARY = 20000
_URL_LIKE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|/|\\|\.{1,2}/)", re.IGNORECASE)


class FeedParseError(ValueError):
    """The body is not a feed we can read (the message says why)."""


@dataclass(frozen=True)
class FeedItem:
    title: str
    link: str | None
    guid: str | None
    summary: str
    published_at: datetime | None  # UTC
    published_raw: str | None  # the date as the feed wrote it
    date_flagged: bool  # a date was given but could not be read
    content_sha256: str
    dedupe_key: str


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    version: str  # feedparser's name: rss20, rss10, rss091u, atom10, ...
    encoding: str
    items: tuple[FeedItem, ...]
    skipped: tuple[str, ...]  # entries without a title, link or text, by position
    warning: str | None  # why the XML was malformed, when entries were still read


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normal(text: str | None) -> str:
    """NFKC, whitespace collapsed: full-width digits or a re-indented summary do not
    make an item new."""
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "blockquote", "pre", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, _attrs: Any) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of (already sanitised) feed HTML: one paragraph per line."""
    extractor = _TextExtractor()
    extractor.feed(markup or "")
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _text(value: str | None, detail: Mapping[str, Any] | None) -> str:
    kind = (detail or {}).get("type", "text/plain")
    if kind in ("text/html", "application/xhtml+xml"):
        return html_to_text(value or "")
    return " ".join((value or "").split())


def _safe_link(value: str | None) -> str | None:
    """Only http(s) links are kept: the link ends up in an <a href> on our pages."""
    value = (value or "").strip()
    if value.lower().startswith(("http://", "https://")):
        return value
    return None


def dedupe_key(guid: str | None, link: str | None, content_sha256: str) -> str:
    if guid:
        return f"guid:{_sha256(guid)}"
    if link:
        return f"link:{_sha256(link)}"
    return f"hash:{content_sha256}"


def _entry_date(entry: Mapping[str, Any]) -> tuple[str | None, Any]:
    for key in ("published", "updated", "created"):
        if entry.get(key):
            return entry[key], entry.get(f"{key}_parsed")
    return None, None


def _item(entry: Mapping[str, Any], base_url: str | None) -> FeedItem | None:
    title = _text(entry.get("title"), entry.get("title_detail"))
    link = entry.get("link")
    if link and base_url:  # a relative link, relative to where the feed came from
        link = urljoin(base_url, link.strip())
    link = _safe_link(link)
    guid = " ".join((entry.get("id") or "").split()) or None
    summary = entry.get("summary") or ""
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value", "")
    summary = html_to_text(summary)[:MAX_SUMMARY]
    if not (title or link or summary):
        return None
    if not title:  # a title is needed to list the update: the text's start, else the link
        title = summary.split("\n", 1)[0][:80] or link or ""
    raw, parsed = _entry_date(entry)
    published_at, flagged = published_from(raw, parsed)
    content = _sha256("\x1f".join((_normal(title), _normal(link), _normal(summary))))
    return FeedItem(
        title=title[:MAX_TITLE], link=link[:MAX_LINK] if link else None,
        guid=guid[:MAX_GUID] if guid else None, summary=summary,
        published_at=published_at, published_raw=raw.strip()[:MAX_RAW_DATE] if raw else None,
        date_flagged=flagged, content_sha256=content,
        dedupe_key=dedupe_key(guid, link, content),
    )


def _response_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers feedparser should see: only the Content-Type, and one without a
    charset becomes application/xml. RFC 7303 lets the XML declaration decide then;
    RFC 3023's us-ascii default for text/xml, which feedparser still applies, would
    misread every GBK feed served that way. No Content-Location either: feedparser would
    resolve relative guids against it, and a guid must stay what the feed says."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    content_type = lowered.get("content-type", "")
    if "charset=" not in content_type.lower():
        content_type = "application/xml"
    return {"content-type": content_type}


def parse_feed(body: bytes, headers: Mapping[str, str] | None = None, *,
               base_url: str | None = None) -> ParsedFeed:
    """Parse a feed body (``base_url``: where it came from, for relative links).
    Malformed XML keeps whatever entries feedparser could read (``warning`` says what
    was wrong); nothing readable raises ``FeedParseError``."""
    if not isinstance(body, bytes | bytearray | memoryview):
        # a str would be fetched or opened by feedparser; never hand it one
        hint = " (it looks like a URL or a path)" if isinstance(body, str) and \
            _URL_LIKE.match(body) else ""
        raise TypeError(f"parse_feed needs the feed's bytes, not {type(body).__name__}{hint}")
    body = bytes(body)
    if not body.strip():
        raise FeedParseError("the response was empty")
    install_date_handlers()
    result = feedparser.parse(io.BytesIO(body), response_headers=_response_headers(headers),
                              resolve_relative_uris=False, sanitize_html=True)
    problem = str(result.get("bozo_exception") or "") if result.get("bozo") else None
    items: list[FeedItem] = []
    skipped: list[str] = []
    for position, entry in enumerate(result.get("entries") or [], start=1):
        item = _item(entry, base_url)
        if item is None:
            skipped.append(f"entry {position} has no title, link or text; skipped")
        else:
            items.append(item)
    if not items and problem:
        raise FeedParseError(f"not a readable RSS or Atom feed: {problem}")
    if not items and not result.get("version"):
        raise FeedParseError("not an RSS or Atom feed")
    feed = result.get("feed") or {}
    return ParsedFeed(title=_text(feed.get("title"), feed.get("title_detail")),
                      version=result.get("version") or "", encoding=result.get("encoding") or "",
                      items=tuple(items), skipped=tuple(skipped), warning=problem)
