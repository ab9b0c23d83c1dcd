"""The regulation dashboard: open updates most urgent first with red/amber/green clocks,
the on-time rate over 90 days overall and per source from known data, paging, the list
of all updates, and one update's details."""

from __future__ import annotations

import re
from datetime import timedelta

from regulation_support import beijing, make_source, make_update
from sqlalchemy import select

from lms.compliance.regulation.dashboard import on_time_rates
from lms.compliance.regulation.models import RegulationUpdate
from lms.extensions import db

pytest_plugins = ["regulation_fixtures"]  # org, page_clock

NOW = beijing(2026, 11, 16, 10)  # Monday


def open_rows(html: str) -> list[tuple[str, str]]:
    """(update id, urgency) of the open list's rows, in page order."""
    return re.findall(r'<tr id="update-(\d+)" class="open-update" data-urgency="(\w+)"', html)


def settle(row: RegulationUpdate, state: str, *, on_time: bool | None = None) -> None:
    """Put an update in a decided state directly (the dashboard only reads these)."""
    row.state = state
    if on_time is not None:
        row.pushed_at = row.detected_at + timedelta(days=3)
        row.on_time = on_time
    db.session.commit()


def test_open_updates_most_urgent_first_coloured_by_urgency(app, client, org, page_clock):
    page_clock.set(NOW)
    green = make_update("新发布的工伤认定办法", detected_at=beijing(2026, 11, 16, 8))  # 25 Nov
    red = make_update("已逾期的社保通知", detected_at=beijing(2026, 11, 2))  # 11 Nov
    amber = make_update("即将到期的考勤规定", detected_at=beijing(2026, 11, 9))  # 18 Nov
    pushed = make_update("已推送的通知", detected_at=beijing(2026, 11, 3))
    settle(pushed, "pushed", on_time=True)
    client.login("trainer1")
    html = client.get("/regulation").get_data(as_text=True)
    assert open_rows(html) == [(str(red.id), "overdue"), (str(amber.id), "soon"),
                               (str(green.id), "ok")]
    assert 'data-remaining="-3"' in html  # 11 Nov -> 16 Nov: Thu, Fri, Mon
    assert 'data-remaining="2"' in html and 'data-remaining="7"' in html
    assert "已推送的通知" not in html
    assert 'class="badge clock clock-overdue due-overdue"' in html
    assert 'class="badge clock clock-ok due-completed-on-time"' in html


def test_on_time_rate_overall_and_per_source_from_known_data(app, client, org, page_clock):
    page_clock.set(NOW)
    mohrss = make_source("人社部政策发布")
    court = make_source("最高法公报", topic="other")
    detected = beijing(2026, 10, 20)

    def update(title, source, state, on_time=None, when=detected):
        row = make_update(title, detected_at=when, source=source)
        settle(row, state, on_time=on_time)
        return row

    update("甲1", mohrss, "pushed", True)
    update("甲2", mohrss, "closed", True)
    update("甲3", mohrss, "pushed", False)
    make_update("甲4", detected_at=beijing(2026, 11, 2), source=mohrss)  # open, overdue
    update("乙1", court, "pushed", True)
    update("乙2", court, "not_relevant")
    update("手1", None, "pushed", False)
    # detected 100 days ago: outside the window whatever its outcome
    update("旧", mohrss, "pushed", False, when=NOW - timedelta(days=100))

    overall, per_source = on_time_rates(db.session, now=NOW)
    assert (overall.detected, overall.pushed, overall.on_time, overall.open_overdue) == (7, 5, 3, 1)
    assert overall.rate == 0.6
    by_name = {r.name: (r.detected, r.pushed, r.on_time, r.late, r.open_overdue)
               for r in per_source}
    assert by_name == {"人社部政策发布": (4, 3, 2, 1, 1), "最高法公报": (2, 1, 1, 0, 0),
                       None: (1, 1, 0, 1, 0)}

    client.login("auditor1")
    html = client.get("/regulation").get_data(as_text=True)
    assert 'id="rate-overall" data-rate="0.6000">60%' in html
    assert 'data-source="人社部政策发布" data-pushed="3" data-on-time="2"' in html
    assert 'data-source="manual" data-pushed="1" data-on-time="0"' in html
    assert 'id="on-time-rule"' in html and "90" in html


def test_no_data_shows_no_rate(app, client, org, page_clock):
    page_clock.set(NOW)
    client.login("hr1")
    html = client.get("/regulation").get_data(as_text=True)
    assert 'data-rate=""' in html and 'data-count="0"' in html


