"""Fetching and polling feeds against a real HTTP(S) server on 127.0.0.1: conditional
GET (304), timeouts, size cap, redirects, private addresses refused unless allowed,
the pinned address with the original Host/SNI, deduplication across polls, failures
recorded on the source with back-off, and the tick's per-source transactions."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from integrations.feeds.fetch import FetchPolicy, fetch_feed
from integrations.feeds.poll import backoff_minutes, poll_due_feeds, poll_source
from lms.compliance.regulation.models import FeedAllowedHost, FeedSource, RegulationUpdate
from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.workday_overrides import load_calendar

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
NOW = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)  # Monday 10:00 in Beijing
FAST = FetchPolicy(connect_timeout=2, read_timeout=2, total_timeout=10)

Route = Callable[[BaseHTTPRequestHandler], None]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FeedServer:
    """A real HTTP server in a thread. ``routes`` maps a path to a function that
    answers the request; ``requests`` records (path, headers) of every request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # slow routes wait on it
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, *_args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- routes ---------------------------------------------------------------------

    def feed(self, path: str, body: bytes, *, etag: str | None = None,
             last_modified: str | None = None,
             content_type: str = "application/rss+xml") -> None:
        """Serve ``body``; 304 when the client sends back the current validators."""
        def route(handler: BaseHTTPRequestHandler) -> None:
            sent_etag = handler.headers.get("If-None-Match")
            sent_date = handler.headers.get("If-Modified-Since")
            if (etag and sent_etag == etag) or (not etag and last_modified
                                                 and sent_date == last_modified):
                handler.send_response(304)
                handler.end_headers()
                return
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            if etag:
                handler.send_header("ETag", etag)
            if last_modified:
                handler.send_header("Last-Modified", last_modified)
            handler.end_headers()
            handler.wfile.write(body)
        self.routes[path] = route

    def status(self, path: str, code: int) -> None:
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(code)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        self.routes[path] = route

    def redirect(self, path: str, location: str, code: int = 302) -> None:
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(code)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        self.routes[path] = route

    def slow(self, path: str) -> None:
        """Accept the request and send nothing until the test ends."""
        def route(handler: BaseHTTPRequestHandler) -> None:
            self.release.wait(10)
        self.routes[path] = route

    def drip(self, path: str) -> None:
        """Headers at once, then a byte every 50 ms: never idle long enough for a read
        timeout, never done."""
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/rss+xml")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            try:
                while not self.release.wait(0.05):
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
            except OSError:
                pass
            handler.close_connection = True
        self.routes[path] = route

    def stream(self, path: str, size: int, *, announce: bool) -> None:
        """A body of ``size`` bytes, with or without a Content-Length."""
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/xml")
            if announce:
                handler.send_header("Content-Length", str(size))
            else:
                handler.send_header("Connection", "close")
            handler.end_headers()
            chunk = b"<!-- padding -->" * 4096
            sent = 0
            try:
                while sent < size:
                    handler.wfile.write(chunk[: size - sent])
                    sent += len(chunk)
            except OSError:  # the client hung up at its cap, as it should
                pass
            handler.close_connection = True
        self.routes[path] = route


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer()
    yield srv
    srv.stop()


@pytest.fixture
def allow_local(app):
    db.session.add(FeedAllowedHost(host="127.0.0.1", note="test server"))
    db.session.commit()


def make_source(name: str, url: str, **kw) -> FeedSource:
    source = FeedSource(name=name, url=url, default_topic=kw.pop("default_topic", "other"),
                        poll_minutes=kw.pop("poll_minutes", 60), enabled=kw.pop("enabled", True),
                        consecutive_failures=0, items_seen=0, **kw)
    db.session.add(source)
    db.session.commit()
    return source


def update_count(source: FeedSource | None = None) -> int:
    query = select(func.count()).select_from(RegulationUpdate)
    if source is not None:
        query = query.where(RegulationUpdate.source_id == source.id)
    return db.session.scalar(query)


