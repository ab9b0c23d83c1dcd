"""The demo's risk types, mapped to the demo courses where one fits, and one signal from
the risk system so the signals page and "My learning" show a risk assignment.

- ``identity_fraud`` → RISK-ID-01 (5 working days); the demo signal: the assembly
  workshop found an impostor hired, so the workshop (the demo trainee and manager
  among them) re-learns identity verification;
- ``social_insurance_gap`` → RISK-SI-01 (10 working days);
- ``performance_dispute`` → RISK-PERF-01 (10 working days);
- ``attendance_anomaly``: no demo course is about attendance, so it stays unmapped
  (its signals are recorded and assign nothing, which the admin page points out).

Loaded once (nothing is done when a risk type exists, or the demo company is missing).
Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from courses.models import Course
from integrations.risk.catalog import RiskTypeInput, create_risk_type, set_mapping
from integrations.risk.models import RiskType
from integrations.risk.signals import SignalInput, receive_signal
from lms.people.models import Department, User
from lms.workday_overrides import load_calendar

__all__ = ["DEMO_TYPES", "RiskDemo", "load_risk_demo"]

# code, Chinese name, English name, description, (course code, working days) or None
DEMO_TYPES: tuple[tuple[str, str, str, str, tuple[str, int] | None], ...] = (
    ("identity_fraud", "冒名入职/身份造假", "Identity fraud at hiring",
     "入职人员冒用他人身份证件或提供虚假身份信息。", ("RISK-ID-01", 5)),
    ("social_insurance_gap", "社保缴纳缺口", "Social insurance gap",
     "应参保未参保、未足额缴纳或超过三十日未办理参保登记。", ("RISK-SI-01", 10)),
    ("attendance_anomaly", "考勤异常", "Attendance anomaly",
     "代打卡、长期缺勤未处理、加班记录与排班不符等。", None),
    ("performance_dispute", "绩效争议", "Performance dispute",
     "员工对考核结果或据此作出的调岗、解除提出异议。", ("RISK-PERF-01", 10)),
)
DEMO_SIGNAL_DEPARTMENT = "MFG-SZ-ASM"  # 装配车间: the demo trainee and manager work there


@dataclass
class RiskDemo:
    types: int = 0
    assigned: int = 0
    skipped: str | None = None

    def line(self) -> str:
        if self.skipped:
            return f"risk demo: not loaded: {self.skipped}"
        return f"risk demo: {self.types} risk types, one signal assigning {self.assigned}"


def load_risk_demo(session: Session, *, now: datetime) -> RiskDemo:
    if session.scalar(select(exists().select_from(RiskType))):
        return RiskDemo(skipped="risk types exist already")
    admin = session.scalar(select(User).where(User.username == "admin"))
    workshop = session.scalar(select(Department).where(Department.code == DEMO_SIGNAL_DEPARTMENT))
    if admin is None or workshop is None:
        return RiskDemo(skipped="the demo company is missing")
    courses = dict(session.execute(select(Course.code, Course.id)).all())
    report = RiskDemo()
    for code, name_zh, name_en, description, mapping in DEMO_TYPES:
        risk_type = create_risk_type(session, RiskTypeInput(code, name_zh, name_en, description),
                                     actor_id=admin.id, now=now)
        report.types += 1
        if mapping is not None and mapping[0] in courses:
            set_mapping(session, risk_type, course_id=courses[mapping[0]],
                        due_working_days=mapping[1], actor_id=admin.id, now=now)
    outcome = receive_signal(session, SignalInput(
        risk_type="identity_fraud", severity="high", scope_kind="department",
        scope_code=DEMO_SIGNAL_DEPARTMENT, external_id="demo-risk-0001",
        note="演示：装配车间发现一名员工冒用同乡身份证入职，车间全员须重新学习入职身份核验。"),
        calendar=load_calendar(session), now=now)
    report.assigned = outcome.signal.assigned
    return report
