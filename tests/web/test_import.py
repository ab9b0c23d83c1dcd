"""Employee CSV import through the browser flow: upload → preview → apply."""

from __future__ import annotations

import io
import json
import re

import pytest
from flask import current_app
from sqlalchemy import func, select

from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.people import importer
from lms.people.importer import EmployeeImport
from lms.people.models import Employee
from lms.people.services import set_id_number


def check_char(first17: str) -> str:
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def make_id(seq: str, birth: str = "19900307") -> str:
    first17 = "440305" + birth + seq
    return first17 + check_char(first17)


ID_1, ID_2, ID_3, ID_4 = (make_id(s) for s in ("111", "222", "333", "444"))
HEADER = "工号,姓名,部门编码,岗位编码,直属上级工号,入职日期,状态,身份证号,邮箱"
FP_RE = re.compile(r'name="fingerprint"[^>]*value="([^"]+)"')


def csv_bytes(*rows: str, encoding: str = "utf-8-sig") -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode(encoding)


GOOD = (
    # E100's manager appears further down the file: resolved after all rows exist.
    f"E100,张三,STORE1,P-CASH,E200,2024-03-01,在职,{ID_1},zs@example.com",
    f"E200,李四,RETAIL,店长,,2023/7/1,在职,{ID_2},",
    f"E300,王五,STORE1,,E200,2024年5月6日,待离职,{ID_3},",
)


@pytest.fixture
def org(people):
    hq = people.department("总部", code="HQ")
    retail = people.department("零售事业部", parent=hq, code="RETAIL")
    people.department("一号店", parent=retail, code="STORE1")
    people.position("出纳", code="P-CASH")
    people.position("店长", code="P-MGR")
    return hq


@pytest.fixture
def hr(client, people, org):
    user = people.user("hr1", "hr")
    client.login("hr1")
    return user


def upload(client, data: bytes, filename: str = "employees.csv"):
    return client.post("/hr/import", {"file": (io.BytesIO(data), filename)},
                       token_from="/hr/import")


def staged_id(resp) -> int:
    assert resp.status_code == 302, resp.get_data(as_text=True)
    match = re.search(r"/hr/import/(\d+)$", resp.headers["Location"])
    assert match, resp.headers["Location"]
    return int(match.group(1))


def fingerprint_of(client, import_id: int) -> str:
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    match = FP_RE.search(html)
    assert match, "preview offers no apply button"
    return match.group(1)


def apply(client, import_id: int, fingerprint: str | None = None):
    fp = fingerprint or fingerprint_of(client, import_id)
    return client.post(f"/hr/import/{import_id}/apply", {"fingerprint": fp},
                       token_from=f"/hr/import/{import_id}", follow_redirects=True)


def employee_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Employee))


def ledger_entries(kind: str) -> list[LedgerEntry]:
    return list(db.session.execute(
        select(LedgerEntry).where(LedgerEntry.kind == kind).order_by(LedgerEntry.seq)
    ).scalars())


def test_utf8_bom_upload_preview_and_apply_writes_all_rows_and_ledger(client, hr):
    data = csv_bytes(*GOOD)
    import_id = staged_id(upload(client, data))
    preview = client.get(f"/hr/import/{import_id}")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert 'id="new-count">3<' in html and 'id="update-count">0<' in html
    assert "张三" in html and "一号店" in html
    assert ID_1 not in html and "4403**********" in html  # masked even in the preview
    assert employee_count() == 0  # nothing written before apply

    done = apply(client, import_id)
    assert "新建员工 3 人，更新 0 人，未变更 0 人。" in done.get_data(as_text=True)
    db.session.expire_all()
    rows = {e.employee_no: e for e in db.session.execute(select(Employee)).scalars()}
    assert set(rows) == {"E100", "E200", "E300"}
    assert rows["E100"].manager_id == rows["E200"].id
    assert rows["E300"].status == "leaving"
    assert rows["E200"].position.code == "P-MGR"  # matched by position name
    assert rows["E100"].id_number_masked == "4403**********" + ID_1[-4:]
    vault = current_app.extensions["id_vault"]
    assert vault.decrypt(rows["E100"].id_number_cipher) == ID_1

    [entry] = ledger_entries("employees.imported")
    payload = json.loads(entry.payload)
    assert payload["sha256"] == db.session.get(EmployeeImport, import_id).sha256
    assert payload["filename"] == "employees.csv"
    assert payload["created"] == 3 and payload["updated"] == 0
    assert entry.actor_id == hr.id
    assert ID_1 not in entry.payload
    assert db.session.get(EmployeeImport, import_id).applied_by_id == hr.id


