"""Reminders, escalation and daily digests for open assignments (run by ``lms tick``).

The schedule, counted in Chinese working days on the Asia/Shanghai date of ``now``:

- the learner, ``days_before`` working days before the due date (or on any later tick
  before the due date, so a missed tick catches up), and on the due date itself;
- the employee's manager (Employee.manager_id -> their login), from the first working
  day after the due date; every enabled HR user ``hr_after`` working days after that;
- a daily digest, on working days only, to each manager with overdue direct or indirect
  reports and to HR (totals by course and department).

Idempotent: every message carries a dedupe key per recipient (``send`` inserts a
(recipient, key) pair once), and the candidate queries skip pairs already sent, so a
tick every minute costs a few indexed queries and sends nothing twice. Assignment keys
end with the due date: an extension or a resumption that moves the due date starts the
schedule again for the new date. Recipients of identical text go out in one bulk
``send``. Texts are stored evidence of what people were told, so they are written in
Chinese (like the signing receipt), not translated UI strings. Nothing here commits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, and_, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from courses.models import Course, CourseVersion
from lms.compliance.engine import local_date, sync_completions
from lms.compliance.models import SUSPENDING_STATUSES, Assignment
from lms.notify.models import Message
from lms.notify.service import send
from lms.people.models import Department, Employee, User, UserRole
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["ReminderPolicy", "ReminderReport", "assignment_key", "digest_key",
           "send_reminders"]

WEEKDAYS = "一二三四五六日"
MAX_DIGEST_LINES = 100  # a digest lists at most this many overdue items, then a count
MAX_TOTALS = 50
MAX_POLICY_DAYS = 60
TEAM_LINK = "/team/training"
HR_LINK = "/compliance/assignments?overdue=y"  # HR's list, overdue only
_CHUNK = 1000


@dataclass(frozen=True)
class ReminderPolicy:
    """The schedule's settings (``REMINDER_DAYS_BEFORE``, ``ESCALATE_HR_AFTER_WORKDAYS``,
    ``DIGEST_ENABLED`` in the config). ``days_before`` 0 turns the early reminder off."""

    days_before: int = 3
    hr_after: int = 5
    digest: bool = True

    def __post_init__(self) -> None:
        for name in ("days_before", "hr_after"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_POLICY_DAYS:
                raise ValueError(f"{name} must be 0..{MAX_POLICY_DAYS} working days, "
                                 f"got {value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReminderPolicy:
        return cls(days_before=int(config.get("REMINDER_DAYS_BEFORE", 3)),
                   hr_after=int(config.get("ESCALATE_HR_AFTER_WORKDAYS", 5)),
                   digest=bool(config.get("DIGEST_ENABLED", True)))


@dataclass
class ReminderReport:
    """What one run sent: new messages per stage (recipients), and ``send`` calls."""

    today: date
    completed: int = 0
    before: int = 0
    due: int = 0
    manager: int = 0
    hr: int = 0
    digest: int = 0
    sends: int = 0
    no_manager: int = 0  # overdue people whose manager has no enabled login
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (f"reminders: {self.before} before the due date, {self.due} on the due date, "
                f"{self.manager} escalated to managers, {self.hr} escalated to HR, "
                f"{self.digest} digests ({self.sends} sends)")
        if self.no_manager:
            text += f"; {self.no_manager} overdue without a manager login"
        if self.problems:
            text += "; problems: " + "; ".join(dict.fromkeys(self.problems))
        return text


def assignment_key(assignment_id: int, stage: str, due: date) -> str:
    """The dedupe key of one stage of one assignment's schedule for one due date."""
    return f"assignment:{assignment_id}:{stage}:{due.isoformat()}"


def digest_key(day: date, audience: str) -> str:
    """The dedupe key of a daily digest (audience "team" or "hr")."""
    return f"digest:{day.isoformat()}:{audience}"


# --- the outbox: identical texts go out together -----------------------------------------


@dataclass(frozen=True)
class _Draft:
    stage: str  # a ReminderReport counter: before, due, manager, hr, digest
    kind: str
    subject: str
    body: str
    link: str


class _Outbox:
    def __init__(self) -> None:
        self.groups: dict[_Draft, dict[int, str]] = {}

    def add(self, draft: _Draft, recipient_id: int, key: str) -> None:
        self.groups.setdefault(draft, {})[recipient_id] = key

    def flush(self, session: Session, report: ReminderReport) -> None:
        for draft, keys in self.groups.items():
            sent = send(session, recipient_ids=list(keys), dedupe_keys=keys, kind=draft.kind,
                        subject=draft.subject, body=draft.body, link=draft.link)
            setattr(report, draft.stage, getattr(report, draft.stage) + sent)
            report.sends += 1
        self.groups.clear()


# --- queries -----------------------------------------------------------------------------

