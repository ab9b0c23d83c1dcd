"""Questions imported into a bank from a CSV or Excel (.xlsx) file, all or nothing.

``parse_questions`` is pure (no database): the caller passes the bank's existing question
texts and gets back either a draft for every row or *every* problem at once, each pinned
to the row the trainer sees in Excel (the header is row 1) and to the column, so a bad
file is fixed in one round trip. ``import_questions`` then writes all drafts in one flush;
it is called only when there is no error, and the view commits once.

Rows follow the rules of the question form (``banks.check_question``); the file adds
its own spellings: 单选/多选/判断 (or single/multiple/true_false), answers such as "A",
"AC", "A,C", "A、C", and for 判断 正确/错误/对/错/√/×/T/F/true/false.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Collection, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from assessments.banks import (
    LETTERS,
    BankError,
    QuestionData,
    bank_texts,
    check_question,
    new_question,
    normalise_text,
)
from assessments.exams import MAX_OPTIONS, QuestionBank
from courses.models import RISK_TOPICS
from lms.people.csv_import import ImportFileError, decode_upload

__all__ = [
    "TEMPLATE_HEADERS",
    "TOPIC_NAMES_ZH",
    "ParseResult",
    "QuestionDraft",
    "RowError",
    "import_questions",
    "parse_questions",
    "template_csv",
]

# Chinese names of the risk topics as a file may spell them: the labels of
# courses/topics.py in zh_CN first, then common synonyms. Codes work as well.
TOPIC_NAMES_ZH: dict[str, tuple[str, ...]] = {
    "identity_verification": ("入职身份核验", "身份核验", "入职核验"),
    "labour_contracts": ("劳动合同",),
    "social_insurance": ("社会保险", "社保"),
    "work_injury": ("工伤",),
    "attendance": ("考勤",),
    "performance": ("绩效", "绩效管理"),
    "offboarding": ("离职交接", "离职"),
    "notice_delivery": ("通知送达", "文书送达", "送达"),
    "other": ("其他",),
}
assert set(TOPIC_NAMES_ZH) == set(RISK_TOPICS), "every risk topic needs a Chinese name"

FIELDS = ("kind", "text", *(f"option_{c}" for c in "abcdef"), "answer", "explanation", "topic")
REQUIRED_FIELDS = ("kind", "text", "answer", "topic")
# The template's (Chinese) header for each field, also used when a column is missing.
FIELD_HEADERS = {"kind": "题型", "text": "题目",
                 **{f"option_{c}": f"选项{c.upper()}" for c in "abcdef"},
                 "answer": "答案", "explanation": "解析", "topic": "风险主题"}
TEMPLATE_HEADERS = tuple(FIELD_HEADERS[f] for f in FIELDS)
OPTION_FIELDS = FIELDS[2:2 + MAX_OPTIONS]

# Rows an .xlsx may hold beyond the data-row cap before it is refused (blank rows count:
# a sheet formatted down to row 1,048,576 would otherwise be read for minutes).
BLANK_ROW_ALLOWANCE = 1000
# An .xlsx is a zip: refuse archives that unpack to more than this (zip bombs).
MAX_XLSX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_COLUMNS = 64


def _key(value: str) -> str:
    """Spelling-insensitive form of a header or keyword: NFKC (full-width → half-width),
    case-folded, without spaces, underscores and hyphens."""
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", value).casefold())


_HEADER_ALIASES: dict[str, str] = {
    _key(alias): name
    for name, aliases in {
        "kind": ("题型", "类型", "type", "kind", "question_type"),
        "text": ("题目", "题干", "question", "text"),
        "answer": ("答案", "正确答案", "answer"),
        "explanation": ("解析", "答案解析", "explanation"),
        "topic": ("风险主题", "主题", "topic", "risk_topic"),
        **{f"option_{c}": (f"选项{c.upper()}", f"option_{c}", f"option {c}")
           for c in "abcdef"},
    }.items()
    for alias in aliases
}

_KINDS: dict[str, str] = {
    _key(alias): kind
    for kind, aliases in {
        "single": ("单选", "单选题", "single"),
        "multiple": ("多选", "多选题", "multiple"),
        "true_false": ("判断", "判断题", "true_false"),
    }.items()
    for alias in aliases
}

_TRUE_FALSE: dict[str, int] = {
    **{_key(a): 0 for a in ("正确", "对", "√", "✓", "✔", "T", "true")},
    **{_key(a): 1 for a in ("错误", "错", "×", "✗", "✘", "F", "false")},
}

_TOPICS: dict[str, str] = {
    **{_key(code): code for code in RISK_TOPICS},
    **{_key(name): code for code, names in TOPIC_NAMES_ZH.items() for name in names},
}

_ANSWER_SEPARATORS = re.compile(r"[\s,;、/|]+")


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem: where (Excel row, header = 1; None for the file as a whole), which
    column (its header as written, or the expected header when it is missing), a stable
    ``code`` and the message for people."""

    row: int | None
    column: str
    code: str
    message: Any
    other_row: int | None = None  # the earlier row a duplicate repeats


