"""The dataset plan: what a run's selection rules give on the real annotations, before anything is downloaded
or started.

It answers, from `annotations_final.csv` alone (no audio): how many clips are eligible in each folder and
split, how the tag scores are distributed, which tags contributed, and whether the target can be met. When it
cannot, it names the setting to change and a value that works: each suggested value is checked by planning
again with it. `aurax dataset plan` prints it; `aurax start`, preflight and `aurax job prepare` refuse a
config whose plan is not met (`DatasetPlan.require_met`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from aurax_contracts import ContractError
from aurax_contracts.config import ALL_ELIGIBLE, MTAT_CLIPS, DatasetSelection

from .annotations import Annotations
from .mtat_tags import MTAT_TAGS
from .selection import Candidate, Judge, Ranking, describe_floor, exact, min_clips, rank, wanted_clips

Role = Literal["train", "validation", "excluded"]
SPLITS = ("train", "validation")
HEX_FOLDERS = "0123456789abcdef"


class TargetUnreachable(ContractError):
    """The annotations cannot give what the config asks for: exit 64 (`JobExit.BAD_CONFIG`). `problems` holds
    what is wrong, then each fix (`fix: set ...`) and any note."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(what, problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        ValueError.__init__(self, f"{what} cannot be met:\n{lines}")


@dataclass(frozen=True)
class FolderFigures:
    folder: str
    role: Role
    clips: int
    excluded_tag: int
    below_min_score: int
    known_broken: int
    eligible: int
    """Clips meeting the rules; in an excluded folder, those that would if the folder were used."""


@dataclass(frozen=True)
class ScoreBin:
    score: Fraction
    clips: int
    """Clips of the train and validation folders with no excluded tag, not known broken, with this score."""
    at_or_above: int
    """Clips that a min_score of `score` would make eligible."""


@dataclass(frozen=True)
class TagFigures:
    tag: str
    weight: float
    clips: int
    """Selected clips having the tag."""
    score_share: float
    """Share of the selected clips' summed score that this tag contributed."""


@dataclass(frozen=True)
class Fix:
    changes: dict[str, Any]
    """Settings (`dataset.<field>`) and the value each takes; together they meet the target."""
    outcome: str

    def render(self) -> str:
        settings = ", ".join(f"{name}: {json.dumps(value)}" for name, value in self.changes.items())
        return f"{settings} ({self.outcome})"


