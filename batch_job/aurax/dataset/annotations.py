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

from aurax_contracts.config import MTAT_BASE_URL

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
    """Parse the whole file; anything but MTAT's layout raises `InputError` naming what is wrong (an empty
    file, an HTML page, a compressed file, another separator, missing columns, a malformed row and its line)
    and how to get the right file."""
    refetch = f"download annotations_final.csv again from {MTAT_BASE_URL}"
    _check_not_other_format(data, source, refetch)
    try:
        text = data.decode("utf-8-sig")  # tolerate a byte-order mark from a re-saved file
    except UnicodeDecodeError as exc:
        raise InputError(f"{source} is not UTF-8 text ({exc}); {refetch}") from exc
    if not text.strip():
        raise InputError(f"{source} is empty; {refetch}")
    first_line = next(line for line in text.splitlines() if line.strip())  # a page may start with blank lines
    if first_line.lstrip().startswith("<"):  # <!DOCTYPE html>, <html>, <?xml ...>
        raise InputError(f"{source} is an HTML or XML page, not MagnaTagATune's CSV (an error, login or captive "
                         f"portal page was saved instead of the file); {refetch}, or use a good copy (its path with "
                         "--annotations, or the folder or s3:// prefix holding it as dataset.source_uri)")
    if "\t" not in first_line:
        separator = max((",", ";", "|", " "), key=first_line.count)
        raise InputError(f"{source}: the header has no tab; the file is separated by {separator!r}, but "
                         "MagnaTagATune's annotations_final.csv is tab-separated with every token double-quoted "
                         f"(a spreadsheet re-saved it?); {refetch}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"', strict=True)
    rows = (row for row in reader if row and row != [""])  # blank lines carry nothing
    try:
        header = next(rows)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise _truncated(f"{source} line {reader.line_num}", refetch) from exc
        raise InputError(f"{source} line {reader.line_num}: {exc}; the header is not MTAT's tab-separated, "
                         f"double-quoted format; {refetch}") from exc
    tags = _tags_from_header(header, source, refetch)
    clips: list[AnnotatedClip] = []
    seen: set[int] = set()
    # The file may or may not end with a line end; one that ends inside a row was cut short.
    cut_short = not text.endswith(("\n", "\r"))
    try:
        for row in rows:
            where = f"{source} line {reader.line_num}"
            try:
                clip = _parse_row(row, header, tags, where)
            except InputError as exc:
                partial = len(row) < len(header) or not _MP3_PATH.match(row[-1])  # what a cut leaves
                if cut_short and partial and next(rows, None) is None:
                    raise _truncated(where, refetch) from exc
                raise
            if clip.clip_id in seen:
                raise InputError(f"{source} line {reader.line_num}: clip_id {clip.clip_id} appears twice; "
                                 f"the file is corrupt, {refetch}")
            seen.add(clip.clip_id)
            clips.append(clip)
    except csv.Error as exc:
        where = f"{source} line {reader.line_num}"
        if "unexpected end of data" in str(exc):  # the file ends inside a quoted token
            raise _truncated(where, refetch) from exc
        raise InputError(f"{where}: {exc}; the file is not MTAT's tab-separated, double-quoted format, "
                         f"{refetch}") from exc
    if not clips:
        raise InputError(f"{source} has a header but no clip rows (a download cut short?); {refetch}")
    return Annotations(tags=tags, clips=tuple(clips))


def _truncated(where: str, refetch: str) -> InputError:
    return InputError(f"{where}: the file ends in the middle of a row, so it is truncated (a download or copy cut "
                      f"short); {refetch}")


#: Leading bytes of formats sometimes saved in the CSV's place.
_MAGIC = {b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed",
          b"\xfd7zXZ": "xz-compressed"}


def _check_not_other_format(data: bytes, source: str, refetch: str) -> None:
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            raise InputError(f"{source} is {kind}, not the plain CSV; decompress it first, or {refetch}")


def _tags_from_header(header: list[str], source: str, refetch: str) -> tuple[str, ...]:
    missing = [name for name in (CLIP_ID, MP3_PATH) if name not in header]
    if len(header) < 3 or header[0] != CLIP_ID or header[-1] != MP3_PATH:
        found = f"{header[:2]}...{header[-1:]}" if len(header) > 3 else str(header)
        lacking = f"it has no {' or '.join(repr(m) for m in missing)} column; " if missing else ""
        raise InputError(f"{source}: the header must be \"clip_id\", the tag columns, then \"mp3_path\" ({lacking}"
                         f"got {len(header)} columns: {found}); is this MagnaTagATune's annotations_final.csv? "
                         f"{refetch}")
    tags = tuple(header[1:-1])
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates or any(not t for t in tags):
        raise InputError(f"{source}: the header has duplicate or empty tag columns {duplicates}; {refetch}")
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
