"""The real-label fixture: MagnaTagATune's real clip ids, mp3 paths and labels of its 50 most frequent tags for
folders c-f (`data/mtat-real/`, see its README), written as a real-format `annotations_final.csv`.

REAL for those 50 tags and folders c, d, e, f only: the 138 rarer tag columns are all zero and folders 0-b are
absent. Figures for folders 0-b are extrapolations from c-f (`extrapolate`), labelled as such.

    .venv/bin/python -m tests.dataset.mtat_real write annotations_final.csv   # the real-format file
    .venv/bin/python -m tests.dataset.mtat_real figures                       # the plan's figures, extrapolated
"""

from __future__ import annotations

import argparse
import ast
import gzip
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

from aurax.dataset.annotations import AnnotatedClip, Annotations, format_annotations, parse_annotations
from aurax.dataset.plan import DatasetPlan, make_plan
from aurax_contracts.config import DatasetSelection

DATA = Path(__file__).parent / "data" / "mtat-real"
MTAT_TAGS: list[str] = (Path(__file__).parent / "mtat-tags.txt").read_text().splitlines()
#: The folders whose labels are real.
REAL_FOLDERS = ("c", "d", "e", "f")


def _lines(name: str) -> list[str]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


@cache
def top50_tags() -> tuple[str, ...]:
    """The 50 tags whose labels are real, in the column order of the label files."""
    text = (DATA / "output_labels_mtt.txt").read_text()
    return tuple(ast.literal_eval(text.split("=", 1)[1].strip()))


@cache
def mp3_paths() -> dict[int, str]:
    """clip_id -> mp3_path for all 25,863 clips."""
    return {int(cid): path for cid, path in (line.split("\t") for line in _lines("index_mtt.tsv.gz"))}


@cache
def real_clips() -> tuple[AnnotatedClip, ...]:
    """Every clip of folders c-f with its real top-50 labels, in clip_id order."""
    labels, paths = top50_tags(), mp3_paths()
    clips = []
    for name in ("val_gt_mtt.tsv.gz", "test_gt_mtt.tsv.gz"):
        for line in _lines(name):
            cid, values = line.split("\t")
            flags = ast.literal_eval(values)
            assert len(flags) == len(labels), f"{name}: {len(flags)} labels for {cid}"
            clips.append(AnnotatedClip(int(cid), frozenset(t for t, v in zip(labels, flags, strict=True) if v),
                                       paths[int(cid)]))
    return tuple(sorted(clips, key=lambda c: c.clip_id))


def annotations_bytes() -> bytes:
    """A real-format annotations_final.csv of folders c-f: the 188 published columns, rare tags all zero."""
    return format_annotations(MTAT_TAGS, list(real_clips()))


@cache
def real_annotations() -> Annotations:
    """`annotations_bytes()` parsed by the job's own parser."""
    return parse_annotations(annotations_bytes(), "real-label fixture (folders c-f)")


def folder_sizes() -> Counter[str]:
    """Clips per MTAT folder, all 16 folders (from the real index)."""
    return Counter(path[0] for path in mp3_paths().values())


def album_of(mp3_path: str) -> str:
    """`artist-album` of an MTAT mp3 path `folder/artist-album-track-title-start-end.mp3` (clip_info_final.csv,
    which names albums, is not available offline; MTAT writes names with '_' for spaces and '-' between fields)."""
    name = mp3_path.split("/", 1)[1]
    artist, album = name.split("-")[:2]
    return f"{artist}-{album}"


@dataclass(frozen=True)
class Extrapolation:
    """Eligible clips of folders not in the fixture, estimated from the observed folders' eligible rates.
    AN EXTRAPOLATION from the 50 real tags of folders c-f, not a measurement."""

    observed: dict[str, tuple[int, int]]
    """Folder -> (eligible, clips) as the plan counts them on the fixture."""
    target_folders: tuple[str, ...]
    target_clips: int
    """Clips in `target_folders` (real: from the index)."""

    @property
    def pooled_rate(self) -> Fraction:
        return Fraction(sum(e for e, _ in self.observed.values()), sum(n for _, n in self.observed.values()))

    def estimate(self, rate: Fraction) -> int:
        return math.floor(rate * self.target_clips + Fraction(1, 2))

    @property
    def central(self) -> int:
        return self.estimate(self.pooled_rate)

    @property
    def low(self) -> int:
        """At the least productive observed folder's rate."""
        return self.estimate(min(Fraction(e, n) for e, n in self.observed.values()))

    @property
    def high(self) -> int:
        return self.estimate(max(Fraction(e, n) for e, n in self.observed.values()))


def extrapolate(plan: DatasetPlan, target_folders: str) -> Extrapolation:
    """Extrapolate the plan's per-folder eligible rates (fixture folders, excluded ones counted as if used) to
    `target_folders` (e.g. "0123456789ab")."""
    observed = {f.folder: (f.eligible, f.clips) for f in plan.folders}
    sizes = folder_sizes()
    return Extrapolation(observed, tuple(target_folders), sum(sizes[f] for f in target_folders))


def default_plan() -> DatasetPlan:
    return make_plan(real_annotations(), DatasetSelection(), "real-label fixture (folders c-f)")


def _figures() -> str:
    plan = default_plan()
    train = extrapolate(plan, "0123456789ab")
    validation = plan.eligible["validation"]
    return "\n".join([
        plan.render(), "",
        "EXTRAPOLATED (not measured): default rules, top-50 tags only, to the training folders 0-b "
        f"({train.target_clips:,} clips):",
        f"  pooled rate of folders c-f {float(train.pooled_rate):.1%}: {train.central:,} training clips "
        f"(+ {validation:,} validation = {train.central + validation:,})",
        f"  range over the observed folders' rates: {train.low:,}-{train.high:,} training clips "
        f"({train.low + validation:,}-{train.high + validation:,} with validation)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write the real-format annotations_final.csv of folders c-f")
    write.add_argument("path", type=Path)
    sub.add_parser("figures", help="the default rules' plan on the fixture, and its extrapolation to 0-b")
    args = parser.parse_args()
    if args.command == "write":
        args.path.write_bytes(annotations_bytes())
        print(f"wrote {args.path}: {len(real_clips()):,} clips of folders c-f, 188 tag columns "
              "(real: the 50 most frequent tags; the other 138 are zero)")
    else:
        print(_figures())


if __name__ == "__main__":
    main()
