"""The CJK font embedded in evidence PDFs.

Without an embedded font that has Chinese glyphs every character of a PDF made by
xhtml2pdf is a black box, and xhtml2pdf says nothing (it falls back to Helvetica). So the
font is chosen and checked here, before anything is rendered, with a message that says
what to install or configure:

- ``EVIDENCE_FONT_PATH`` when configured, else the first Debian font found
  (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-uming, fonts-arphic-ukai);
- TrueType outlines only (``.ttf``, or ``.ttc`` whose first face is used): ReportLab
  cannot embed PostScript/CFF outlines, which is what Noto CJK and Source Han ship, so
  those are refused with a clear error instead of raising deep inside a render;
- it must have glyphs for Chinese text.

No Flask and no database: ``check_font`` is tested directly.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["DEBIAN_FONTS", "CjkFont", "FontError", "check_font", "find_font"]

# Debian/Ubuntu packages with TrueType CJK faces, in order of preference.
DEBIAN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/usr/share/fonts/truetype/arphic/ukai.ttc",  # fonts-arphic-ukai
)
INSTALL_HINT = ("install a TrueType CJK font (as root: apt-get install fonts-wqy-microhei, "
                "or fonts-arphic-uming) or set EVIDENCE_FONT_PATH to a .ttf/.ttc file")
# Characters every pack prints (name labels, statement, the word 签名): a font without
# them would draw boxes.
PROBE_TEXT = "员工姓名培训证据签名账本校验"


class FontError(RuntimeError):
    """No usable CJK font: the message says which file and what to do."""


@dataclass(frozen=True)
class CjkFont:
    path: Path
    name: str  # the face's PostScript name, for the report
    family: str  # the CSS font-family it is embedded as (unique per file version)

    @property
    def folder(self) -> Path:
        """The directory xhtml2pdf's resource policy must allow reads from."""
        return self.path.parent


def _outline_tag(path: Path) -> bytes:
    """The sfnt version of the (first) face: b"\\0\\1\\0\\0"/b"true" TrueType, b"OTTO" CFF,
    b"wOFF"/b"wOF2" web fonts."""
    with path.open("rb") as fh:
        head = fh.read(16)
        if head[:4] == b"ttcf":  # a collection: the table directory of face 0
            if len(head) < 16:
                raise FontError(f"{path}: not a complete TrueType collection")
            (offset,) = struct.unpack(">I", head[12:16])
            fh.seek(offset)
            return fh.read(4)
    return head[:4]


@lru_cache(maxsize=8)
def _checked(path: str, _mtime: float, _size: int) -> CjkFont:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    file = Path(path)
    if file.suffix.lower() not in (".ttf", ".ttc"):
        raise FontError(f"{file}: the evidence PDF needs a .ttf or .ttc TrueType font "
                        f"(xhtml2pdf embeds those directly); {INSTALL_HINT}")
    tag = _outline_tag(file)
    if tag == b"OTTO":
        raise FontError(f"{file} has PostScript (CFF) outlines, as Noto CJK and Source Han "
                        f"fonts do; ReportLab can only embed TrueType outlines: {INSTALL_HINT}")
    if tag not in (b"\x00\x01\x00\x00", b"true"):
        raise FontError(f"{file} is not a TrueType font (starts with {tag!r}); {INSTALL_HINT}")
    family = "cjk" + hashlib.sha256(f"{file.resolve()}|{_mtime}|{_size}".encode()).hexdigest()[:8]
    try:
        font = TTFont(f"{family}_00", str(file))
    except (TTFError, OSError, ValueError, struct.error) as exc:
        raise FontError(f"{file} cannot be embedded: {exc}; {INSTALL_HINT}") from exc
    missing = [ch for ch in PROBE_TEXT if ord(ch) not in font.face.charToGlyph]
    if missing:
        raise FontError(f"{file} has no glyphs for Chinese text (missing {''.join(missing)}); "
                        f"{INSTALL_HINT}")
    # Parsing a CJK face takes most of a second: register the parsed font under the name
    # xhtml2pdf gives the family's regular face ("<family>_00"), which it then reuses
    # instead of parsing the file again for every process's first render.
    if font.fontName not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(font)
    name = font.face.name
    return CjkFont(file.resolve(), name.decode("latin-1") if isinstance(name, bytes) else name,
                   family)


def check_font(path: str | os.PathLike[str]) -> CjkFont:
    """The font at ``path`` if it can draw the pack's Chinese text, else ``FontError``.
    The check parses the whole file (~70 ms for a CJK face), so it is cached per file
    version."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise FontError(f"{file}: cannot read the font file ({exc.strerror}); "
                        f"{INSTALL_HINT}") from exc
    if not file.is_file():
        raise FontError(f"{file} is not a file; {INSTALL_HINT}")
    return _checked(str(file), stat.st_mtime, stat.st_size)


def find_font(configured: str | None = None,
              candidates: tuple[str, ...] = DEBIAN_FONTS) -> CjkFont:
    """The configured font (``EVIDENCE_FONT_PATH``), checked; else the first installed
    Debian CJK font that passes the check."""
    if configured:
        return check_font(configured)
    problems = []
    for candidate in candidates:
        if not Path(candidate).exists():
            continue
        try:
            return check_font(candidate)
        except FontError as exc:
            problems.append(str(exc))
    found = "; ".join(problems) if problems else f"none of {', '.join(candidates)} exists"
    raise FontError(f"no CJK font for evidence PDFs ({found}): {INSTALL_HINT}")