_manager = aliased(Employee, name="manager_employee")


def _rows(*where: Any) -> Select:
    """Open assignments of enabled learners who are not leaving/absconded/away (those
    are suspended by the engine; this guards a run before it), with what the texts need."""
    a = Assignment
    return (select(a.id, a.user_id, a.version_id, a.due_date, a.employee_id,
                   Course.title_zh.label("title"), CourseVersion.number.label("version"),
                   Employee.name, Employee.employee_no, Employee.manager_id,
                   Department.name.label("department"), _manager.name.label("manager_name"))
            .join(Course, Course.id == a.course_id)
            .join(CourseVersion, CourseVersion.id == a.version_id)
            .join(Employee, Employee.id == a.employee_id)
            .join(Department, Department.id == Employee.department_id)
            .join(User, User.id == a.user_id)
            .outerjoin(_manager, _manager.id == Employee.manager_id)
            .where(a.status == "open", User.is_enabled.is_(True),
                   Employee.status.not_in(SUSPENDING_STATUSES), *where))


def _key_sql(session: Session, stage: str) -> Any:
    """``assignment_key`` in SQL, to skip what was sent without loading it."""
    if session.get_bind().dialect.name == "postgresql":
        day = func.to_char(Assignment.due_date, "YYYY-MM-DD")
    else:  # SQLite keeps dates as ISO text
        day = cast(Assignment.due_date, String)
    return (literal("assignment:", String) + cast(Assignment.id, String)
            + literal(f":{stage}:", String) + day)


def _not_sent(session: Session, recipient: Any, stage: str) -> Any:
    return ~exists().where(Message.recipient_user_id == recipient,
                           Message.dedupe_key == _key_sql(session, stage))


def _hr_users() -> Select:
    """Enabled HR logins (an alias of its own: inside a query that already has ``users``,
    a plain ``User`` would be correlated to the learner's row)."""
    hr = aliased(User)
    return select(hr.id).where(hr.is_enabled.is_(True), exists().where(
        UserRole.user_id == hr.id, UserRole.role == "hr"))


def _already(session: Session, key: str, ids: Iterable[int]) -> set[int]:
    """Who of ``ids`` already has a message with ``key`` (indexed lookups, in chunks)."""
    ids = list(ids)
    found: set[int] = set()
    for i in range(0, len(ids), _CHUNK):
        found.update(session.scalars(select(Message.recipient_user_id).where(
            Message.dedupe_key == key, Message.recipient_user_id.in_(ids[i:i + _CHUNK]))))
    return found


# --- texts (stored evidence, in Chinese) ---------------------------------------------------


def _day(d: date) -> str:
    return f"{d.isoformat()}（周{WEEKDAYS[d.weekday()]}）"


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _course(r: Any) -> str:
    return f"《{r.title}》（第 {r.version} 版）"


def _before(r: Any, left: int) -> _Draft:
    return _Draft(
        "before", "reminder",
        f"【培训提醒】《{_clip(r.title)}》（第 {r.version} 版）将于 {r.due_date} 到期",
        f"您好：\n您的必修培训课程{_course(r)}截止日期为 {_day(r.due_date)}，距截止还有 "
        f"{left} 个工作日（按国家法定节假日和调休安排计算）。\n"
        "请在截止日期前完成全部课时、考试和制度签署。",
        f"/learning/courses/{r.version_id}")


def _due(r: Any) -> _Draft:
    return _Draft(
        "due", "reminder",
        f"【今日到期】《{_clip(r.title)}》（第 {r.version} 版）今天到期",
        f"您好：\n您的必修培训课程{_course(r)}今天（{r.due_date.isoformat()}，"
        f"周{WEEKDAYS[r.due_date.weekday()]}）到期，请于今天内完成。\n"
        "逾期未完成的，系统将通知您的上级。",
        f"/learning/courses/{r.version_id}")


def _escalation(r: Any, today: date, overdue: int) -> _Draft:
    return _Draft(
        "manager", "escalation",
        f"【培训逾期】{r.name}（{r.employee_no}）未按期完成《{_clip(r.title)}》",
        f"{r.manager_name}，您好：\n您的下属 {r.name}（工号 {r.employee_no}，{r.department}）"
        f"应于 {_day(r.due_date)}前完成必修培训课程{_course(r)}，截至 {today.isoformat()} "
        f"仍未完成，已逾期 {overdue} 个工作日。\n请督促其尽快完成。",
        TEAM_LINK)


