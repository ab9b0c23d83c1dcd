"""HTML to PDF with xhtml2pdf, with the CJK font embedded and nothing else fetched.

Two traps of xhtml2pdf 0.2.28 are handled here rather than discovered in a court:

- a font outside the working directory is refused by its default resource policy
  *silently* (a log line, then Helvetica: every Chinese character a black box). The
  render gets a ``ResourceAccessPolicy`` whose only readable folder is the font's, with
  remote fetching off (the pack's HTML holds learners' user agents and answers; nothing
  in it may make the server fetch a URL);
- a render that still ends without the font, with errors, with text set in a family
  the document does not know, or with a Chinese character no embedded font can draw,
  raises instead of returning a PDF of boxes. (Other missing glyphs, an emoji in a user
  agent, are only logged: one box must not stop an export.)
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from markupsafe import Markup
from xhtml2pdf import pisa
from xhtml2pdf.config.resources import ResourceAccessPolicy

from lms.evidence.fonts import CjkFont

__all__ = ["PdfRenderError", "font_face_css", "render_pdf"]

# A big pack (years of records) renders in seconds; the limit only stops a runaway.
MAX_RENDER_SECONDS = 300

log = logging.getLogger(__name__)


class PdfRenderError(RuntimeError):
    """xhtml2pdf could not make a usable PDF (the message says why)."""


def font_face_css(font: CjkFont) -> Markup:
    """The ``@font-face`` rule embedding ``font`` as ``font.family`` (path quoted for
    CSS); the template's text then names ``font.family``."""
    path = str(font.path).replace("\\", "\\\\").replace('"', '\\"')
    return Markup(f'@font-face {{ font-family: {font.family}; src: url("{path}"); }}')  # noqa: S704 - a path we checked, CSS-quoted


def resource_policy(font: CjkFont) -> ResourceAccessPolicy:
    """Reads only from the font's folder, no network at all, the server limits on."""
    return ResourceAccessPolicy.server(font.folder, allow_remote=False,
                                       max_render_seconds=MAX_RENDER_SECONDS,
                                       max_document_bytes=64 * 1024 * 1024,
                                       max_depth=100)


_MISSING_GLYPH = re.compile(r"can draw .* \(U\+([0-9A-F]{4,6})\)")
_CJK_RANGES = ((0x3000, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
               (0xFF00, 0xFFEF))


class _BoxWatch(logging.Handler):
    """Collects this thread's xhtml2pdf warnings that mean Chinese text would be boxes."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        message = record.getMessage()
        first_line = message.splitlines()[0] if message else ""
        if "is known to this document" in message:
            self.problems.append(first_line)
            return
        match = _MISSING_GLYPH.search(message)
        if match and any(lo <= int(match.group(1), 16) <= hi for lo, hi in _CJK_RANGES):
            self.problems.append(first_line)


@contextmanager
def _watching_for_boxes() -> Iterator[_BoxWatch]:
    logger = logging.getLogger("xhtml2pdf")
    watch = _BoxWatch()
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


def render_pdf(html: str, font: CjkFont, *, meta: Mapping[str, str] | None = None) -> bytes:
    """The PDF of ``html`` (which must use ``font_face_css(font)``); ``meta`` sets the
    document information (title, author, subject, keywords)."""
    out = io.BytesIO()
    try:
        with _watching_for_boxes() as boxes:
            result = pisa.pisaDocument(html, dest=out, encoding="utf-8",
                                       resource_policy=resource_policy(font),
                                       context_meta=dict(meta or {}))
    except Exception as exc:  # xhtml2pdf raises anything from deep in ReportLab
        raise PdfRenderError(f"the evidence PDF could not be rendered: {exc}") from exc
    if result.err:
        raise PdfRenderError(f"the evidence PDF could not be rendered ({result.err} errors; "
                             "see the xhtml2pdf log)")
    if font.family not in result.fontList:
        raise PdfRenderError(f"the CJK font {font.path} was not embedded (blocked or "
                             "unreadable); Chinese text would print as boxes")
    if boxes.problems:
        raise PdfRenderError("Chinese text would print as boxes: "
                             + "; ".join(dict.fromkeys(boxes.problems)))
    return out.getvalue()
