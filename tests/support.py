"""Constants shared by test modules (import as ``from support import ...``; importing
from ``conftest`` is ambiguous because tests/browser has a conftest of its own)."""

from __future__ import annotations

import os

PG_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgres")
PASSWORD = "correct-horse-battery"
