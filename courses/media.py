"""Media files: a small storage interface (local disk now, object storage later) and the
ingestion of uploaded videos — type from the file's magic bytes, duration read on the
server from the file itself (pymediainfo, ffprobe as a fallback), never from a browser."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO, Protocol

from flask import current_app
from sqlalchemy.orm import Session

from courses.models import MediaAsset

CHUNK = 1024 * 1024


class MediaError(ValueError):
    """An upload was refused; the message says why, for the person uploading."""


class MediaStorage(Protocol):
    def save(self, stream: BinaryIO, *, suffix: str, max_bytes: int) -> tuple[str, str, int]:
        """Store the stream under a new server-chosen key; return (key, sha256, size)."""

    def open(self, key: str) -> BinaryIO: ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for tools that need one (media probing, send_file), if any."""

    def delete(self, key: str) -> None: ...


class LocalDiskStorage:
    """Files under one directory, named by random keys (never by the uploader's name)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key[:2] / key

    def save(self, stream: BinaryIO, *, suffix: str, max_bytes: int) -> tuple[str, str, int]:
        key = secrets.token_hex(16) + suffix
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        tmp = path.with_name(path.name + ".part")
        try:
            with tmp.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaError("too_large")
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return key, digest.hexdigest(), size

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def storage() -> MediaStorage:
    """The configured storage (``MEDIA_ROOT``, default ``instance/media``)."""
    return LocalDiskStorage(Path(current_app.config["MEDIA_ROOT"]))


# --- type and duration -------------------------------------------------------------

VIDEO_TYPES = {"webm": ("video/webm", ".webm"), "mp4": ("video/mp4", ".mp4")}


def sniff_video(head: bytes) -> str | None:
    """'webm' or 'mp4' from the first bytes of a file, or None.

    WebM is an EBML document (1A 45 DF A3) whose DocType is "webm"; MP4 is an ISO base
    media file with an ``ftyp`` box at offset 4 (any brand but QuickTime's ``qt  ``).
    """
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return "webm"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] != b"qt  ":
        return "mp4"
    return None


def probe_duration(path: Path) -> tuple[float | None, int | None, int | None]:
    """(duration seconds, width, height) read from the file; None where unreadable."""
    duration = width = height = None
    try:
        from pymediainfo import MediaInfo

        info = MediaInfo.parse(str(path))
        for track in info.tracks:
            if track.track_type == "General" and track.duration:
                duration = float(track.duration) / 1000.0
            if track.track_type == "Video":
                width = width or (int(track.width) if track.width else None)
                height = height or (int(track.height) if track.height else None)
                if duration is None and track.duration:
                    duration = float(track.duration) / 1000.0
    except (ImportError, OSError, RuntimeError):
        duration = None
    ffprobe = shutil.which("ffprobe")
    if not duration and ffprobe:
        duration = _ffprobe_duration(ffprobe, path)
    if duration is not None and not (duration > 0 and duration < 24 * 3600):
        duration = None
    return duration, width, height


def _ffprobe_duration(ffprobe: str, path: Path) -> float | None:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "json",
             str(path)], capture_output=True, timeout=30, check=False,
        ).stdout
        return float(json.loads(out)["format"]["duration"])
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return None


def ingest_video(session: Session, stream: BinaryIO, filename: str, *,
                 uploaded_by_id: int | None, max_bytes: int,
                 store: MediaStorage | None = None) -> MediaAsset:
    """Check, store and describe an uploaded video (the caller commits).

    Raises MediaError with a reason code: "empty", "too_large", "not_video",
    "no_duration". Nothing is left on disk when it refuses.
    """
    store = store or storage()
    head = stream.read(64)
    if not head:
        raise MediaError("empty")
    kind = sniff_video(head)
    if kind is None:
        raise MediaError("not_video")
    content_type, suffix = VIDEO_TYPES[kind]
    key, sha256, size = store.save(_Prefixed(head, stream), suffix=suffix, max_bytes=max_bytes)
    path = store.local_path(key)
    duration, width, height = probe_duration(path) if path else (None, None, None)
    if duration is None:
        store.delete(key)
        raise MediaError("no_duration")
    asset = MediaAsset(storage_key=key, sha256=sha256, size_bytes=size,
                       content_type=content_type, duration_seconds=round(duration, 3),
                       width=width, height=height,
                       original_filename=os.path.basename(filename)[:255] or "video",
                       uploaded_by_id=uploaded_by_id)
    session.add(asset)
    session.flush()
    return asset


class _Prefixed:
    """A stream that yields already-read ``head`` bytes before the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._rest.read(n)
