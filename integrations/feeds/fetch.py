"""Fetching a feed over HTTP(S) without letting a feed URL reach inside our network.

An admin types the URL, but the server fetches it, so a URL (or a redirect, or a DNS
answer that changes between check and use) must not make the server read an intranet
service, the cloud metadata endpoint or localhost. Hence:

- http and https only; redirects are followed by hand, at most ``max_redirects``, and
  every hop is checked again from scratch;
- the host is resolved once, every address is checked (private, loopback, link-local,
  multicast, reserved, unspecified — IPv4, IPv6 and IPv4 inside IPv6), and the request
  connects to the checked address itself, with the original ``Host`` header and TLS
  SNI/certificate name, so a second DNS answer (rebinding) is never used;
- hosts an admin put on the allow-list (``FeedAllowedHost``) may resolve anywhere;
- connect/read timeouts within one total budget for the whole fetch (DNS, every hop,
  the body: "poll now" answers well within a web worker's timeout), and a size cap on
  the decoded body;
- conditional GET (ETag / Last-Modified), so an unchanged feed costs a 304.

``fetch_feed`` never raises for network trouble: it returns a ``FetchResult`` whose
``error`` says what went wrong in words an admin can act on. feedparser's own fetcher is
never used (it follows redirects anywhere and has no size limit).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "URL_PROBLEMS",
    "FetchPolicy",
    "FetchResult",
    "Resolver",
    "fetch_feed",
    "normalize_host",
    "url_problem",
]

USER_AGENT = "ComplianceAcademy-FeedPoller/1.0"
ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 2000

# (host, port) -> the addresses it resolves to, in preference order
Resolver = Callable[[str, int], list[str]]


def _setting(config: Mapping[str, Any], key: str, default: float) -> float:
    """A FEED_* setting from the app config, else the environment, else the default."""
    value = config.get(key, os.environ.get(key))
    return float(value) if value not in (None, "") else default


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch. ``verify`` stays True in production; tests pass an SSL
    context trusting their own certificate."""

    connect_timeout: float = 10.0
    read_timeout: float = 10.0
    total_timeout: float = 25.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = USER_AGENT
    verify: ssl.SSLContext | bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FetchPolicy:
        """FEED_CONNECT_TIMEOUT, FEED_READ_TIMEOUT, FEED_TOTAL_TIMEOUT (seconds),
        FEED_MAX_MB and FEED_MAX_REDIRECTS from the app config or the environment."""
        return cls(
            connect_timeout=_setting(config, "FEED_CONNECT_TIMEOUT", 10.0),
            read_timeout=_setting(config, "FEED_READ_TIMEOUT", 10.0),
            total_timeout=_setting(config, "FEED_TOTAL_TIMEOUT", 25.0),
            max_bytes=int(_setting(config, "FEED_MAX_MB", 5.0) * 1024 * 1024),
            max_redirects=int(_setting(config, "FEED_MAX_REDIRECTS", 5)),
        )


@dataclass(frozen=True)
class FetchResult:
    """``status`` is "ok" (``body`` holds the feed), "not_modified" (HTTP 304: nothing
    to parse) or "error" (``error`` says why)."""

    status: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    error: str | None = None
    http_status: int | None = None


class FetchError(Exception):
    """A fetch refused or failed; the message is shown to admins as it is."""


def _seconds(value: float) -> str:
    return f"{value:g}"


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    return f"{size / 1024:g} KB"


def normalize_host(text: str) -> str:
    """How hosts are kept on the allow-list: lower-case, no brackets, no trailing dot."""
    return text.strip().lower().strip("[]").rstrip(".")


