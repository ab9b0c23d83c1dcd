"""The xAPI step of ``flask --app wsgi lms tick``: queue statements for new training
events, then send what is due to the LRS — only when ``XAPI_LRS_URL`` is set.

Each batch is its own transaction (``commit`` after each). When the LRS answers
nothing at all, the tick stops sending until the next one: the back-off decides when
to knock again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session

from integrations.xapi.service import LrsSettings, queue_counts, queue_from_ledger, send_due

QUEUE_BATCH = 500
MAX_QUEUE_BATCHES = 20
SEND_BATCH = 50
MAX_SEND_SECONDS = 120.0


@dataclass
class XapiTickReport:
    enabled: bool = True
    entries: int = 0
    queued: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        if not self.enabled:
            return (f"xapi: disabled (XAPI_LRS_URL is empty); {self.waiting} statements "
                    "waiting")
        text = (f"xapi: {self.queued} statements queued from {self.entries} training events; "
                f"{self.sent} sent, {self.retrying} to retry, {self.failed} failed")
        if self.errors:
            text += f"; last error: {self.errors[-1]}"
        return text


def run_xapi_tick(session: Session, app: Flask, *, now: datetime,
                  commit: Callable[[], None],
                  max_seconds: float = MAX_SEND_SECONDS) -> XapiTickReport:
    settings = LrsSettings.from_config(app.config)
    if settings is None:
        report = XapiTickReport(enabled=False, waiting=queue_counts(session)["pending"])
        commit()
        return report
    report = XapiTickReport()
    base_url = app.config["PUBLIC_BASE_URL"]
    for _ in range(MAX_QUEUE_BATCHES):
        batch = queue_from_ledger(session, base_url=base_url, now=now, limit=QUEUE_BATCH)
        commit()
        report.entries += batch.entries
        report.queued += batch.queued
        if not batch.more:
            break
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        sent = send_due(session, settings, now=now, limit=SEND_BATCH)
        commit()
        if not sent.claimed:
            break
        report.sent += sent.sent
        report.retrying += sent.retrying
        report.failed += sent.failed
        report.errors.extend(e for e in sent.errors if e not in report.errors)
        if sent.sent == 0 and sent.failed == 0:  # the LRS is down: wait for the back-off
            break
    return report
