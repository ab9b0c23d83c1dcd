"""Feed parsing on feeds shaped as real ones are: RSS 0.91/1.0/2.0, Atom, GBK and
GB2312 bodies, malformed XML and a page that is no feed; and the parser never fetches."""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import feedparser.http
import pytest

from integrations.feeds.parse import FeedParseError, html_to_text, parse_feed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_rss20_items_keys_and_dates():
    feed = parse_feed(body("rss20.xml"), {"Content-Type": "application/rss+xml"})
    assert feed.version == "rss20" and feed.warning is None
    assert feed.title == "北京市人力资源和社会保障局 - 通知公告"
    wage, base, dispatch, duty = feed.items
    assert wage.title == "关于调整北京市最低工资标准的通知"
    assert wage.guid == "rsj-4101" and wage.dedupe_key == f"guid:{sha('rsj-4101')}"
    assert wage.published_at == datetime(2026, 9, 28, 2, 0, tzinfo=UTC)  # CST is UTC+8
    assert wage.published_raw == "Mon, 28 Sep 2026 10:00:00 CST"
    # HTML becomes text, one paragraph per line
    assert wage.summary.splitlines() == [
        "自2026年10月1日起，本市月最低工资标准由每月2420元调整到每月2540元。",
        "用人单位应当按照调整后的标准支付劳动者工资，不得将加班工资、特殊工作环境津贴计入最低工资。",
    ]
    assert base.published_at == datetime(2026, 9, 29, 2, 0, tzinfo=UTC)  # GMT read by feedparser
    # no guid: the link is the key; a Chinese date without time is local midnight
    assert dispatch.guid is None
    assert dispatch.dedupe_key == f"link:{sha(dispatch.link)}"
    assert dispatch.published_at == datetime(2026, 9, 25, 16, 0, tzinfo=UTC)
    # neither guid nor link: the content hash; an unreadable date is kept and flagged
    assert duty.link is None and duty.guid is None
    assert duty.dedupe_key == f"hash:{duty.content_sha256}"
    assert (duty.published_at, duty.published_raw, duty.date_flagged) == (None, "下周一上午", True)
    assert all(len(i.dedupe_key) <= 80 for i in feed.items)


def test_rss10_rdf():
    feed = parse_feed(body("rss10.rdf"))
    assert feed.version == "rss10"
    first, second = feed.items
    assert first.title == "《上海市工伤保险实施办法》修订要点解读"
    assert first.link == "https://hrss.sh.example.cn/zcjd/20260928/0001.html"
    assert first.published_at == datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
    assert second.published_raw == "2026-09-25 09:30:00"
    assert second.published_at == datetime(2026, 9, 25, 1, 30, tzinfo=UTC)  # Shanghai, not UTC


def test_rss091():
    (item,) = parse_feed(body("rss091.xml")).items
    assert item.title == "Non-compete compensation: courts cap the penalty"
    assert item.published_at is None and not item.date_flagged  # no date given at all


def test_atom_html_title_relative_link_and_script_dropped():
    feed = parse_feed(body("atom.xml"), {"content-type": "application/atom+xml"})
    assert feed.version == "atom10" and feed.title == "劳动争议典型案例"
    probation, overtime = feed.items
    assert probation.title == "案例：试用期内解除劳动合同须证明不符合录用条件"
    assert probation.link == "https://cases.example.cn/labour/2026/0928-case.html"  # xml:base
    assert probation.guid == "urn:uuid:0b6f0a52-2d64-4c8e-a2b8-3f1d5a7e9c01"
    assert "alert" not in probation.summary and probation.summary.startswith("用人单位在试用期")
    assert probation.published_at == datetime(2026, 9, 28, 8, 0, tzinfo=UTC)
    assert overtime.published_raw == "2026-09-21T09:00:00Z"  # only <updated>: used


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/xml"},
                                     {"content-type": "application/rss+xml"}])
