"""Administration of users: creation, roles, disabling, password resets, permissions."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from support import PASSWORD

from lms.auth.models import UserSession
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.people.models import User

NEW_PASSWORD = "Plenty-long-passphrase-9"


def ledger(kind: str) -> list[LedgerEntry]:
    return list(db.session.execute(
        select(LedgerEntry).where(LedgerEntry.kind == kind).order_by(LedgerEntry.seq)
    ).scalars())


def user_named(username: str) -> User | None:
    db.session.expire_all()
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    assert client.login("root").status_code == 302
    return user


def new_user_form(**overrides) -> dict:
    data = {"username": "Wang.Wu", "display_name": "王五", "email": "wangwu@example.com",
            "employee_no": "", "roles": ["trainee", "trainer"], "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD}
    data.update(overrides)
    return data


def test_admin_creates_user_who_can_log_in_and_ledger_records_it(client, make_client, people,
                                                                 admin):
    emp = people.employee("王五", employee_no="E7001")
    resp = client.post("/admin/users/new", new_user_form(employee_no="E7001"),
                       token_from="/admin/users/new")
    assert resp.status_code == 302

    user = user_named("wang.wu")  # lower-cased
    assert user is not None
    assert user.roles == {"trainee", "trainer"}
    assert user.employee_id == emp.id
    [entry] = ledger("user.created")
    assert entry.actor_id == admin.id
    assert entry.subject == f"user:{user.id}"
    payload = json.loads(entry.payload)
    assert payload["username"] == "wang.wu"
    assert payload["roles"] == ["trainee", "trainer"]
    assert payload["employee_no"] == "E7001"
    assert verify(db.session).ok

    listing = client.get("/admin/users").get_data(as_text=True)
    assert "wang.wu" in listing and "E7001" in listing

    other = make_client()
    assert other.login("wang.wu", NEW_PASSWORD).status_code == 302
    assert other.get("/tools/due-date").status_code == 200  # trainer role works


def test_duplicate_username_is_refused_clearly(client, people, admin):
    people.user("wang.wu", "trainee")
    resp = client.post("/admin/users/new", new_user_form(username="WANG.WU"),
                       token_from="/admin/users/new")
    assert resp.status_code == 400
    assert "用户名 wang.wu 已被占用。" in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert ledger("user.created") == []


@pytest.mark.parametrize(("password", "message"), [
    ("short1", "请至少使用 10 个字符。"),
    ("xxwang.wuxx", "密码不得包含用户名。"),
    ("aaaaaaaaaaab", "密码过于简单。"),
])
def test_weak_initial_password_is_refused(client, admin, password, message):
    resp = client.post("/admin/users/new",
                       new_user_form(password=password, confirm=password),
                       token_from="/admin/users/new")
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    assert user_named("wang.wu") is None


def test_employee_link_must_exist_and_be_free(client, people, admin):
    emp = people.employee("赵六", employee_no="E8001")
    people.user("zhaoliu", "trainee", employee=emp)

    resp = client.post("/admin/users/new", new_user_form(employee_no="E9999"),
                       token_from="/admin/users/new")
    assert resp.status_code == 400
    assert "E9999" in resp.get_data(as_text=True)

    resp = client.post("/admin/users/new", new_user_form(employee_no="E8001"),
                       token_from="/admin/users/new")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "员工 E8001 已关联到用户 zhaoliu。" in html
    assert user_named("wang.wu") is None


def test_at_least_one_role_is_required(client, admin):
    resp = client.post("/admin/users/new", new_user_form(roles=[]),
                       token_from="/admin/users/new")
    assert resp.status_code == 400
    assert "请至少选择一个角色。" in resp.get_data(as_text=True)
    assert user_named("wang.wu") is None


def test_disabling_a_user_kills_their_open_session_at_once(client, make_client, people, admin):
    victim = people.user("lisi", "trainee")
    theirs = make_client()
    assert theirs.login("lisi").status_code == 302
    assert theirs.get("/").status_code == 200

    page = f"/admin/users/{victim.id}"
    resp = client.post(page, {"action": "disable"}, token_from=page)
    assert resp.status_code == 302

    after = theirs.get("/")
    assert after.status_code == 302
    assert "/login" in after.headers["Location"]
    db.session.expire_all()
    reasons = db.session.execute(
        select(UserSession.revoked_reason).where(UserSession.user_id == victim.id)
    ).scalars().all()
    assert reasons == ["disabled"]
    [entry] = ledger("user.disabled")
    assert entry.actor_id == admin.id
    assert json.loads(entry.payload)["sessions_revoked"] == 1


def test_disabled_user_cannot_log_in_until_enabled(client, make_client, people, admin):
    victim = people.user("lisi", "trainee")
    page = f"/admin/users/{victim.id}"
    client.post(page, {"action": "disable"}, token_from=page)

    theirs = make_client()
    resp = theirs.login("lisi")
    assert resp.status_code == 403
    assert theirs.get("/").status_code == 302

    client.post(page, {"action": "enable"}, token_from=page)
    assert theirs.login("lisi").status_code == 302
    assert len(ledger("user.enabled")) == 1


def test_password_reset_ends_sessions_and_old_password(client, make_client, people, admin):
    victim = people.user("lisi", "trainee")
    theirs = make_client()
    theirs.login("lisi")
    assert theirs.get("/").status_code == 200

    page = f"/admin/users/{victim.id}"
    resp = client.post(page, {"action": "reset_password", "new_password": NEW_PASSWORD,
                              "confirm": NEW_PASSWORD}, token_from=page)
    assert resp.status_code == 302
    assert theirs.get("/").status_code == 302

    fresh = make_client()
    assert fresh.login("lisi", PASSWORD).status_code == 401
    assert fresh.login("lisi", NEW_PASSWORD).status_code == 302
    [entry] = ledger("user.password_reset")
    assert entry.actor_id == admin.id
    assert json.loads(entry.payload)["sessions_revoked"] == 1


def test_password_reset_applies_the_policy(client, people, admin):
    victim = people.user("lisi", "trainee")
    page = f"/admin/users/{victim.id}"
    resp = client.post(page, {"action": "reset_password", "new_password": "short",
                              "confirm": "short"}, token_from=page)
    assert resp.status_code == 400
    assert "请至少使用 10 个字符。" in resp.get_data(as_text=True)
    assert ledger("user.password_reset") == []


def test_admin_cannot_disable_self_or_drop_own_admin_role(client, admin):
    page = f"/admin/users/{admin.id}"
    resp = client.post(page, {"action": "disable"}, token_from=page)
    assert resp.status_code == 400
    assert "您不能停用自己的账号。" in resp.get_data(as_text=True)
    assert client.get("/admin/users").status_code == 200  # still logged in

    resp = client.post(page, {"action": "save", "display_name": "root", "roles": ["trainee"]},
                       token_from=page)
    assert resp.status_code == 400
    assert "您不能移除自己的管理员角色。" in resp.get_data(as_text=True)
    assert user_named("root").roles == {"admin"}
    assert ledger("user.disabled") == [] and ledger("user.roles_changed") == []


def test_role_change_takes_effect_and_is_in_the_ledger(client, make_client, people, admin):
    user = people.user("lisi", "trainee")
    theirs = make_client()
    theirs.login("lisi")
    assert theirs.get("/tools/due-date").status_code == 403

    page = f"/admin/users/{user.id}"
    resp = client.post(page, {"action": "save", "display_name": "李四",
                              "roles": ["trainee", "trainer"]}, token_from=page)
    assert resp.status_code == 302
    assert theirs.get("/tools/due-date").status_code == 200

    [entry] = ledger("user.roles_changed")
    assert entry.actor_id == admin.id
    payload = json.loads(entry.payload)
    assert payload["old"] == ["trainee"] and payload["new"] == ["trainee", "trainer"]
    assert user_named("lisi").display_name == "李四"
    assert len(ledger("user.updated")) == 1


def test_users_list_searches_filters_and_counts_live_sessions(client, make_client, people,
                                                              admin):
    emp = people.employee("李四", employee_no="E5001")
    people.user("lisi", "trainee", employee=emp)
    people.user("auditor1", "auditor")
    for _ in range(2):
        make_client().login("lisi")

    html = client.get("/admin/users?q=LIS").get_data(as_text=True)
    assert 'data-username="lisi"' in html and 'data-username="auditor1"' not in html
    row = html.split('data-username="lisi"', 1)[1].split("</tr>", 1)[0]
    assert "E5001" in row and "李四" in row
    assert '<td class="live-sessions">2</td>' in row

    html = client.get("/admin/users?role=auditor").get_data(as_text=True)
    assert 'data-username="auditor1"' in html and 'data-username="lisi"' not in html


@pytest.mark.parametrize("role", ["hr", "trainee"])
def test_non_admins_get_403_on_every_admin_page(client, people, role):
    target = people.user("someone", "trainee")
    people.user("notadmin", role)
    client.login("notadmin")
    for url in ("/admin/users", "/admin/users/new", f"/admin/users/{target.id}",
                "/admin/calendar", "/admin/calendar?year=2027"):
        assert client.get(url).status_code == 403, url
    for url, data in (
        ("/admin/users/new", new_user_form()),
        (f"/admin/users/{target.id}", {"action": "disable"}),
        (f"/admin/users/{target.id}", {"action": "reset_password",
                                       "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}),
        ("/admin/calendar/overrides", {"day": "2026-09-29", "is_workday": "0", "note": "x"}),
        ("/admin/calendar/overrides/2026-09-29/delete", {}),
        ("/admin/calendar/years", {"year": "2027", "note": "x"}),
    ):
        assert client.post(url, data, token_from="/").status_code == 403, url
    assert user_named("someone").is_enabled
    assert user_named("wang.wu") is None


def test_unknown_user_is_404(client, admin):
    assert client.get("/admin/users/99999").status_code == 404
