"""Choosing the MagnaTagATune clips a run trains on, from proxy tags (MTAT has no Amapiano tag).

A clip's score is the sum of the weights of its included tags, in exact rational arithmetic on the decimals
as written (`Fraction("0.1") + Fraction("0.2") == Fraction("0.3")`), so a threshold or a tie never depends on
binary rounding. Eligible clips (score >= min_score, no excluded tag, not in an excluded folder, not known to
be broken) are ranked by score, ties broken by a seeded hash of the clip id, so the same config always ranks
the same clips in the same order. The split is by folder: MTAT folders follow albums, so no album is in both
train and validation.

Training prompts are tag-style: the clip's proxy tags, highest weight first, then its other tags in the
annotations' column order (`tag_prompt`); the evaluation's in-distribution prompts are built the same way.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from aurax_contracts import ContractError
from aurax_contracts.config import ALL_ELIGIBLE, MTAT_BASE_URL, DatasetSelection

from ..errors import InputError
from .annotations import AnnotatedClip, Annotations
from .mtat_tags import MTAT_TAGS

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
    score: Fraction
    """Exact sum of the matched tags' weights."""
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


def exact(value: float) -> Fraction:
    """The decimal a config value was written as, exactly: `exact(0.1) == Fraction(1, 10)` (a float's repr is
    the shortest decimal that reads back as the same float, i.e. what YAML or JSON held)."""
    return Fraction(repr(value))


def min_clips(rules: DatasetSelection) -> int:
    """The fewest clips a dataset for `rules` may hold: `min_clips` for an "all eligible" target, else the
    target less its tolerance (at least one)."""
    if rules.target_clips == ALL_ELIGIBLE:
        return rules.min_clips
    return max(1, math.ceil(exact(rules.target_clips) * (1 - exact(rules.target_tolerance))))


def describe_floor(rules: DatasetSelection) -> str:
    """Where `min_clips(rules)` comes from, naming the settings (for error messages)."""
    if rules.target_clips == ALL_ELIGIBLE:
        return f'dataset.target_clips "all" with dataset.min_clips {rules.min_clips}'
    return (f"dataset.target_clips {rules.target_clips} less dataset.target_tolerance "
            f"{rules.target_tolerance:.0%}")


def wanted_clips(rules: DatasetSelection, eligible: int) -> int:
    """How many of `eligible` ranked clips the job encodes at most."""
    return eligible if rules.target_clips == ALL_ELIGIBLE else min(rules.target_clips, eligible)


def check_rule_tags(rules: DatasetSelection, tags: tuple[str, ...]) -> None:
    """Every tag named in the rules must be a column of the annotations. A published MTAT tag without its
    column means the file is incomplete: `InputError` (exit 65); any other name is a mistake in the config:
    `ContractError` (exit 64)."""
    known = set(tags)
    named = [*(("include_tags", t) for t in rules.include_tags), *(("exclude_tags", t) for t in rules.exclude_tags)]
    absent = [(field, tag) for field, tag in named if tag not in known and tag in MTAT_TAGS]
    if absent:
        columns = ", ".join(f"{tag!r} (named in dataset.{field})" for field, tag in absent)
        lacking = sum(t not in known for t in MTAT_TAGS)
        raise InputError(f"the annotations file has no column for {columns}, though the published file has one: "
                         f"it lacks {lacking} of the {len(MTAT_TAGS)} published tag columns, so it is not the "
                         f"complete annotations_final.csv; download annotations_final.csv again from {MTAT_BASE_URL}")
    problems = []
    for field, tag in named:
        if tag not in known:
            close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
                "see the header of annotations_final.csv for the tag names"
            problems.append(f"dataset.{field}: {tag!r} is not a MagnaTagATune tag; fix: {hint}")
    if problems:
        raise ContractError("run config dataset rules", problems)


