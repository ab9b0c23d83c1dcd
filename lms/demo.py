"""The demo company loaded by ``flask --app wsgi lms demo``.

A believable mid-sized Chinese employer (HQ functions, a retail division with regional
stores, a manufacturing division with a factory) so that every screen has realistic
data to show: a real reporting hierarchy, all five employment statuses, valid
(encrypted) ID numbers, and one login per role. Generation is deterministic
(``random.Random(2026)``) so a demo looks the same on every machine; the Fernet
ciphertexts differ, the people do not.

``load_demo`` creates the company once. Running it again changes nothing, so a demo
database that people have been clicking around in keeps their changes.

It also publishes two demo courses playing the committed demo video
(courses/demo_media/demo.webm, ingested like any upload: magic bytes, SHA-256, duration
read from the file) and enrols the demo trainee and manager in both. Their versions,
content hashes and the video's SHA-256 are recorded in the one ``demo.loaded`` ledger
entry that attests to the whole demo.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from assessments.exam_authoring import ExamSettings, add_exam_lesson
from assessments.exams import Question, QuestionBank, QuestionOption
from assessments.signing import (
    add_policy_lesson,
    add_text_version,
    create_document,
)
from assessments.signing import publish_version as publish_policy_version
from courses.authoring import (
    CourseInput,
    add_document_lesson,
    create_course,
    publish_version,
)
from courses.media import MediaError, ingest_video
from courses.models import Course, Enrollment, Lesson
from lms.auth.passwords import hash_password
from lms.ledger import LedgerEntry, append
from lms.people import idnumber
from lms.people.models import Department, Employee, Position, User
from lms.people.vault import IdNumberVault

__all__ = [
    "DEMO_MARKER_DEPARTMENT",
    "DEMO_PASSWORDS",
    "SEED",
    "DemoConflictError",
    "demo_present",
    "load_demo",
]

SEED = 2026
DEMO_MARKER_DEPARTMENT = "HQ"
LEDGER_KIND = "demo.loaded"

# username -> (password, roles). Primary role first; employees are also trainees, as
# every employee takes the mandatory training. Passwords must not contain the username.
DEMO_PASSWORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "trainee": ("xuexi-2026-demo", ("trainee",)),
    "trainer": ("peixun-2026-demo", ("trainer", "trainee")),
    "hr": ("renshi-2026-demo", ("hr", "trainee")),
    "manager": ("jingli-2026-demo", ("manager", "trainee")),
    "admin": ("guanli-2026-demo", ("admin",)),
    "auditor": ("shenji-2026-demo", ("auditor",)),
}

# Accounts that are not employees (IT-run admin account, external auditor).
_ACCOUNT_NAMES = {"admin": "系统管理员", "auditor": "外部审计师"}


class DemoConflictError(RuntimeError):
    """The database already holds other (non-demo) data the demo would collide with."""


# --- the organisation ------------------------------------------------------------

# (code, name, parent code)
_DEPARTMENTS: tuple[tuple[str, str, str | None], ...] = (
    ("HQ", "总部", None),
    ("HQ-HR", "人力资源部", "HQ"),
    ("HQ-FIN", "财务部", "HQ"),
    ("HQ-LEGAL", "法务合规部", "HQ"),
    ("HQ-IT", "信息技术部", "HQ"),
    ("RET", "零售事业部", "HQ"),
    ("RET-EC", "华东区", "RET"),
    ("RET-EC-SH01", "上海南京西路店", "RET-EC"),
    ("RET-EC-SH02", "上海徐家汇店", "RET-EC"),
    ("RET-EC-HZ01", "杭州西湖店", "RET-EC"),
    ("RET-EC-NJ01", "南京新街口店", "RET-EC"),
    ("RET-EC-SZ01", "苏州观前街店", "RET-EC"),
    ("RET-SC", "华南区", "RET"),
    ("RET-SC-SZ01", "深圳福田店", "RET-SC"),
    ("RET-SC-SZ02", "深圳南山店", "RET-SC"),
    ("RET-SC-GZ01", "广州天河店", "RET-SC"),
    ("RET-SC-DG01", "东莞东城店", "RET-SC"),
    ("MFG", "制造事业部", "HQ"),
    ("MFG-SZ", "苏州工厂", "MFG"),
    ("MFG-SZ-PRS", "冲压车间", "MFG-SZ"),
    ("MFG-SZ-ASM", "装配车间", "MFG-SZ"),
    ("MFG-SZ-QC", "质检科", "MFG-SZ"),
)

_REGIONS = ("RET-EC", "RET-SC")


@dataclass(frozen=True)
class _Job:
    """A position plus how people in it are typically hired (years, age, sex ratio)."""

    code: str
    name: str
    hired: tuple[int, int]  # hire-year range
    age: tuple[int, int]  # age at hire
    male: float  # share of men
    rank_and_file: bool = False  # may carry a non-active status in the demo


_JOBS: tuple[_Job, ...] = (
    _Job("CEO", "首席执行官", (2010, 2010), (38, 42), 0.8),
    _Job("DIVGM", "事业部总经理", (2010, 2014), (32, 44), 0.7),
    _Job("HRD", "人力资源总监", (2010, 2015), (32, 42), 0.3),
    _Job("HRS", "人事专员", (2015, 2025), (22, 32), 0.3, True),
    _Job("TRN", "培训专员", (2016, 2024), (23, 32), 0.4),
    _Job("RHR", "区域HR", (2014, 2022), (24, 34), 0.3),
    _Job("FINM", "财务经理", (2011, 2016), (30, 40), 0.4),
    _Job("ACC", "会计", (2014, 2025), (22, 35), 0.2, True),
    _Job("CSH", "出纳", (2016, 2025), (22, 32), 0.2, True),
    _Job("LGM", "法务经理", (2012, 2017), (30, 40), 0.5),
    _Job("CMP", "合规专员", (2017, 2025), (24, 32), 0.5, True),
    _Job("CTO", "技术总监", (2011, 2015), (30, 40), 0.9),
    _Job("DEVL", "开发主管", (2013, 2020), (27, 36), 0.8),
    _Job("DEV", "开发工程师", (2016, 2026), (22, 32), 0.75, True),
    _Job("RGM", "区域经理", (2011, 2018), (30, 42), 0.6),
    _Job("SM", "店长", (2012, 2022), (26, 40), 0.4),
    _Job("SA", "店员", (2017, 2026), (18, 35), 0.3, True),
    _Job("CLN", "保洁", (2015, 2026), (38, 52), 0.2, True),
    _Job("PLM", "厂长", (2010, 2014), (34, 44), 0.9),
    _Job("WSS", "车间主管", (2012, 2020), (28, 42), 0.85),
    _Job("TL", "班组长", (2014, 2022), (24, 38), 0.8),
    _Job("OPR", "普工", (2017, 2026), (18, 40), 0.7, True),
    _Job("QCL", "质检主管", (2013, 2019), (28, 40), 0.5),
    _Job("QC", "质检员", (2016, 2026), (20, 35), 0.4, True),
)
_JOB = {job.code: job for job in _JOBS}

# Non-active statuses handed out among rank-and-file staff (the rest stay active).
_STATUS_COUNTS = (("leaving", 9), ("absconded", 4), ("unpaid_leave", 3), ("left", 11))

# Nobody is hired after this day, whenever the demo is loaded (keeps it deterministic).
_LAST_HIRE = date(2026, 9, 30)

# --- people ----------------------------------------------------------------------

# Common surnames, roughly by frequency (the first ones are drawn more often).
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余"
    "杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史"
    "陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_SURNAME_WEIGHTS = tuple(1.0 / (1 + i / 8) for i in range(len(_SURNAMES)))
_MALE_GIVEN = (
    "伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明", "刚", "辉", "鹏", "飞", "鑫",
    "波", "宇", "浩", "凯", "健", "俊", "帆", "旭", "龙", "阳", "毅", "峰", "建华", "志强",
    "建军", "海涛", "俊杰", "晓东", "文博", "国庆", "永刚", "家豪", "志明", "天宇", "明辉",
    "子豪", "浩然", "宇航", "振华", "立新", "春生", "德明", "嘉伟", "锦程", "思远",
)
_FEMALE_GIVEN = (
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "燕", "玲", "婷", "雪", "慧", "倩", "洁",
    "琳", "颖", "萍", "红", "梅", "莉", "欣", "悦", "佳", "秀英", "桂英", "玉兰", "婷婷",
    "晓燕", "丽娟", "雅琪", "欣怡", "诗涵", "思琪", "佳怡", "雨婷", "晓丽", "春梅", "海燕",
    "美玲", "丹丹", "文静", "小红", "晓梅", "梦瑶", "嘉欣", "淑华", "秀兰", "凤英", "雅婷",
)

# Real county-level administrative codes (GB/T 2260): local hires near the workplace,
# plus the provinces many retail and factory workers come from.
_LOCAL_AREAS = {
    "HQ": ("310101", "310104", "310115", "320102", "330106"),
    "RET-EC": ("310104", "310115", "330106", "330102", "320102", "320508"),
    "RET-SC": ("440304", "440305", "440106", "440104", "441900"),
    "MFG": ("320508", "320505", "320506", "320583"),
}
_MIGRANT_AREAS = (
    "410105", "411302", "411502", "340104", "341202", "341602", "510107", "511302",
    "360102", "360702", "430102", "431102", "520102", "420111", "450102", "370102",
    "130102", "350102", "210102", "500103",
)


@dataclass
class _Company:
    """Builds the demo organisation as unsaved ORM objects."""

    vault: IdNumberVault
    # Reproducible invented data, not secrets: a seeded PRNG is the point.
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))  # noqa: S311
    departments: dict[str, Department] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    employees: list[Employee] = field(default_factory=list)
    jobs: dict[int, _Job] = field(default_factory=dict)  # id(employee) -> job
    picked: dict[str, Employee] = field(default_factory=dict)  # demo username -> employee
    hr_director: Employee | None = None
    _names: set[str] = field(default_factory=set)
    _id_numbers: set[str] = field(default_factory=set)

    def build(self) -> None:
        for code, name, parent in _DEPARTMENTS:
            self.departments[code] = Department(
                code=code, name=name, parent=self.departments[parent] if parent else None
            )
        for job in _JOBS:
            self.positions[job.code] = Position(code=f"P-{job.code}", name=job.name)

        ceo = self.hire("HQ", "CEO")
        self._headquarters(ceo)
        self._retail(ceo)
        self._manufacturing(ceo)
        self._assign_statuses()
        self._number_by_hire_date()

    # -- organisation units --------------------------------------------------------

    def _headquarters(self, ceo: Employee) -> None:
        hrd = self.hr_director = self.hire("HQ-HR", "HRD", ceo)
        self.crew("HQ-HR", "HRS", hrd, 3)
        trainers = self.crew("HQ-HR", "TRN", hrd, 2)
        self.picked["trainer"] = trainers[0]

        finm = self.hire("HQ-FIN", "FINM", ceo)
        self.crew("HQ-FIN", "ACC", finm, 3)
        self.crew("HQ-FIN", "CSH", finm, 1)

        lgm = self.hire("HQ-LEGAL", "LGM", ceo)
        self.crew("HQ-LEGAL", "CMP", lgm, 2)

        cto = self.hire("HQ-IT", "CTO", ceo)
        for lead in self.crew("HQ-IT", "DEVL", cto, 2):
            self.crew("HQ-IT", "DEV", lead, self.rng.randint(4, 5))

    def _retail(self, ceo: Employee) -> None:
        gm = self.hire("RET", "DIVGM", ceo)
        for region in _REGIONS:
            rgm = self.hire(region, "RGM", gm)
            # Regional HR (HRBP): works in the region, reports to the HR director.
            rhr = self.hire(region, "RHR", self.hr_director)
            if region == "RET-EC":
                self.picked["hr"] = rhr
            for code, _name, parent in _DEPARTMENTS:
                if parent != region:
                    continue
                store_manager = self.hire(code, "SM", rgm)
                self.crew(code, "SA", store_manager, self.rng.randint(8, 12))
                self.crew(code, "CLN", store_manager, 1)

    def _manufacturing(self, ceo: Employee) -> None:
        gm = self.hire("MFG", "DIVGM", ceo)
        plant = self.hire("MFG-SZ", "PLM", gm)
        for workshop, leads in (("MFG-SZ-PRS", 2), ("MFG-SZ-ASM", 3)):
            supervisor = self.hire(workshop, "WSS", plant)
            first_worker = None
            for lead in self.crew(workshop, "TL", supervisor, leads):
                workers = self.crew(workshop, "OPR", lead, self.rng.randint(8, 10))
                first_worker = first_worker or workers[0]
            if workshop == "MFG-SZ-ASM":
                # The demo manager sees team leads (direct) and their workers (indirect);
                # the demo trainee is one of those workers.
                self.picked["manager"] = supervisor
                self.picked["trainee"] = first_worker
        qc_lead = self.hire("MFG-SZ-QC", "QCL", plant)
        self.crew("MFG-SZ-QC", "QC", qc_lead, 7)

    def _assign_statuses(self) -> None:
        demo = {id(e) for e in self.picked.values()}
        pool = [e for e in self.employees
                if self.jobs[id(e)].rank_and_file and id(e) not in demo]
        self.rng.shuffle(pool)
        start = 0
        for status, count in _STATUS_COUNTS:
            for emp in pool[start:start + count]:
                emp.status = status
            start += count

    def _number_by_hire_date(self) -> None:
        """Employee numbers are handed out at hiring, so E0001 is the longest-serving."""
        self.employees.sort(key=lambda e: e.hire_date)  # stable: ties keep creation order
        for number, emp in enumerate(self.employees, start=1):
            emp.employee_no = f"E{number:04d}"
            emp.email = f"e{number:04d}@demo.example.cn"

    # -- people --------------------------------------------------------------------

    def crew(self, dept: str, job: str, manager: Employee, count: int) -> list[Employee]:
        return [self.hire(dept, job, manager) for _ in range(count)]

    def hire(self, dept: str, job_code: str, manager: Employee | None = None) -> Employee:
        job = _JOB[job_code]
        rng = self.rng
        male = rng.random() < job.male
        hired = self._hire_date(job)
        born = hired - timedelta(days=rng.randint(job.age[0] * 365 + 10, job.age[1] * 365 + 300))
        id_number = self._id_number(dept, born, male)
        emp = Employee(
            name=self._name(male),
            department=self.departments[dept],
            position=self.positions[job.code],
            manager=manager,
            hire_date=hired,
            status="active",
            id_number_cipher=self.vault.encrypt(id_number),
            id_number_index=self.vault.blind_index(id_number),
            id_number_masked=idnumber.mask(id_number),
        )
        self.employees.append(emp)
        self.jobs[id(emp)] = job
        return emp

    def _hire_date(self, job: _Job) -> date:
        first = date(job.hired[0], 1, 1)
        last = min(date(job.hired[1], 12, 31), _LAST_HIRE)
        if job.code == "CEO":
            return date(2010, 3, 1)
        return first + timedelta(days=self.rng.randint(0, (last - first).days))

    def _name(self, male: bool) -> str:
        given = _MALE_GIVEN if male else _FEMALE_GIVEN
        while True:
            name = self.rng.choices(_SURNAMES, _SURNAME_WEIGHTS)[0] + self.rng.choice(given)
            if name not in self._names:  # real firms have namesakes; a demo reads better without
                self._names.add(name)
                return name

    def _id_number(self, dept: str, born: date, male: bool) -> str:
        local = _LOCAL_AREAS[_area_group(dept)]
        while True:
            area = (self.rng.choice(local) if self.rng.random() < 0.45
                    else self.rng.choice(_MIGRANT_AREAS))
            # The 17th digit is odd for men and even for women.
            sex_digit = self.rng.choice("13579" if male else "02468")
            first17 = f"{area}{born:%Y%m%d}{self.rng.randint(0, 99):02d}{sex_digit}"
            number = next(first17 + c for c in "0123456789X"
                          if idnumber.validate(first17 + c, today=_LAST_HIRE) is None)
            if number not in self._id_numbers:
                self._id_numbers.add(number)
                return number


def _area_group(dept: str) -> str:
    """Which local area codes fit a department (its region, the factory, or Shanghai HQ)."""
    for group in ("RET-EC", "RET-SC", "MFG"):
        if dept.startswith(group):
            return group
    return "HQ"


# --- loading -----------------------------------------------------------------------

def demo_present(session: Session) -> bool:
    """Whether the demo was loaded before (its HQ department or its ledger entry exists)."""
    return bool(
        session.scalar(select(exists().where(Department.code == DEMO_MARKER_DEPARTMENT)))
        or session.scalar(select(exists().where(LedgerEntry.kind == LEDGER_KIND)))
    )


def _conflicts(session: Session) -> str | None:
    """Why the demo cannot be loaded here: never mix invented people into real data."""
    if session.scalar(select(exists().select_from(Employee))):
        return "the database already holds employees"
    if session.scalar(select(exists().select_from(Department))):
        return "the database already holds departments"
    if session.scalar(select(exists().select_from(Position))):
        return "the database already holds positions"
    taken = session.scalars(
        select(User.username).where(func.lower(User.username).in_(list(DEMO_PASSWORDS)))
    ).all()
    if taken:
        return f"user name(s) already taken: {', '.join(sorted(taken))}"
    return None


def load_demo(session: Session, vault: IdNumberVault) -> bool:
    """Create the demo company and its six logins once; return False if already there.

    Does not commit: the caller owns the transaction, so a failure leaves nothing behind.
    Raises :class:`DemoConflictError` on a database holding other, non-demo data.
    """
    if demo_present(session):
        return False
    problem = _conflicts(session)
    if problem:
        raise DemoConflictError(f"demo data not loaded: {problem}")

    company = _Company(vault)
    company.build()
    session.add_all(company.departments.values())
    session.add_all(company.positions.values())
    session.add_all(company.employees)

    users = []
    for username, (password, roles) in DEMO_PASSWORDS.items():
        employee = company.picked.get(username)
        user = User(
            username=username,
            display_name=employee.name if employee else _ACCOUNT_NAMES[username],
            email=employee.email if employee else f"{username}@demo.example.cn",
            password_hash=hash_password(password),
            employee=employee,
        )
        user.set_roles(set(roles))
        users.append(user)
    session.add_all(users)
    session.flush()

    courses, video = _load_demo_courses(session, {u.username: u for u in users})
    rule_runs = _demo_rules(session, {u.username: u for u in users})

    statuses = Counter(e.status for e in company.employees)
    append(session, kind=LEDGER_KIND, subject="demo", payload={
        "courses": courses,
        "demo_video": video,
        "seed": SEED,
        "departments": len(company.departments),
        "positions": len(company.positions),
        "employees": len(company.employees),
        "statuses": dict(sorted(statuses.items())),
        "users": sorted(DEMO_PASSWORDS),
        "assignment_rules": rule_runs,
    })
    return True


def _demo_rules(session: Session, users: dict[str, User]) -> dict[str, int]:
    """A standing rule: everyone 在职 takes 《绩效管理制度》 within 10 working days, and again
    every 12 months after completing it (recertification); applied
    once now, so "My learning" shows due dates from the start (the tick keeps it up)."""
    from lms.compliance.engine import evaluate_rule, local_date
    from lms.compliance.models import AssignmentRule
    from lms.dbtypes import utcnow
    from lms.workday_overrides import load_calendar

    course_id = session.scalar(select(Course.id).where(Course.code == "RISK-PERF-01"))
    now = utcnow()
    rule = AssignmentRule(name="全员《绩效管理制度》宣贯", course_id=course_id,
                          due_working_days=10, effective_from=local_date(now), recur_months=12,
                          created_by_id=users["hr"].id)
    session.add(rule)
    session.flush()
    run = evaluate_rule(session, rule, calendar=load_calendar(session), now=now,
                        actor_id=users["hr"].id)
    return {rule.name: run.assigned}


# --- demo courses ----------------------------------------------------------------------

DEMO_VIDEO = Path(__file__).resolve().parent.parent / "courses" / "demo_media" / "demo.webm"


@dataclass(frozen=True)
class _DemoCourse:
    code: str
    title_zh: str
    title_en: str
    topic: str
    description: str
    optional: bool
    max_rate: float
    video_title: str
    document_title: str
    document: str
    policy_name: str = ""  # set: an exam on it, then the policy to read and e-sign


_COURSES: tuple[_DemoCourse, ...] = (
    _DemoCourse(
        code="RISK-ID-01",
        title_zh="入职身份核验：防止冒用他人身份入职",
        title_en="Identity verification at hiring: stopping impostors",
        topic="identity_verification",
        description=("入职时核对身份证件与本人是否一致，并留存核验记录，防范冒用他人身份入职带来的"
                     "社保、个税和劳动争议风险。"),
        optional=False,
        max_rate=1.0,
        video_title="入职核验要点（视频）",
        document_title="人证核对与冒名入职案例",
        document="""一、为什么要人证核对
