"""Verifying the HR system's webhook calls: pure functions, no Flask, no database.

The scheme is the one of our outbound webhooks (``integrations.signing``): the sender signs ``f"{timestamp}.".encode() + raw_body`` with HMAC-SHA256 under the
shared secret ``HR_WEBHOOK_SECRET`` and sends::

    X-Timestamp: 1764556800
    X-Signature: sha256=<64 lower-case hex digits>

Signing the timestamp together with the body binds the two, so an old captured call
cannot be given a fresh timestamp; the timestamp window (``TOLERANCE_SECONDS``) bounds
how long a captured call stays usable, and within it the receiver refuses a signature
it has seen before (``integrations.hr.models.HrWebhookReceipt``). Verification works
on the raw bytes as received, before anything parses them. Unlike
``integrations.signing.verify`` (a yes/no for our own receivers) it says *why* a call
is refused, so the HR system's integrator sees a stale clock apart from a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from integrations.signing import DEFAULT_TOLERANCE, SCHEME, sign

__all__ = ["TOLERANCE_SECONDS", "WebhookRefused", "sign", "signature_digest", "verify"]

TOLERANCE_SECONDS = DEFAULT_TOLERANCE  # 300 s either way
_RE_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_RE_HEX = re.compile(r"[0-9a-fA-F]{64}")


class WebhookRefused(Exception):
    """The call is not authentic; ``code`` is the API error code, ``message`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def verify(secret: bytes, *, timestamp: str | None, signature: str | None, body: bytes,
           now: float, tolerance: int = TOLERANCE_SECONDS) -> str:
    """Check a call's headers against its raw body; return the signature (lower-case hex).

    Raises :class:`WebhookRefused` with code ``missing_signature`` (a header is absent),
    ``bad_timestamp`` (not unix seconds), ``stale_timestamp`` (more than ``tolerance``
    seconds from ``now``, either way) or ``bad_signature``.
    """
    if not timestamp or not signature:
        raise WebhookRefused("missing_signature",
                             "Send the X-Timestamp and X-Signature headers.")
    timestamp = timestamp.strip()
    if not _RE_TIMESTAMP.fullmatch(timestamp):
        raise WebhookRefused("bad_timestamp", "X-Timestamp must be unix seconds (digits only).")
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookRefused(
            "stale_timestamp",
            f"X-Timestamp is more than {tolerance} seconds away from the server's clock; "
            "sign each call when sending it (and check the sender's clock).")
    presented = signature.strip()
    hex_part = presented[len(SCHEME):] if presented.lower().startswith(SCHEME) else ""
    if not _RE_HEX.fullmatch(hex_part):
        raise WebhookRefused("bad_signature",
                             "X-Signature must be sha256=<64 hex digits>.")
    expected = sign(secret, int(timestamp), body)[len(SCHEME):]
    if not hmac.compare_digest(expected, hex_part.lower()):
        raise WebhookRefused("bad_signature",
                             "X-Signature does not match the body and timestamp.")
    return expected


def signature_digest(signature_hex: str) -> str:
    """What the replay table keeps of a verified signature (its SHA-256)."""
    return hashlib.sha256(signature_hex.lower().encode("ascii")).hexdigest()
