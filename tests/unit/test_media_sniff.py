"""Video type from the file's first bytes (magic numbers), never from its name."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from courses.media import sniff_video

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """An ISO base media ``ftyp`` box as the first box of a file, then an ``mdat`` header."""
    body = b"ftyp" + major + struct.pack(">I", 0x200) + b"".join(compatible)
    return struct.pack(">I", len(body) + 4) + body + b"\x00\x00\x00\x08mdat"


def test_the_demo_webm_is_webm():
    assert sniff_video(DEMO_WEBM.read_bytes()[:64]) == "webm"


def test_mp4_brands_isom_and_mp42_are_mp4():
    # As written by ffmpeg (isom) and by cameras/phones and most editors (mp42).
    assert sniff_video(ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41")) == "mp4"
    assert sniff_video(ftyp(b"mp42", b"mp42", b"isom")) == "mp4"


def test_quicktime_mov_is_refused():
    assert sniff_video(ftyp(b"qt  ", b"qt  ")) is None


def test_other_matroska_documents_are_not_webm():
    # EBML header with DocType "matroska" (an .mkv): Chromium does not promise to play it.
    mkv = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81" \
          b"\x08\x42\x82\x88matroska\x42\x87\x81\x04\x42\x85\x81\x02"
    assert sniff_video(mkv) is None


@pytest.mark.parametrize("head", [
    b"",
    b"This is a text file renamed to .mp4\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    b"PK\x03\x04\x14\x00\x06\x00",
    b"\x00\x00\x00\x20ftyp",  # cut off before the brand
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
])
def test_other_files_are_not_videos(head):
    assert sniff_video(head) is None


def test_random_bytes_are_not_videos():
    rng = random.Random(20261123)
    for _ in range(2000):
        head = rng.randbytes(64)
        if head.startswith(b"\x1a\x45\xdf\xa3") or head[4:8] == b"ftyp":
            continue  # vanishingly unlikely; not what this test is about
        assert sniff_video(head) is None