@dataclass(frozen=True)
class DatasetPlan:
    annotations: str
    """Where the annotations were read from."""
    rules: DatasetSelection
    clips: int
    tag_columns: int
    missing_published_tags: tuple[str, ...]
    folders: tuple[FolderFigures, ...]
    eligible: dict[str, int]
    """Eligible clips per split (train, validation)."""
    selected: dict[str, int]
    """Clips the job will encode per split, before decoding (a clip that fails to decode is replaced by the
    next eligible one while any remain)."""
    fewest: int
    """The fewest usable clips the config accepts (`selection.min_clips`)."""
    scores: tuple[ScoreBin, ...]
    tags: tuple[TagFigures, ...]
    excluded_by_tag: dict[str, int]
    """Clips of the train and validation folders removed by each excluded tag (a clip may count under several)."""
    problems: tuple[str, ...]
    fixes: tuple[Fix, ...] = field(default=())

    @property
    def met(self) -> bool:
        return not self.problems

    @property
    def selected_total(self) -> int:
        return sum(self.selected.values())

    def require_met(self) -> None:
        """Raise `TargetUnreachable` naming each problem and each fix when the plan is not met."""
        if self.met:
            return
        raise TargetUnreachable(f"the dataset selection (dataset.*) against {self.annotations}",
                                [*self.problems, *self._fix_lines()])

    def _fix_lines(self) -> list[str]:
        return [f"fix: set {fix.render()}" for fix in self.fixes] or \
            ["fix: widen dataset.include_tags, or use other validation_folders / excluded_folders "
             "(`aurax dataset plan` shows the figures per folder)"]

    def to_json(self) -> dict[str, Any]:
        return {
            "annotations": self.annotations, "clips": self.clips, "published_clips": MTAT_CLIPS,
            "tag_columns": self.tag_columns,
            "missing_published_tags": list(self.missing_published_tags),
            "target_clips": self.rules.target_clips, "fewest": self.fewest, "met": self.met,
            "eligible": self.eligible, "selected": self.selected,
            "folders": [vars(f) for f in self.folders],
            "score_distribution": [{"score": float(b.score), "clips": b.clips, "at_or_above": b.at_or_above}
                                   for b in self.scores],
            "tags": [vars(t) for t in self.tags], "excluded_by_tag": self.excluded_by_tag,
            "problems": list(self.problems),
            "fixes": [{"changes": f.changes, "outcome": f.outcome} for f in self.fixes],
        }

    def render(self) -> str:
        rules = self.rules
        target = (f"all eligible, at least {rules.min_clips:,}" if rules.target_clips == ALL_ELIGIBLE
                  else f"{rules.target_clips:,} clips, at least {self.fewest:,} usable")
        lines = [f"annotations  {self.annotations}: {self.clips:,} clips, {self.tag_columns} tag columns"
                 + (f" ({len(self.missing_published_tags)} of the 188 published tags absent)"
                    if self.missing_published_tags else ""),
                 *([f"             (the published file has {MTAT_CLIPS:,} clips: a partial copy? These figures "
                    "cover only the clips it holds)"] if self.clips != MTAT_CLIPS else []),
                 f"rules        min_score {float(rules.min_score):g} over {len(rules.include_tags)} include tags, "
                 f"{len(rules.exclude_tags)} exclude tags; target {target}", "",
                 "folder  role        clips  excluded tag  below min_score  known broken  eligible"]
        for f in self.folders:
            eligible = f"({f.eligible:,})" if f.role == "excluded" else f"{f.eligible:,}"
            lines.append(f"{f.folder:<7} {f.role:<10} {f.clips:>6,} {f.excluded_tag:>13,} {f.below_min_score:>16,} "
                         f"{f.known_broken:>13,} {eligible:>9}")
        lines += ["(eligible in parentheses: an excluded folder's clips that would be eligible if it were used)", "",
                  f"eligible     train {self.eligible['train']:,}, validation {self.eligible['validation']:,}",
                  f"selected     train {self.selected['train']:,}, validation {self.selected['validation']:,} "
                  "(before decoding; clips that fail to decode are replaced while eligible ones remain)", "",
                  "score distribution (train and validation folders, no excluded tag):",
                  "   score    clips  at or above"]
        threshold = exact(rules.min_score)
        lowest = min((b.score for b in self.scores if b.score >= threshold), default=None)
        for b in self.scores:
            mark = f"  <- min_score {float(rules.min_score):g}: eligible from here up" if b.score == lowest else ""
            lines.append(f"  {float(b.score):6g} {b.clips:8,} {b.at_or_above:12,}{mark}")
        lines += ["", "tags that contributed (selected clips):", "  tag              weight    clips  share of score"]
        for t in self.tags:
            lines.append(f"  {t.tag:<16} {t.weight:6g} {t.clips:8,} {t.score_share:14.1%}")
        if self.excluded_by_tag:
            removed = ", ".join(f"{tag} {n:,}" for tag, n in self.excluded_by_tag.items())
            lines += ["", f"removed by exclude_tags: {removed}"]
        lines.append("")
        if self.met:
            lines.append(f"target MET: {self.selected_total:,} clips selected, at least {self.fewest:,} needed")
        else:
            lines.append("target NOT MET:")
            lines += [f"  - {p}" for p in self.problems]
            lines += [f"  {fix}" for fix in self._fix_lines()]
        return "\n".join(lines)


def make_plan(annotations: Annotations, rules: DatasetSelection, source: str,
              ranking: Ranking | None = None) -> DatasetPlan:
    """The plan of `rules` on `annotations` (read from `source`; `ranking` is `rank(annotations, rules)` when
    the caller has it), with verified fixes when it is not met. Raises `ContractError` when the rules name a
    tag MTAT does not have, `InputError` when the annotations lack a published tag's column (`rank`)."""
    plan = _plan(annotations, rules, source, ranking or rank(annotations, rules))
    if plan.met:
        return plan
    return DatasetPlan(**{**vars(plan), "fixes": tuple(_fixes(annotations, plan))})


