"""HR pages for people: employee list and record, edits with ledger entries, the ID-number
reveal, departments, positions, and a manager's team."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from flask import current_app
from sqlalchemy import event, func, select

from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.people.models import Department, Employee, EmployeeTag, Position
from lms.people.services import set_id_number


def check_char(first17: str) -> str:
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def make_id(seq: str, birth: str = "19880512") -> str:
    first17 = "110105" + birth + seq
    return first17 + check_char(first17)


ID_A, ID_B = make_id("101"), make_id("202")
WRONG_CHECK = "1" if ID_A[-1] != "1" else "2"


def vault():
    return current_app.extensions["id_vault"]


def entries(kind: str) -> list[LedgerEntry]:
    return list(db.session.execute(
        select(LedgerEntry).where(LedgerEntry.kind == kind).order_by(LedgerEntry.seq)
    ).scalars())


def employee_nos(html: str) -> set[str]:
    return set(re.findall(r'data-employee-no="([^"]+)"', html))


@pytest.fixture
def org(people):
    """HQ ⊃ Retail ⊃ Store 1, and a separate Factory."""
    hq = people.department("总部", code="HQ")
    retail = people.department("零售事业部", parent=hq, code="RETAIL")
    store = people.department("一号店", parent=retail, code="STORE1")
    factory = people.department("工厂", code="FACTORY")
    cashier = people.position("出纳", code="P-CASH")
    return {"hq": hq, "retail": retail, "store": store, "factory": factory, "cashier": cashier}


@pytest.fixture
def hr(client, people):
    user = people.user("hr1", "hr")
    client.login("hr1")
    return user


# ---------------------------------------------------------------------------
# Employee list
# ---------------------------------------------------------------------------


def test_list_filters_by_department_including_sub_departments(client, hr, people, org):
    people.employee("总部甲", department=org["hq"], employee_no="H1")
    people.employee("零售乙", department=org["retail"], employee_no="R1")
    people.employee("门店丙", department=org["store"], employee_no="S1",
                    position=org["cashier"], status="leaving")
    people.employee("工厂丁", department=org["factory"], employee_no="F1")

    html = client.get(f"/hr/employees?department={org['retail'].id}").get_data(as_text=True)
    assert employee_nos(html) == {"R1", "S1"}
    html = client.get(f"/hr/employees?department={org['hq'].id}").get_data(as_text=True)
    assert employee_nos(html) == {"H1", "R1", "S1"}
    html = client.get("/hr/employees").get_data(as_text=True)
    assert employee_nos(html) == {"H1", "R1", "S1", "F1"}
    assert 'class="error"' not in html  # no filter complains when none is chosen
    assert employee_nos(client.get("/hr/employees?q=门店").get_data(as_text=True)) == {"S1"}
    assert employee_nos(client.get("/hr/employees?q=f1").get_data(as_text=True)) == {"F1"}
    by_position = client.get(f"/hr/employees?position={org['cashier'].id}")
    assert employee_nos(by_position.get_data(as_text=True)) == {"S1"}
    assert employee_nos(client.get("/hr/employees?status=leaving").get_data(as_text=True)) == {"S1"}
    # Nonsense in the query string is ignored rather than failing.
    odd = client.get("/hr/employees?department=abc&position=-&status=nope&page=zz")
    assert odd.status_code == 200 and len(employee_nos(odd.get_data(as_text=True))) == 4
    # A LIKE wildcard typed into the search box is taken literally.
    assert employee_nos(client.get("/hr/employees?q=%25").get_data(as_text=True)) == set()


def test_list_is_paginated_and_keeps_filters(client, hr, people, org):
    for i in range(55):
        people.employee(f"员工{i}", department=org["store"], employee_no=f"S{i:03d}")
    html = client.get(f"/hr/employees?department={org['retail'].id}").get_data(as_text=True)
    assert len(employee_nos(html)) == 50
    assert f"department={org['retail'].id}" in html and "page=2" in html
    page2 = client.get(f"/hr/employees?department={org['retail'].id}&page=2")
    assert len(employee_nos(page2.get_data(as_text=True))) == 5


def test_list_query_count_does_not_grow_with_rows(client, hr, people, org):
    boss = people.employee("老板", department=org["hq"], employee_no="B0")

    def count_queries() -> int:
        statements: list[str] = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert client.get("/hr/employees").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    for i in range(3):
        people.employee(f"甲{i}", department=org["store"], position=org["cashier"], manager=boss)
    few = count_queries()
    for i in range(20):
        dept = people.department(f"店{i}", parent=org["retail"])
        pos = people.position(f"岗{i}")
        mgr = people.employee(f"经理{i}", department=dept)
        people.employee(f"乙{i}", department=dept, position=pos, manager=mgr)
    assert count_queries() == few


def test_id_number_is_masked_in_list_and_detail(client, hr, people, org):
    emp = people.employee("王芳", department=org["store"])
    set_id_number(vault(), emp, ID_A)
    db.session.commit()
    masked = "1101**********" + ID_A[-4:]
    for url in ("/hr/employees", f"/employees/{emp.id}", f"/hr/employees/{emp.id}/edit"):
        html = client.get(url).get_data(as_text=True)
        assert ID_A not in html, url
        assert ID_A[4:14] not in html, url
    assert masked in client.get("/hr/employees").get_data(as_text=True)
    assert masked in client.get(f"/employees/{emp.id}").get_data(as_text=True)


# ---------------------------------------------------------------------------
# Create and edit
# ---------------------------------------------------------------------------


def form_data(emp_no: str, dept: Department, **overrides) -> dict:
    data = {"employee_no": emp_no, "name": "周七", "department_id": str(dept.id),
            "position_id": "", "manager_no": "", "hire_date": "2024-03-01", "status": "active",
            "email": "", "id_number": ""}
    data.update(overrides)
    return data


def test_create_employee_with_ledger_entry(client, hr, people, org):
    boss = people.employee("老板", department=org["hq"], employee_no="B1")
    resp = client.post("/hr/employees/new",
                       form_data("N1", org["store"], manager_no="B1", id_number=ID_A,
                                 position_id=str(org["cashier"].id)),
                       token_from="/hr/employees/new")
    assert resp.status_code == 302
    emp = db.session.execute(select(Employee).where(Employee.employee_no == "N1")).scalar_one()
    assert emp.manager_id == boss.id and emp.position.code == "P-CASH"
    assert vault().decrypt(emp.id_number_cipher) == ID_A
    [entry] = entries("employee.created")
    assert entry.subject == f"employee:{emp.id}" and entry.actor_id == hr.id
    payload = json.loads(entry.payload)
    assert payload["employee_no"] == "N1"
    assert payload["changes"]["manager"] == [None, "B1"]
    assert payload["changes"]["id_number"][1] == emp.id_number_masked
    assert ID_A not in entry.payload


def test_edit_employee_records_old_and_new_values(client, hr, people, org):
    emp = people.employee("张三", department=org["store"], employee_no="E1")
    set_id_number(vault(), emp, ID_A)
    db.session.commit()
    old_masked = emp.id_number_masked
    url = f"/hr/employees/{emp.id}/edit"
    resp = client.post(url, form_data("E1", org["factory"], name="张三丰", id_number=ID_B),
                       token_from=url)
    assert resp.status_code == 302
    db.session.expire_all()
    emp = db.session.get(Employee, emp.id)
    assert (emp.name, emp.department.code) == ("张三丰", "FACTORY")
    assert vault().decrypt(emp.id_number_cipher) == ID_B
    [entry] = entries("employee.updated")
    payload = json.loads(entry.payload)
    assert payload["employee_no"] == "E1"
    assert payload["changes"] == {
        "name": ["张三", "张三丰"],
        "department": ["STORE1", "FACTORY"],
        "id_number": [old_masked, emp.id_number_masked],
    }
    assert ID_A not in entry.payload and ID_B not in entry.payload


def test_blank_id_number_on_edit_keeps_the_number_on_file(client, hr, people, org):
    emp = people.employee("张三", department=org["store"], employee_no="E1")
    set_id_number(vault(), emp, ID_A)
    db.session.commit()
    url = f"/hr/employees/{emp.id}/edit"
    resp = client.post(url, form_data("E1", org["store"], name="张三", status="leaving"),
                       token_from=url)
    assert resp.status_code == 302
    db.session.expire_all()
    emp = db.session.get(Employee, emp.id)
    assert vault().decrypt(emp.id_number_cipher) == ID_A
    assert json.loads(entries("employee.updated")[0].payload)["changes"] == {
        "status": ["active", "leaving"]}


def test_same_id_number_as_another_employee_names_them(client, hr, people, org):
    sister = people.employee("李芳", department=org["store"], employee_no="E900")
    set_id_number(vault(), sister, ID_A)
    db.session.commit()
    resp = client.post("/hr/employees/new", form_data("E901", org["store"], id_number=ID_A),
                       token_from="/hr/employees/new")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "该身份证号已属于员工 E900。" in html
    assert ID_A not in html  # the form does not echo the number back either
    assert "为保护隐私，身份证号不再显示；保存前请重新输入。" in html
    assert db.session.scalar(select(func.count()).select_from(Employee)) == 1
    assert entries("employee.created") == []


def test_invalid_id_number_and_taken_employee_no_are_refused(client, hr, people, org):
    people.employee("甲", department=org["store"], employee_no="E1")
    resp = client.post("/hr/employees/new",
                       form_data("E1", org["store"], id_number=ID_A[:-1] + WRONG_CHECK),
                       token_from="/hr/employees/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "工号 E1 已被使用。" in html
    assert "校验位错误" in html


def test_manager_loop_and_self_manager_refused(client, hr, people, org):
    top = people.employee("甲", department=org["hq"], employee_no="A1")
    mid = people.employee("乙", department=org["hq"], employee_no="A2", manager=top)
    people.employee("丙", department=org["hq"], employee_no="A3", manager=mid)
    url = f"/hr/employees/{top.id}/edit"
    resp = client.post(url, form_data("A1", org["hq"], name="甲", manager_no="A3"), token_from=url)
    assert resp.status_code == 400
    assert "A3 是该员工的下属，不能再设为其直属上级（汇报关系会形成循环）。" in resp.get_data(as_text=True)
    resp = client.post(url, form_data("A1", org["hq"], name="甲", manager_no="A1"), token_from=url)
    assert "员工不能是自己的直属上级。" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Employee, top.id).manager_id is None


# ---------------------------------------------------------------------------
# Reveal
# ---------------------------------------------------------------------------


def test_reveal_needs_hr_role_and_a_reason_and_is_logged(client, make_client, people, org):
    emp = people.employee("王芳", department=org["store"])
    set_id_number(vault(), emp, ID_A)
    db.session.commit()
    people.user("admin1", "admin")
    people.user("hr1", "hr")
    url = f"/hr/employees/{emp.id}/reveal-id"

    admin = make_client()
    admin.login("admin1")
    detail = admin.get(f"/employees/{emp.id}").get_data(as_text=True)
    assert ">编辑</a>" in detail and url not in detail  # admins may edit but not reveal
    resp = admin.post(url, {"reason": "审计"}, token_from=f"/employees/{emp.id}")
    assert resp.status_code == 403 and ID_A not in resp.get_data(as_text=True)

    client.login("hr1")
    assert url in client.get(f"/employees/{emp.id}").get_data(as_text=True)
    assert client.get(url).status_code == 405
    resp = client.post(url, {"reason": "  "}, token_from=f"/employees/{emp.id}")
    assert resp.status_code == 400 and ID_A not in resp.get_data(as_text=True)
    assert entries("employee.id_number_revealed") == []

    resp = client.post(url, {"reason": "社保申报需要核对"}, token_from=f"/employees/{emp.id}")
    assert resp.status_code == 200
    assert ID_A in resp.get_data(as_text=True)
    assert "no-store" in resp.headers["Cache-Control"]
    [entry] = entries("employee.id_number_revealed")
    hr_id = db.session.execute(select(func.min(LedgerEntry.actor_id))).scalar()
    assert entry.actor_id == hr_id and entry.subject == f"employee:{emp.id}"
    payload = json.loads(entry.payload)
    assert payload["reason"] == "社保申报需要核对"
    assert ID_A not in entry.payload
    # The record page goes back to the masked number.
    assert ID_A not in client.get(f"/employees/{emp.id}").get_data(as_text=True)


# ---------------------------------------------------------------------------
# Departments and positions
# ---------------------------------------------------------------------------


def test_department_tree_with_counts(client, hr, people, org):
    people.employee("甲", department=org["store"])
    people.employee("乙", department=org["store"])
    people.employee("丙", department=org["retail"])
    people.employee("丁", department=org["retail"], status="left")  # not counted
    html = client.get("/hr/departments").get_data(as_text=True)
    assert re.search(r'data-department="RETAIL">.*?data-count="3".*?>1 / 3<', html, re.S)
    assert re.search(r'data-department="STORE1">.*?>2 / 2<', html, re.S)
    assert re.search(r'data-department="HQ">.*?data-count="3"', html, re.S)
    # Nested: the store is inside the retail division's list item.
    assert html.index('data-department="HQ"') < html.index('data-department="RETAIL"') \
        < html.index('data-department="STORE1"')


def test_add_department_and_duplicate_code(client, hr, org):
    resp = client.post("/hr/departments", {"code": "STORE2", "name": "二号店",
                                           "parent_id": str(org["retail"].id)},
                       token_from="/hr/departments")
    assert resp.status_code == 302
    dept = db.session.execute(select(Department).where(Department.code == "STORE2")).scalar_one()
    assert dept.parent_id == org["retail"].id
    assert json.loads(entries("department.created")[0].payload) == {
        "code": "STORE2", "name": "二号店", "parent": "RETAIL"}
    resp = client.post("/hr/departments", {"code": "STORE2", "name": "又一个", "parent_id": ""},
                       token_from="/hr/departments")
    assert resp.status_code == 400
    assert "编码 STORE2 已被部门“二号店”使用。" in resp.get_data(as_text=True)


def test_department_cannot_move_under_its_own_descendant(client, hr, org):
    url = f"/hr/departments/{org['hq'].id}/edit"
    resp = client.post(url, {"code": "HQ", "name": "总部", "parent_id": str(org["store"].id)},
                       token_from=url)
    assert resp.status_code == 400
    assert "一号店 是本部门的下级部门，部门不能移到自己的下级部门之下。" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Department, org["hq"].id).parent_id is None
    assert entries("department.updated") == []

    # A legal move and rename is recorded.
    url = f"/hr/departments/{org['store'].id}/edit"
    resp = client.post(url, {"code": "STORE1", "name": "一号旗舰店",
                             "parent_id": str(org["factory"].id)}, token_from=url)
    assert resp.status_code == 302
    payload = json.loads(entries("department.updated")[0].payload)
    assert payload["changes"] == {"name": ["一号店", "一号旗舰店"], "parent": ["RETAIL", "FACTORY"]}


def test_positions_headcount_and_unique_code_and_name(client, hr, people, org):
    people.employee("甲", department=org["store"], position=org["cashier"])
    people.employee("乙", department=org["store"], position=org["cashier"], status="left")
    html = client.get("/hr/positions").get_data(as_text=True)
    assert re.search(r'data-position="P-CASH">.*?data-headcount="1"', html, re.S)

    resp = client.post("/hr/positions", {"code": "P-CASH", "name": "收银"},
                       token_from="/hr/positions")
    assert resp.status_code == 400
    assert "编码 P-CASH 已被岗位“出纳”使用。" in resp.get_data(as_text=True)
    resp = client.post("/hr/positions", {"code": "P-NEW", "name": "出纳"},
                       token_from="/hr/positions")
    assert "名称“出纳”已被岗位 P-CASH 使用。" in resp.get_data(as_text=True)
    resp = client.post("/hr/positions", {"code": "P-NEW", "name": "收银"},
                       token_from="/hr/positions")
    assert resp.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Position)) == 2

    url = f"/hr/positions/{org['cashier'].id}/edit"
    resp = client.post(url, {"code": "P-CASH", "name": "收银"}, token_from=url)
    assert resp.status_code == 400
    resp = client.post(url, {"code": "P-CASH", "name": "出纳员"}, token_from=url)
    assert resp.status_code == 302
    assert json.loads(entries("position.updated")[0].payload)["changes"] == {
        "name": ["出纳", "出纳员"]}


# ---------------------------------------------------------------------------
# Team
# ---------------------------------------------------------------------------


def test_team_shows_direct_and_indirect_reports(client, people, org):
    boss = people.employee("店长", department=org["store"], employee_no="M1")
    lead = people.employee("组长", department=org["store"], employee_no="L1", manager=boss)
    people.employee("店员甲", department=org["store"], employee_no="W1", manager=lead)
    people.employee("店员乙", department=org["store"], employee_no="W2", manager=lead,
                    status="absconded")
    people.employee("别人", department=org["store"], employee_no="X1")
    people.user("m1", "manager", employee=boss)
    client.login("m1")
    html = client.get("/team").get_data(as_text=True)
    assert employee_nos(html) == {"L1", "W1", "W2"}
    assert 'class="error"' not in html
    assert employee_nos(client.get("/team?direct=y").get_data(as_text=True)) == {"L1"}
    html = client.get("/team?status=absconded").get_data(as_text=True)
    assert employee_nos(html) == {"W2"}


def test_hire_date_shown_in_list(client, hr, people, org):
    emp = people.employee("甲", department=org["store"])
    emp.hire_date = date(2021, 11, 30)
    db.session.commit()
    assert "2021-11-30" in client.get("/hr/employees").get_data(as_text=True)


# --- tags ---------------------------------------------------------------------------------


def test_hr_sets_tags_on_the_form_and_sees_them_as_badges(client, hr, people, org):
    resp = client.post("/hr/employees/new",
                       form_data("T1", org["store"], tags="特殊工种，外派、 特殊工种 ;试用期"),
                       token_from="/hr/employees/new")
    assert resp.status_code == 302
    emp = db.session.execute(select(Employee).where(Employee.employee_no == "T1")).scalar_one()
    assert emp.tags == ["外派", "特殊工种", "试用期"]
    payload = json.loads(entries("employee.created")[0].payload)
    assert payload["changes"]["tags"] == [None, ["外派", "特殊工种", "试用期"]]

    html = client.get(f"/employees/{emp.id}").get_data(as_text=True)
    badges = re.search(r'<td id="tags">(.*?)</td>', html).group(1)
    assert re.findall(r'<span class="badge tag">([^<]+)</span>', badges) == [
        "外派", "特殊工种", "试用期"]
    form = client.get(f"/hr/employees/{emp.id}/edit").get_data(as_text=True)
    assert 'value="外派、特殊工种、试用期"' in form  # shown back the way HR types it


def test_editing_tags_is_recorded_and_blank_clears_them(client, hr, people, org):
    emp = people.employee("张三", department=org["store"], employee_no="E1")
    emp.set_tags(["外派", "试用期"])
    db.session.commit()
    url = f"/hr/employees/{emp.id}/edit"
    resp = client.post(url, form_data("E1", org["store"], name="张三", tags="外派, 财务审批人"),
                       token_from=url)
    assert resp.status_code == 302
    assert json.loads(entries("employee.updated")[0].payload)["changes"] == {
        "tags": [["外派", "试用期"], ["外派", "财务审批人"]]}
    resp = client.post(url, form_data("E1", org["store"], name="张三", tags=""), token_from=url)
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(Employee, emp.id).tags == []
    assert json.loads(entries("employee.updated")[1].payload)["changes"] == {
        "tags": [["外派", "财务审批人"], None]}


def test_a_bad_tag_is_a_field_error_and_nothing_is_saved(client, hr, people, org):
    emp = people.employee("张三", department=org["store"], employee_no="E1")
    emp.set_tags(["外派"])
    db.session.commit()
    url = f"/hr/employees/{emp.id}/edit"
    resp = client.post(url, form_data("E1", org["store"], name="张三丰",
                                      tags="外派、" + "长" * 33), token_from=url)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    error = re.search(r'<div class="field has-error">\s*<label for="tags".*?<p class="error">(.*?)</p>',
                      html, re.S)
    assert error and "长" * 33 in error.group(1) and "32" in error.group(1)
    db.session.expire_all()
    emp = db.session.get(Employee, emp.id)
    assert (emp.name, emp.tags) == ("张三", ["外派"])
    assert entries("employee.updated") == []


def test_employee_list_filters_by_tag(client, hr, people, org):
    for no, tags in (("E1", ["外派"]), ("E2", ["外派", "试用期"]), ("E3", ["试用期"]), ("E4", [])):
        people.employee(employee_no=no, department=org["store"]).set_tags(tags)
    db.session.commit()
    html = client.get("/hr/employees?tag=外派").get_data(as_text=True)
    assert employee_nos(html) == {"E1", "E2"}
    assert employee_nos(client.get("/hr/employees?tag=试用期&q=E3").get_data(as_text=True)) == {"E3"}


def test_deleting_an_employee_deletes_their_tags(people, org):
    emp = people.employee(employee_no="E1", department=org["store"])
    emp.set_tags(["外派"])
    db.session.commit()
    db.session.execute(Employee.__table__.delete().where(Employee.id == emp.id))
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(EmployeeTag)) == 0
