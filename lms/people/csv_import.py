"""Pure half of HR's employee CSV import: decode, map headers, validate every row.

No database access here: the caller passes in lookups (departments, positions,
existing employees and ID numbers) and gets back either fully validated rows or
*all* errors at once, each pinned to the row number HR sees in Excel, so a bad
file is fixed in one round trip instead of one error per upload.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from lms.people import idnumber
from lms.people.tags import MAX_TAGS, TagError, parse_tags, valid_tags

__all__ = [
    "DATE_FORMATS_HINT",
    "FIELDS",
    "STATUS_LABELS",
    "EmployeeRow",
    "ImportFileError",
    "ImportResult",
    "RowError",
    "decode_upload",
    "id_numbers_in",
    "parse_date",
    "parse_employee_csv",
    "parse_status",
    "validate_records",
]

# Employment status code -> Chinese label, in the order shown to users.
STATUS_LABELS: dict[str, str] = {
    "active": "在职",
    "leaving": "待离职",
    "absconded": "自离",
    "unpaid_leave": "停薪留职",
    "left": "离职",
}

DATE_FORMATS_HINT = "2024-03-01、2024/3/1、2024.3.1、2024年3月1日、20240301"

DEFAULT_MAX_ROWS = 20000
MAX_NAME_LENGTH = 64
# Hire dates may be entered ahead of an onboarding, but not absurdly far ahead.
MAX_FUTURE_HIRE_DAYS = 366
# 劳动法第15条 / 禁止使用童工规定: employing anyone under 16 is prohibited.
MIN_LEGAL_WORKING_AGE = 16


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (encoding, headers, size)."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one cell (or row, when ``field`` is "")."""

    row: int  # 1-based row as shown in Excel; the header is row 1
    field: str  # column header as written in the file, "" for row-level problems
    message: str


@dataclass(frozen=True, slots=True)
class EmployeeRow:
    """A validated row, with lookups resolved to database ids."""

    row: int
    employee_no: str
    name: str
    department_id: int
    position_id: int | None
    manager_no: str | None
    hire_date: date
    status: str  # a key of STATUS_LABELS
    id_number: str | None  # idnumber.normalize()d
    email: str | None
    is_new: bool  # employee_no not yet in the database
    # None when the file has no 标签 column (tags untouched); otherwise the row's tags,
    # which replace the employee's (an empty cell clears them)
    tags: tuple[str, ...] | None = None
    # Columns to set to NULL although the row leaves them blank ("position_id", "email",
    # "manager_id"): the HR API's explicit nulls. The CSV never clears (blank keeps).
    clear: frozenset[str] = frozenset()


@dataclass(slots=True)
class ImportResult:
    """Outcome of a parse: ``rows`` is filled only when there are no ``errors``.

    ``warnings`` never block the import; they flag lawful-but-alarming data
    (e.g. someone hired before age 16) for HR to look at.
    """

    rows: list[EmployeeRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    record_count: int = 0  # data rows in the file, valid or not

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def new_count(self) -> int:
        return sum(1 for r in self.rows if r.is_new)

    @property
    def update_count(self) -> int:
        return sum(1 for r in self.rows if not r.is_new)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Text files never contain C0 controls other than tab/CR/LF (and Ctrl-Z from DOS tools).
_RE_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x19\x1b-\x1f\x7f]")


def _strip_invisible(text: str) -> str:
    return text.replace("\ufeff", "").replace("\u200b", "").strip()


def decode_upload(data: bytes) -> str:
    """Decode an uploaded CSV: UTF-8 (with/without BOM), GB18030/GBK, or UTF-16 with BOM.

    Chinese Excel saves "CSV (逗号分隔)" as GBK and "CSV UTF-8" with a BOM, so
    both must work. UTF-8 is tried strictly first because GB18030 would also
    "decode" most UTF-8 bytes into mojibake.
    """
    if not data.strip():
        raise ImportFileError("文件为空：请上传包含表头和数据行的 CSV 文件")
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError(
            "这是 Excel 工作簿（.xlsx/.xls），不是 CSV：请在 Excel 中“另存为”CSV 后再上传"
        )

    if data.startswith(_UTF16_BOMS):
        attempts: tuple[str, ...] = ("utf-16",)
        tried = "UTF-16"
    else:
        attempts = ("utf-8-sig", "gb18030")
        tried = "UTF-8、GB18030/GBK"
    for encoding in attempts:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _RE_BINARY.search(text):
            continue
        text = text.removeprefix("\ufeff")
        if not _strip_invisible(text):
            raise ImportFileError("文件为空：请上传包含表头和数据行的 CSV 文件")
        return text
    raise ImportFileError(
        f"无法识别文件编码（已尝试 {tried}）：请在 Excel 中另存为“CSV UTF-8（逗号分隔）”后再上传"
    )


