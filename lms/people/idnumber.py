"""Chinese resident ID numbers (居民身份证号, GB 11643-1999).

Pure helpers used by HR import and by every screen that shows an ID number.
ID numbers are personal information under PIPL, so anything displayed or
logged should go through :func:`mask`; the full number is only for storage
and duplicate detection.
"""

from __future__ import annotations

import re
from datetime import date

__all__ = ["birth_date", "mask", "normalize", "to_18_digits", "validate"]

# ISO 7064 MOD 11-2 weights (2**(17 - i) mod 11) and check characters by remainder.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# ASCII only on purpose: str.isdigit() and \d also accept e.g. Arabic-Indic digits.
_RE_18 = re.compile(r"[0-9]{17}[0-9X]")
_RE_15 = re.compile(r"[0-9]{15}")

# Excel and Chinese IMEs often produce full-width characters; map them to ASCII
# so a number typed as "１１０１…ｘ" is still recognised.
_FULLWIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "Ｘ": "X", "ｘ": "X"})

_EARLIEST_BIRTH = date(1900, 1, 1)


def normalize(raw: str) -> str:
    """Canonical text form: no whitespace (incl. full-width), ASCII digits, upper-case X.

    Used for storage and uniqueness checks so that "110105 19491231 002x" and
    "11010519491231002X" are recognised as the same person.
    """
    if not raw:
        return ""
    text = "".join(raw.split()).translate(_FULLWIDTH)
    # Zero-width characters survive str.split(); they are never meaningful here.
    text = text.replace("\ufeff", "").replace("\u200b", "")
    return text.upper()


def _check_char(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def _parse_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _embedded_birth_date(number: str) -> date | None:
    """Birth date encoded in a normalized 15/18-digit number, without other checks."""
    if len(number) == 18 and _RE_18.fullmatch(number):
        return _parse_date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    if len(number) == 15 and _RE_15.fullmatch(number):
        return _parse_date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))
    return None


def validate(raw: str, *, today: date | None = None) -> str | None:
    """Return None if ``raw`` is a valid ID number, else a short Chinese reason.

    18-digit numbers need a valid birth date (not after ``today``) and a correct
    MOD 11-2 check character. Legacy 15-digit numbers (issued before 1999) carry
    no check digit, so only their 19YYMMDD birth date can be verified.
    """
    number = normalize(raw)
    if not number:
        return "身份证号为空"
    if len(number) not in (15, 18):
        return f"身份证号应为18位（当前为{len(number)}位）"
    if len(number) == 18 and not _RE_18.fullmatch(number):
        return "身份证号只能包含数字，最后一位可以是X"
    if len(number) == 15 and not _RE_15.fullmatch(number):
        return "15位旧身份证号只能包含数字"

    born = _embedded_birth_date(number)
    if born is None or born < _EARLIEST_BIRTH:
        return "出生日期无效"
    if born > (today or date.today()):
        return "出生日期无效（晚于今天）"

    if len(number) == 18 and _check_char(number[:17]) != number[17]:
        return "身份证号校验位错误"
    return None


def birth_date(raw: str, *, today: date | None = None) -> date | None:
    """Birth date of a *valid* ID number, else None.

    Returns None for numbers failing :func:`validate` so that a typo never
    produces a plausible-looking but wrong age.
    """
    if validate(raw, today=today) is not None:
        return None
    return _embedded_birth_date(normalize(raw))


def to_18_digits(raw: str, *, today: date | None = None) -> str | None:
    """18-digit form of a valid number (15-digit ones upgraded per GB 11643), else None.

    The same person may appear with the old 15-digit number in one system and
    the 18-digit one in another; comparing this form catches such duplicates.
    """
    if validate(raw, today=today) is not None:
        return None
    number = normalize(raw)
    if len(number) == 18:
        return number
    first17 = number[:6] + "19" + number[6:]
    return first17 + _check_char(first17)


def mask(raw: str) -> str:
    """Masked form for display and logs: keep the first 4 and last 4 characters.

    18 digits -> ``1101**********1234``; 15 digits -> 4 + 7 stars + 4. Anything
    shorter than 9 characters is fully starred, since keeping 8 characters of
    it would reveal (almost) everything. The input is normalized first.
    """
    number = normalize(raw)
    if len(number) < 9:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
