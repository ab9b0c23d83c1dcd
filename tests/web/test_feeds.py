"""The admin's feed pages (sources, add/edit, poll now, allow-list) and the
``flask feeds`` commands, driven as an admin would: through forms with CSRF tokens and
the command line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import current_app
from sqlalchemy import func, select
from test_feed_fetch import FIXTURES, FeedServer, fixture

from integrations.feeds import DEMO_FEEDS, poll
from lms.compliance.regulation.models import FeedAllowedHost, FeedSource, RegulationUpdate
from lms.extensions import db
from lms.ledger import LedgerEntry

NOW = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(poll, "clock", lambda: NOW)


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    user.locale = "en"  # messages asserted in English whatever the translations say
    db.session.commit()
    assert client.login("root").status_code == 302
    return user


@pytest.fixture
def server():
    srv = FeedServer()
    yield srv
    srv.stop()


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def field_error(html: str, name: str) -> str:
    """The error shown under the form field ``name`` ("" when none)."""
    match = re.search(rf'<div class="field has-error">\s*<label for="{name}"[^>]*>.*?</label>'
                      rf'.*?<p class="error">([^<]*)</p>', html, re.S)
    return match.group(1) if match else ""


def add_feed(client, **fields):
    data = {"name": "人社部 政策法规", "url": "https://www.mohrss.gov.cn/rss.xml",
            "default_topic": "labour_contracts", "poll_minutes": "60", "enabled": "y"}
    data.update(fields)
    return client.post("/admin/feeds/new", data, token_from="/admin/feeds/new")


def source_named(name: str) -> FeedSource | None:
    return db.session.scalar(select(FeedSource).where(FeedSource.name == name))


def updates_of(source: FeedSource) -> int:
    return db.session.scalar(select(func.count()).select_from(RegulationUpdate)
                             .where(RegulationUpdate.source_id == source.id))


# --- permissions and CSRF --------------------------------------------------------------


def feed_urls(source_id: int) -> list[tuple[str, str]]:
    """Every feed page with its methods, the id filled in."""
    urls = []
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith("feeds."):
            url = rule.rule.replace("<int:source_id>", str(source_id))
            urls.extend((m, url) for m in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    assert len(urls) >= 7, urls
    return urls


def test_only_admins_reach_the_feed_pages(client, people):
    source = FeedSource(name="x", url="https://a.example/rss", default_topic="other",
                        poll_minutes=60, enabled=True, consecutive_failures=0, items_seen=0)
    db.session.add(source)
    db.session.commit()
    assert client.get("/admin/feeds").status_code == 302  # to the login page
    for role in ("trainer", "hr", "auditor"):
        people.user(role, role)
        client.login(role)
        token = client.csrf("/")
        for method, url in feed_urls(source.id):
            if method == "GET":
                resp = client.get(url)
            else:
                resp = client.c.post(url, data={"csrf_token": token, "host": "intra.example",
                                                "name": "y", "url": "https://b.example/"})
            assert resp.status_code == 403, (role, method, url)
        assert 'id="nav-feeds"' not in client.get("/").get_data(as_text=True)
        client.logout()
    assert db.session.scalar(select(func.count()).select_from(FeedAllowedHost)) == 0
    assert db.session.get(FeedSource, source.id).last_polled_at is None


def test_forms_need_the_csrf_token(client, admin):
    data = {"name": "n", "url": "https://a.example/rss", "default_topic": "other",
            "poll_minutes": "60"}
    assert client.c.post("/admin/feeds/new", data=data).status_code == 400
    assert client.c.post("/admin/feeds/hosts", data={"host": "intra.example"}).status_code == 400
    assert db.session.scalar(select(func.count()).select_from(FeedSource)) == 0
    assert db.session.scalar(select(func.count()).select_from(FeedAllowedHost)) == 0


# --- sources ----------------------------------------------------------------------------


def test_admin_adds_and_edits_a_feed(client, admin):
    html = client.get("/admin/feeds").get_data(as_text=True)
    assert 'id="nav-feeds"' in html and "No feeds yet." in html
    resp = add_feed(client)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/feeds")
    source = source_named("人社部 政策法规")
    assert (source.url, source.default_topic, source.poll_minutes, source.enabled) == (
        "https://www.mohrss.gov.cn/rss.xml", "labour_contracts", 60, True)
    assert source.next_poll_at is None and source.created_by_id == admin.id
    html = client.get("/admin/feeds").get_data(as_text=True)
    assert "人社部 政策法规" in html and "Labour contracts" in html and "Never polled" in html
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "feed.source_created"))
    assert json.loads(entry.payload)["url"] == source.url and entry.actor_id == admin.id

    form = client.get(f"/admin/feeds/{source.id}").get_data(as_text=True)
    assert 'value="https://www.mohrss.gov.cn/rss.xml"' in form
    source.etag, source.next_poll_at = '"old"', NOW + timedelta(hours=1)
    db.session.commit()
    resp = client.post(f"/admin/feeds/{source.id}", {
        "name": "人社部 政策法规", "url": "https://www.mohrss.gov.cn/zcfg/rss.xml",
        "default_topic": "social_insurance", "poll_minutes": "240"},  # enabled unticked
        token_from=f"/admin/feeds/{source.id}")
    assert resp.status_code == 302
    db.session.refresh(source)
    assert (source.url, source.default_topic, source.poll_minutes, source.enabled) == (
        "https://www.mohrss.gov.cn/zcfg/rss.xml", "social_insurance", 240, False)
    assert source.etag is None and source.next_poll_at is None  # a new address starts fresh
    assert "Disabled" in client.get("/admin/feeds").get_data(as_text=True)
    updated = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "feed.source_updated"))
    assert json.loads(updated.payload)["before"]["poll_minutes"] == 60


def test_bad_feed_input_is_refused_field_by_field(client, admin):
    add_feed(client)
    resp = add_feed(client, name="人社部 政策法规", url="ftp://files.example/rss",
                    poll_minutes="1", default_topic="nonsense")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert field_error(html, "name") == "Another feed is already called 人社部 政策法规."
    assert field_error(html, "url") == "Only http:// and https:// addresses can be polled."
    assert field_error(html, "poll_minutes") == "Poll every 5 to 10080 minutes."
    assert field_error(html, "default_topic") == "Choose a risk topic from the list."
    resp = add_feed(client, name="", url="not a url", poll_minutes="abc")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert field_error(html, "poll_minutes")  # WTForms: not a number
    resp = add_feed(client, name="", url="https://", poll_minutes="60")
    html = resp.get_data(as_text=True)
    assert field_error(html, "name") == "Enter a name for the feed."
    assert field_error(html, "url") in ("The address has no host name.",
                                        "This is not a valid web address.")
    assert db.session.scalar(select(func.count()).select_from(FeedSource)) == 1


def test_poll_now_records_items_and_shows_them_on_the_list(client, admin, server):
    db.session.add(FeedAllowedHost(host="127.0.0.1", note="test"))
    db.session.commit()
    server.feed("/rss.xml", fixture("rss20.xml"), etag='"1"')
    add_feed(client, name="北京人社", url=server.url("/rss.xml"))
    source = source_named("北京人社")
    resp = client.post(f"/admin/feeds/{source.id}/poll", token_from="/admin/feeds",
                       follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert "北京人社 polled: 4 new updates, 0 already known." in html
    assert re.search(rf'id="feed-{source.id}" data-status="ok" data-items="4"', html)
    assert updates_of(source) == 4

    html = client.post(f"/admin/feeds/{source.id}/poll", token_from="/admin/feeds",
                       follow_redirects=True).get_data(as_text=True)
    assert "北京人社 has not changed since the last poll." in html
    assert 'data-status="not_modified"' in html
    assert client.post("/admin/feeds/999/poll", token_from="/admin/feeds").status_code == 404


def test_a_failing_feed_shows_its_error_on_the_list(client, admin, server):
    server.status("/rss.xml", 500)
    add_feed(client, name="内网镜像", url=server.url("/rss.xml"))
    source = source_named("内网镜像")
    html = client.post(f"/admin/feeds/{source.id}/poll", token_from="/admin/feeds",
                       follow_redirects=True).get_data(as_text=True)
    refusal = ("address 127.0.0.1 is private (loopback); add the host 127.0.0.1 to the "
               "allow-list if this feed may be polled there")
    assert f"Polling 内网镜像 failed: {refusal}" in html
    assert server.requests == []  # refused before any connection
    row = re.search(rf'<tr id="feed-{source.id}".*?</tr>', html, re.S).group(0)
    assert 'data-status="error"' in row and refusal in row and "1 times in a row" in row

    # the admin allows the host: now the server's own error shows
    resp = client.post("/admin/feeds/hosts", {"host": "127.0.0.1", "note": "测试服务器"},
                       token_from="/admin/feeds", follow_redirects=True)
    assert "127.0.0.1 added to the allow-list." in resp.get_data(as_text=True)
    html = client.post(f"/admin/feeds/{source.id}/poll", token_from="/admin/feeds",
                       follow_redirects=True).get_data(as_text=True)
    row = re.search(rf'<tr id="feed-{source.id}".*?</tr>', html, re.S).group(0)
    assert "HTTP 500 Internal Server Error" in row and "2 times in a row" in row

    # malformed but readable: OK with a warning
    server.feed("/rss.xml", fixture("malformed.xml"))
    html = client.post(f"/admin/feeds/{source.id}/poll", token_from="/admin/feeds",
                       follow_redirects=True).get_data(as_text=True)
    row = re.search(rf'<tr id="feed-{source.id}".*?</tr>', html, re.S).group(0)
    assert 'data-status="ok"' in row and 'data-role="feed-warning"' in row
    assert "not well-formed" in row and updates_of(source) == 2


def test_allow_list_add_and_remove(client, admin):
    resp = client.post("/admin/feeds/hosts", {"host": "http://intra.example/rss"},
                       token_from="/admin/feeds")
    assert resp.status_code == 422
    assert field_error(resp.get_data(as_text=True), "host").startswith(
        "Enter only the host name")
    resp = client.post("/admin/feeds/hosts", {"host": " Intra.Example.CN ", "note": "人社局内网镜像"},
                       token_from="/admin/feeds")
    assert resp.status_code == 302
    row = db.session.get(FeedAllowedHost, "intra.example.cn")
    assert row.note == "人社局内网镜像" and row.created_by_id == admin.id
    again = client.post("/admin/feeds/hosts", {"host": "intra.example.cn"},
                        token_from="/admin/feeds")
    assert again.status_code == 422
    assert "intra.example.cn is already on the allow-list." in again.get_data(as_text=True)
    html = client.get("/admin/feeds").get_data(as_text=True)
    assert 'data-host="intra.example.cn"' in html and "人社局内网镜像" in html

    resp = client.post("/admin/feeds/hosts/remove", {"host": "intra.example.cn"},
                       token_from="/admin/feeds", follow_redirects=True)
    assert "intra.example.cn removed from the allow-list." in resp.get_data(as_text=True)
    assert db.session.get(FeedAllowedHost, "intra.example.cn") is None
    kinds = db.session.scalars(select(LedgerEntry.kind).where(
        LedgerEntry.kind.like("feed.host_%")).order_by(LedgerEntry.seq)).all()
    assert kinds == ["feed.host_allowed", "feed.host_removed"]


def test_the_list_renders_in_chinese(client, people):
    people.user("guanliyuan", "admin")
    client.login("guanliyuan")
    db.session.add(FeedSource(name="劳动争议典型案例", url="https://cases.example.cn/atom.xml",
                              default_topic="notice_delivery", poll_minutes=60, enabled=True,
                              consecutive_failures=0, items_seen=0))
    db.session.commit()
    html = client.get("/admin/feeds").get_data(as_text=True)
    assert "劳动争议典型案例" in html and '<html lang="zh-CN">' in html


# --- command line -----------------------------------------------------------------------


def test_cli_add_with_clear_errors(cli):
    ok = cli("feeds", "add", "人社部", "https://www.mohrss.gov.cn/rss.xml",
             "--topic", "social_insurance", "--interval", "120")
    assert ok.exit_code == 0, ok.output
    assert "added feed 人社部" in ok.output
    source = source_named("人社部")
    assert (source.default_topic, source.poll_minutes) == ("social_insurance", 120)

    bad_topic = cli("feeds", "add", "x", "https://a.example/rss", "--topic", "taxes")
    assert bad_topic.exit_code == 2 and "'taxes' is not one of" in bad_topic.output
    bad_interval = cli("feeds", "add", "x", "https://a.example/rss", "--interval", "1")
    assert bad_interval.exit_code == 2 and "--interval" in bad_interval.output
    bad_url = cli("feeds", "add", "x", "gopher://a.example/rss")
    assert bad_url.exit_code == 1 and bad_url.output.startswith("Error: url: ")
    duplicate = cli("feeds", "add", "人社部", "https://b.example/rss")
    assert duplicate.exit_code == 1 and "name: " in duplicate.output
    assert db.session.scalar(select(func.count()).select_from(FeedSource)) == 1


def test_cli_import_ingests_a_saved_gbk_feed_without_network(cli, monkeypatch):
    import integrations.feeds.fetch as fetch_module

    def no_network(*_a, **_k):
        raise AssertionError("import must not fetch")

    monkeypatch.setattr(fetch_module, "fetch_feed", no_network)
    monkeypatch.setattr(poll, "fetch_feed", no_network)
    mohrss, cases = DEMO_FEEDS
    cli("feeds", "add", mohrss.name, mohrss.url, "--topic", mohrss.default_topic)
    result = cli("feeds", "import", str(mohrss.path), "--source", mohrss.name)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{mohrss.name}: 6 new, 0 already known"
    source = source_named(mohrss.name)
    assert source.items_seen == 6 and source.last_polled_at is None
    updates = db.session.scalars(select(RegulationUpdate).where(
        RegulationUpdate.source_id == source.id).order_by(RegulationUpdate.id)).all()
    assert updates[0].title == "关于进一步规范电子劳动合同订立和管理工作的通知"
    assert all(u.detected_at == NOW and u.topic == "labour_contracts" for u in updates)
    flagged = [u for u in updates if u.date_flagged]
    assert [(u.published_raw, u.published_at) for u in flagged] == [("二〇二六年十月三十日", None)]
    cst = next(u for u in updates if u.published_raw == "Fri, 06 Nov 2026 10:00:00 CST")
    assert cst.published_at == datetime(2026, 11, 6, 2, 0, tzinfo=UTC)

    again = cli("feeds", "import", str(mohrss.path), "--source", mohrss.name)
    assert again.output.strip() == f"{mohrss.name}: 0 new, 6 already known"

    cli("feeds", "add", cases.name, cases.url)
    atom = cli("feeds", "import", str(cases.path), "--source", cases.name)
    assert atom.output.strip() == f"{cases.name}: 5 new, 0 already known"


def test_cli_import_is_all_or_nothing(cli, monkeypatch):
    """A failure on the third item (here: a year the work calendar lacks) leaves no
    update and no ledger entry behind, not even the first two."""
    from lms.workdays import UnknownYearError

    real = poll.create_update
    calls = []

    def third_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise UnknownYearError(2027)
        return real(*args, **kwargs)

    monkeypatch.setattr(poll, "create_update", third_fails)
    mohrss = DEMO_FEEDS[0]
    cli("feeds", "add", mohrss.name, mohrss.url)
    result = cli("feeds", "import", str(mohrss.path), "--source", mohrss.name)
    assert result.exit_code == 1 and "nothing imported" in result.output and "2027" in result.output
    assert len(calls) == 3
    assert db.session.scalar(select(func.count()).select_from(RegulationUpdate)) == 0
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "regulation.detected")) == 0
    assert source_named(mohrss.name).items_seen == 0


def test_cli_import_errors(cli, tmp_path):
    cli("feeds", "add", "案例", "https://cases.example.cn/atom.xml")
    unknown = cli("feeds", "import", str(FIXTURES / "atom.xml"), "--source", "没有这个")
    assert unknown.exit_code == 1
    assert "no feed source named '没有这个' (known: 案例)" in unknown.output
    missing = cli("feeds", "import", str(tmp_path / "nope.xml"), "--source", "案例")
    assert missing.exit_code == 1 and "cannot read" in missing.output
    directory = cli("feeds", "import", str(tmp_path), "--source", "案例")
    assert directory.exit_code != 0
    not_a_feed = cli("feeds", "import", str(FIXTURES / "not_a_feed.html"), "--source", "案例")
    assert not_a_feed.exit_code == 1
    assert "nothing imported: not a readable RSS or Atom feed" in not_a_feed.output
    no_source = cli("feeds", "import", str(FIXTURES / "atom.xml"))
    assert no_source.exit_code == 2 and "--source" in no_source.output
    assert db.session.scalar(select(func.count()).select_from(RegulationUpdate)) == 0


def test_cli_poll_by_name_and_due(cli, server, monkeypatch):
    db.session.add(FeedAllowedHost(host="127.0.0.1", note="test"))
    db.session.commit()
    server.feed("/rss.xml", fixture("rss10.rdf"))
    server.status("/down.xml", 502)
    cli("feeds", "add", "上海人社", server.url("/rss.xml"))
    cli("feeds", "add", "坏的", server.url("/down.xml"))

    unknown = cli("feeds", "poll", "不存在")
    assert unknown.exit_code == 1 and "no feed source named '不存在'" in unknown.output

    named = cli("feeds", "poll", "上海人社")
    assert named.exit_code == 0 and named.output.strip() == "上海人社: 2 new, 0 already known"
    failed = cli("feeds", "poll", "坏的")
    assert failed.exit_code == 1 and "坏的: error: HTTP 502 Bad Gateway" in failed.output
    assert source_named("坏的").last_status == "error"

    # due: 上海人社 was polled at NOW (next in 60 min), 坏的 backed off: nothing due
    assert cli("feeds", "poll").output.strip() == "feeds: none due"
    monkeypatch.setattr(poll, "clock", lambda: NOW + timedelta(minutes=61))
    due = cli("feeds", "poll")
    assert due.exit_code == 0
    assert "上海人社: 0 new, 2 already known" in due.output
    assert "feeds: 1 polled, 0 new updates, 0 failed" in due.output
