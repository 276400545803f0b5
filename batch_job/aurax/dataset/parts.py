"""Reading a zip split by plain byte cutting (`mp3.zip.001`, `.002`, ...) without joining the parts on disk.

`cat mp3.zip.* > mp3.zip` would cost another 3 GB of disk; `ConcatenatedFile` presents the parts as one
seekable file, which `zipfile` reads directly (zip verifies each member's CRC-32 as it is read).
"""

from __future__ import annotations

import bisect
import io
from pathlib import Path
from typing import BinaryIO


class ConcatenatedFile(io.RawIOBase):
    """Read-only, seekable view of files laid end to end."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        if not paths:
            raise ValueError("ConcatenatedFile needs at least one part")
        self._handles: list[BinaryIO] = [p.open("rb") for p in paths]
        sizes = [p.stat().st_size for p in paths]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._position < self._size:
            part = bisect.bisect_right(self._starts, self._position) - 1
            handle = self._handles[part]
            handle.seek(self._position - self._starts[part])
            got = handle.readinto(view[done:])
            if not got:  # a part shrank under us; treat as end of data
                break
            done += got
            self._position += got
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()