@dataclass(frozen=True, slots=True)
class QuestionDraft:
    """A valid row, ready for ``import_questions``."""

    row: int
    data: QuestionData


@dataclass(slots=True)
class ParseResult:
    """``drafts`` is filled only when there are no ``errors`` (all or nothing)."""

    drafts: list[QuestionDraft] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    row_count: int = 0  # non-blank data rows read

    @property
    def ok(self) -> bool:
        return not self.errors


class _FileProblem(Exception):
    def __init__(self, code: str, message: Any, row: int | None = None,
                 column: str = "") -> None:
        super().__init__(code)
        self.error = RowError(row, column, code, message)


# --- reading the file ---------------------------------------------------------------------


def _clean(value: str) -> str:
    return value.replace("\ufeff", "").replace("\u200b", "").strip()


def _cell_text(value: object) -> str:
    """A cell value as the text the trainer typed (1.0 typed as 1 stays "1")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date | time):
        return value.isoformat()
    return _clean(str(value))


def _only_invisible(data: bytes) -> bool:
    """Blank but for byte-order marks and zero-width spaces (UTF-8 or UTF-16)."""
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return not _clean(data.decode(encoding))
        except UnicodeDecodeError:
            continue
    return False


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    try:
        text = decode_upload(data)
    except ImportFileError as exc:
        if _only_invisible(data):
            raise _FileProblem("empty_file", _l("The file is empty.")) from exc
        raise _FileProblem("encoding", _l(
            "The file's character encoding was not recognised (tried UTF-8 and GBK). In "
            "Excel save it as \"CSV UTF-8\" or as an Excel workbook (.xlsx).")) from exc
    first = next((line for line in text.splitlines() if _clean(line)), "")
    delimiter = max(",\t;", key=first.count) if any(d in first for d in ",\t;") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    row = 0
    try:
        for row, cells in enumerate(reader, start=1):
            yield row, [_clean(c) for c in cells]
    except csv.Error as exc:
        raise _FileProblem("csv_format", _l("This row is not valid CSV (%(detail)s).",
                                            detail=str(exc)), row=row + 1) from exc


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    not_xlsx = _FileProblem("not_xlsx", _l(
        "This is not a valid Excel workbook (.xlsx): the file is damaged or of another "
        "type. Save it again in Excel as .xlsx, or as \"CSV UTF-8\"."))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise not_xlsx from exc
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise _FileProblem("too_large", _l("The workbook is too large once unpacked. Keep "
                                           "only the questions on its first sheet."))
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises KeyError, InvalidFileException, zip errors...
        raise not_xlsx from exc
    try:
        if not workbook.worksheets:
            raise _FileProblem("empty_file", _l("The file is empty."))
        sheet = workbook.worksheets[0]
        for row, values in enumerate(sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS),
                                     start=1):
            yield row, [_cell_text(v) for v in values]
    finally:
        workbook.close()


def _rows(data: bytes, filename: str) -> Iterator[tuple[int, list[str]]]:
    """(Excel row, cell texts) of the file, judged by its content first, then its name."""
    if not data.strip():
        raise _FileProblem("empty_file", _l("The file is empty."))
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _FileProblem("old_xls", _l(
            "Old Excel files (.xls) cannot be read. In Excel save the file as .xlsx."))
    if data.startswith(b"PK\x03\x04"):
        return _xlsx_rows(data)
    if filename.lower().endswith((".xlsx", ".xlsm")):
        raise _FileProblem("not_xlsx", _l(
            "This is not a valid Excel workbook (.xlsx): the file is damaged or of another "
            "type. Save it again in Excel as .xlsx, or as \"CSV UTF-8\"."))
    return _csv_rows(data)


# --- headers ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Columns:
    index: dict[str, int]  # field -> column index
    headers: list[str]  # header text per column index, as written

    def header(self, name: str) -> str:
        at = self.index.get(name)
        return self.headers[at] if at is not None else FIELD_HEADERS[name]

    def cell(self, cells: list[str], name: str) -> str:
        at = self.index.get(name)
        return cells[at] if at is not None and at < len(cells) else ""


def _map_headers(row: int, cells: list[str]) -> tuple[_Columns | None, list[RowError]]:
    index: dict[str, int] = {}
    errors: list[RowError] = []
    for at, header in enumerate(cells):
        if not header:
            continue
        name = _HEADER_ALIASES.get(_key(header))
        if name is None:
            errors.append(RowError(row, header, "unknown_header", _l(
                "Unknown column “%(header)s”. The columns are: %(columns)s.", header=header,
                columns="、".join(TEMPLATE_HEADERS))))
        elif name in index:
            errors.append(RowError(row, header, "duplicate_header", _l(
                "Column “%(header)s” appears twice.", header=header)))
        else:
            index[name] = at
    for name in REQUIRED_FIELDS:
        if name not in index:
            errors.append(RowError(row, FIELD_HEADERS[name], "missing_header", _l(
                "The required column “%(header)s” is missing.", header=FIELD_HEADERS[name])))
    if errors:
        return None, errors
    return _Columns(index=index, headers=list(cells)), []


# --- rows ---------------------------------------------------------------------------------


def _parse_answer(kind: str, raw: str) -> tuple[frozenset[int] | None, str | None, Any]:
    """(slot indices, error code, message): letters for choices, 正确/错误 for 判断."""
    if not raw:
        return None, "answer_required", _l("Enter the answer.")
    if kind == "true_false":
        slot = _TRUE_FALSE.get(_key(raw))
        if slot is None:
            return None, "bad_answer", _l(
                "“%(value)s” is not an answer to a true/false question: write 正确 or 错误 "
                "(also 对/错, √/×, T/F).", value=raw)
        return frozenset({slot}), None, None
    letters = _ANSWER_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()
    if not letters or any(c not in LETTERS for c in letters):
        return None, "bad_answer", _l(
            "“%(value)s” is not an answer: write the letters of the correct options, "
            "e.g. A, AC or A、C.", value=raw)
    return frozenset(LETTERS.index(c) for c in letters), None, None


def _parse_row(row: int, cells: list[str], columns: _Columns
               ) -> tuple[QuestionData | None, list[RowError]]:
    errors: list[RowError] = []

    def add(name: str, code: str, message: Any) -> None:
        errors.append(RowError(row, columns.header(name), code, message))

    raw_kind = columns.cell(cells, "kind")
    kind = _KINDS.get(_key(raw_kind)) if raw_kind else None
    if not raw_kind:
        add("kind", "kind_required", _l("Enter the kind: 单选, 多选 or 判断."))
    elif kind is None:
        add("kind", "unknown_kind", _l(
            "Unknown kind “%(value)s”: write 单选, 多选 or 判断.", value=raw_kind))

    raw_topic = columns.cell(cells, "topic")
    topic = _TOPICS.get(_key(raw_topic)) if raw_topic else None
    if topic is None:
        names = "、".join(aliases[0] for aliases in TOPIC_NAMES_ZH.values())
        if raw_topic:
            add("topic", "unknown_topic", _l("Unknown risk topic “%(value)s”. Use one of: "
                                             "%(names)s.", value=raw_topic, names=names))
        else:
            add("topic", "topic_required", _l("Enter the risk topic, one of: %(names)s.",
                                              names=names))

    options = tuple(columns.cell(cells, name) for name in OPTION_FIELDS)
    correct: frozenset[int] | None = None
    if kind is not None:
        correct, code, message = _parse_answer(kind, columns.cell(cells, "answer"))
        if code is not None:
            add("answer", code, message)

    data = QuestionData(kind=kind or "", topic=topic or "", text=columns.cell(cells, "text"),
                        explanation=columns.cell(cells, "explanation"),
                        options=options if kind != "true_false" else (),
                        correct=correct or frozenset())
    for problem in check_question(data):
        if problem.field in ("kind", "topic"):
            continue  # reported above with the file's own spelling
        if problem.field == "correct":
            if correct is None:
                continue  # the answer itself could not be read
            name = "answer"
        elif problem.field == "options":
            name = OPTION_FIELDS[problem.slot] if problem.slot is not None else "option_a"
        else:
            name = problem.field
        if problem.code == "answer_empty_option":
            message = _l("The answer names option %(letter)s, but column “%(column)s” is "
                         "empty.", letter=LETTERS[problem.slot],
                         column=columns.header(OPTION_FIELDS[problem.slot]))
        else:
            message = problem.message
        add(name, problem.code, message)
    return (data if not errors else None), errors


def parse_questions(data: bytes, filename: str, *, max_rows: int,
                    existing_texts: Collection[str] = ()) -> ParseResult:
    """Read a CSV or .xlsx upload into question drafts, or every problem it has.

    ``existing_texts`` are the bank's question texts (normalised or not): a row repeating
    one is refused. Rows past ``max_rows`` non-blank data rows refuse the whole file.
    """
    result = ParseResult()
    existing = {normalise_text(t) for t in existing_texts}
    try:
        with closing(_rows(data, filename)) as rows:
            result = _read(rows, result, max_rows, existing)
    except _FileProblem as problem:
        return ParseResult(errors=[problem.error], row_count=result.row_count)
    if result.errors:
        result.drafts = []
    return result


def _read(rows: Iterator[tuple[int, list[str]]], result: ParseResult, max_rows: int,
          existing: set[str]) -> ParseResult:
    seen: dict[str, int] = {}
    columns: _Columns | None = None
    header_row = 0
    for row, cells in rows:
        if row > max_rows + 1 + BLANK_ROW_ALLOWANCE or (
                columns is not None and result.row_count >= max_rows and any(cells)):
            raise _FileProblem("too_many_rows", _l(
                "The file has more than %(n)d rows (empty rows count too). Split it into "
                "several files, or delete empty rows at its end.", n=max_rows), row=row)
        if not any(cells):
            continue
        if columns is None:
            columns, header_errors = _map_headers(row, cells)
            if header_errors:
                result.errors.extend(header_errors)
                return result
            header_row = row
            continue
        result.row_count += 1
        result.errors.extend(_unnamed_cells(row, cells, columns))
        question, errors = _parse_row(row, cells, columns)
        result.errors.extend(errors)
        key = normalise_text(columns.cell(cells, "text"))
        text_header = columns.header("text")
        if key and not any(e.column == text_header for e in errors):
            if key in seen:
                result.errors.append(RowError(row, text_header, "duplicate_in_file", _l(
                    "Rows %(first)d and %(second)d have the same question.",
                    first=seen[key], second=row), other_row=seen[key]))
                question = None
            elif key in existing:
                result.errors.append(RowError(row, text_header, "duplicate_in_bank", _l(
                    "This question is in the bank already.")))
                question = None
            else:
                seen[key] = row
        if question is not None:
            result.drafts.append(QuestionDraft(row=row, data=question))
    if columns is None:
        result.errors.append(RowError(None, "", "empty_file", _l("The file is empty.")))
    elif result.row_count == 0:
        result.errors.append(RowError(header_row, "", "no_rows", _l(
            "The file has a header row but no questions.")))
    return result


def _unnamed_cells(row: int, cells: list[str], columns: _Columns) -> list[RowError]:
    """Data in a column without a header would be silently lost: refuse it."""
    named = set(columns.index.values())
    return [RowError(row, _column_letter(at), "unnamed_column", _l(
                "Column %(column)s has data but no header.", column=_column_letter(at)))
            for at, value in enumerate(cells) if value and at not in named]


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# --- writing ------------------------------------------------------------------------------


def import_questions(session: Session, bank: QuestionBank, drafts: list[QuestionDraft]) -> int:
    """Insert every draft into ``bank`` in one flush; refuse all if any is (now) invalid
    or duplicates a question of the bank (it may have changed since the parse)."""
    existing = bank_texts(session, bank.id)
    problems: list[str] = []
    seen: set[str] = set()
    for draft in drafts:
        key = normalise_text(draft.data.text)
        if check_question(draft.data) or key in existing or key in seen:
            problems.append(str(draft.row))
        seen.add(key)
    if problems:
        raise BankError.one(_l("Nothing was imported: rows %(rows)s are not valid or are in "
                               "the bank already. Upload the file again.",
                               rows=", ".join(problems)))
    questions = [new_question(bank, draft.data) for draft in drafts]
    session.add_all(questions)
    session.flush()
    return len(questions)


# --- template -----------------------------------------------------------------------------

TEMPLATE_ROWS = (
    ("单选", "已建立劳动关系但未同时订立书面劳动合同的，用人单位应当自用工之日起多长时间内"
     "订立书面劳动合同？", "一个月内", "三个月内", "六个月内", "一年内", "", "", "A",
     "《劳动合同法》第十条：已建立劳动关系，未同时订立书面劳动合同的，应当自用工之日起一个月内"
     "订立书面劳动合同。", "劳动合同"),
    ("多选", "以“不能胜任工作”为由解除劳动合同前，用人单位需要具备哪些条件？",
     "有证据证明员工不能胜任工作", "经过培训或者调整工作岗位", "培训或调岗后仍不能胜任工作",
     "口头告知员工即可", "", "", "A、B、C",
     "《劳动合同法》第四十条第（二）项：劳动者不能胜任工作，经过培训或者调整工作岗位，仍不能"
     "胜任工作的，用人单位提前三十日书面通知或者额外支付一个月工资后，可以解除劳动合同。",
     "绩效"),
    ("判断", "向员工送达解除通知时，只通过微信发送一条消息即可，无需保留任何送达凭证。",
     "", "", "", "", "", "", "错误",
     "送达应采用能够证明员工已收到的方式（当面签收、EMS 邮寄等），并保留送达凭证。",
     "通知送达"),
)


def template_csv() -> bytes:
    """The downloadable template: UTF-8 with a BOM (so Excel on Chinese Windows reads it
    as UTF-8), Chinese headers and one example of each kind."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_HEADERS)
    writer.writerows(TEMPLATE_ROWS)
    return ("\ufeff" + out.getvalue()).encode("utf-8")