def _plan(annotations: Annotations, rules: DatasetSelection, source: str, ranking: Ranking) -> DatasetPlan:
    judge = Judge(rules)
    per_folder: dict[str, Counter[str]] = {}
    distribution: Counter[Fraction] = Counter()
    excluded_by_tag: Counter[str] = Counter()
    for clip in annotations.clips:
        verdict, score, _ = judge(clip, folder_rule=False)
        per_folder.setdefault(clip.folder, Counter())[verdict] += 1
        if clip.folder in rules.excluded_folders:
            continue
        if verdict == "excluded-tag":
            excluded_by_tag.update(clip.tags & judge.excluded_tags)
        elif verdict != "known-broken":
            distribution[score] += 1
    folders = tuple(
        FolderFigures(folder=folder, role=_role(folder, rules), clips=sum(counts.values()),
                      excluded_tag=counts["excluded-tag"], below_min_score=counts["below-min-score"],
                      known_broken=counts["known-broken"], eligible=counts["eligible"])
        for folder, counts in sorted(per_folder.items(), key=lambda kv: HEX_FOLDERS.index(kv[0])))
    selected = ranking.candidates[:wanted_clips(rules, len(ranking.candidates))]
    eligible = {split: sum(c.split == split for c in ranking.candidates) for split in SPLITS}
    chosen = {split: sum(c.split == split for c in selected) for split in SPLITS}
    fewest = min_clips(rules)
    problems = []
    if len(selected) < fewest:
        problems.append(f"{len(ranking.candidates):,} eligible clips, fewer than the {fewest:,} needed "
                        f"({describe_floor(rules)})")
    if ranking.candidates and not chosen["train"]:
        problems.append("no training clip is selected: every eligible clip is in validation_folders "
                        f"{rules.validation_folders} or excluded_folders {rules.excluded_folders}")
    if ranking.candidates and not chosen["validation"]:
        problems.append(f"no validation clip is selected from validation_folders {rules.validation_folders}; "
                        "training needs both splits")
    return DatasetPlan(
        annotations=source, rules=rules, clips=len(annotations.clips), tag_columns=len(annotations.tags),
        missing_published_tags=tuple(t for t in MTAT_TAGS if t not in set(annotations.tags)),
        folders=folders, eligible=eligible, selected=chosen, fewest=fewest,
        scores=_score_bins(distribution), tags=_tag_figures(selected, judge),
        excluded_by_tag=dict(excluded_by_tag.most_common()), problems=tuple(problems))


def _role(folder: str, rules: DatasetSelection) -> Role:
    if folder in rules.excluded_folders:
        return "excluded"
    return "validation" if folder in rules.validation_folders else "train"


def _score_bins(distribution: Counter[Fraction]) -> tuple[ScoreBin, ...]:
    bins, running = [], 0
    for value in sorted(distribution, reverse=True):
        running += distribution[value]
        bins.append(ScoreBin(value, distribution[value], running))
    return tuple(bins)


def _tag_figures(selected: tuple[Candidate, ...], judge: Judge) -> tuple[TagFigures, ...]:
    total = sum((c.score for c in selected), Fraction(0))
    having = Counter(t for c in selected for t in c.matched_tags)
    rows = [TagFigures(tag, float(judge.rules.include_tags[tag]), having[tag],
                       float(having[tag] * weight / total) if total else 0.0)
            for tag, weight in judge.weights.items()]
    return tuple(sorted(rows, key=lambda r: (-r.score_share, -r.clips, r.tag)))