def test_gbk_file_from_chinese_excel(client, hr):
    import_id = staged_id(upload(client, csv_bytes(*GOOD, encoding="gbk")))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert "王五" in html and 'id="new-count">3<' in html
    apply(client, import_id)
    db.session.expire_all()
    assert db.session.execute(
        select(Employee.name).where(Employee.employee_no == "E300")).scalar_one() == "王五"


def test_staged_file_is_encrypted_at_rest(client, hr):
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    staged = db.session.get(EmployeeImport, import_id)
    assert ID_1.encode() not in staged.content
    assert "张三".encode() not in staged.content


def test_errors_are_listed_by_row_and_nothing_can_be_applied(client, hr):
    data = csv_bytes(
        GOOD[1],
        f"E101,赵六,NOPE,,,2024-03-01,在职,{ID_1},",  # row 3: unknown department
        "E102,,STORE1,,,2024-02-30,在职,,",  # row 4: no name, impossible date
        f"E103,钱七,STORE1,,,2024-03-01,休假,{ID_3[:-1]}0,",  # row 5: bad status and check digit
    )
    resp = upload(client, data)
    import_id = staged_id(resp)  # stored, so the errors can be shown and fixed
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    for row in (3, 4, 5):
        assert f'data-row="{row}"' in html
    assert "部门编码 “NOPE” 不存在" in html
    assert "姓名不能为空" in html and "2024-02-30" in html
    assert "休假" in html and "校验位错误" in html
    assert 'data-row="2"' not in html
    assert 'name="fingerprint"' not in html  # no apply button
    assert "发现 5 个问题，无法导入任何数据" in html

    resp = client.post(f"/hr/import/{import_id}/apply", {"fingerprint": "x" * 64},
                       token_from=f"/hr/import/{import_id}", follow_redirects=True)
    assert "该文件已不再有效" in resp.get_data(as_text=True)
    assert employee_count() == 0
    assert db.session.get(EmployeeImport, import_id).applied_at is None


def test_same_id_number_as_existing_employee_is_named(client, hr, people):
    sister = people.employee("李芳", employee_no="E900")
    set_id_number(current_app.extensions["id_vault"], sister, ID_1)
    db.session.commit()
    import_id = staged_id(upload(client, csv_bytes(GOOD[1], f"E101,李芬,STORE1,,,2024-03-01,在职,{ID_1},")))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert 'data-row="3"' in html
    assert "工号 E900" in html and "已被系统中的员工" in html
    assert ID_1 not in html


def test_revalidation_refuses_when_data_changed_after_preview(client, hr, people):
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    fp = fingerprint_of(client, import_id)
    # Meanwhile someone else creates E300 by hand: the preview's "3 new" is now wrong.
    people.employee("王五", employee_no="E300")
    resp = apply(client, import_id, fp)
    assert "您查看预览后，系统数据发生了变化" in resp.get_data(as_text=True)
    assert employee_count() == 1
    assert ledger_entries("employees.imported") == []
    assert db.session.get(EmployeeImport, import_id).applied_at is None


def test_revalidation_refuses_when_rows_became_invalid(client, hr, org):
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    fp = fingerprint_of(client, import_id)
    store = org.children[0].children[0]
    store.code = "STORE-1"  # renamed between preview and apply
    db.session.commit()
    resp = apply(client, import_id, fp)
    html = resp.get_data(as_text=True)
    assert "该文件已不再有效" in html
    assert "STORE1" in html  # the preview now lists the rows that broke
    assert employee_count() == 0


def test_failure_mid_apply_writes_nothing(client, hr, people, monkeypatch):
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    fp = fingerprint_of(client, import_id)
    # Between the re-validation and the writes another employee gets ID_3: simulate
    # by hiding ID holders from the lookups, so only the database's unique index stops it.
    rival = people.employee("冒名者", employee_no="E999")
    set_id_number(current_app.extensions["id_vault"], rival, ID_3)
    db.session.commit()
    real = importer.load_lookups

    def blind(session, vault, id_numbers):
        lookups = real(session, vault, id_numbers)
        lookups.id_holders.clear()
        return lookups

    monkeypatch.setattr(importer, "load_lookups", blind)
    resp = apply(client, import_id, fp)
    assert "未导入任何数据：导入过程中，本文件使用的某个工号或身份证号已被其他操作占用。" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.execute(select(Employee.employee_no)).scalars().all() == ["E999"]
    assert ledger_entries("employees.imported") == []
    assert db.session.get(EmployeeImport, import_id).applied_at is None


