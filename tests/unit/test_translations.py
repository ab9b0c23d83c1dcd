"""zh-CN is the default language: every UI string in the code has a Chinese translation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "lms" / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]")


def _ids(message) -> tuple:
    return message.id if isinstance(message.id, tuple) else (message.id,)


def test_every_string_in_the_sources_is_translated_to_chinese(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
         "-k", "_l", "-k", "lazy_gettext", "-o", str(pot), "."],
        cwd=ROOT, check=True, capture_output=True,
    )
    with pot.open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_Hans_CN")
    have = {m.id: m for m in catalog if m.id}
    missing = sorted(str(i) for i in wanted if i not in have)
    assert not missing, f"not in the zh_CN catalog (run pybabel update): {missing[:20]}"
    untranslated = sorted(str(i) for i in wanted
                          if not all(s for s in (have[i].string if isinstance(have[i].string, tuple)
                                                 else (have[i].string,))))
    assert not untranslated, f"no Chinese translation: {untranslated[:20]}"
    fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
    assert not fuzzy, f"fuzzy (unchecked) translations: {fuzzy[:20]}"


def test_translations_keep_their_placeholders():
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_Hans_CN")
    for message in catalog:
        if not message.id:
            continue
        source = " ".join(_ids(message))
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(source)), message.id
            assert set(PLACEHOLDER.findall(_ids(message)[0])) <= set(PLACEHOLDER.findall(text)), \
                f"placeholder dropped in translation of {message.id!r}"