def _fixes(annotations: Annotations, plan: DatasetPlan) -> list[Fix]:
    """Changes of one setting (or a folder change plus a count) that meet the target, each verified by planning
    again; the first ones change the least."""
    rules = plan.rules
    tries: list[dict[str, Any]] = []
    if count := _count_fix(plan):
        tries.append(count)
    threshold = exact(rules.min_score)
    lower = [b.score for b in plan.scores if b.at_or_above >= plan.fewest and b.score < threshold]
    if lower:
        tries.append({"min_score": float(max(lower))})
    # Folders with eligible clips, most first, by role.
    ranked = sorted((f for f in plan.folders if f.eligible), key=lambda f: (-f.eligible, f.folder))
    excluded, training = ([f.folder for f in ranked if f.role == role] for role in ("excluded", "train"))
    if excluded:
        best = excluded[0]
        if not plan.selected["validation"]:
            tries.append({"validation_folders": [*rules.validation_folders, best],
                          "excluded_folders": [f for f in rules.excluded_folders if f != best]})
        if not plan.selected["train"]:
            tries.append({"excluded_folders": [f for f in rules.excluded_folders if f != best]})
        tries.append({"excluded_folders": []})  # train on the held-out folders too
    if not plan.selected["validation"]:  # validate on the folder with the most eligible clips, train on the rest
        if len(training) > 1:
            tries.append({"validation_folders": [*rules.validation_folders, training[0]]})
        usable = [f.folder for f in ranked if f.role != "validation"]
        if excluded and len(usable) > 1:
            tries.append({"validation_folders": [*rules.validation_folders, usable[0]], "excluded_folders": []})
    fixes: list[Fix] = []
    for changes in tries:
        again = _replan(annotations, plan, changes)
        if again is not None and not again.met and again.selected["train"] and again.selected["validation"]:
            count = _count_fix(again)  # the folders now work; the count may still be short
            changes = {**changes, **count} if count else changes
            again = _replan(annotations, plan, changes) if count else None
        if again is not None and again.met:
            fixes.append(Fix({f"dataset.{name}": value for name, value in changes.items()},
                             f"{again.selected_total:,} clips selected: train {again.selected['train']:,}, "
                             f"validation {again.selected['validation']:,}"))
    return fixes


def _count_fix(plan: DatasetPlan) -> dict[str, Any] | None:
    """The count setting that accepts every eligible clip of `plan`, when it has any."""
    total = sum(plan.eligible.values())
    if not total or plan.selected_total >= plan.fewest:
        return None
    return {"min_clips": total} if plan.rules.target_clips == ALL_ELIGIBLE else {"target_clips": total}


def _replan(annotations: Annotations, plan: DatasetPlan, changes: dict[str, Any]) -> DatasetPlan | None:
    try:
        changed = DatasetSelection.model_validate({**plan.rules.model_dump(), **changes})
    except ValueError:  # the change breaks another rule (e.g. a folder both validated and excluded)
        return None
    return _plan(annotations, changed, plan.annotations, rank(annotations, changed))


def plan_run(rules: DatasetSelection, annotations: str | None = None, cache_dir: Path | None = None) -> DatasetPlan:
    """The plan of `rules` on the annotations at `annotations` (a file, folder, `s3://` or `https://`
    location), by default those at `rules.source_uri`. A web file is downloaded once into `cache_dir` (see
    `source.read_annotations_file`). Raises `InputError` when the annotations cannot be read or are not
    MTAT's format or lack a column the rules name, `ContractError` when the rules name a tag MTAT does not
    have."""
    from .source import load_annotations

    parsed, where = load_annotations(annotations or rules.source_uri, cache_dir)
    return make_plan(parsed, rules, where)


#: Eligible clips of the default rules on folders 0-c, train and validation: EXTRAPOLATED from the real labels
#: of folders c-f (the 50 most frequent tags; the pooled eligible rate of c-f applied to folders 0-b, folder c
#: measured), see tests/dataset/test_dataset_real_labels.py. For estimates made without the annotations.
EXTRAPOLATED_DEFAULT_CLIPS = {"train": 2226, "validation": 244}


def expected_clips(rules: DatasetSelection) -> tuple[int, int, str]:
    """(train, validation, where the figure comes from) for projections made without the annotations: a
    numeric target split by the folders' share, "all eligible" from the extrapolated real-label figure (at
    least `min_clips`). `aurax dataset plan` gives the real figure."""
    if rules.target_clips != ALL_ELIGIBLE:
        used = len(HEX_FOLDERS) - len(rules.excluded_folders)
        train = max(1, round(rules.target_clips * (used - len(rules.validation_folders)) / used))
        return train, rules.target_clips - train, f"dataset.target_clips {rules.target_clips}"
    train, validation = EXTRAPOLATED_DEFAULT_CLIPS["train"], EXTRAPOLATED_DEFAULT_CLIPS["validation"]
    if train + validation < rules.min_clips:
        train = rules.min_clips - validation
    return train, validation, ("all eligible: about " f"{train + validation:,} clips, extrapolated from real labels "
                               "for the default rules (`aurax dataset plan` gives the figure for these rules)")