入职登记时，HR 必须查验身份证原件并与本人当面核对：照片与相貌、姓名、性别、出生日期、证件有效期。只收复印件或手机照片、不见原件不见本人，是冒名入职最常见的漏洞。

二、核对步骤
1. 查验身份证原件，确认在有效期内、无涂改；
2. 当面比对证件照片与本人，请本人当场签署入职登记表；
3. 通过合法渠道核验姓名与身份证号是否一致；
4. 将核验结果、核验人和核验时间一并存档（系统中身份证号只显示脱敏号码）。

三、案例（改编）
某制造企业的一名员工借用同乡的身份证入职，以他人名义工作了 14 年。直到被冒用者本人办理社会保险和贷款时，发现自己名下有长期的参保和劳动关系记录，事情才暴露。企业随后不得不逐项更正社保和个税记录；劳动合同的主体存疑，在工伤认定和经济补偿争议中难以举证；被冒用者还追究企业未尽审核义务的责任。

四、要点
入职当天完成人证核对并留痕，比事后补救的成本低得多。发现证件与本人不符时，应暂停办理入职并报告 HR 负责人。""",
    ),
    _DemoCourse(
        code="RISK-PERF-01",
        title_zh="《绩效管理制度》宣贯与签署",
        title_en="Performance management policy: briefing and acknowledgement",
        topic="performance",
        description=("讲解公司《绩效管理制度》的考核周期、评分规则和结果运用，学员阅读制度全文后"
                     "电子签署确认，避免日后“从未同意该制度”的争议。"),
        optional=False,
        max_rate=1.0,
        video_title="绩效制度要点（视频）",
        document_title="阅读并签署《绩效管理制度》",
        policy_name="绩效管理制度",
        document="""第一条 目的
