"""Fixtures of the regulation tests (``pytest_plugins = ["regulation_fixtures"]``): a
small organisation with people inside and outside an audience, and a clock standing on
a chosen Beijing time for the regulation pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest
from regulation_support import beijing

from lms.people.models import Department, User


class PageClock:
    """The time the regulation pages act at (``views.clock``), moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def page_clock(monkeypatch) -> PageClock:
    c = PageClock(beijing(2026, 9, 29))
    monkeypatch.setattr("lms.compliance.regulation.views.clock", c)
    return c


@dataclass
class Org:
    """销售部 with its sub-department 华东销售 (the audience), and 工厂 outside it."""

    sales: Department
    sales_east: Department
    factory: Department
    in_sales: User  # trainee in 销售部
    in_east: User  # trainee in 华东销售 (a sub-department)
    in_factory: User  # trainee outside the audience
    trainer: User
    hr: User
    trainee: User  # only a trainee (no rights on the regulation pages)
    manager: User
    auditor: User


@pytest.fixture
def org(people) -> Org:
    top = people.department("总部", code="HQ")
    sales = people.department("销售部", parent=top, code="SALES")
    east = people.department("华东销售", parent=sales, code="SALES-E")
    factory = people.department("工厂", parent=top, code="FAC")
    office = people.department("人事行政", parent=top, code="ADM")
    in_sales = people.user("wangfang", "trainee",
                           employee=people.employee("王芳", department=sales))
    in_east = people.user("liqiang", "trainee",
                          employee=people.employee("李强", department=east))
    in_factory = people.user("zhaolei", "trainee",
                             employee=people.employee("赵磊", department=factory))
    trainer = people.user("trainer1", "trainer", "trainee",
                          employee=people.employee("陈老师", department=office))
    hr = people.user("hr1", "hr", "trainee", employee=people.employee("刘人事", department=office))
    trainee = people.user("trainee1", "trainee",
                          employee=people.employee("孙学员", department=office))
    manager = people.user("manager1", "manager", "trainee",
                          employee=people.employee("周经理", department=office))
    auditor = people.user("auditor1", "auditor")
    return Org(sales, east, factory, in_sales, in_east, in_factory, trainer, hr, trainee,
               manager, auditor)