# ---------------------------------------------------------------------------
# Cell parsers (public: the single-employee form reuses them)
# ---------------------------------------------------------------------------

_RE_DATE_SEP = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_RE_DATE_CN = re.compile(r"([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日")
_RE_DATE_COMPACT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")


def parse_date(value: str) -> date | None:
    """Parse the date spellings Chinese HR actually types; None if unrecognised or impossible."""
    text = value.strip()
    for pattern in (_RE_DATE_SEP, _RE_DATE_CN, _RE_DATE_COMPACT):
        m = pattern.fullmatch(text)
        if m:
            groups = [g for g in m.groups() if g not in ("-", "/", ".")]
            year, month, day = (int(g) for g in groups)
            if year < 1900:
                return None
            try:
                return date(year, month, day)
            except ValueError:
                return None
    return None


_STATUS_BY_INPUT: dict[str, str] = {
    **{code: code for code in STATUS_LABELS},
    **{label: code for code, label in STATUS_LABELS.items()},
}


def parse_status(value: str) -> str | None:
    """Status code for a Chinese label or an English code (case-insensitive), else None."""
    text = value.strip()
    return _STATUS_BY_INPUT.get(text) or _STATUS_BY_INPUT.get(text.casefold())


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------

# Canonical field -> Chinese label used in messages.
_FIELD_LABELS: dict[str, str] = {
    "employee_no": "工号",
    "name": "姓名",
    "department_code": "部门编码",
    "position": "岗位编码",
    "manager_no": "直属上级工号",
    "hire_date": "入职日期",
    "status": "状态",
    "id_number": "身份证号",
    "email": "邮箱",
    "tags": "标签",
}
_REQUIRED_FIELDS = ("employee_no", "name", "department_code", "hire_date", "status")

# Accepted header spellings. "岗位" may hold a position code or name; both are
# resolved through the same lookup, so it is the same field as "岗位编码".
_HEADER_ALIASES: dict[str, str] = {
    "工号": "employee_no",
    "employee_no": "employee_no",
    "姓名": "name",
    "name": "name",
    "部门编码": "department_code",
    "department_code": "department_code",
    "岗位编码": "position",
    "position_code": "position",
    "岗位": "position",
    "position": "position",
    "直属上级工号": "manager_no",
    "manager_no": "manager_no",
    "入职日期": "hire_date",
    "hire_date": "hire_date",
    "状态": "status",
    "status": "status",
    "身份证号": "id_number",
    "id_number": "id_number",
    "邮箱": "email",
    "email": "email",
    "标签": "tags",
    "tags": "tags",
}


def _header_key(header: str) -> str | None:
    text = header
    if text.isascii():
        # "Employee No", "employee-no" and "EMPLOYEE_NO" all mean employee_no.
        text = re.sub(r"[\s\-]+", "_", text.casefold())
    return _HEADER_ALIASES.get(text)


def _field_description(key: str) -> str:
    return f"{_FIELD_LABELS[key]}({key if key != 'position' else 'position_code'})"


def _sniff_delimiter(header_line: str) -> str:
    """Pick comma, tab or semicolon by frequency in the header line (comma wins ties)."""
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])  # max() keeps the first on ties
    return best if counts[best] else ","


@dataclass(slots=True)
class _Columns:
    by_field: dict[str, int]  # canonical field -> column index
    headers: list[str]  # cleaned header text per column index
    ignored: set[int]  # columns with a blank header