# url_problem's codes, as fetch errors say them
URL_PROBLEMS = {
    "empty": "no address",
    "too_long": f"the address is longer than {MAX_URL_LENGTH} characters",
    "invalid": "not a valid address",
    "scheme": "only http:// and https:// addresses can be polled",
    "no_host": "the address has no host name",
}


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a feed address, as a key of ``URL_PROBLEMS`` (None when it
    can). Checks the shape only; where the host resolves is checked at each fetch."""
    url = url.strip()
    if not url:
        return "empty"
    if len(url) > MAX_URL_LENGTH:
        return "too_long"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "invalid"
    if parsed.scheme not in ("http", "https"):
        return "scheme"
    if not parsed.host:
        return "no_host"
    return None


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            kind = _non_public(embedded)
            if kind:
                return kind
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "private (loopback)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not publicly routable"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone id cannot go in a URL
        if address not in seen:
            seen.append(address)
    return seen


class _Budget:
    """The time left of the whole fetch; each step waits at most its own limit and at
    most what is left."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.deadline = time.monotonic() + total

    def limit(self, step: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.exceeded()
        return min(step, left)

    def exceeded(self) -> FetchError:
        return FetchError(f"took longer than {_seconds(self.total)} s in total")


def _resolve(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """Resolve with a time limit (getaddrinfo itself has none)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(resolver, host, port).result(timeout=timeout)
    except FutureTimeout:
        raise FetchError(f"looking up {host} timed out after {_seconds(timeout)} s") from None
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"host {host} could not be resolved ({exc})") from None
    finally:
        pool.shutdown(wait=False)


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    addresses: tuple[str, ...]  # checked; the request connects to these and no others
    literal: bool  # the URL names an IP address itself


def _target(url: str, allowed_hosts: Collection[str], resolver: Resolver,
            policy: FetchPolicy, budget: _Budget) -> _Target:
    problem = url_problem(url)
    if problem:
        raise FetchError(f"{URL_PROBLEMS[problem]}: {url[:200]}")
    parsed = httpx.URL(url.strip())
    host = normalize_host(parsed.host)
    ascii_host = parsed.raw_host.decode("ascii").strip("[]")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = _resolve(resolver, ascii_host, port, budget.limit(policy.connect_timeout))
    if not addresses:
        raise FetchError(f"host {host} has no address")
    allowed = host in {normalize_host(h) for h in allowed_hosts}
    if not allowed:
        for text in addresses:
            kind = _non_public(ipaddress.ip_address(text))
            if kind:
                raise FetchError(f"address {text} is {kind}; add the host {host} to the "
                                 "allow-list if this feed may be polled there")
    return _Target(url=parsed, addresses=tuple(addresses), literal=literal is not None)


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""


def _read(response: httpx.Response, policy: FetchPolicy, budget: _Budget) -> _Response:
    headers = {k.lower(): v for k, v in response.headers.items()}
    result = _Response(response.status_code, response.reason_phrase, headers)
    if response.status_code != 200:
        return result  # a redirect, a 304 or an error: the body is not needed
    too_large = f"response larger than {_size(policy.max_bytes)}"
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(f"{too_large} (the server announced {int(declared)} bytes)")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decoded: a small gzip cannot expand past the cap
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchError(too_large)
        if time.monotonic() > budget.deadline:  # a server dripping bytes just in time
            raise budget.exceeded()
        chunks.append(chunk)
    result.body = b"".join(chunks)
    return result


def _send(client: httpx.Client, target: _Target, headers: dict[str, str],
          policy: FetchPolicy, budget: _Budget) -> _Response:
    """GET the target from its checked addresses in turn (the next one only when a
    connection cannot be made)."""
    request_headers = {**headers, "Host": target.url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https" and not target.literal:
        # the certificate is checked against the host name, not the pinned address
        extensions["sni_hostname"] = target.url.raw_host.decode("ascii")
    failure: Exception | None = None
    for address in target.addresses:
        pinned = target.url.copy_with(host=address)
        connect = budget.limit(policy.connect_timeout)
        read = budget.limit(policy.read_timeout)
        timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        try:
            with client.stream("GET", pinned, headers=request_headers, timeout=timeout,
                               extensions=extensions) as response:
                return _read(response, policy, budget)
        except httpx.ConnectTimeout:
            raise FetchError(f"connection to {target.url.host} timed out after "
                             f"{_seconds(connect)} s") from None
        except httpx.ReadTimeout:
            raise FetchError(f"timed out after {_seconds(read)} s waiting for the server "
                             "to send data") from None
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {_seconds(read)} s") from None
        except httpx.ConnectError as exc:
            failure = exc
    raise FetchError(f"could not connect to {target.url.host} "
                     f"({', '.join(target.addresses)}): {failure}")


def fetch_feed(url: str, *, etag: str | None = None, last_modified: str | None = None,
               allowed_hosts: Collection[str] = (), policy: FetchPolicy | None = None,
               resolver: Resolver = system_resolver) -> FetchResult:
    """GET a feed under ``policy``'s limits; never raises for network problems."""
    policy = policy or FetchPolicy()
    budget = _Budget(policy.total_timeout)
    headers = {"User-Agent": policy.user_agent, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url.strip()
    try:
        # trust_env=False: no proxy from the environment may sit between check and connect
        with httpx.Client(follow_redirects=False, trust_env=False,
                          verify=policy.verify) as client:
            for _hop in range(policy.max_redirects + 1):
                target = _target(current, allowed_hosts, resolver, policy, budget)
                response = _send(client, target, headers, policy, budget)
                if response.status in REDIRECT_CODES:
                    location = response.headers.get("location", "").strip()
                    if not location:
                        raise FetchError(f"HTTP {response.status} redirect without a Location")
                    current = str(target.url.join(location))
                    continue
                return _result(response, current)
            raise FetchError(f"too many redirects (more than {policy.max_redirects})")
    except FetchError as exc:
        return FetchResult(status="error", error=str(exc), final_url=current)
    except httpx.TimeoutException as exc:  # a timeout outside a request (none expected)
        return FetchResult(status="error", final_url=current, error=f"timed out: {exc}")
    except httpx.HTTPError as exc:  # protocol errors, TLS failures, broken connections
        return FetchResult(status="error", final_url=current,
                           error=f"{type(exc).__name__}: {exc}"[:500])


def _result(response: _Response, final_url: str) -> FetchResult:
    common = {"headers": response.headers, "final_url": final_url,
              "http_status": response.status,
              "etag": response.headers.get("etag"),
              "last_modified": response.headers.get("last-modified")}
    if response.status == 304:
        return FetchResult(status="not_modified", **common)
    if response.status != 200:
        reason = f" {response.reason}" if response.reason else ""
        return FetchResult(status="error", error=f"HTTP {response.status}{reason}", **common)
    return FetchResult(status="ok", body=response.body, **common)