def _hr_escalation(r: Any, today: date, overdue: int) -> _Draft:
    return _Draft(
        "hr", "escalation",
        f"【逾期升级】{r.name}（{r.employee_no}）《{_clip(r.title)}》已逾期 {overdue} 个工作日",
        f"人力资源部：\n员工 {r.name}（工号 {r.employee_no}，{r.department}）应于 "
        f"{_day(r.due_date)}前完成必修培训课程{_course(r)}，截至 {today.isoformat()} 仍未完成，"
        f"已逾期 {overdue} 个工作日。\n直属上级：{r.manager_name or '无'}。",
        HR_LINK)


def _overdue_line(r: Any, overdue: int, relation: str) -> str:
    return (f"- {r.name}（工号 {r.employee_no}，{r.department}，{relation}）{_course(r)}，"
            f"截止 {r.due_date.isoformat()}，逾期 {overdue} 个工作日")


def _team_digest(manager_name: str, today: date, lines: list[str]) -> _Draft:
    shown = lines[:MAX_DIGEST_LINES]
    more = (f"\n……另有 {len(lines) - len(shown)} 项未列出，请在团队页面查看。"
            if len(lines) > len(shown) else "")
    return _Draft(
        "digest", "digest",
        f"【每日逾期汇总】{today.isoformat()}：您的团队有 {len(lines)} 项必修培训逾期",
        f"{manager_name}，您好：\n截至 {today.isoformat()}，您的直属和间接下属共有 "
        f"{len(lines)} 项必修培训逾期未完成：\n" + "\n".join(shown) + more
        + "\n请督促相关同事尽快完成。",
        TEAM_LINK)


def _totals(counter: Counter[str]) -> str:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    text = "\n".join(f"- {name}：{n} 项" for name, n in items[:MAX_TOTALS])
    if len(items) > MAX_TOTALS:
        text += f"\n- 其他 {len(items) - MAX_TOTALS} 项合计：" \
                f"{sum(n for _k, n in items[MAX_TOTALS:])} 项"
    return text


def _hr_digest(today: date, rows: list[Any]) -> _Draft:
    by_course = Counter(_course(r) for r in rows)
    by_department = Counter(r.department for r in rows)
    return _Draft(
        "digest", "digest",
        f"【每日逾期汇总】{today.isoformat()}：全公司 {len(rows)} 项必修培训逾期",
        f"人力资源部：\n截至 {today.isoformat()}，共有 {len(rows)} 项必修培训逾期未完成"
        f"（涉及 {len({r.employee_id for r in rows})} 人）。\n按课程：\n{_totals(by_course)}\n"
        f"按部门：\n{_totals(by_department)}",
        HR_LINK)


# --- the stages ---------------------------------------------------------------------------


class _Days:
    """Working-day arithmetic cached per due date (thousands of rows share a few dates)."""

    def __init__(self, calendar: WorkCalendar, today: date) -> None:
        self.calendar, self.today = calendar, today
        self._cache: dict[tuple[str, date], Any] = {}

    def _get(self, what: str, due: date, fn: Any) -> Any:
        key = (what, due)
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def since(self, due: date) -> int:
        """Working days from the due date (excluded) to today (included)."""
        return self._get("since", due, lambda: self.calendar.workdays_between(due, self.today))

    def start(self, due: date, n: int) -> date:
        return self._get("start", due, lambda: self.calendar.add_workdays(due, -n))


def _learner_stages(session: Session, outbox: _Outbox, report: ReminderReport,
                    days: _Days, policy: ReminderPolicy) -> None:
    today = days.today
    for r in session.execute(_rows(Assignment.due_date == today,
                                   _not_sent(session, Assignment.user_id, "due"))):
        outbox.add(_due(r), r.user_id, assignment_key(r.id, "due", r.due_date))
    if policy.days_before == 0:
        return
    try:
        latest = days.calendar.add_workdays(today, policy.days_before)
    except UnknownYearError:  # a superset is enough: each row is checked exactly below
        latest = today + timedelta(days=7 * policy.days_before + 31)
    for r in session.execute(_rows(Assignment.due_date > today, Assignment.due_date <= latest,
                                   _not_sent(session, Assignment.user_id, "before"))):
        try:
            if days.start(r.due_date, policy.days_before) > today:
                continue
            left = -days.since(r.due_date)
        except UnknownYearError as exc:
            report.problems.append(str(exc))
            continue
        outbox.add(_before(r, left), r.user_id, assignment_key(r.id, "before", r.due_date))