def _map_headers(cells: list[str]) -> _Columns:
    headers = [_strip_invisible(c) for c in cells]
    by_field: dict[str, int] = {}
    ignored: set[int] = set()
    unknown: list[str] = []
    duplicates: list[str] = []
    for index, header in enumerate(headers):
        if not header:
            ignored.add(index)
            continue
        key = _header_key(header)
        if key is None:
            unknown.append(header)
        elif key in by_field:
            duplicates.append(f"“{headers[by_field[key]]}”与“{header}”")
        else:
            by_field[key] = index

    problems: list[str] = []
    missing = [k for k in _REQUIRED_FIELDS if k not in by_field]
    if missing:
        problems.append("缺少必填列：" + "、".join(_field_description(k) for k in missing))
    if unknown:
        problems.append(
            "无法识别的列："
            + "、".join(f"“{h}”" for h in unknown)
            + "（可用列："
            + "、".join(_field_description(k) for k in _FIELD_LABELS)
            + "）"
        )
    if duplicates:
        problems.append("重复的列：" + "；".join(duplicates))
    if problems:
        raise ImportFileError("；".join(problems))
    return _Columns(by_field=by_field, headers=headers, ignored=ignored)


# ---------------------------------------------------------------------------
# Row validation
# ---------------------------------------------------------------------------

_RE_EMPLOYEE_NO = re.compile(r"[A-Za-z0-9_-]{1,32}")
_RE_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_RE_SCIENTIFIC = re.compile(r"[0-9](\.[0-9]+)?E\+?[0-9]+", re.IGNORECASE)


def _q(value: str) -> str:
    return f"“{value}”"