def test_apply_twice_is_refused(client, hr):
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    fp = fingerprint_of(client, import_id)
    apply(client, import_id, fp)
    again = apply(client, import_id, fp)
    html = again.get_data(as_text=True)
    assert "此次导入已执行，不能重复导入。" in html
    assert 'id="applied"' in html
    assert "新建员工 3 人，更新 0 人，未变更 0 人。" in html  # counts from the ledger
    assert employee_count() == 3
    assert len(ledger_entries("employees.imported")) == 1


def test_update_existing_employee_keeps_blank_optional_cells(client, hr, people, org):
    emp = people.employee("张三", employee_no="E100", department=org)
    set_id_number(current_app.extensions["id_vault"], emp, ID_1)
    emp.email = "old@example.com"
    db.session.commit()
    import_id = staged_id(upload(client, csv_bytes("E100,张三丰,RETAIL,,,2024-03-01,离职,,")))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert 'id="update-count">1<' in html
    apply(client, import_id)
    db.session.expire_all()
    emp = db.session.get(Employee, emp.id)
    assert (emp.name, emp.status, emp.department.code) == ("张三丰", "left", "RETAIL")
    assert emp.email == "old@example.com"
    assert emp.id_number_masked.endswith(ID_1[-4:])
    payload = json.loads(ledger_entries("employees.imported")[0].payload)
    assert payload["updated_employee_nos"] == ["E100"]


def test_manager_loop_through_existing_employees_is_an_error(client, hr, people, org):
    boss = people.employee("老板", employee_no="E1", department=org)
    people.employee("经理", employee_no="E2", department=org, manager=boss)
    # E1 is made to report to E2, who reports to E1 in the database.
    import_id = staged_id(upload(client, csv_bytes("E1,老板,HQ,,E2,2020-01-01,在职,,")))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert 'data-row="2"' in html and "循环" in html


def test_trainee_cannot_upload(client, people, org):
    people.user("t1", "trainee")
    client.login("t1")
    assert client.get("/hr/import").status_code == 403
    resp = client.post("/hr/import", {"file": (io.BytesIO(csv_bytes(*GOOD)), "a.csv")},
                       token_from="/")
    assert resp.status_code == 403
    assert db.session.scalar(select(func.count()).select_from(EmployeeImport)) == 0


def test_missing_csrf_token_is_refused(client, hr):
    resp = client.c.post("/hr/import", data={"file": (io.BytesIO(csv_bytes(*GOOD)), "a.csv")})
    assert resp.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(EmployeeImport)) == 0


def test_oversized_upload_gets_413(client, hr, app):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    resp = upload(client, csv_bytes(*GOOD) + b"," * 10_000)
    assert resp.status_code == 413
    assert "上传的文件过大。" in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(EmployeeImport)) == 0


@pytest.mark.parametrize(("data", "filename", "message"), [
    (b"", "empty.csv", "文件为空"),
    (b"PK\x03\x04" + bytes(200), "staff.csv", "Excel 工作簿"),
    (b"PK\x03\x04" + bytes(200), "staff.xlsx", "这是 Excel 工作簿（.xlsx），不是 CSV 文件。"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.png", "只能导入 CSV 文件（.csv），photo.png 不是 CSV 文件。"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x01" + bytes(200), "photo.csv", "无法识别文件编码"),
    ("工号,姓名\r\nE1,张三\r\n".encode(), "short.csv", "缺少必填列"),
    (HEADER.encode() + b"\r\n", "header-only.csv", "没有员工数据"),
])
def test_bad_files_get_a_specific_message_and_nothing_is_stored(client, hr, data, filename,
                                                                 message):
    resp = upload(client, data, filename)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'id="upload-error"' in html and message in html
    assert db.session.scalar(select(func.count()).select_from(EmployeeImport)) == 0


def test_staged_import_only_for_uploader_or_hr(client, make_client, people, org):
    people.user("admin1", "admin")
    people.user("admin2", "admin")
    people.user("hr2", "hr")
    client.login("admin1")
    import_id = staged_id(upload(client, csv_bytes(*GOOD)))
    assert client.get(f"/hr/import/{import_id}").status_code == 200
    other_admin = make_client()
    other_admin.login("admin2")
    assert other_admin.get(f"/hr/import/{import_id}").status_code == 404
    resp = other_admin.post(f"/hr/import/{import_id}/apply", {"fingerprint": "x"},
                            token_from="/hr/import")
    assert resp.status_code == 404
    hr_client = make_client()
    hr_client.login("hr2")
    assert hr_client.get(f"/hr/import/{import_id}").status_code == 200


