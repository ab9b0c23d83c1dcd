"""Regulation updates for the demo company: two feed sources whose saved feed files are
ingested like a poll, a few updates entered by hand, and the workflow walked so that
every state is on screen (new, triaged, not relevant, material ready, pushed on time,
pushed late, closed) and the dashboard shows red, amber and green clocks.

Detection times are counted back from now in Chinese working days, so the clocks look
the same whenever the demo is loaded. The feed part lives in ``integrations`` (a layer
above this one), so the caller hands in the saved feeds and the function that ingests
a feed body (``integrations.feeds.poll.ingest_bytes``); ``lms demo`` does.

Loaded once: nothing is done when a demo feed source exists already, or when the demo
company (its trainer and HR logins) is missing. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from courses.models import Course
from lms.compliance.engine import SHANGHAI, local_date
from lms.compliance.regulation import intake, workflow
from lms.compliance.regulation.models import FeedSource, RegulationUpdate
from lms.dbtypes import utcnow
from lms.people.models import Department, User
from lms.workday_overrides import load_calendar
from lms.workdays import WorkCalendar

__all__ = ["DemoFeedSpec", "Ingest", "RegulationDemo", "load_regulation_demo"]


class DemoFeedSpec(Protocol):
    """What the demo needs of a saved feed (``integrations.feeds.DemoFeed``)."""

    name: str
    url: str
    default_topic: str
    poll_minutes: int

    @property
    def path(self) -> Path: ...


# (session, source, feed body, now, calendar) -> anything; records the feed's new items
Ingest = Callable[[Session, FeedSource, bytes, datetime, WorkCalendar], Any]


@dataclass
class RegulationDemo:
    sources: int = 0
    updates: int = 0
    skipped: str | None = None  # why nothing was loaded

    def line(self) -> str:
        if self.skipped:
            return f"regulation demo: not loaded ({self.skipped})"
        return f"regulation demo: {self.sources} feed sources, {self.updates} updates"


class _Days:
    """Beijing times N working days before today."""

    def __init__(self, calendar: WorkCalendar, now: datetime) -> None:
        self.calendar = calendar
        self.today = local_date(now)

    def ago(self, n: int, hour: int = 10) -> datetime:
        day = self.calendar.add_workdays(self.today, -n)
        return datetime.combine(day, time(hour), SHANGHAI).astimezone(UTC)


def _find(session: Session, title_start: str) -> RegulationUpdate:
    return session.scalars(select(RegulationUpdate).where(
        RegulationUpdate.title.startswith(title_start)).order_by(RegulationUpdate.id)).first()


def _department_ids(session: Session, *codes: str) -> list[int]:
    return list(session.scalars(select(Department.id).where(Department.code.in_(codes))))


def load_regulation_demo(session: Session, *, feeds: Iterable[DemoFeedSpec], ingest: Ingest,
                         now: datetime | None = None) -> RegulationDemo:
    """Load the regulation demo once (see the module docstring). Raises
    ``UnknownYearError`` when the working days counted back from today reach a year the
    calendar does not know; the caller rolls back then."""
    feeds = list(feeds)
    report = RegulationDemo()
    if session.scalar(select(FeedSource.id).where(
            FeedSource.name.in_([f.name for f in feeds])).limit(1)) is not None:
        report.skipped = "already loaded"
        return report
    users = {u.username: u for u in session.scalars(
        select(User).where(User.username.in_(("trainer", "hr", "admin"))))}
    if "trainer" not in users or "hr" not in users:
        report.skipped = "the demo company is not loaded"
        return report
    now = now or utcnow()
    _load(session, feeds, ingest, load_calendar(session), now, users, report)
    return report


def _load(session: Session, feeds: list[DemoFeedSpec], ingest: Ingest, calendar: WorkCalendar,
          now: datetime, users: dict[str, User], report: RegulationDemo) -> None:
    days = _Days(calendar, now)
    trainer, hr = users["trainer"].id, users["hr"].id
    admin = users.get("admin")

    # the feeds, as two polls: 人社部 three working days ago, the cases yesterday
    for spec, detected in zip(feeds, (days.ago(3, 9), days.ago(1, 15)), strict=False):
        source = FeedSource(name=spec.name, url=spec.url, default_topic=spec.default_topic,
                            poll_minutes=spec.poll_minutes, enabled=False,
                            created_by_id=admin.id if admin else None, created_at=detected)
        session.add(source)
        session.flush()
        ingest(session, source, spec.path.read_bytes(), detected, calendar)
        report.sources += 1

    def manual(title: str, link: str, summary: str, detected: datetime) -> RegulationUpdate:
        return intake.enter_manually(session, title=title, summary=summary, link=link,
                                     published_on=local_date(detected), actor_id=trainer,
                                     detected_at=detected, calendar=calendar)

    def everyone_in(*codes: str) -> workflow.Audience:
        return workflow.Audience(department_ids=_department_ids(session, *codes))

    # entered by hand, older: one pushed late, one pushed on time and closed
    late = manual("上海市关于调整最低工资标准的通知", "https://www.shanghai.gov.cn/demo/min-wage.html",
                  "自下月 1 日起，本市月最低工资标准调整为 2,740 元。", days.ago(20, 11))
    workflow.triage(session, late, topic="attendance", audience=everyone_in("RET-EC"),
                    note="华东区门店员工工资核算需同步调整。", actor_id=hr, now=days.ago(18, 14))
    workflow.material_briefing(
        session, late, title="最低工资标准调整说明",
        body="自下月 1 日起，上海市月最低工资标准调整为 2,740 元，小时最低工资 25 元。\n"
             "门店排班与加班工资核算请按新标准执行。",
        require_signature=False, actor_id=trainer, now=days.ago(14, 16))
    workflow.push(session, late, due_working_days=5, actor_id=trainer, now=days.ago(10, 10),
                  calendar=calendar)

    closed = manual("江苏省工资支付条例（修订）施行", "https://www.jiangsu.gov.cn/demo/wage-payment.html",
                    "明确工资支付周期与拖欠工资的法律责任。", days.ago(15, 9))
    workflow.triage(session, closed, topic="attendance", audience=everyone_in("MFG-SZ"),
                    note="苏州工厂适用。", actor_id=trainer, now=days.ago(15, 15))
    workflow.material_briefing(
        session, closed, title="《江苏省工资支付条例》修订要点",
        body="一、工资至少每月支付一次。\n二、延期支付须经职工代表协商同意。\n三、拖欠工资将被责令限期支付。",
        require_signature=False, actor_id=trainer, now=days.ago(13, 11))
    workflow.push(session, closed, due_working_days=10, actor_id=trainer, now=days.ago(12, 10),
                  calendar=calendar)
    workflow.close(session, closed, note="车间主管已在班前会再次宣讲。", stop_assigning=True,
                   actor_id=trainer, now=days.ago(2, 17))

    # entered by hand, still open: one past its deadline (red), one nearly due (amber)
    manual("深圳市关于规范劳务派遣用工的通知", "https://www.sz.gov.cn/demo/dispatch.html",
           "劳务派遣用工比例不得超过用工总量的 10%。", days.ago(9, 16))
    amber = manual("广东省工伤保险条例实施细则（2026 年修订）",
                   "https://www.gd.gov.cn/demo/work-injury.html",
                   "调整了工伤认定申请时限与停工留薪期的规定。", days.ago(5, 10))
    workflow.triage(session, amber, topic="work_injury", audience=everyone_in("RET-SC"),
                    note="华南区门店适用。", actor_id=hr, now=days.ago(4, 10))

    # the feed items (detected three working days ago and yesterday): green clocks
    econtract = _find(session, "关于进一步规范电子劳动合同")
    if econtract is not None:
        workflow.triage(session, econtract, topic="labour_contracts",
                        audience=everyone_in("MFG"), note="制造事业部已全面使用电子劳动合同。",
                        actor_id=trainer, now=days.ago(2, 10))
        workflow.material_briefing(
            session, econtract, title="电子劳动合同订立与管理要点",
            body="一、电子劳动合同须经双方可靠电子签名。\n二、合同文本应完整保存，随时可调取。\n"
                 "三、劳动者有权免费下载、打印本人的劳动合同。",
            require_signature=True, actor_id=trainer, now=days.ago(1, 11))
        workflow.push(session, econtract, due_working_days=5, actor_id=trainer,
                      now=days.ago(1, 16), calendar=calendar)
    social = _find(session, "关于做好2027年度社会保险缴费基数")
    if social is not None:
        workflow.triage(session, social, topic="social_insurance",
                        audience=everyone_in("HQ-HR", "HQ-FIN"), note="人事与财务负责申报。",
                        actor_id=hr, now=days.ago(2, 15))
        workflow.material_briefing(
            session, social, title="2027 年度社保缴费基数申报安排",
            body="申报期内请人事专员核对上年度工资总额，财务部复核后统一申报。",
            require_signature=False, actor_id=trainer, now=days.ago(1, 10))
    consultation = _find(session, "《工伤认定办法（修订征求意见稿）》")
    if consultation is not None:
        workflow.mark_not_relevant(session, consultation,
                                   reason="征求意见稿，尚未生效；正式发布后再评估。",
                                   actor_id=trainer, now=days.ago(2, 11))
    layoffs = _find(session, "关于依法规范经济性裁员程序")
    if layoffs is not None:
        workflow.triage(session, layoffs, topic="offboarding",
                        audience=everyone_in("HQ-HR", "HQ-LEGAL"), note="", actor_id=hr,
                        now=days.ago(1, 9))
    notice = _find(session, "案例一：解除通知未有效送达")
    course = session.scalar(select(Course).where(Course.code == "RISK-PERF-01"))
    if notice is not None and course is not None:
        workflow.triage(session, notice, topic="notice_delivery",
                        audience=everyone_in("HQ-HR"), note="人事专员处理解除通知送达。",
                        actor_id=trainer, now=now)
        workflow.material_course(session, notice, course_id=course.id, actor_id=trainer,
                                 now=now)
    session.flush()
    report.updates = len(session.scalars(select(RegulationUpdate.id)).all())
