"""Downloads that stay small in memory however many rows they carry.

CSV is generated while it is sent (a generator under ``stream_with_context``, so the
database session lives until the last row): UTF-8 with a byte-order mark, which is how
Excel knows the file is UTF-8 and shows Chinese instead of mojibake. XLSX cannot be sent
before it is complete (a zip's directory comes last), so openpyxl's write-only mode
writes rows out as they come into a ``SpooledTemporaryFile`` (memory up to a few MB,
then disk) that ``send_file`` streams.

Text cells that a spreadsheet would run as a formula (starting with = + - @ or a tab)
get a leading apostrophe: a name typed into the HR system must never execute.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from tempfile import SpooledTemporaryFile
from typing import Any

from flask import Response, send_file, stream_with_context
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from lms.reports.periods import SHANGHAI

__all__ = ["BOM", "Sheet", "csv_chunks", "csv_response", "plain", "xlsx_file", "xlsx_response"]

BOM = "\ufeff"
CSV_MIMETYPE = "text/csv; charset=utf-8"
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = frozenset("=+-@\t\r")
SPOOL_BYTES = 4 * 1024 * 1024
ROWS_PER_CHUNK = 500


def _safe_text(text: str) -> str:
    return "'" + text if text[:1] in FORMULA_STARTS else text


def plain(value: Any) -> Any:
    """A cell value as spreadsheets take it: local (Asia/Shanghai) naive times, numbers
    as numbers, formula-looking text defused, None as empty."""
    kind = type(value)
    if kind is str:
        return _safe_text(value)
    if value is None or kind is int or kind is date or kind is Decimal or kind is float:
        return value
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0)
    if isinstance(value, bool | int | float | Decimal | date):
        return value
    return _safe_text(str(value))


def _csv_text(value: Any) -> Any:
    """A CSV field (the writer turns numbers into text itself): hot, one call per cell,
    so the common types are tested first."""
    kind = type(value)
    if kind is str:
        return "'" + value if value[:1] in FORMULA_STARTS else value
    if value is None:
        return ""
    if kind is int or kind is Decimal:
        return value
    if kind is date:
        return value.isoformat()
    value = plain(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return value


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The BOM and header, then the rows ``ROWS_PER_CHUNK`` at a time, as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_csv_text(h) for h in header])
    yield BOM + buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    for n, row in enumerate(rows, start=1):
        writer.writerow([_csv_text(v) for v in row])
        if n % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _disposition(filename: str) -> str:
    return f'attachment; filename="{filename}"'


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
                 ) -> Response:
    """A streamed CSV download (``filename`` plain ASCII)."""
    body = (chunk.encode("utf-8") for chunk in csv_chunks(header, rows))
    return Response(stream_with_context(body), mimetype=CSV_MIMETYPE, headers={
        "Content-Disposition": _disposition(filename),
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # let a reverse proxy pass chunks on as they come
    })


@dataclass
class Sheet:
    """A worksheet: its title, header, rows (any iterable, consumed once) and optional
    column widths in characters."""

    title: str
    header: Sequence[str]
    rows: Iterable[Sequence[Any]]
    widths: Sequence[int] = ()


def xlsx_file(sheets: Sequence[Sheet]) -> SpooledTemporaryFile:
    """Write the sheets with openpyxl's write-only workbook (rows go to disk as they
    are appended) into a spooled file, rewound for reading."""
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for sheet in sheets:
        ws = workbook.create_sheet(title=sheet.title[:31])
        for i, width in enumerate(sheet.widths):
            ws.column_dimensions[_column_letter(i)].width = width
        ws.freeze_panes = "A2"  # write-only sheets take it before the first row
        header_cells = []
        for title in sheet.header:
            cell = WriteOnlyCell(ws, value=str(title))
            cell.font = bold
            header_cells.append(cell)
        ws.append(header_cells)
        for row in sheet.rows:
            ws.append([_xlsx_cell(ws, plain(v)) for v in row])
    out = SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by send_file
    workbook.save(out)
    out.seek(0)
    return out


def _xlsx_cell(ws: Any, value: Any) -> Any:
    """Dates and times as real Excel dates in a readable format; anything else as is."""
    if isinstance(value, datetime):
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = "yyyy-mm-dd hh:mm"
        return cell
    if isinstance(value, date):
        cell = WriteOnlyCell(ws, value=value)
        cell.number_format = "yyyy-mm-dd"
        return cell
    return value


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter
    return get_column_letter(index + 1)


def xlsx_response(filename: str, sheets: Sequence[Sheet]) -> Response:
    """The workbook as a download (the spooled file is closed when the response is)."""
    built = xlsx_file(sheets)
    response = send_file(built, mimetype=XLSX_MIMETYPE, as_attachment=True,
                         download_name=filename, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response
