"""Who may see which people pages: roles on /hr/, and object-level rules on records."""

from __future__ import annotations

import re

import pytest
from flask import current_app

from lms.extensions import db
from lms.people.importer import EmployeeImport


@pytest.fixture
def org(people):
    """A store with a manager, a team lead under them and a clerk under the lead, and a
    peer manager with a report of their own."""
    store = people.department("一号店", code="STORE1")
    boss = people.employee("店长", department=store, employee_no="M1")
    lead = people.employee("组长", department=store, employee_no="L1", manager=boss)
    clerk = people.employee("店员", department=store, employee_no="W1", manager=lead)
    peer = people.employee("隔壁店长", department=store, employee_no="M2")
    peer_report = people.employee("隔壁店员", department=store, employee_no="W2", manager=peer)
    return {"store": store, "boss": boss, "lead": lead, "clerk": clerk, "peer": peer,
            "peer_report": peer_report}


def hr_urls() -> list[tuple[str, str]]:
    """Every /hr/ route with its methods, ids filled in with 1."""
    urls = []
    for rule in current_app.url_map.iter_rules():
        if not rule.rule.startswith("/hr/"):
            continue
        url = re.sub(r"<(?:int:)?[a-z_]+>", "1", rule.rule)
        urls.extend((method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return urls


def test_trainee_gets_403_on_every_hr_page(client, people, org):
    people.user("t1", "trainee", employee=org["clerk"])
    client.login("t1")
    # Something must exist behind the ids so a 404 cannot hide a missing role check.
    db.session.add(EmployeeImport(uploaded_by_id=1, filename="x.csv", sha256="0" * 64,
                                  content=b"x", row_count=0))
    db.session.commit()
    urls = hr_urls()
    assert len(urls) >= 14, urls
    token = client.csrf("/")
    for method, url in urls:
        if method == "GET":
            resp = client.get(url)
        else:
            resp = client.c.post(url, data={"csrf_token": token, "reason": "x",
                                            "fingerprint": "x", "code": "X", "name": "X"})
        assert resp.status_code == 403, (method, url, resp.status_code)


def test_trainer_gets_403_on_employee_list(client, people, org):
    people.user("trainer1", "trainer")
    client.login("trainer1")
    assert client.get("/hr/employees").status_code == 403
    assert client.get("/team").status_code == 403


def test_anonymous_is_sent_to_login(client, org):
    resp = client.get("/hr/employees")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    resp = client.get(f"/employees/{org['clerk'].id}")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_trainee_sees_only_their_own_record(client, people, org):
    people.user("t1", "trainee", employee=org["clerk"])
    client.login("t1")
    own = client.get(f"/employees/{org['clerk'].id}")
    assert own.status_code == 200 and "店员" in own.get_data(as_text=True)
    assert client.get(f"/employees/{org['lead'].id}").status_code == 404
    assert client.get(f"/employees/{org['peer_report'].id}").status_code == 404
    # Same answer as for a record that does not exist: nothing is revealed.
    assert client.get("/employees/99999").status_code == 404


def test_manager_sees_indirect_report_but_not_a_peer(client, people, org):
    people.user("m1", "manager", employee=org["boss"])
    client.login("m1")
    assert client.get(f"/employees/{org['lead'].id}").status_code == 200
    indirect = client.get(f"/employees/{org['clerk'].id}")
    assert indirect.status_code == 200 and "W1" in indirect.get_data(as_text=True)
    assert client.get(f"/employees/{org['peer'].id}").status_code == 404
    assert client.get(f"/employees/{org['peer_report'].id}").status_code == 404
    # Managers get no HR edit link and no HR pages.
    assert "/edit" not in indirect.get_data(as_text=True)
    assert client.get(f"/hr/employees/{org['clerk'].id}/edit").status_code == 403


def test_hr_and_admin_see_anyone(client, make_client, people, org):
    people.user("hr1", "hr")
    people.user("admin1", "admin")
    client.login("hr1")
    assert client.get(f"/employees/{org['peer_report'].id}").status_code == 200
    admin = make_client()
    admin.login("admin1")
    assert admin.get(f"/employees/{org['peer_report'].id}").status_code == 200
    assert admin.get("/hr/employees").status_code == 200
