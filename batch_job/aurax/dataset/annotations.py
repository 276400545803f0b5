"""Reading MagnaTagATune's `annotations_final.csv`.

The file is tab-separated with every token double-quoted and CRLF line ends: `clip_id`, one 0/1 column per tag
(188 in the published file), then `mp3_path` (e.g. `f/artist-album-01-title-30-59.mp3`). The header is the
authority on which tags exist and in which order; nothing here assumes column positions.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from ..errors import InputError

CLIP_ID = "clip_id"
MP3_PATH = "mp3_path"
#: `folder/file.mp3`, the folder one hex digit (MTAT's album hash, the basis of the album-safe split).
_MP3_PATH = re.compile(r"^[0-9a-f]/[^/]+\.mp3$")


@dataclass(frozen=True)
class AnnotatedClip:
    clip_id: int
    tags: frozenset[str]
    mp3_path: str

    @property
    def folder(self) -> str:
        return self.mp3_path[0]


@dataclass(frozen=True)
class Annotations:
    tags: tuple[str, ...]
    """Every tag column, in header order."""
    clips: tuple[AnnotatedClip, ...]


def parse_annotations(data: bytes, source: str = "annotations_final.csv") -> Annotations:
    """Parse the whole file; a malformed header or row raises `InputError` naming the line and the fix."""
    try:
        text = data.decode("utf-8-sig")  # tolerate a byte-order mark from a re-saved file
    except UnicodeDecodeError as exc:
        raise InputError(f"{source} is not UTF-8 text ({exc}); download annotations_final.csv again") from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"', strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{source} is empty; download annotations_final.csv again") from None
    tags = _tags_from_header(header, source)
    clips: list[AnnotatedClip] = []
    seen: set[int] = set()
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            clip = _parse_row(row, header, tags, f"{source} line {reader.line_num}")
            if clip.clip_id in seen:
                raise InputError(f"{source} line {reader.line_num}: clip_id {clip.clip_id} appears twice; "
                                 "the file is corrupt, download annotations_final.csv again")
            seen.add(clip.clip_id)
            clips.append(clip)
    except csv.Error as exc:
        raise InputError(f"{source} line {reader.line_num}: {exc}; the file is not MTAT's tab-separated, "
                         "double-quoted format, download annotations_final.csv again") from exc
    return Annotations(tags=tags, clips=tuple(clips))


def _tags_from_header(header: list[str], source: str) -> tuple[str, ...]:
    if len(header) < 3 or header[0] != CLIP_ID or header[-1] != MP3_PATH:
        raise InputError(f"{source}: the header must be \"clip_id\", the tag columns, then \"mp3_path\" (got "
                         f"{header[:2]}...{header[-1:]}); is this MagnaTagATune's annotations_final.csv?")
    tags = tuple(header[1:-1])
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates or any(not t for t in tags):
        raise InputError(f"{source}: the header has duplicate or empty tag columns {duplicates}; "
                         "download annotations_final.csv again")
    return tags


def _parse_row(row: list[str], header: list[str], tags: tuple[str, ...], where: str) -> AnnotatedClip:
    if len(row) != len(header):
        raise InputError(f"{where}: expected {len(header)} tab-separated fields like the header, found "
                         f"{len(row)}; the row is truncated or has a stray tab, download the file again")
    try:
        clip_id = int(row[0])
    except ValueError:
        raise InputError(f"{where}: clip_id {row[0]!r} is not an integer") from None
    values = row[1:-1]
    bad = next((i for i, v in enumerate(values) if v not in ("0", "1")), None)
    if bad is not None:
        raise InputError(f"{where}: tag {tags[bad]!r} is {values[bad]!r}; tag columns must be \"0\" or \"1\"")
    mp3_path = row[-1]
    if not _MP3_PATH.match(mp3_path):
        raise InputError(f"{where}: mp3_path {mp3_path!r} is not of the form `<hex folder>/<name>.mp3`")
    return AnnotatedClip(clip_id=clip_id, tags=frozenset(t for t, v in zip(tags, values, strict=True) if v == "1"),
                         mp3_path=mp3_path)


def format_annotations(tags: list[str] | tuple[str, ...], clips: list[AnnotatedClip]) -> bytes:
    """The inverse of `parse_annotations`, in MTAT's exact layout (tests and tools build fixtures with it)."""
    lines = ["\t".join(f'"{token}"' for token in (CLIP_ID, *tags, MP3_PATH))]
    for clip in clips:
        cells = [str(clip.clip_id), *("1" if t in clip.tags else "0" for t in tags), clip.mp3_path]
        lines.append("\t".join(f'"{cell}"' for cell in cells))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