为客观评价员工工作业绩，规范考核程序，特制定本制度。本制度经职工代表大会讨论通过并已公示。

第二条 考核周期
绩效考核按季度进行，每季度结束后十个工作日内完成评分与面谈。

第三条 评分与结果
考核结果分为 A、B、C、D 四档。连续两个季度为 D 档的，公司可以依法进行培训或调整工作岗位；经培训或调整工作岗位仍不能胜任工作的，依照《劳动合同法》第四十条的规定处理。

第四条 申诉
员工对考核结果有异议的，可以在结果公布之日起五个工作日内向人力资源部书面申诉。

第五条 附则
本制度自公布之日起施行，由人力资源部负责解释。""",
    ),
    _DemoCourse(
        code="RISK-SI-01",
        title_zh="社会保险缴纳与时限",
        title_en="Social insurance: contributions and deadlines",
        topic="social_insurance",
        description=("用人单位应自用工之日起三十日内为职工办理社会保险登记并按时足额缴费。"
                     "本课讲解时限、常见误区和后果。"),
        optional=True,
        max_rate=1.5,
        video_title="社保缴纳基础（视频）",
        document_title="参保时限与常见误区",
        document="""一、时限
用人单位应当自用工之日起三十日内为职工向社会保险经办机构申请办理社会保险登记（《社会保险法》第五十八条）。试用期内同样需要参保。