def test_csv_template_has_bom_and_chinese_headers(client, hr):
    resp = client.get("/hr/import/template.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert resp.data.startswith(b"\xef\xbb\xbf")
    header = resp.data.decode("utf-8-sig").splitlines()[0]
    assert header.split(",")[:3] == ["工号", "姓名", "部门编码"]
    # The template is itself importable (headers only → "no data rows", not "bad header").
    html = upload(client, resp.data, "template.csv").get_data(as_text=True)
    assert "没有员工数据" in html


# --- the optional 标签 (tags) column ------------------------------------------------------

TAGS_HEADER = HEADER + ",标签"


def tagged_csv(*rows: str, header: str = TAGS_HEADER, encoding: str = "utf-8-sig") -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode(encoding)


def tags_of(employee_no: str) -> list[str]:
    db.session.expire_all()
    emp = db.session.execute(
        select(Employee).where(Employee.employee_no == employee_no)).scalar_one()
    return emp.tags


def test_gbk_file_with_tags_creates_tagged_employees(client, hr):
    data = tagged_csv(
        f'E100,张三,STORE1,P-CASH,,2024-03-01,在职,{ID_1},,"特殊工种，外派、特殊工种"',
        "E200,李四,RETAIL,,,2023/7/1,在职,,,财务审批人",
        "E300,王五,STORE1,,,2024-05-06,在职,,,",
        encoding="gbk")
    import_id = staged_id(upload(client, data))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert 'id="new-count">3<' in html
    assert '<span class="badge tag">特殊工种</span>' in html  # the preview shows the tags
    apply(client, import_id)
    assert tags_of("E100") == ["外派", "特殊工种"]
    assert tags_of("E200") == ["财务审批人"]
    assert tags_of("E300") == []


def test_tags_column_replaces_tags_and_blank_cell_clears_them(client, hr, people, org):
    keep = people.employee("张三", employee_no="E100", department=org)
    clear = people.employee("李四", employee_no="E200", department=org)
    same = people.employee("王五", employee_no="E300", department=org)
    keep.set_tags(["试用期", "外派"])
    clear.set_tags(["外派"])
    same.set_tags(["夜班"])
    db.session.commit()
    data = tagged_csv("E100,张三,HQ,,,2024-03-01,在职,,,特殊工种;外派",
                      "E200,李四,HQ,,,2024-03-01,在职,,,",
                      "E300,王五,HQ,,,2024-03-01,在职,,,夜班")
    import_id = staged_id(upload(client, data))
    done = apply(client, import_id)
    # the fixture's hire dates and department match the file: only tags changed
    assert "新建员工 0 人，更新 2 人，未变更 1 人。" in done.get_data(as_text=True)
    assert tags_of("E100") == ["外派", "特殊工种"]
    assert tags_of("E200") == []
    assert tags_of("E300") == ["夜班"]
    payload = json.loads(ledger_entries("employees.imported")[0].payload)
    assert sorted(payload["updated_employee_nos"]) == ["E100", "E200"]


def test_without_a_tags_column_tags_are_untouched(client, hr, people, org):
    emp = people.employee("张三", employee_no="E100", department=org)
    emp.set_tags(["试用期"])
    db.session.commit()
    import_id = staged_id(upload(client, csv_bytes("E100,张三丰,HQ,,,2024-03-01,在职,,")))
    apply(client, import_id)
    assert tags_of("E100") == ["试用期"]


def test_tags_header_alias_in_english(client, hr):
    data = tagged_csv("E100,张三,HQ,,,2024-03-01,在职,,,外派", header=HEADER + ",Tags")
    apply(client, staged_id(upload(client, data)))
    assert tags_of("E100") == ["外派"]


def test_bad_tags_are_errors_naming_row_and_column(client, hr):
    many = "、".join(f"标签{i}" for i in range(21))
    data = tagged_csv("E100,张三,HQ,,,2024-03-01,在职,,,外派",
                      f"E101,赵六,HQ,,,2024-03-01,在职,,,{'长' * 33}",
                      f"E102,钱七,HQ,,,2024-03-01,在职,,,{many}",
                      # a right-to-left override pasted from a chat app
                      "E103,孙八,HQ,,,2024-03-01,在职,,,特殊\u202e工种")
    import_id = staged_id(upload(client, data))
    html = client.get(f"/hr/import/{import_id}").get_data(as_text=True)
    assert 'data-row="2"' not in html
    assert re.search(r'data-row="3"><td>3</td><td>标签</td><td>标签 “长{33}” 过长：33 个字符，最多 32 个',
                     html)
    assert re.search(r'data-row="4"><td>4</td><td>标签</td><td>标签过多：共 21 个，每人最多 20 个', html)
    assert re.search(r'data-row="5"><td>5</td><td>标签</td><td>标签 “特殊\u202e工种” 含有不可见的控制字符',
                     html)
    assert 'name="fingerprint"' not in html
    assert employee_count() == 0
