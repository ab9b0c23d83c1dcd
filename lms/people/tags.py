"""Employee tags: HR's free labels (特殊工种, 财务审批人, 外派, 试用期) that training rules
can target. Pure functions only, so the HR form, the CSV import and the rule form all
read a tag list the same way and refuse the same input.

People type tag lists separated by ASCII or full-width commas, 、, semicolons or line
breaks; a tag is trimmed, its inner whitespace (also the full-width space) collapsed to
one space, and the list is de-duplicated and sorted so that equal lists compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "TagError",
    "format_tags",
    "normalise_tag",
    "normalise_tags",
    "parse_tags",
    "split_tags",
    "valid_tags",
]

MAX_TAG_LENGTH = 32  # the column is String(32)
MAX_TAGS = 20  # per person (or per rule)

_SEPARATORS = re.compile(r"[,，、;；\r\n]+")
# Invisible characters Excel and chat apps leave behind: dropped, not refused.
_INVISIBLE = str.maketrans("", "", "\ufeff\u200b")


class TagError(ValueError):
    """A tag list refused. ``kind`` is "too_long", "control" or "too_many"; callers turn
    it into a message in their own words (the form's English msgid, the import's Chinese).
    ``tag`` is the offending tag (for "too_many" the first one over the limit)."""

    def __init__(self, kind: str, tag: str, limit: int) -> None:
        super().__init__(kind, tag, limit)
        self.kind, self.tag, self.limit = kind, tag, limit

    def __str__(self) -> str:
        return f"{self.kind}: {self.tag!r} (limit {self.limit})"


def split_tags(text: str | None) -> list[str]:
    """The raw pieces of a typed tag list (not checked, blanks dropped)."""
    if not text:
        return []
    return [p for p in _SEPARATORS.split(text) if p.strip()]


def normalise_tag(raw: str) -> str:
    """One tag trimmed and with whitespace collapsed; "" for a blank one.

    Raises :class:`TagError` for control characters or more than ``MAX_TAG_LENGTH``
    characters (counted after collapsing whitespace).
    """
    text = raw.translate(_INVISIBLE).replace("\t", " ")
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf"):
            raise TagError("control", " ".join(text.split()), MAX_TAG_LENGTH)
    tag = " ".join(text.split())
    if len(tag) > MAX_TAG_LENGTH:
        raise TagError("too_long", tag, MAX_TAG_LENGTH)
    return tag


def normalise_tags(values: Iterable[str], *, max_tags: int = MAX_TAGS) -> list[str]:
    """A sorted, de-duplicated tag list from raw pieces (each may itself be a typed list).

    Raises :class:`TagError` for the first bad tag, or when more than ``max_tags``
    distinct tags remain.
    """
    tags: set[str] = set()
    for value in values:
        for piece in split_tags(value):
            tag = normalise_tag(piece)
            if tag:
                tags.add(tag)
    ordered = sorted(tags)
    if len(ordered) > max_tags:
        raise TagError("too_many", ordered[max_tags], max_tags)
    return ordered


def parse_tags(text: str | None, *, max_tags: int = MAX_TAGS) -> list[str]:
    """A typed tag list ("特殊工种、外派, 试用期") as a sorted, de-duplicated list."""
    return normalise_tags([text or ""], max_tags=max_tags)


def valid_tags(values: Iterable[str]) -> list[str]:
    """The acceptable tags among raw pieces, silently dropping bad ones (for previews,
    which count without refusing anything)."""
    tags: set[str] = set()
    for value in values:
        for piece in split_tags(value):
            try:
                tag = normalise_tag(piece)
            except TagError:
                continue
            if tag:
                tags.add(tag)
    return sorted(tags)


def format_tags(tags: Iterable[str]) -> str:
    """A tag list as HR types it back into a form (Chinese list separator)."""
    return "、".join(tags)
