"""The webhook step of ``flask --app wsgi lms tick``: queue new events from the ledger,
then send what is due.

Each outbox batch and each send batch is its own transaction (``commit`` after each),
so a failure later in the tick keeps what was already queued or sent recorded. Safe to
run twice at once: the cursor moves only forward, queued pairs are unique, and sending
claims its rows with a lease first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session

from integrations.webhooks.sender import SendSettings, deliver_due
from integrations.webhooks.service import queue_from_ledger

QUEUE_BATCH = 500
MAX_QUEUE_BATCHES = 20  # at most 10,000 ledger entries per tick; the next tick continues
SEND_BATCH = 50
MAX_SEND_SECONDS = 120.0  # keep well inside the tick's 10-minute lease


@dataclass
class WebhookTickReport:
    entries: int = 0
    queued: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (f"webhooks: {self.queued} deliveries queued from {self.entries} training "
                f"events; {self.delivered} delivered, {self.retrying} to retry, "
                f"{self.failed} failed")
        if self.deferred:
            text += f", {self.deferred} waiting for an unreachable endpoint"
        if self.errors:
            text += f"; last error: {self.errors[-1]}"
        return text


def run_webhook_tick(session: Session, app: Flask, *, now: datetime,
                     commit: Callable[[], None],
                     max_seconds: float = MAX_SEND_SECONDS) -> WebhookTickReport:
    report = WebhookTickReport()
    base_url = app.config["PUBLIC_BASE_URL"]
    for _ in range(MAX_QUEUE_BATCHES):
        batch = queue_from_ledger(session, base_url=base_url, now=now, limit=QUEUE_BATCH)
        commit()
        report.entries += batch.entries
        report.queued += batch.queued
        if not batch.more:
            break
    settings = SendSettings.from_config(app.config)
    vault = app.extensions["id_vault"]
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        sent = deliver_due(session, vault, now=now, limit=SEND_BATCH, settings=settings)
        commit()
        if not sent.claimed:
            break
        report.delivered += sent.delivered
        report.retrying += sent.retrying
        report.failed += sent.failed
        report.deferred += sent.deferred
        report.errors.extend(e for e in sent.errors if e not in report.errors)
    return report
