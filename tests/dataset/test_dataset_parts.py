"""The split zip is read as one file without joining the parts on disk."""

from __future__ import annotations

import io
import random
from pathlib import Path

from aurax.dataset.parts import ConcatenatedFile


def test_reads_and_seeks_across_part_boundaries(tmp_path: Path) -> None:
    rng = random.Random(0)
    data = bytes(rng.getrandbits(8) for _ in range(10_000))
    paths = []
    for index, (start, end) in enumerate([(0, 3000), (3000, 3001), (3001, 10_000)]):
        paths.append(tmp_path / f"p{index}")
        paths[-1].write_bytes(data[start:end])
    with io.BufferedReader(ConcatenatedFile(paths), buffer_size=512) as joined:
        assert joined.read() == data
        for _ in range(200):
            start, size = rng.randrange(0, 10_100), rng.randrange(0, 4000)
            joined.seek(start)
            assert joined.read(size) == data[start:start + size]
        assert joined.seek(-10, io.SEEK_END) == 9990 and joined.read() == data[-10:]