def _escalations(session: Session, outbox: _Outbox, report: ReminderReport, days: _Days,
                 policy: ReminderPolicy) -> None:
    calendar, today = days.calendar, days.today
    # Overdue since a working day has passed after the due date: due < the latest
    # working day up to today.
    last_workday = today if calendar.is_workday(today) else calendar.add_workdays(today, -1)
    boss = aliased(User, name="manager_user")
    stmt = (_rows(Assignment.due_date < last_workday)
            .add_columns(boss.id.label("manager_user_id"))
            .outerjoin(boss, and_(boss.employee_id == Employee.manager_id,
                                  boss.is_enabled.is_(True)))
            .where(or_(boss.id.is_(None), _not_sent(session, boss.id, "manager"))))
    for r in session.execute(stmt):
        if r.manager_user_id is None:
            report.no_manager += 1
            continue
        outbox.add(_escalation(r, today, days.since(r.due_date)), r.manager_user_id,
                   assignment_key(r.id, "manager", r.due_date))

    hr_before = calendar.add_workdays(last_workday, -policy.hr_after)
    hr = aliased(User, name="hr_user")
    stmt = (_rows(Assignment.due_date < hr_before)
            .add_columns(hr.id.label("hr_user_id"))
            .join(hr, hr.id.in_(_hr_users()))
            .where(_not_sent(session, hr.id, "hr")))
    for r in session.execute(stmt):
        outbox.add(_hr_escalation(r, today, days.since(r.due_date)), r.hr_user_id,
                   assignment_key(r.id, "hr", r.due_date))


def _managers_of(session: Session, today: date) -> list[Any]:
    """(employee id, manager's employee id, manager's user id, manager's name) for every
    manager above an employee with an overdue assignment, at any depth (recursive CTE;
    UNION stops at a cycle in the manager chain)."""
    overdue = select(Assignment.employee_id).where(Assignment.status == "open",
                                                   Assignment.due_date < today)
    chain = (select(Employee.id.label("employee_id"), Employee.manager_id.label("manager_id"))
             .where(Employee.id.in_(overdue), Employee.manager_id.is_not(None))
             .cte("chain", recursive=True))
    up = aliased(Employee)
    chain = chain.union(select(chain.c.employee_id, up.manager_id)
                        .join(up, up.id == chain.c.manager_id)
                        .where(up.manager_id.is_not(None)))
    boss = aliased(User)
    boss_employee = aliased(Employee)
    return list(session.execute(
        select(chain.c.employee_id, chain.c.manager_id, boss.id.label("user_id"),
               boss_employee.name)
        .join(boss, and_(boss.employee_id == chain.c.manager_id, boss.is_enabled.is_(True)))
        .join(boss_employee, boss_employee.id == chain.c.manager_id)
        .where(chain.c.employee_id != chain.c.manager_id)))


def _digests(session: Session, outbox: _Outbox, days: _Days) -> None:
    today = days.today
    team_key, hr_key = digest_key(today, "team"), digest_key(today, "hr")
    rows = list(session.execute(_rows(Assignment.due_date < today)))
    if not rows:
        return
    by_employee: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        by_employee[r.employee_id].append(r)
    managers: dict[int, tuple[int, str]] = {}  # user id -> (employee id, name)
    reports: dict[int, set[int]] = defaultdict(set)
    for employee_id, manager_employee_id, user_id, name in _managers_of(session, today):
        if employee_id in by_employee:
            managers[user_id] = (manager_employee_id, name)
            reports[user_id].add(employee_id)
    done = _already(session, team_key, managers)
    for user_id, (manager_employee_id, name) in managers.items():
        if user_id in done:
            continue
        items = sorted((r for e in reports[user_id] for r in by_employee[e]),
                       key=lambda r: (-days.since(r.due_date), r.department, r.employee_no,
                                      r.id))
        lines = [_overdue_line(r, days.since(r.due_date),
                               "直属" if r.manager_id == manager_employee_id else "间接下属")
                 for r in items]
        outbox.add(_team_digest(name, today, lines), user_id, team_key)
    hr_ids = list(session.scalars(_hr_users()))
    done = _already(session, hr_key, hr_ids)
    todo = [i for i in hr_ids if i not in done]
    if todo:
        draft = _hr_digest(today, rows)
        for user_id in todo:
            outbox.add(draft, user_id, hr_key)


def send_reminders(session: Session, *, calendar: WorkCalendar, now: datetime,
                   policy: ReminderPolicy | None = None) -> ReminderReport:
    """Send what the schedule says is due at ``now`` and was not sent yet (see the
    module's docstring). Completions are picked up first, so a finished course gets
    nothing. A year missing from the calendar skips the stages that need it and is
    named in ``problems`` (the rest still goes out)."""
    policy = policy or ReminderPolicy()
    days = _Days(calendar, local_date(now))
    report = ReminderReport(days.today)
    report.completed = sync_completions(session, now=now)
    outbox = _Outbox()

    def digests() -> None:
        if policy.digest and calendar.is_workday(days.today):
            _digests(session, outbox, days)

    for stage in (lambda: _learner_stages(session, outbox, report, days, policy),
                  lambda: _escalations(session, outbox, report, days, policy), digests):
        try:
            stage()
        except UnknownYearError as exc:
            report.problems.append(str(exc))
    outbox.flush(session, report)
    return report