def test_open_list_is_paged(app, client, org, page_clock):
    page_clock.set(NOW)
    for i in range(30):
        make_update(f"通知{i:02d}", detected_at=beijing(2026, 11, 2) + timedelta(hours=i),
                    commit=False)
    db.session.commit()
    client.login("trainer1")
    first = client.get("/regulation").get_data(as_text=True)
    second = client.get("/regulation?page=2").get_data(as_text=True)
    assert len(open_rows(first)) == 25 and len(open_rows(second)) == 5
    assert 'id="open-count" data-count="30"' in first
    assert not set(open_rows(first)) & set(open_rows(second))


def test_all_updates_filtered_by_state(app, client, org, page_clock):
    page_clock.set(NOW)
    kept = make_update("不相关的", detected_at=beijing(2026, 11, 2))
    settle(kept, "not_relevant")
    make_update("新的", detected_at=beijing(2026, 11, 3))
    client.login("trainer1")
    everything = client.get("/regulation/updates").get_data(as_text=True)
    assert 'data-count="2"' in everything
    only = client.get("/regulation/updates?state=not_relevant").get_data(as_text=True)
    assert 'data-count="1"' in only and "不相关的" in only and "新的</a>" not in only


def test_update_page_shows_the_item_details(app, client, org, page_clock):
    page_clock.set(NOW)
    source = make_source()
    row = make_update("关于工伤保险待遇的解释", detected_at=beijing(2026, 11, 16, 8, 30),
                      source=source, commit=False)
    row.published_raw = "Mon, 31 Foo 2026 25:00:00 +0800"
    row.date_flagged = True
    db.session.commit()
    client.login("trainer1")
    html = client.get(f"/regulation/updates/{row.id}").get_data(as_text=True)
    assert "人社部政策发布" in html
    assert 'href="https://www.mohrss.gov.cn/example.html"' in html
    assert "Mon, 31 Foo 2026 25:00:00 +0800" in html and 'id="date-flagged"' in html
    assert "2026-11-16 08:30" in html  # detected, shown in Beijing time
    assert 'data-deadline="2026-11-25"' in html
    assert "摘要：第一行<br>第二行" in html
    assert 'data-to="new"' in html
    # the source's default topic is offered at triage
    assert re.search(r'<option selected value="labour_contracts">', html)


def test_an_update_from_a_source_gets_the_source_topic(app, org):
    source = make_source(topic="social_insurance")
    row = make_update(detected_at=NOW, source=source)
    assert db.session.scalar(select(RegulationUpdate.topic).where(
        RegulationUpdate.id == row.id)) == "social_insurance"


# --- the demo -----------------------------------------------------------------------------


def test_demo_shows_every_state_and_every_clock_colour(app, client, make_client, page_clock,
                                                      monkeypatch):
    import functools

    from integrations.feeds import DEMO_FEEDS
    from integrations.feeds.poll import ingest_bytes
    from lms.auth.passwords import hash_password
    from lms.compliance.regulation.demo import load_regulation_demo
    from lms.demo import load_demo
    from lms.ledger import verify

    monkeypatch.setattr("lms.demo.hash_password", functools.cache(hash_password))
    load_demo(db.session, app.extensions["id_vault"])
    db.session.commit()
    now = beijing(2026, 12, 1, 8)  # a Tuesday

    def ingest(session, source, body, at, calendar):
        return ingest_bytes(session, source, body, {}, now=at, calendar=calendar)

    report = load_regulation_demo(db.session, feeds=DEMO_FEEDS, ingest=ingest, now=now)
    db.session.commit()
    assert report.skipped is None and report.sources == 2 and report.updates >= 12
    rows = db.session.scalars(select(RegulationUpdate)).all()
    assert {r.state for r in rows} == {"new", "triaged", "not_relevant", "material_ready",
                                       "pushed", "closed"}
    assert {r.on_time for r in rows if r.pushed_at} == {True, False}
    assert {r.origin for r in rows} == {"feed", "manual"}

    page_clock.set(now)
    client.login("trainer", "peixun-2026-demo")
    html = client.get("/regulation").get_data(as_text=True)
    assert {urgency for _id, urgency in open_rows(html)} == {"overdue", "soon", "ok"}
    assert "人社部 政策法规" in html and "劳动争议典型案例" in html

    trainee = make_client()
    trainee.login("trainee", "xuexi-2026-demo")  # in 装配车间, under 制造事业部
    pushed = next(r for r in rows if r.origin == "feed" and r.state == "pushed")
    assert f'data-course-code="REG-{pushed.id}"' in trainee.get("/learning").get_data(as_text=True)

    again = load_regulation_demo(db.session, feeds=DEMO_FEEDS, ingest=ingest, now=now)
    assert again.skipped == "already loaded"
    assert len(db.session.scalars(select(RegulationUpdate)).all()) == len(rows)
    assert verify(db.session).ok
