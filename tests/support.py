"""Constants shared by test modules (import as ``from support import ...``; importing
from ``conftest`` is ambiguous because tests/browser has a conftest of its own)."""

from __future__ import annotations

import os

PG_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgres")
PASSWORD = "correct-horse-battery"


class Clock:
    """A server clock the test moves (monkeypatched over a module's ``clock``)."""

    def __init__(self) -> None:
        from lms.dbtypes import utcnow

        self.now = utcnow().replace(microsecond=0)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)
