"""HR API rows through the CSV import's validator (``csv_import.validate_records``): the
same checks, errors named by the API's field names and row indices, and the API's
"omitted keeps, given replaces" reading of tags."""

from __future__ import annotations

from datetime import date

from integrations.hr.schemas import EmployeeIn
from integrations.hr.sync import API_FIELD_NAMES
from lms.people.csv_import import validate_records

TODAY = date(2026, 9, 28)


def check(rows: list[dict], **lookups):
    records = [EmployeeIn.model_validate(r).record() for r in rows]
    return validate_records(
        records, field_names=API_FIELD_NAMES, row_ref=lambda i: f" employees[{i}] ",
        batch_noun="本批次", known_departments={"RT": 1}, known_positions={"CLERK": 5, "店员": 5},
        existing_employee_nos=lookups.get("nos", {"E1"}), existing_id_numbers={},
        existing_managers=lookups.get("managers", {}), today=TODAY)


def row(no: str, **kw) -> dict:
    return {"employee_no": no, "name": "张三", "department": "RT", "status": "在职",
            "hire_date": "2026-09-01", **kw}


def test_valid_rows_resolve_codes_and_labels():
    result = check([row("E1", position="店员", manager="E2"), row("E2", status="absconded")])
    assert result.ok
    first, second = result.rows
    assert (first.department_id, first.position_id, first.manager_no, first.status,
            first.is_new) == (1, 5, "E2", "active", False)
    assert (second.status, second.is_new) == ("absconded", True)


def test_errors_carry_the_api_field_names_and_row_indices():
    result = check([row("E5"), row("E6", department="NOPE", manager="E404"), row("E5")])
    assert [(e.row, e.field) for e in result.errors] == [
        (1, "department"), (1, "manager"), (2, "employee_no")]
    assert "employees[0]" in result.errors[2].message  # the row it duplicates
    assert "本批次" in result.errors[1].message


def test_a_manager_loop_through_existing_people_is_refused():
    # E1 already reports to E2; the batch makes E2 report to E1.
    result = check([row("E2", manager="E1")], nos={"E1", "E2"}, managers={"E1": "E2"})
    assert [(e.row, e.field) for e in result.errors] == [(0, "manager")]
    assert "E2 → E1 → E2" in result.errors[0].message


def test_tags_omitted_are_untouched_and_given_replace():
    result = check([row("E1"), row("E2", tags=[]), row("E3", tags=["外派、试用期", " 外派 "])])
    assert [r.tags for r in result.rows] == [None, (), ("外派", "试用期")]


def test_explicit_nulls_clear_and_omitted_fields_do_not():
    assert EmployeeIn.model_validate(row("E1")).cleared() == frozenset()
    assert EmployeeIn.model_validate(row("E1", position=None, manager=None, email=None,
                                         id_number=None)).cleared() == {
        "position_id", "manager_id", "email"}