def score(tags: Set[str], weights: Mapping[str, float | Fraction]) -> tuple[Fraction, tuple[str, ...]]:
    """The exact score of a clip with `tags` and its matched proxy tags, highest weight first (then by name)."""
    exact_weights = {t: w if isinstance(w, Fraction) else exact(w) for t, w in weights.items() if t in tags}
    matched = sorted(exact_weights, key=lambda t: (-exact_weights[t], t))
    return sum(exact_weights.values(), Fraction(0)), tuple(matched)


Verdict = Literal["excluded-folder", "excluded-tag", "below-min-score", "known-broken", "eligible"]


class Judge:
    """One rule set, converted once, applied to clip after clip."""

    def __init__(self, rules: DatasetSelection) -> None:
        self.rules = rules
        self.weights = {t: exact(w) for t, w in rules.include_tags.items()}
        self.excluded_tags = frozenset(rules.exclude_tags)
        self.threshold = exact(rules.min_score)

    def __call__(self, clip: AnnotatedClip, *, folder_rule: bool = True) -> tuple[Verdict, Fraction, tuple[str, ...]]:
        """Why `clip` is or is not eligible, its score and matched tags. `folder_rule=False` judges a clip of an
        excluded folder as if its folder were used (the plan's per-folder figures)."""
        if folder_rule and clip.folder in self.rules.excluded_folders:
            return "excluded-folder", Fraction(0), ()
        if clip.tags & self.excluded_tags:
            return "excluded-tag", Fraction(0), ()
        clip_score, matched = score(clip.tags, self.weights)
        if clip_score < self.threshold:
            return "below-min-score", clip_score, matched
        if clip.mp3_path in KNOWN_BROKEN:
            return "known-broken", clip_score, matched
        return "eligible", clip_score, matched

    def split(self, clip: AnnotatedClip) -> Split:
        return "validation" if clip.folder in self.rules.validation_folders else "train"


def rank(annotations: Annotations, rules: DatasetSelection) -> Ranking:
    """Every eligible clip, best first, and the count of the others by reason. Raises `ContractError` when the
    rules name a tag MTAT does not have, `InputError` when the annotations lack a published tag's column."""
    check_rule_tags(rules, annotations.tags)
    judge = Judge(rules)
    rejected: Counter[str] = Counter()
    broken: list[AnnotatedClip] = []
    eligible: list[Candidate] = []
    for clip in annotations.clips:
        verdict, clip_score, matched = judge(clip)
        if verdict == "known-broken":
            broken.append(clip)
        elif verdict != "eligible":
            rejected[verdict] += 1
        else:
            eligible.append(Candidate(clip=clip, split=judge.split(clip), score=clip_score, matched_tags=matched,
                                      prompt=tag_prompt(clip.tags, judge.weights, annotations.tags)))
    eligible.sort(key=lambda c: (-c.score, _tie_break(rules.seed, c.clip.clip_id)))
    return Ranking(candidates=tuple(eligible), rejected=dict(rejected), known_broken=tuple(broken))


def tag_prompt(tags: Iterable[str], weights: Mapping[str, float | Fraction],
               tag_order: Iterable[str] = MTAT_TAGS) -> str:
    """The text prompt a clip with `tags` trains on, e.g. "house, percussion, electronic, fast".

    Its proxy tags (`weights`' keys) come first, highest weight first (then by name), then its other tags in
    `tag_order` (the annotations' column order; by default the 188 published MTAT tags), at most
    `MAX_PROMPT_TAGS` in all. Tags in neither list are left out. The evaluation's default in-distribution
    prompts (`DEFAULT_TAG_PROMPTS`) are what this function makes of their tags, so they read exactly like the
    training prompts (tests/evaluate/test_generate.py checks).
    """
    tags = frozenset(tags)
    _, matched = score(tags, weights)
    others = [t for t in tag_order if t in tags and t not in weights]
    return ", ".join([*matched, *others][:MAX_PROMPT_TAGS])


def _tie_break(seed: int, clip_id: int) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def tag_histogram(clips: list[AnnotatedClip] | tuple[AnnotatedClip, ...]) -> dict[str, int]:
    """Tag -> clips having it, most common first."""
    counts = Counter(t for c in clips for t in c.tags)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