# --- fetch ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:9/feed", "127.0.0.1 is private (loopback)"),
    ("http://[::1]:9/feed", "::1 is private (loopback)"),
    ("http://10.20.30.40/rss.xml", "10.20.30.40 is private"),
    ("http://192.168.1.10/rss.xml", "192.168.1.10 is private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
    ("http://[fe80::1]/rss.xml", "fe80::1 is link-local"),
    ("http://0.0.0.0:9/feed", "0.0.0.0 is unspecified"),
    ("http://224.0.0.1/rss.xml", "224.0.0.1 is multicast"),
    ("http://[::ffff:127.0.0.1]:9/feed", "::ffff:7f00:1 is private (loopback)"),
    ("http://[fc00::5]/rss.xml", "fc00::5 is private"),
    ("http://100.64.0.1/rss.xml", "100.64.0.1 is not publicly routable"),
    ("http://240.0.0.1/rss.xml", "240.0.0.1 is private"),
])
def test_non_public_addresses_are_refused_without_the_allow_list(url, kind):
    result = fetch_feed(url, policy=FAST)
    assert result.status == "error"
    assert result.error.startswith(f"address {kind}; add the host ")
    assert "allow-list" in result.error


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(server):
    server.feed("/rss.xml", fixture("rss20.xml"))
    resolved = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    result = fetch_feed(server.url("/rss.xml", host="feeds.intranet.test"), policy=FAST,
                        resolver=resolver)
    assert result.status == "error"
    assert result.error == ("address 127.0.0.1 is private (loopback); add the host "
                            "feeds.intranet.test to the allow-list if this feed may be "
                            "polled there")
    assert server.requests == [] and resolved == ["feeds.intranet.test"]


def test_allowed_host_connects_to_the_address_it_checked_with_its_own_host_header(server):
    """Resolved once per hop and connected by address: a second, different DNS answer
    (rebinding) is never asked for, and the server still sees the real Host."""
    server.feed("/rss.xml", fixture("rss20.xml"))
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    calls = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return next(answers)

    result = fetch_feed(server.url("/rss.xml", host="Feeds.Intranet.Test"), policy=FAST,
                        allowed_hosts={"feeds.intranet.test"}, resolver=resolver)
    assert result.status == "ok", result.error
    assert result.body == fixture("rss20.xml")
    assert calls == [("feeds.intranet.test", server.port)]
    (path, headers), = server.requests
    assert path == "/rss.xml" and headers["host"] == f"feeds.intranet.test:{server.port}"


def test_unresolvable_and_non_http_addresses(server):
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    result = fetch_feed("http://no-such-host.invalid/rss", policy=FAST, resolver=fails)
    assert result.error == ("host no-such-host.invalid could not be resolved "
                            "(Name or service not known)")
    assert fetch_feed("ftp://example.com/rss.xml").error.startswith(
        "only http:// and https:// addresses can be polled")
    assert fetch_feed("file:///etc/passwd").status == "error"