二、常见误区
1. 员工签署的“自愿放弃社保”承诺书，不能免除用人单位的缴费义务；
2. 以现金补贴代替缴纳社会保险不合法；
3. 按最低基数而不是实际工资申报缴费基数，存在补缴和滞纳金风险。

三、后果
未按时足额缴纳的，由社会保险费征收机构责令限期缴纳或者补足，并自欠缴之日起按日加收万分之五的滞纳金；逾期仍不缴纳的，处欠缴数额一倍以上三倍以下的罚款（《社会保险法》第八十六条）。劳动者还可以据此解除劳动合同并要求经济补偿（《劳动合同法》第三十八条、第四十六条）。""",
    ),
)

# The demo exam's bank: (kind, question, options, correct option numbers, explanation).
# Answers follow the demo 《绩效管理制度》 text above.
_PERF_QUESTIONS: tuple[tuple[str, str, tuple[str, ...], tuple[int, ...], str], ...] = (
    ("single", "《绩效管理制度》规定绩效考核按什么周期进行？",
     ("每月", "每季度", "每半年", "每年"), (2,), "第二条：绩效考核按季度进行。"),
    ("single", "每季度结束后，应在多少个工作日内完成评分与面谈？",
     ("五个", "十个", "十五个", "三十个"), (2,), "第二条：每季度结束后十个工作日内完成。"),
    ("single", "员工对考核结果有异议的，应在结果公布之日起几个工作日内书面申诉？",
     ("三个", "五个", "七个", "十个"), (2,), "第四条：五个工作日内向人力资源部书面申诉。"),
    ("single", "考核结果分为几档？", ("三档", "四档", "五档", "十档"), (2,),
     "第三条：分为 A、B、C、D 四档。"),
    ("multiple", "连续两个季度为 D 档的员工，公司可以依法采取哪些措施？",
     ("进行培训", "调整工作岗位", "不经任何程序直接解除劳动合同", "扣发全部工资"), (1, 2),
     "第三条：可以依法培训或调整岗位；仍不能胜任的，才依照《劳动合同法》第四十条处理。"),
    ("multiple", "本制度对员工发生效力，需要经过哪些程序？",
     ("经职工代表大会讨论通过", "向员工公示或告知", "仅由总经理签字即可", "无需任何程序"), (1, 2),
     "《劳动合同法》第四条：规章制度应经民主程序制定，并公示或告知劳动者。"),
    ("true_false", "经培训或调整工作岗位仍不能胜任工作的，公司可以依照《劳动合同法》第四十条的规定处理。",
     ("正确", "错误"), (1,), "第三条。"),
    ("true_false", "员工从未被告知的规章制度，在劳动争议中一样可以作为处理依据。",
     ("正确", "错误"), (2,), "未经公示或告知的制度不能作为处理依据；电子签署就是告知的证据。"),
    ("true_false", "对考核结果的申诉应向人力资源部书面提出。", ("正确", "错误"), (1,), "第四条。"),
)


def _demo_exam_bank(session: Session, trainer: User) -> QuestionBank:
    bank = QuestionBank(name="绩效管理制度题库", created_by_id=trainer.id,
                        description="《绩效管理制度》宣贯考试用题（演示）")
    for kind, text, options, correct, explanation in _PERF_QUESTIONS:
        question = Question(bank=bank, kind=kind, topic="performance", text=text,
                            explanation=explanation)
        question.options = [QuestionOption(position=n, text=option, is_correct=n in correct)
                            for n, option in enumerate(options, start=1)]
        session.add(question)
    session.flush()
    return bank


def _demo_policy(session: Session, spec: _DemoCourse, trainer: User):
    """The policy document of a demo course, version 1 published (30 s reading time)."""
    document = create_document(session, name=spec.policy_name, statement_template=None,
                               min_reading_seconds=30, actor_id=trainer.id)
    version = add_text_version(session, document, body=spec.document, actor_id=trainer.id)
    publish_policy_version(session, version, actor_id=trainer.id)
    return version


# Demo learners: enrolled by hand by the demo HR user.
_DEMO_LEARNERS = ("trainee", "manager")


def _load_demo_courses(session: Session, users: dict[str, User]
                       ) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Publish the demo courses and enrol the demo learners; return what the ledger
    entry records about them (courses, video). Needs an app context (media storage and
    the size cap come from the config)."""
    from flask import current_app

    trainer, hr = users["trainer"], users["hr"]
    try:
        with DEMO_VIDEO.open("rb") as fh:
            video = ingest_video(session, fh, DEMO_VIDEO.name, uploaded_by_id=trainer.id,
                                 max_bytes=current_app.config["MAX_VIDEO_MB"] * 1024 * 1024)
    except MediaError as exc:
        raise RuntimeError(
            f"the demo video could not be ingested ({exc}): its duration is read with "
            "pymediainfo (libmediainfo) or ffprobe; install one of them"
        ) from exc

    recorded: list[dict[str, object]] = []
    for spec in _COURSES:
        course = create_course(session, CourseInput(
            code=spec.code, title_zh=spec.title_zh, title_en=spec.title_en,
            risk_topic=spec.topic, description=spec.description, owner_id=trainer.id,
            is_optional=spec.optional, max_playback_rate=spec.max_rate,
        ), actor_id=trainer.id)
        version = course.versions[0]
        session.add(Lesson(version=version, position=1, kind="video", title=spec.video_title,
                           media=video))
        session.flush()
        if spec.policy_name:
            # Prove understanding, then sign: 5 of the bank's 9 questions, 80 to pass.
            add_exam_lesson(session, version, title="制度要点测验", settings=ExamSettings(
                bank_id=_demo_exam_bank(session, trainer).id, selection="random",
                per_topic=(("performance", 5),), pass_score=80, max_attempts=3,
                time_limit_minutes=15, review="answers_when_done"))
            add_policy_lesson(session, version, title=spec.document_title,
                              policy_version_id=_demo_policy(session, spec, trainer).id)
        else:
            add_document_lesson(session, version, title=spec.document_title,
                                body=spec.document)
        version.change_note = "演示课程首版"
        publish_version(session, version, actor_id=trainer.id)  # ledger: version_published
        for username in _DEMO_LEARNERS:
            session.add(Enrollment(user_id=users[username].id, version_id=version.id,
                                   source="manual", enrolled_by_id=hr.id))
        session.flush()
        recorded.append({"code": course.code, "version": version.number,
                         "content_hash": version.content_hash})
    return recorded, {"sha256": video.sha256, "size": video.size_bytes,
                      "duration": video.duration_seconds}
