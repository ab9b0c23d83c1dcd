"""Pruning of the integrations' own logs, run by the tick after the core's housekeeping.

The API call log is kept ``API_CALL_LOG_DAYS`` (what an integration changed is evidence
in the ledger, not in this log). Receipts of HR webhook calls, kept against replays, go
after a day: by then their timestamps are far outside the 300-second window, so a replay
is refused anyway. Idempotent, like every tick step; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from integrations.hr.models import HrWebhookReceipt
from integrations.tokens import ApiCall

API_CALL_LOG_DAYS = 180
HR_WEBHOOK_RECEIPT_TTL = timedelta(days=1)  # far beyond the webhook's 300 s window


@dataclass(frozen=True)
class PruneResult:
    api_calls_pruned: int
    webhook_receipts_pruned: int

    def line(self) -> str:
        return (f"integrations: {self.api_calls_pruned} old API calls pruned, "
                f"{self.webhook_receipts_pruned} old HR webhook receipts pruned")


def prune_integration_logs(session: Session, now: datetime, *,
                           api_call_log_days: int = API_CALL_LOG_DAYS) -> PruneResult:
    api_calls = session.execute(
        delete(ApiCall).where(ApiCall.at < now - timedelta(days=api_call_log_days))
    ).rowcount
    receipts = session.execute(
        delete(HrWebhookReceipt).where(HrWebhookReceipt.received_at < now - HR_WEBHOOK_RECEIPT_TTL)
    ).rowcount
    return PruneResult(api_calls or 0, receipts or 0)
