"""HMAC request signing shared by the inbound HR webhook and our outbound webhooks.

One scheme both ways, so an integrator learns it once::

    X-Timestamp: <unix seconds>
    X-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

The timestamp is inside the MAC, so a captured request cannot be replayed later than
the receiver's tolerance; the raw body bytes are signed (not a re-serialised JSON), so
both sides agree on exactly what was signed. Pure functions: no Flask, no database.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["DEFAULT_TOLERANCE", "SCHEME", "sign", "verify"]

SCHEME = "sha256="
DEFAULT_TOLERANCE = 300  # seconds a signed request stays acceptable, either way


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(secret: bytes, timestamp: int | str | None, body: bytes, signature: str | None,
           *, now: float | None = None, tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """Whether ``signature`` is ours for ``body`` at ``timestamp`` and the timestamp is
    within ``tolerance`` seconds of ``now``. Compared in constant time; any malformed
    header is simply False."""
    if not signature or timestamp is None:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    return hmac.compare_digest(expected.encode("ascii"),
                               signature.strip().encode("ascii", "replace"))
