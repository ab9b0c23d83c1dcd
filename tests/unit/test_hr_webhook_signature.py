"""The HR webhook's signature check, as the HR system's integrator meets it: a call
signed as documented passes; every way of getting it wrong is refused with its own
code, so a wrong clock is told apart from a wrong secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from integrations.hr.webhook import (
    TOLERANCE_SECONDS,
    WebhookRefused,
    sign,
    signature_digest,
    verify,
)

SECRET = b"s3cret-shared-with-the-hr-system"
BODY = b'{"event":"employee.changed","employee":{"employee_no":"E1"}}'
NOW = 1_764_556_800  # unix seconds


def documented_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """What the README tells integrators (openssl dgst -sha256 -hmac ...)."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body,
                                hashlib.sha256).hexdigest()


def refused(**kw) -> str:
    args = {"timestamp": str(NOW), "signature": sign(SECRET, NOW, BODY), "body": BODY,
            "now": float(NOW), **kw}
    with pytest.raises(WebhookRefused) as caught:
        verify(SECRET, **args)
    return caught.value.code


def test_a_call_signed_as_documented_passes_and_returns_its_signature():
    header = documented_signature(SECRET, NOW, BODY)
    assert sign(SECRET, NOW, BODY) == header
    got = verify(SECRET, timestamp=str(NOW), signature=header, body=BODY, now=NOW + 12.5)
    assert got == header.removeprefix("sha256=")


def test_upper_case_hex_and_surrounding_spaces_are_the_same_signature():
    header = sign(SECRET, NOW, BODY)
    upper = "sha256=" + header.removeprefix("sha256=").upper()
    assert verify(SECRET, timestamp=f" {NOW} ", signature=f" {upper} ", body=BODY,
                  now=NOW) == header.removeprefix("sha256=")


@pytest.mark.parametrize("offset", [TOLERANCE_SECONDS, -TOLERANCE_SECONDS])
def test_the_window_edge_is_still_accepted(offset):
    assert verify(SECRET, timestamp=str(NOW), signature=sign(SECRET, NOW, BODY), body=BODY,
                  now=NOW + offset)


@pytest.mark.parametrize("offset", [TOLERANCE_SECONDS + 1, -(TOLERANCE_SECONDS + 1), 86_400])
def test_a_timestamp_outside_five_minutes_is_stale_either_way(offset):
    assert refused(now=float(NOW + offset)) == "stale_timestamp"


def test_a_changed_body_or_another_secret_is_a_bad_signature():
    assert refused(body=BODY.replace(b"E1", b"E2")) == "bad_signature"
    assert refused(signature=sign(b"another-secret-of-16-bytes", NOW, BODY)) == "bad_signature"


def test_a_fresh_timestamp_on_an_old_signature_is_a_bad_signature():
    old = sign(SECRET, NOW - 3600, BODY)  # captured an hour ago, re-sent "now"
    assert refused(signature=old) == "bad_signature"


@pytest.mark.parametrize("header", ["", "sha256=", "sha1=" + "0" * 40, "0" * 64,
                                    "sha256=" + "g" * 64, "sha256=" + "0" * 63])
def test_malformed_signature_headers_are_refused(header):
    assert refused(signature=header) in ("bad_signature", "missing_signature")


@pytest.mark.parametrize("timestamp", ["1764556800.5", "-1764556800", "abc", "1e9"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp):
    assert refused(timestamp=timestamp) == "bad_timestamp"


def test_missing_headers_are_named():
    assert refused(timestamp=None) == "missing_signature"
    assert refused(signature=None) == "missing_signature"


def test_the_replay_digest_is_case_insensitive_and_not_the_signature_itself():
    hex_ = sign(SECRET, NOW, BODY).removeprefix("sha256=")
    assert signature_digest(hex_) == signature_digest(hex_.upper())
    assert signature_digest(hex_) != hex_ and len(signature_digest(hex_)) == 64
