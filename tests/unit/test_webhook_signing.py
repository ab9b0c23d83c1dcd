"""The HMAC scheme of webhooks (integrations.signing): what a receiver computes is what
we send, and every kind of tampering or replay is refused."""

from __future__ import annotations

import hashlib
import hmac

from integrations.signing import sign, verify

SECRET = b"whsec_test-secret"
BODY = '{"id":"x","type":"course.completed","data":{"title":"劳动合同法培训"}}'.encode()
TS = 1_790_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex():
    expected = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"


def test_a_genuine_signature_verifies_within_the_tolerance():
    signature = sign(SECRET, TS, BODY)
    assert verify(SECRET, TS, BODY, signature, now=TS)
    assert verify(SECRET, str(TS), BODY, signature, now=TS + 299)  # header values are text
    assert verify(SECRET, TS, BODY, signature, now=TS - 299)  # a sender's clock slightly ahead


def test_changed_body_other_secret_or_other_timestamp_is_refused():
    signature = sign(SECRET, TS, BODY)
    assert not verify(SECRET, TS, BODY.replace(b"course", b"lesson"), signature, now=TS)
    assert not verify(b"whsec_other", TS, BODY, signature, now=TS)
    assert not verify(SECRET, TS + 1, BODY, signature, now=TS)  # the timestamp is signed too


def test_an_old_request_is_refused_even_with_a_genuine_signature():
    signature = sign(SECRET, TS, BODY)
    assert not verify(SECRET, TS, BODY, signature, now=TS + 301)
    assert not verify(SECRET, TS, BODY, signature, now=TS + 3600, tolerance=3599)


def test_malformed_headers_are_refused_not_raised():
    signature = sign(SECRET, TS, BODY)
    assert not verify(SECRET, None, BODY, signature, now=TS)
    assert not verify(SECRET, "yesterday", BODY, signature, now=TS)
    assert not verify(SECRET, TS, BODY, None, now=TS)
    assert not verify(SECRET, TS, BODY, "", now=TS)
    assert not verify(SECRET, TS, BODY, signature.removeprefix("sha256="), now=TS)
    assert not verify(SECRET, TS, BODY, "sha256=签名", now=TS)