def test_conditional_get_etag_gives_304_and_nothing_to_parse(server):
    server.feed("/rss.xml", fixture("rss20.xml"), etag='"v1"')
    first = fetch_feed(server.url("/rss.xml"), allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert first.status == "ok" and first.etag == '"v1"' and first.body
    assert "if-none-match" not in server.requests[0][1]

    second = fetch_feed(server.url("/rss.xml"), etag=first.etag,
                        allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert server.requests[1][1]["if-none-match"] == '"v1"'
    assert second.status == "not_modified" and second.body == b"" and second.error is None


def test_conditional_get_last_modified(server):
    stamp = "Mon, 28 Sep 2026 02:00:00 GMT"
    server.feed("/rss.xml", fixture("rss20.xml"), last_modified=stamp)
    first = fetch_feed(server.url("/rss.xml"), allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert first.last_modified == stamp
    second = fetch_feed(server.url("/rss.xml"), last_modified=stamp,
                        allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert server.requests[1][1]["if-modified-since"] == stamp
    assert second.status == "not_modified"


def test_a_server_slower_than_the_read_timeout(server):
    server.slow("/slow.xml")
    policy = FetchPolicy(connect_timeout=2, read_timeout=0.3)
    result = fetch_feed(server.url("/slow.xml"), allowed_hosts={"127.0.0.1"}, policy=policy)
    assert result.status == "error"
    assert result.error.startswith("timed out after 0.3 s")


def test_a_server_dripping_bytes_hits_the_total_budget(server):
    server.drip("/drip.xml")
    policy = FetchPolicy(connect_timeout=2, read_timeout=2, total_timeout=0.5)
    result = fetch_feed(server.url("/drip.xml"), allowed_hosts={"127.0.0.1"}, policy=policy)
    assert result.status == "error" and result.error == "took longer than 0.5 s in total"


@pytest.mark.parametrize("announce", [True, False])
def test_a_body_over_the_cap_is_refused(server, announce):
    server.stream("/huge.xml", 5 * 1024 * 1024 + 1, announce=announce)
    result = fetch_feed(server.url("/huge.xml"), allowed_hosts={"127.0.0.1"},
                        policy=FetchPolicy(connect_timeout=2, read_timeout=2))
    assert result.status == "error" and result.body == b""
    assert result.error.startswith("response larger than 5 MB")
    assert ("announced" in result.error) == announce


def test_redirects_are_followed_to_a_limit(server):
    for hop in range(7):
        server.redirect(f"/r{hop}", f"/r{hop + 1}")
    server.feed("/r7", fixture("atom.xml"))
    result = fetch_feed(server.url("/r0"), allowed_hosts={"127.0.0.1"},
                        policy=FetchPolicy(connect_timeout=2, read_timeout=2, max_redirects=5))
    assert result.status == "error"
    assert result.error == "too many redirects (more than 5)"
    assert [path for path, _ in server.requests] == ["/r0", "/r1", "/r2", "/r3", "/r4", "/r5"]

    server.requests.clear()
    ok = fetch_feed(server.url("/r4"), allowed_hosts={"127.0.0.1"},
                    policy=FetchPolicy(connect_timeout=2, read_timeout=2, max_redirects=3))
    assert ok.status == "ok" and ok.final_url == server.url("/r7")
    assert ok.body == fixture("atom.xml")


def test_every_redirect_hop_is_checked_again(server):
    """An allowed host may not bounce the poller to a host that is not allowed."""
    server.redirect("/moved", server.url("/rss.xml", host="localhost"), code=301)
    server.feed("/rss.xml", fixture("rss20.xml"))
    result = fetch_feed(server.url("/moved"), allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert result.status == "error"
    assert "is private (loopback); add the host localhost to the allow-list" in result.error
    assert [path for path, _ in server.requests] == ["/moved"]
    redirect_to_file = FeedServer()
    try:
        redirect_to_file.redirect("/x", "file:///etc/passwd")
        bad = fetch_feed(redirect_to_file.url("/x"), allowed_hosts={"127.0.0.1"}, policy=FAST)
        assert bad.error.startswith("only http:// and https:// addresses can be polled")
    finally:
        redirect_to_file.stop()


def test_http_errors_are_named(server):
    server.status("/broken.xml", 500)
    result = fetch_feed(server.url("/broken.xml"), allowed_hosts={"127.0.0.1"}, policy=FAST)
    assert result.status == "error" and result.error == "HTTP 500 Internal Server Error"
    assert fetch_feed(server.url("/nowhere"), allowed_hosts={"127.0.0.1"},
                      policy=FAST).error == "HTTP 404 Not Found"


def _self_signed(tmp_path: Path, name: str) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def test_https_to_a_pinned_address_checks_the_certificate_of_the_host_name(tmp_path):
    pem = _self_signed(tmp_path, "feeds.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(pem)
    srv = FeedServer(tls=server_tls)
    try:
        srv.feed("/atom.xml", fixture("atom.xml"), content_type="application/atom+xml")
        trust = ssl.create_default_context(cafile=str(pem))
        policy = FetchPolicy(connect_timeout=2, read_timeout=2, verify=trust)

        def resolver(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        allowed = {"feeds.example.test", "other.example.test"}
        good = fetch_feed(srv.url("/atom.xml", host="feeds.example.test", scheme="https"),
                          allowed_hosts=allowed, policy=policy, resolver=resolver)
        assert good.status == "ok", good.error
        assert good.body == fixture("atom.xml")
        assert srv.requests[0][1]["host"] == f"feeds.example.test:{srv.port}"

        wrong = fetch_feed(srv.url("/atom.xml", host="other.example.test", scheme="https"),
                           allowed_hosts=allowed, policy=policy, resolver=resolver)
        assert wrong.status == "error" and "certificate" in wrong.error.lower()
    finally:
        srv.stop()


# --- poll -------------------------------------------------------------------------------


def test_poll_records_new_items_then_304_then_only_the_really_new_one(app, server, allow_local):
    server.feed("/rss.xml", fixture("rss20.xml"), etag='"a"')
    source = make_source("北京人社", server.url("/rss.xml"), default_topic="social_insurance")
    calendar = load_calendar(db.session)

    first = poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert (first.status, first.new, first.duplicates) == ("ok", 4, 0)
    assert (source.last_status, source.etag, source.items_seen) == ("ok", '"a"', 4)
    assert source.last_polled_at == NOW and source.next_poll_at == NOW + timedelta(minutes=60)
    updates = db.session.scalars(select(RegulationUpdate).order_by(RegulationUpdate.id)).all()
    assert updates[0].title == "关于调整北京市最低工资标准的通知"
    assert all(u.origin == "feed" and u.state == "new" and u.detected_at == NOW
               and u.topic == "social_insurance" for u in updates)
    assert updates[0].deadline_date == dt.date(2026, 10, 13)  # 7 working days past 国庆
    flagged = updates[3]
    assert (flagged.published_at, flagged.published_raw, flagged.date_flagged) == (
        None, "下周一上午", True)
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.kind == "regulation.detected")) == 4

    later = NOW + timedelta(hours=1)
    second = poll_source(db.session, source, now=later, calendar=calendar, policy=FAST)
    db.session.commit()
    assert server.requests[-1][1]["if-none-match"] == '"a"'
    assert second.status == "not_modified" and source.last_status == "not_modified"
    assert update_count() == 4 and source.next_poll_at == later + timedelta(minutes=60)

    # the site regenerates every guid and adds one item: same link and title = same item
    server.feed("/rss.xml", fixture("rss20_regenerated.xml"), etag='"b"')
    third = poll_source(db.session, source, now=later, calendar=calendar, policy=FAST)
    db.session.commit()
    assert (third.new, third.duplicates) == (1, 4)
    assert update_count() == 5 and source.items_seen == 5 and source.etag == '"b"'
    newest = db.session.scalar(select(RegulationUpdate).order_by(RegulationUpdate.id.desc()))
    assert newest.title == "关于进一步做好女职工产假期间待遇保障的通知"

    # a server that ignores validators: the same body again adds nothing
    server.feed("/rss.xml", fixture("rss20_regenerated.xml"))
    again = poll_source(db.session, source, now=later, calendar=calendar, policy=FAST)
    db.session.commit()
    assert (again.new, again.duplicates) == (0, 5) and update_count() == 5


def test_failures_are_recorded_backed_off_and_keep_earlier_items(app, server, allow_local):
    server.feed("/rss.xml", fixture("atom.xml"))
    source = make_source("案例", server.url("/rss.xml"), poll_minutes=30)
    calendar = load_calendar(db.session)
    poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert update_count(source) == 2

    server.status("/rss.xml", 500)
    failed = poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert failed.status == "error" and failed.error == "HTTP 500 Internal Server Error"
    assert (source.last_status, source.last_error) == ("error", "HTTP 500 Internal Server Error")
    assert source.last_error_at == NOW and source.consecutive_failures == 1
    assert source.next_poll_at == NOW + timedelta(minutes=60)  # 30 min doubled
    poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert source.consecutive_failures == 2 and source.next_poll_at == NOW + timedelta(minutes=120)
    assert update_count(source) == 2  # nothing lost

    server.feed("/rss.xml", fixture("not_a_feed.html"), content_type="text/html")
    poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert source.last_error.startswith("not a readable RSS or Atom feed")
    assert source.consecutive_failures == 3

    server.feed("/rss.xml", fixture("atom.xml"))
    ok = poll_source(db.session, source, now=NOW, calendar=calendar, policy=FAST)
    db.session.commit()
    assert (ok.status, ok.new, ok.duplicates) == ("ok", 0, 2)
    assert source.consecutive_failures == 0 and source.last_status == "ok"
    assert source.next_poll_at == NOW + timedelta(minutes=30)


def test_backoff_grows_to_a_day():
    assert [backoff_minutes(60, n) for n in range(6)] == [60, 120, 240, 480, 960, 1440]
    assert backoff_minutes(60, 40) == 1440
    assert backoff_minutes(3 * 1440, 2) == 3 * 1440  # a long interval is not shortened


def test_malformed_feed_keeps_its_entries_and_warns(app, server, allow_local):
    server.feed("/rss.xml", fixture("malformed.xml"))
    source = make_source("仲裁院", server.url("/rss.xml"))
    summary = poll_source(db.session, source, now=NOW, calendar=load_calendar(db.session),
                          policy=FAST)
    db.session.commit()
    assert (summary.status, summary.new) == ("ok", 2)
    assert source.last_status == "ok" and source.last_error_at == source.last_polled_at
    assert source.last_error.startswith("malformed feed, entries read anyway:")


def test_an_unknown_calendar_year_writes_nothing_and_refetches_next_time(app, server,
                                                                         allow_local):
    server.feed("/rss.xml", fixture("atom.xml"), etag='"x"')
    source = make_source("案例", server.url("/rss.xml"))
    december = datetime(2026, 12, 28, 2, 0, tzinfo=UTC)  # 7 working days run into 2027
    summary = poll_source(db.session, source, now=december, calendar=load_calendar(db.session),
                          policy=FAST)
    db.session.commit()
    assert summary.status == "error" and "2027" in summary.error
    assert update_count() == 0 and source.items_seen == 0
    assert source.etag is None  # else the next poll would get a 304 and never see them
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.kind == "regulation.detected")) == 0


def test_a_failure_midway_through_a_feed_keeps_nothing_of_it(app, server, allow_local,
                                                            monkeypatch):
    import integrations.feeds.poll as poll_module
    from lms.workdays import UnknownYearError

    server.feed("/rss.xml", fixture("rss20.xml"), etag='"e"')
    source = make_source("北京人社", server.url("/rss.xml"))
    real, calls = poll_module.create_update, []

    def third_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise UnknownYearError(2027)
        return real(*args, **kwargs)

    monkeypatch.setattr(poll_module, "create_update", third_fails)
    summary = poll_source(db.session, source, now=NOW, calendar=load_calendar(db.session),
                          policy=FAST)
    db.session.commit()
    db.session.expire_all()
    assert summary.status == "error" and "2027" in summary.error and len(calls) == 3
    assert update_count() == 0 and source.items_seen == 0 and source.etag is None
    assert source.last_status == "error" and source.last_polled_at == NOW

    monkeypatch.setattr(poll_module, "create_update", real)
    again = poll_source(db.session, source, now=NOW, calendar=load_calendar(db.session),
                        policy=FAST)
    db.session.commit()
    assert (again.new, update_count(), source.etag) == (4, 4, '"e"')
    assert "if-none-match" not in server.requests[-1][1]


def test_due_feeds_each_in_their_own_transaction(app, server, allow_local):
    server.feed("/good.xml", fixture("rss10.rdf"))
    server.status("/bad.xml", 503)
    good = make_source("好的", server.url("/good.xml"))
    bad = make_source("坏的", server.url("/bad.xml"))
    crash = make_source("崩溃", server.url("/crash.xml"))
    later = make_source("未到期", server.url("/good.xml"), next_poll_at=NOW + timedelta(minutes=5))
    off = make_source("停用", server.url("/good.xml"), enabled=False)
    due = make_source("到期", server.url("/good.xml"), next_poll_at=NOW - timedelta(minutes=1))

    def fetcher(url: str, **kwargs):
        if url.endswith("/crash.xml"):
            raise RuntimeError("boom")
        return fetch_feed(url, **kwargs)

    commits = []

    def commit() -> None:
        commits.append(1)
        db.session.commit()

    report = poll_due_feeds(db.session, now=NOW, calendar=load_calendar(db.session),
                            commit=commit, fetcher=fetcher, policy=FAST)
    assert report.line() == "feeds: 4 polled, 4 new updates, 2 failed"
    assert report.crashed == ["崩溃: RuntimeError: boom"]
    assert len(commits) >= 5
    db.session.expire_all()
    assert update_count(good) == 2 and update_count(due) == 2
    assert update_count(later) == 0 and update_count(off) == 0
    assert later.last_polled_at is None and off.last_polled_at is None
    assert (bad.last_status, bad.last_error) == ("error", "HTTP 503 Service Unavailable")
    assert (crash.last_status, crash.last_error) == ("error", "internal error: RuntimeError")
    assert crash.consecutive_failures == 1

    # nothing is due any more
    assert poll_due_feeds(db.session, now=NOW, calendar=load_calendar(db.session),
                          commit=db.session.commit, fetcher=fetcher,
                          policy=FAST).line() == "feeds: none due"


def test_the_tick_polls_due_feeds(app, server, allow_local, monkeypatch):
    import lms.dbtypes

    monkeypatch.setattr(lms.dbtypes, "utcnow", lambda: NOW)
    server.feed("/rss.xml", fixture("gbk_rss.xml"), content_type="text/xml")
    server.status("/down.xml", 500)
    source = make_source("人社部", server.url("/rss.xml"))
    down = make_source("坏的", server.url("/down.xml"))
    result = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert "feeds: 2 polled, 3 new updates, 1 failed" in result.output, result.output
    db.session.expire_all()
    assert update_count(source) == 3 and source.last_status == "ok"
    assert down.last_status == "error" and down.next_poll_at == NOW + timedelta(minutes=120)
    titles = set(db.session.scalars(select(RegulationUpdate.title)))
    assert "关于印发《劳动合同书（示范文本）》的通知" in titles