def _parse_ymd(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@dataclass(slots=True)
class _Draft:
    """A row being validated; fields stay None when invalid or absent."""

    row: int
    raw_employee_no: str = ""
    employee_no: str | None = None
    name: str | None = None
    department_id: int | None = None
    position_id: int | None = None
    manager_no: str | None = None
    hire_date: date | None = None
    status: str | None = None
    id_number: str | None = None
    email: str | None = None
    tags: tuple[str, ...] | None = None


def _read_records(text: str, max_rows: int) -> tuple[_Columns, list[tuple[int, list[str]]]]:
    """Split the file into mapped headers and (Excel row, cells) records; file-level checks."""
    lines = text.splitlines()
    header_line = next((ln for ln in lines if _strip_invisible(ln)), None)
    if header_line is None:
        raise ImportFileError("文件为空：请上传包含表头和数据行的 CSV 文件")
    delimiter = _sniff_delimiter(header_line)

    # Each csv record is one Excel row (a quoted cell may span several lines).
    records: list[tuple[int, list[str]]] = []
    columns: _Columns | None = None
    header_row = 0
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    excel_row = 0
    try:
        for excel_row, cells in enumerate(reader, start=1):
            if not any(_strip_invisible(c) for c in cells):
                continue
            if columns is None:
                columns = _map_headers(cells)
                header_row = excel_row
                continue
            records.append((excel_row, cells))
            if len(records) > max_rows:
                raise ImportFileError(
                    f"数据行超过上限：最多 {max_rows} 行，请拆分成多个文件分批导入"
                )
    except csv.Error as exc:
        raise ImportFileError(f"第 {excel_row + 1} 行 CSV 格式错误：{exc}") from exc
    if columns is None:  # e.g. only quoted blank cells
        raise ImportFileError("文件为空：请上传包含表头和数据行的 CSV 文件")
    if not records:
        raise ImportFileError(f"文件只有表头（第 {header_row} 行），没有员工数据")

    for index in sorted(columns.ignored):
        if any(index < len(cells) and _strip_invisible(cells[index]) for _, cells in records):
            raise ImportFileError(f"第 {index + 1} 列有数据但没有表头，请补上列名或删除该列")
    return columns, records


def id_numbers_in(text: str, *, today: date, max_rows: int = DEFAULT_MAX_ROWS) -> set[str]:
    """The valid ID numbers of a file, in 18-digit form, without checking anything else.

    The database keeps only a keyed blind index of each ID number, so the caller looks
    these up in one bulk query to build ``existing_id_numbers`` instead of decrypting
    every stored number. Raises :class:`ImportFileError` like :func:`parse_employee_csv`.
    """
    columns, records = _read_records(text, max_rows)
    index = columns.by_field.get("id_number")
    if index is None:
        return set()
    found: set[str] = set()
    for _, cells in records:
        raw = _strip_invisible(cells[index]) if index < len(cells) else ""
        if not raw or _RE_SCIENTIFIC.fullmatch(raw):
            continue
        number = idnumber.to_18_digits(idnumber.normalize(raw.removeprefix("'")), today=today)
        if number is not None:
            found.add(number)
    return found


def parse_employee_csv(
    text: str,
    *,
    known_departments: Mapping[str, int],
    known_positions: Mapping[str, int],
    existing_employee_nos: Collection[str],
    existing_id_numbers: Mapping[str, str],
    today: date,
    max_rows: int = DEFAULT_MAX_ROWS,
    existing_managers: Mapping[str, str] | None = None,
) -> ImportResult:
    """Validate an employee CSV (already decoded) against the given lookups.

    ``known_positions`` maps both position codes and names to ids;
    ``existing_id_numbers`` maps a normalized ID number to the employee_no
    holding it. ``existing_managers`` maps the employee_no of existing employees
    to their current manager's employee_no, so that a manager chain closing a loop
    through people not in the file is caught too (a row with a blank manager cell
    is taken to keep its current manager). Raises :class:`ImportFileError` for
    file-level problems; every row-level problem is collected into
    ``ImportResult.errors``.
    """
    columns, records = _read_records(text, max_rows)
    result = _Validator(
        columns=columns,
        known_departments=known_departments,
        known_positions=known_positions,
        existing_employee_nos=frozenset(existing_employee_nos),
        existing_id_numbers=existing_id_numbers,
        existing_managers=existing_managers or {},
        today=today,
    ).run(records)
    result.record_count = len(records)
    return result


# The canonical fields of a row (the CSV's columns), in column order.
FIELDS: tuple[str, ...] = tuple(_FIELD_LABELS)


def validate_records(
    records: Sequence[Mapping[str, str]],
    *,
    field_names: Mapping[str, str],
    row_ref: Callable[[int], str],
    batch_noun: str,
    known_departments: Mapping[str, int],
    known_positions: Mapping[str, int],
    existing_employee_nos: Collection[str],
    existing_id_numbers: Mapping[str, str],
    existing_managers: Mapping[str, str],
    today: date,
) -> ImportResult:
    """Validate rows that arrive already split into fields (the HR API's JSON) with the
    very checks of the CSV import.

    Each record maps keys of :data:`FIELDS` to text; an absent key or "" is a blank cell
    (a record without "tags" leaves the employee's tags untouched, like a file without a
    标签 column). ``RowError.row`` is the record's index in ``records`` and
    ``RowError.field`` the ``field_names`` entry of the field; ``row_ref`` and
    ``batch_noun`` word the messages that point at another record or at the batch.
    """
    columns = _Columns(by_field={key: i for i, key in enumerate(FIELDS)},
                       headers=[field_names.get(key, key) for key in FIELDS], ignored=set())
    result = _Validator(
        columns=columns,
        known_departments=known_departments,
        known_positions=known_positions,
        existing_employee_nos=frozenset(existing_employee_nos),
        existing_id_numbers=existing_id_numbers,
        existing_managers=existing_managers,
        today=today,
        row_ref=row_ref,
        batch_noun=batch_noun,
    ).run([(i, [record.get(key) or "" for key in FIELDS]) for i, record in enumerate(records)])
    result.rows = [row if "tags" in records[row.row] else replace(row, tags=None)
                   for row in result.rows]
    result.record_count = len(records)
    return result


class _Validator:
    """Holds the lookups and cross-row state for one parse."""

    def __init__(
        self,
        *,
        columns: _Columns,
        known_departments: Mapping[str, int],
        known_positions: Mapping[str, int],
        existing_employee_nos: frozenset[str],
        existing_id_numbers: Mapping[str, str],
        existing_managers: Mapping[str, str],
        today: date,
        row_ref: Callable[[int], str] | None = None,
        batch_noun: str = "本文件",
    ) -> None:
        self.columns = columns
        # How messages point at another row ("第 3 行"; the API says "employees[2]") and
        # name the whole upload ("本文件"; the API says "本批次").
        self.row_ref = row_ref or (lambda row: f"第 {row} 行")
        self.batch_noun = batch_noun
        self.existing_managers = existing_managers
        self.known_departments = known_departments
        self.known_positions = known_positions
        self.existing_employee_nos = existing_employee_nos
        self.today = today
        # Compare ID numbers in 18-digit form so an old 15-digit number in the
        # database still matches the same person's 18-digit number in the file.
        self.existing_ids: dict[str, str] = {}
        for number, holder in existing_id_numbers.items():
            self.existing_ids[
                idnumber.to_18_digits(number, today=today) or idnumber.normalize(number)
            ] = holder
        self.errors: list[RowError] = []
        self.warnings: list[RowError] = []
        self.first_row_by_employee_no: dict[str, int] = {}
        self.first_by_id: dict[str, tuple[int, str | None]] = {}

    # -- helpers -----------------------------------------------------------

    def header(self, key: str) -> str:
        return self.columns.headers[self.columns.by_field[key]]

    def cell(self, cells: list[str], key: str) -> str:
        index = self.columns.by_field.get(key)
        if index is None or index >= len(cells):
            return ""
        return _strip_invisible(cells[index])

    def error(self, row: int, key: str | None, message: str) -> None:
        self.errors.append(RowError(row, self.header(key) if key else "", message))

    def required(self, row: int, cells: list[str], key: str) -> str | None:
        value = self.cell(cells, key)
        if not value:
            self.error(row, key, f"{_FIELD_LABELS[key]}不能为空")
            return None
        return value

    # -- main loop ---------------------------------------------------------

    def run(self, records: list[tuple[int, list[str]]]) -> ImportResult:
        width = len(self.columns.headers)
        drafts: list[_Draft] = []
        for row, cells in records:
            extra = [c for c in cells[width:] if _strip_invisible(c)]
            if extra:
                self.error(
                    row,
                    None,
                    f"该行比表头多出 {len(cells) - width} 列数据（可能是单元格里含有未加引号的分隔符）",
                )
            drafts.append(self.check_row(row, cells))

        self.check_managers(drafts)
        # Row order, then column order within a row (row-level problems first).
        column_of = {h: i for i, h in enumerate(self.columns.headers) if h}
        self.errors.sort(key=lambda e: (e.row, column_of.get(e.field, -1)))
        if self.errors:
            return ImportResult(errors=self.errors, warnings=self.warnings)

        rows = [
            EmployeeRow(
                row=d.row,
                employee_no=d.employee_no,
                name=d.name,
                department_id=d.department_id,
                position_id=d.position_id,
                manager_no=d.manager_no,
                hire_date=d.hire_date,
                status=d.status,
                id_number=d.id_number,
                email=d.email,
                is_new=d.employee_no not in self.existing_employee_nos,
                tags=d.tags,
            )
            for d in drafts
            # Without errors every required field is set; the guard narrows types.
            if d.employee_no and d.name and d.department_id is not None and d.hire_date and d.status
        ]
        return ImportResult(rows=rows, warnings=self.warnings)

    def check_row(self, row: int, cells: list[str]) -> _Draft:
        draft = _Draft(row=row, raw_employee_no=self.cell(cells, "employee_no"))
        self.check_employee_no(draft, cells)
        self.check_name(draft, cells)
        self.check_department(draft, cells)
        self.check_position(draft, cells)
        draft.manager_no = self.cell(cells, "manager_no") or None  # checked once all rows are read
        self.check_hire_date(draft, cells)
        self.check_status(draft, cells)
        self.check_id_number(draft, cells)
        self.check_email(draft, cells)
        self.check_tags(draft, cells)
        self.check_age(draft)
        return draft

    def check_employee_no(self, draft: _Draft, cells: list[str]) -> None:
        value = self.required(draft.row, cells, "employee_no")
        if value is None:
            return
        if not _RE_EMPLOYEE_NO.fullmatch(value):
            self.error(
                draft.row,
                "employee_no",
                f"工号 {_q(value)} 格式无效：只能包含字母、数字、- 和 _，长度 1–32 个字符",
            )
            return
        first = self.first_row_by_employee_no.setdefault(value, draft.row)
        if first != draft.row:
            self.error(draft.row, "employee_no", f"工号 {value} 与{self.row_ref(first)}重复")
            return
        draft.employee_no = value

    def check_name(self, draft: _Draft, cells: list[str]) -> None:
        value = self.required(draft.row, cells, "name")
        if value is None:
            return
        if len(value) > MAX_NAME_LENGTH:
            self.error(
                draft.row, "name", f"姓名过长：{len(value)} 个字符，最多 {MAX_NAME_LENGTH} 个"
            )
            return
        draft.name = value

    def check_department(self, draft: _Draft, cells: list[str]) -> None:
        value = self.required(draft.row, cells, "department_code")
        if value is None:
            return
        department_id = self.known_departments.get(value)
        if department_id is None:
            self.error(
                draft.row, "department_code", f"部门编码 {_q(value)} 不存在，请先在系统中创建该部门"
            )
            return
        draft.department_id = department_id

    def check_position(self, draft: _Draft, cells: list[str]) -> None:
        value = self.cell(cells, "position")
        if not value:
            return
        position_id = self.known_positions.get(value)
        if position_id is None:
            self.error(
                draft.row, "position", f"岗位 {_q(value)} 不存在（按岗位编码和岗位名称都未找到）"
            )
            return
        draft.position_id = position_id

    def check_hire_date(self, draft: _Draft, cells: list[str]) -> None:
        value = self.required(draft.row, cells, "hire_date")
        if value is None:
            return
        parsed = parse_date(value)
        if parsed is None:
            self.error(
                draft.row,
                "hire_date",
                f"入职日期 {_q(value)} 无效：不是真实日期或格式不支持（支持 {DATE_FORMATS_HINT}）",
            )
            return
        ahead = (parsed - self.today).days
        if ahead > MAX_FUTURE_HIRE_DAYS:
            self.error(
                draft.row,
                "hire_date",
                f"入职日期 {parsed.isoformat()} 晚于今天 {ahead} 天，最多只能提前 {MAX_FUTURE_HIRE_DAYS} 天",
            )
            return
        draft.hire_date = parsed

    def check_status(self, draft: _Draft, cells: list[str]) -> None:
        value = self.required(draft.row, cells, "status")
        if value is None:
            return
        status = parse_status(value)
        if status is None:
            choices = "、".join(STATUS_LABELS.values())
            self.error(
                draft.row,
                "status",
                f"状态 {_q(value)} 无效，可选：{choices}（或英文代码 {', '.join(STATUS_LABELS)}）",
            )
            return
        draft.status = status

    def check_id_number(self, draft: _Draft, cells: list[str]) -> None:
        raw = self.cell(cells, "id_number")
        if not raw:
            return
        if _RE_SCIENTIFIC.fullmatch(raw):
            self.error(
                draft.row,
                "id_number",
                f"身份证号 {_q(raw)} 已被 Excel 转成科学计数法，后几位已丢失：请把该列设为“文本”格式、重新填写后再导出",
            )
            return
        number = idnumber.normalize(raw.removeprefix("'"))
        reason = idnumber.validate(number, today=self.today)
        if reason is not None:
            self.error(draft.row, "id_number", f"身份证号 {idnumber.mask(number)} 无效：{reason}")
            return

        # Already validated: an 18-digit number is its own key (skip a second validation,
        # which matters on 20,000-row files).
        key = number if len(number) == 18 else idnumber.to_18_digits(number, today=self.today)
        assert key is not None
        first = self.first_by_id.setdefault(key, (draft.row, draft.employee_no))
        if first[0] != draft.row:
            first_row, first_no = first
            who = f"（工号 {first_no}）" if first_no else ""
            self.error(
                draft.row,
                "id_number",
                f"身份证号 {idnumber.mask(number)} 与{self.row_ref(first_row)}{who}重复",
            )
            return

        holder = self.existing_ids.get(key)
        employee_no = self.cell(cells, "employee_no")
        if holder is not None and holder != employee_no:
            self.error(
                draft.row,
                "id_number",
                f"身份证号 {idnumber.mask(number)} 已被系统中的员工（工号 {holder}）使用，"
                "同一身份证号不能对应两名员工，请核实本人身份",
            )
            return
        draft.id_number = number

    def check_email(self, draft: _Draft, cells: list[str]) -> None:
        value = self.cell(cells, "email")
        if not value:
            return
        if len(value) > 254 or not _RE_EMAIL.fullmatch(value):
            self.error(draft.row, "email", f"邮箱 {_q(value)} 格式无效")
            return
        draft.email = value

    def check_tags(self, draft: _Draft, cells: list[str]) -> None:
        """Only with a 标签 column: its cell replaces the employee's tags (blank clears)."""
        if "tags" not in self.columns.by_field:
            return
        value = self.cell(cells, "tags")
        try:
            draft.tags = tuple(parse_tags(value))
        except TagError as exc:
            if exc.kind == "too_long":
                message = f"标签 {_q(exc.tag)} 过长：{len(exc.tag)} 个字符，最多 {exc.limit} 个"
            elif exc.kind == "control":
                message = f"标签 {_q(exc.tag)} 含有不可见的控制字符，请删除后重新输入"
            else:
                count = len(valid_tags([value]))
                message = f"标签过多：共 {count} 个，每人最多 {MAX_TAGS} 个"
            self.error(draft.row, "tags", message)

    def check_age(self, draft: _Draft) -> None:
        """Cross-check hire date against the birth date embedded in the ID number."""
        if draft.id_number is None or draft.hire_date is None:
            return
        # id_number passed validate(), so its 18-digit form carries a real birth date.
        key = draft.id_number
        if len(key) != 18:
            key = idnumber.to_18_digits(key, today=self.today) or ""
        born = _parse_ymd(key[6:14]) if len(key) == 18 else None
        if born is None:
            return
        if draft.hire_date < born:
            self.error(
                draft.row,
                "hire_date",
                f"入职日期 {draft.hire_date.isoformat()} 早于身份证上的出生日期 {born.isoformat()}",
            )
            draft.hire_date = None
        elif _age_on(born, draft.hire_date) < MIN_LEGAL_WORKING_AGE:
            self.warnings.append(
                RowError(
                    draft.row,
                    self.header("hire_date"),
                    f"按身份证号推算，入职时（{draft.hire_date.isoformat()}）未满 {MIN_LEGAL_WORKING_AGE} 周岁，"
                    "可能涉及使用童工，请核实本人身份",
                )
            )

    def check_managers(self, drafts: list[_Draft]) -> None:
        """Managers must exist, must not be the employee, and must not form a loop, either
        within the file or together with the managers existing employees already have."""
        if "manager_no" not in self.columns.by_field:
            return
        in_file = self.first_row_by_employee_no
        # Start from the current reporting lines; rows of the file replace their own.
        graph: dict[str, str] = dict(self.existing_managers)
        for draft in drafts:
            manager = draft.manager_no
            if manager is None:
                continue
            if manager == draft.raw_employee_no:
                self.error(draft.row, "manager_no", f"直属上级工号 {manager} 是员工本人")
                draft.manager_no = None
            elif manager not in in_file and manager not in self.existing_employee_nos:
                self.error(
                    draft.row,
                    "manager_no",
                    f"直属上级工号 {_q(manager)} 不存在：既不在{self.batch_noun}中，也不是系统中的现有员工",
                )
                draft.manager_no = None
            elif draft.employee_no is not None:
                graph[draft.employee_no] = manager

        # Each node has at most one outgoing edge, so walk chains and mark cycles.
        row_of = {d.employee_no: d.row for d in drafts if d.employee_no is not None}
        state: dict[str, int] = {}  # 1 = on current path, 2 = done
        reported: set[str] = set()
        # The file's own rows first, so a reported chain starts at the row being fixed.
        for start in [*(no for no in row_of if no in graph), *graph]:
            path: list[str] = []
            node: str | None = start
            while node is not None and node in graph and state.get(node) is None:
                state[node] = 1
                path.append(node)
                node = graph[node]
            if node is not None and state.get(node) == 1:
                cycle = path[path.index(node) :]
                chain = " → ".join([*cycle, node])
                for member in cycle:
                    # A loop among existing employees only is not this file's doing.
                    if member not in reported and member in row_of:
                        reported.add(member)
                        self.error(row_of[member], "manager_no", f"直属上级关系形成循环：{chain}")
            for visited in path:
                state[visited] = 2
