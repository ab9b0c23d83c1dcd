"""The regulation-update clock on HR's training dashboard: open updates counted by
urgency colour, the nearest deadline with its working days left, the overdue count and
the 90-day on-time rate — the regulation dashboard's own figures, with a link there for
those who may open it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from regulation_support import beijing, make_update

from lms.compliance.engine import local_date
from lms.extensions import db
from lms.reports import views as report_views

NOW = beijing(2026, 11, 16, 10)  # a Monday


@pytest.fixture
def at_now(monkeypatch, people):
    monkeypatch.setattr(report_views, "today", lambda: local_date(NOW))
    monkeypatch.setattr(report_views, "clock", lambda: NOW)
    people.user("hr1", "hr")
    people.user("admin1", "admin")


def settle(row, state: str, *, on_time: bool | None = None) -> None:
    row.state = state
    if on_time is not None:
        row.pushed_at = row.detected_at + timedelta(days=3)
        row.on_time = on_time
    db.session.commit()


def panel(client) -> str:
    html = client.get("/reports/").get_data(as_text=True)
    return html.split('id="regulation-clock"', 1)[1].split("</section>", 1)[0]


def figure(part: str, name: str) -> str:
    match = re.search(rf'id="reg-{name}" data-(?:count|rate)="([^"]*)"', part)
    assert match, name
    return match.group(1)


def test_the_clock_panel_shows_the_regulation_dashboards_figures(app, client, at_now):
    red = make_update("已逾期的社保通知", detected_at=beijing(2026, 11, 2))  # due 11 Nov
    amber = make_update("即将到期的考勤规定", detected_at=beijing(2026, 11, 9))  # due 18 Nov
    make_update("新发布的工伤认定办法", detected_at=beijing(2026, 11, 16, 8))  # due 25 Nov
    settle(make_update("按时推送的通知", detected_at=beijing(2026, 11, 3)), "pushed", on_time=True)
    settle(make_update("迟推送的通知", detected_at=beijing(2026, 10, 20)), "closed", on_time=False)
    settle(make_update("无关的通知", detected_at=beijing(2026, 11, 4)), "not_relevant")
    assert red.deadline_date.isoformat() == "2026-11-11"

    client.login("hr1")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    part = panel(client)
    assert (figure(part, "open"), figure(part, "overdue"), figure(part, "soon"),
            figure(part, "ok")) == ("3", "1", "1", "1")
    assert figure(part, "rate") == "0.5000" and "50%" in part
    assert "1 of 2 pushed on time" in part
    nearest = re.search(r'id="reg-nearest" data-update-id="(\d+)" data-remaining="(-?\d+)"', part)
    assert nearest.groups() == (str(amber.id), "2")  # the red one has no days left to count
    assert "即将到期的考勤规定" in part and "2 working days left" in part and "2026-11-18" in part
    assert f'href="/regulation/updates/{amber.id}"' in part
    assert 'href="/regulation"' in part

    # an admin sees the figures but gets no link to pages the role may not open
    client.logout()
    client.login("admin1")
    part = panel(client)
    assert figure(part, "open") == "3"
    assert 'href="/regulation' not in part


def test_nothing_open_and_nothing_pushed(app, client, at_now):
    client.login("hr1")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    part = panel(client)
    assert figure(part, "open") == "0" and figure(part, "rate") == ""
    assert "No open updates." in part


def test_every_open_update_past_its_deadline(app, client, at_now):
    make_update("已逾期的社保通知", detected_at=beijing(2026, 11, 2))
    client.login("hr1")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    part = panel(client)
    assert figure(part, "overdue") == "1"
    assert "Every open update is past its deadline." in part
