"""Alerts about the regulation clock, sent by ``lms tick`` to every enabled trainer and
HR user: once per update when two working days or fewer remain (also when the first
tick after detection comes later than that), and once when the deadline has passed
while the update is still open (not pushed, not set aside).

Sent at most once, twice over: each message carries the dedupe key
``regulation:<id>:<alert>`` (``notify.send`` inserts a recipient/key pair once), and the
update's ``alerts_sent`` remembers the alerts it has had, so later ticks skip it without
looking at messages. Texts are stored evidence of what people were told, so they are
written in Chinese, like the assignment reminders. Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lms.compliance.engine import local_date
from lms.compliance.regulation.clock import (
    ALERT_2_DAYS_LEFT,
    ALERT_OVERDUE,
    SOON_WORKING_DAYS,
    alerts_due,
    read_clock,
)
from lms.compliance.regulation.models import OPEN_STATES, RegulationUpdate
from lms.notify.service import send
from lms.people.models import User, UserRole
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["ALERT_ROLES", "AlertReport", "alert_key", "send_regulation_alerts", "update_link"]

ALERT_ROLES = ("trainer", "hr")
WEEKDAYS = "一二三四五六日"
_STATE_ZH = {"new": "待分诊", "triaged": "已分诊", "material_ready": "材料已就绪"}


def alert_key(update_id: int, alert: str) -> str:
    return f"regulation:{update_id}:{alert}"


def update_link(update_id: int) -> str:
    """The update's page (a path: the tick has no request to build URLs from)."""
    return f"/regulation/updates/{update_id}"


@dataclass
class AlertReport:
    two_days_left: int = 0  # messages sent
    overdue: int = 0
    updates: list[int] = field(default_factory=list)  # updates alerted this run

    def line(self) -> str:
        return (f"regulation alerts: {self.two_days_left} '2 working days left' and "
                f"{self.overdue} 'overdue' messages for {len(self.updates)} updates")


def _recipients(session: Session) -> list[int]:
    return list(session.scalars(
        select(User.id).where(User.is_enabled.is_(True), User.id.in_(
            select(UserRole.user_id).where(UserRole.role.in_(ALERT_ROLES))))
        .order_by(User.id)))


def _day(d: date) -> str:
    return f"{d.isoformat()}（周{WEEKDAYS[d.weekday()]}）"


def _text(row: RegulationUpdate, alert: str, remaining: int | None) -> tuple[str, str]:
    title = " ".join(row.title.split())
    state = _STATE_ZH.get(row.state, row.state)
    clock = (f"检测于 {local_date(row.detected_at).isoformat()}，须在 "
             f"{row.deadline_working_days} 个工作日内推送给相关人员")
    if alert == ALERT_OVERDUE:
        subject = f"法规更新已逾期：{title}"
        body = (f"法规更新《{title}》已超过推送期限 {_day(row.deadline_date)}（{clock}），"
                f"目前仍为“{state}”。请尽快完成分诊、准备材料并推送，或说明不相关的理由。")
    else:
        left = "今天到期" if remaining == 0 else f"还剩 {remaining} 个工作日"
        subject = f"法规更新{left}：{title}"
        body = (f"法规更新《{title}》须在 {_day(row.deadline_date)} 前推送（{clock}），"
                f"{left}，目前为“{state}”。请尽快完成分诊、准备材料并推送。")
    return subject[:200], body


def _candidates(session: Session, today: date, calendar: WorkCalendar) -> list[RegulationUpdate]:
    """Open updates that may need an alert today: not yet alerted overdue, and with the
    deadline before the 3rd working day from today (when the calendar can say)."""
    stmt = (select(RegulationUpdate)
            .where(RegulationUpdate.state.in_(OPEN_STATES),
                   ~RegulationUpdate.alerts_sent.contains(ALERT_OVERDUE))
            .order_by(RegulationUpdate.deadline_date, RegulationUpdate.id))
    try:
        horizon = calendar.add_workdays(today, SOON_WORKING_DAYS + 1)
        stmt = stmt.where(RegulationUpdate.deadline_date < horizon)
    except UnknownYearError:  # look at every open update; read_clock will not guess
        pass
    return list(session.scalars(stmt))


def _mark(session: Session, row: RegulationUpdate, alerts: list[str]) -> None:
    """Add the alerts to the row, guarded by what it held (a concurrent run adds once)."""
    sent = [a for a in row.alerts_sent.split(",") if a]
    new = ",".join([*sent, *(a for a in alerts if a not in sent)])
    session.execute(update(RegulationUpdate)
                    .where(RegulationUpdate.id == row.id,
                           RegulationUpdate.alerts_sent == row.alerts_sent)
                    .values(alerts_sent=new).execution_options(synchronize_session=False))
    session.refresh(row)


def send_regulation_alerts(session: Session, *, calendar: WorkCalendar, now: datetime
                           ) -> AlertReport:
    """Send the alerts due today (idempotent: a second run sends nothing)."""
    today = local_date(now)
    report = AlertReport()
    rows = _candidates(session, today, calendar)
    if not rows:
        return report
    recipients = _recipients(session)
    if not recipients:  # nobody to tell: try again on a later tick
        return report
    for row in rows:
        reading = read_clock(today, row.deadline_date, calendar)
        already = {a for a in row.alerts_sent.split(",") if a}
        due = alerts_due(reading, already)
        if not due:
            continue
        for alert in due:
            subject, body = _text(row, alert, reading.remaining)
            sent = send(session, recipient_ids=recipients, kind="alert", subject=subject,
                        body=body, link=update_link(row.id), dedupe_key=alert_key(row.id, alert))
            if alert == ALERT_2_DAYS_LEFT:
                report.two_days_left += sent
            else:
                report.overdue += sent
        _mark(session, row, due)
        report.updates.append(row.id)
    return report
