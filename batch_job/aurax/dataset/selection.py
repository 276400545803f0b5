"""Choosing the MagnaTagATune clips a run trains on, from proxy tags (MTAT has no Amapiano tag).

A clip's score is the sum of the weights of its included tags. Eligible clips (score >= min_score, no
excluded tag, not in an excluded folder, not known to be broken) are ranked by score, ties broken by a
seeded hash of the clip id, so the same config always ranks the same clips in the same order. The split is
by folder: MTAT folders follow albums, so no album is in both train and validation.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from aurax_contracts import ContractError
from aurax_contracts.config import DatasetSelection

from .annotations import AnnotatedClip, Annotations

Split = Literal["train", "validation"]

#: mp3s that do not decode in the published archive (documented by the dataset's users).
KNOWN_BROKEN: frozenset[str] = frozenset({
    "6/norine_braun-now_and_zen-08-gently-117-146.mp3",
    "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3",
    "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3",
})
#: The most tags a prompt names; beyond that prompts get long without saying more.
MAX_PROMPT_TAGS = 8


@dataclass(frozen=True)
class Candidate:
    clip: AnnotatedClip
    split: Split
    score: float
    matched_tags: tuple[str, ...]
    """Included tags the clip has, highest weight first: why it was chosen."""
    prompt: str


@dataclass(frozen=True)
class Ranking:
    candidates: tuple[Candidate, ...]
    """Eligible clips, best first."""
    rejected: dict[str, int]
    """Clips not eligible, by reason (excluded-folder, excluded-tag, below-min-score)."""
    known_broken: tuple[AnnotatedClip, ...]
    """Clips that would have been eligible but are known not to decode."""


def min_clips(rules: DatasetSelection) -> int:
    """The fewest clips a dataset for `rules` may hold: the target less its tolerance (at least one)."""
    return max(1, math.ceil(rules.target_clips * (1 - rules.target_tolerance) - 1e-9))


def check_rule_tags(rules: DatasetSelection, tags: tuple[str, ...]) -> None:
    """Every tag named in the rules must be a column of the annotations; else `ContractError` (exit 64)."""
    known = set(tags)
    problems = []
    for field, named in (("include_tags", list(rules.include_tags)), ("exclude_tags", rules.exclude_tags)):
        for tag in named:
            if tag not in known:
                close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
                    "see the header of annotations_final.csv for the tag names"
                problems.append(f"dataset.{field}: {tag!r} is not a MagnaTagATune tag; fix: {hint}")
    if problems:
        raise ContractError("run config dataset rules", problems)


def rank(annotations: Annotations, rules: DatasetSelection) -> Ranking:
    check_rule_tags(rules, annotations.tags)
    excluded_tags = frozenset(rules.exclude_tags)
    weights = rules.include_tags
    rejected: Counter[str] = Counter()
    broken: list[AnnotatedClip] = []
    eligible: list[Candidate] = []
    for clip in annotations.clips:
        if clip.folder in rules.excluded_folders:
            rejected["excluded-folder"] += 1
            continue
        if clip.tags & excluded_tags:
            rejected["excluded-tag"] += 1
            continue
        matched = sorted((t for t in clip.tags if t in weights), key=lambda t: (-weights[t], t))
        score = sum(weights[t] for t in matched)
        if score < rules.min_score:
            rejected["below-min-score"] += 1
            continue
        if clip.mp3_path in KNOWN_BROKEN:
            broken.append(clip)
            continue
        split: Split = "validation" if clip.folder in rules.validation_folders else "train"
        eligible.append(Candidate(clip=clip, split=split, score=score, matched_tags=tuple(matched),
                                  prompt=build_prompt(clip, matched, annotations.tags)))
    eligible.sort(key=lambda c: (-c.score, _tie_break(rules.seed, c.clip.clip_id)))
    return Ranking(candidates=tuple(eligible), rejected=dict(rejected), known_broken=tuple(broken))


def build_prompt(clip: AnnotatedClip, matched_tags: list[str], header_tags: tuple[str, ...]) -> str:
    """The clip's proxy tags (highest weight first), then its other tags in header order:
    e.g. "house, percussion, piano, electronic, fast"."""
    others = [t for t in header_tags if t in clip.tags and t not in matched_tags]
    return ", ".join([*matched_tags, *others][:MAX_PROMPT_TAGS])


def _tie_break(seed: int, clip_id: int) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def tag_histogram(clips: list[AnnotatedClip] | tuple[AnnotatedClip, ...]) -> dict[str, int]:
    """Tag -> clips having it, most common first."""
    counts = Counter(t for c in clips for t in c.tags)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