def test_gbk_feed_really_encoded_in_gbk(headers):
    raw = body("gbk_rss.xml")
    assert raw.startswith(b'<?xml version="1.0" encoding="GBK"?>')
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    feed = parse_feed(raw, headers)  # text/xml without charset must not mean us-ascii
    assert feed.encoding == "gbk" and feed.warning is None
    assert feed.title == "人社部 政策法规"
    contract, injury, insurance = feed.items
    assert contract.title == "关于印发《劳动合同书（示范文本）》的通知"
    assert "王喆" in contract.summary  # 喆 exists in GBK, not in GB2312
    assert contract.guid == "1001"  # a relative-looking guid stays as the feed wrote it
    assert contract.published_at == datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
    assert injury.published_at == datetime(2026, 9, 27, 16, 0, tzinfo=UTC)
    assert insurance.published_at == datetime(2026, 9, 27, 8, 30, tzinfo=UTC)


def test_gb2312_feed():
    (item,) = parse_feed(body("gb2312_rss.xml")).items
    assert item.title == "关于做好高温天气劳动保护工作的通知"
    assert item.published_at == datetime(2026, 9, 28, 0, 30, tzinfo=UTC)


def test_malformed_xml_keeps_what_could_be_read():
    feed = parse_feed(body("malformed.xml"))
    assert feed.warning and "not well-formed" in feed.warning
    assert [i.guid for i in feed.items] == ["ldzc-0928", "ldzc-0927"]
    assert feed.items[0].summary == "针对拖欠工资案件开通绿色通道 & 优先调解。"


def test_no_entries_and_malformed_is_an_error():
    with pytest.raises(FeedParseError, match="not a readable RSS or Atom feed"):
        parse_feed(body("not_a_feed.html"), {"content-type": "text/html; charset=utf-8"})
    with pytest.raises(FeedParseError, match="empty"):
        parse_feed(b"  \n")
    with pytest.raises(FeedParseError, match="not an RSS or Atom feed"):
        parse_feed(b'<?xml version="1.0"?><config><item>1</item></config>')


def test_an_empty_but_valid_feed_is_fine():
    feed = parse_feed(b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
                      b"<link>https://a.example/</link><description>d</description>"
                      b"</channel></rss>")
    assert feed.items == () and feed.warning is None


def test_entries_without_anything_are_skipped_and_links_must_be_web_links():
    feed = parse_feed(
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><description></description></item>"
        b"<item><title>x</title><link>javascript:alert(1)</link></item>"
        b"<item><link>/zcfg/2.html</link><description>&lt;p&gt;only text&lt;/p&gt;</description></item>"
        b"</channel></rss>", base_url="https://gov.example.cn/feed.xml")
    assert feed.skipped == ("entry 1 has no title, link or text; skipped",)
    script, relative = feed.items
    assert script.link is None and script.dedupe_key.startswith("hash:")
    assert relative.link == "https://gov.example.cn/zcfg/2.html"
    assert relative.title == "only text"  # no title: the start of the text


def test_content_hash_ignores_layout_but_not_wording():
    def item(summary: str):
        return parse_feed(
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            f"<item><title>通知</title><description>{summary}</description></item>"
            "</channel></rss>".encode())
    same = item("第１条  用人单位\n 应当").items[0]
    again = item("第1条 用人单位 应当").items[0]  # full-width digit, other spacing
    other = item("第2条 用人单位 应当").items[0]
    assert same.content_sha256 == again.content_sha256 != other.content_sha256


def test_html_to_text():
    assert html_to_text("<p>一</p><p>二&amp;三<br>四</p>") == "一\n二&三\n四"


def test_parser_never_fetches_a_url_or_opens_a_file(monkeypatch, tmp_path):
    def no_network(*_args, **_kwargs):
        raise AssertionError("the parser tried to fetch something")

    monkeypatch.setattr(feedparser.http, "get", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)

    with pytest.raises(TypeError, match="looks like a URL"):
        parse_feed("https://www.mohrss.gov.cn/rss.xml")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_feed(str(FIXTURES / "rss20.xml"))  # type: ignore[arg-type]
    # bytes that read as a URL are parsed as (not) a feed, never fetched
    with pytest.raises(FeedParseError):
        parse_feed(b"https://www.mohrss.gov.cn/rss.xml")
    # bytes that name an existing feed file are not opened either
    secret = tmp_path / "secret.xml"
    secret.write_bytes(body("rss20.xml"))
    with pytest.raises(FeedParseError):
        parse_feed(str(secret).encode())
