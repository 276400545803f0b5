"""Selection and the dataset plan on REAL MagnaTagATune labels (tests/dataset/data/mtat-real).

The fixture is real for the 50 most frequent tags and folders c-f only: its 138 rarer tag columns are zero
(among them the proxy tags house, bass, deep, percussion...) and folders 0-b are absent. Every figure below is
therefore a top-50, folders c-f figure; figures for folders 0-b are extrapolations and are named so.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction

import pytest

from aurax.dataset.mtat_tags import MTAT_TAGS as PACKAGE_TAGS
from aurax.dataset.plan import make_plan
from aurax.dataset.selection import KNOWN_BROKEN, rank
from aurax_contracts.config import DEFAULT_EXCLUDE_TAGS, DEFAULT_INCLUDE_TAGS, DEFAULT_MIN_CLIPS, DatasetSelection
from tests.dataset.mtat_real import (
    MTAT_TAGS,
    REAL_FOLDERS,
    album_of,
    annotations_bytes,
    default_plan,
    extrapolate,
    mp3_paths,
    real_annotations,
    real_clips,
    top50_tags,
)

#: Rules that use every fixture folder: c validates, d-f train (the defaults exclude d-f).
ALL_FIXTURE_FOLDERS = DatasetSelection(excluded_folders=[], min_clips=800)


def test_fixture_is_the_published_format_and_real_only_for_the_top_50_tags_of_folders_c_to_f() -> None:
    data = annotations_bytes()
    header = data.split(b"\r\n", 1)[0].decode().split("\t")
    assert header == [f'"{t}"' for t in ["clip_id", *MTAT_TAGS, "mp3_path"]] and len(header) == 190
    assert b"\n" not in data.replace(b"\r\n", b"")
    annotations = real_annotations()
    assert list(annotations.tags) == MTAT_TAGS == list(PACKAGE_TAGS)
    assert len(annotations.clips) == 1825 + 5329 == 7154
    assert {c.folder for c in annotations.clips} == set(REAL_FOLDERS)
    rare = set(MTAT_TAGS) - set(top50_tags())
    assert len(rare) == 138 and not any(c.tags & rare for c in annotations.clips)  # the 138 rarer tags: all zero
    first = next(c for c in annotations.clips if c.clip_id == 2)  # the first row of the real file
    assert first.mp3_path == "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3"
    assert {"classical", "violin"} <= first.tags


def _independent_eligible_count(folders: str) -> int:
    """The issue's count, done without the job's code: top-50 tags, default weights, no excluded tag."""
    count = 0
    for clip in real_clips():
        if clip.folder in folders and not clip.tags & set(DEFAULT_EXCLUDE_TAGS):
            count += sum(Fraction(str(DEFAULT_INCLUDE_TAGS[t])) for t in clip.tags if t in DEFAULT_INCLUDE_TAGS) >= 3
    return count


def test_plan_reproduces_the_issue_figures_244_in_c_and_607_in_d_to_f() -> None:
    plan = default_plan()
    eligible = {f.folder: f.eligible for f in plan.folders}
    assert eligible["c"] == 244 == _independent_eligible_count("c")
    assert eligible["d"] + eligible["e"] + eligible["f"] == 607 == _independent_eligible_count("def")
    assert eligible == {"c": 244, "d": 156, "e": 119, "f": 332}
    roles = {f.folder: f.role for f in plan.folders}
    assert roles == {"c": "validation", "d": "excluded", "e": "excluded", "f": "excluded"}
    assert plan.eligible == {"train": 0, "validation": 244}
    # Of folder c's clips, the excluded tags remove 434 and 1,147 score below 3.
    c = next(f for f in plan.folders if f.folder == "c")
    assert (c.clips, c.excluded_tag, c.below_min_score, c.known_broken) == (1825, 434, 1147, 0)


def test_extrapolated_figures_justify_the_default_floor() -> None:
    """EXTRAPOLATION, labelled: folders c-f's eligible rates applied to folders 0-b (18,709 real clips)."""
    plan = default_plan()
    train = extrapolate(plan, "0123456789ab")
    validation = plan.eligible["validation"]
    assert train.target_clips == 18_709
    assert float(train.pooled_rate) == pytest.approx(0.119, abs=5e-4)
    assert (train.central, train.low, train.high) == (2226, 1439, 2951)
    # README, "The data": about 2,470 clips from the top-50 tags alone, 1,683-3,195 over the observed
    # folders' rates; far below the 8,000 the old default asked for.
    assert (train.central + validation, train.low + validation, train.high + validation) == (2470, 1683, 3195)
    assert train.high + validation < 8000
    # The default "all eligible" floor is met even at the least productive folder's rate, with room for the
    # rare excluded tags the fixture cannot see.
    assert DEFAULT_MIN_CLIPS <= 0.6 * (train.low + validation)


def test_selection_follows_real_label_patterns() -> None:
    ranking = rank(real_annotations(), ALL_FIXTURE_FOLDERS)
    assert len(ranking.candidates) == 851 and ranking.known_broken == ()
    excluded = set(DEFAULT_EXCLUDE_TAGS)
    assert not any(c.clip.tags & excluded for c in ranking.candidates)
    assert all(c.score >= 3 for c in ranking.candidates)
    assert [c.score for c in ranking.candidates] == sorted((c.score for c in ranking.candidates), reverse=True)
    by_id = {c.clip.clip_id: c for c in ranking.candidates}
    # A real electronic dance clip is among the best: its proxy tags first, then its other tags.
    best = by_id[28410]
    assert best.score == 11 and best.clip.mp3_path == "f/strojovna_07-dirnix-06-palacinka-204-233.mp3"
    assert best.prompt == "dance, techno, beat, beats, drums, electronic, synth, no voice"
    # Piano (1.5) + beat (1.5) reaches the threshold of 3 exactly.
    edge = by_id[47372]
    assert edge.score == 3 and set(edge.matched_tags) == {"piano", "beat"}
    # Real clips tagged classical are never selected, whatever proxy tags they have (techno, piano...).
    for clip_id in (31605, 35482):
        clip = next(c for c in real_annotations().clips if c.clip_id == clip_id)
        assert {"classical", "piano", "techno"} <= clip.tags and clip_id not in by_id


def test_folders_follow_albums_so_the_folder_split_has_no_album_in_two_splits() -> None:
    # clip_info_final.csv (which names albums) is not available offline: the album is read from the path.
    folders_of_album = defaultdict(set)
    for path in mp3_paths().values():
        folders_of_album[album_of(path)].add(path[0])
    assert len(folders_of_album) == 446 and all(len(f) == 1 for f in folders_of_album.values())
    ranking = rank(real_annotations(), ALL_FIXTURE_FOLDERS)
    splits_of_album = defaultdict(set)
    for candidate in ranking.candidates:
        splits_of_album[album_of(candidate.clip.mp3_path)].add(candidate.split)
    assert {s for splits in splits_of_album.values() for s in splits} == {"train", "validation"}
    assert all(len(splits) == 1 for splits in splits_of_album.values())


def test_known_broken_files_are_real_paths_and_never_selected() -> None:
    ids = {path: clip_id for clip_id, path in mp3_paths().items()}
    assert {path: ids.get(path) for path in KNOWN_BROKEN} == {
        "6/norine_braun-now_and_zen-08-gently-117-146.mp3": 35644,
        "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3": 55753,
        "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin"
        "-88-117.mp3": 57881,
    }
    # Their folders (6, 8, 9) have no real labels here: the test gives them a high-scoring tag set.
    from aurax.dataset.annotations import AnnotatedClip, Annotations

    broken = tuple(AnnotatedClip(ids[p], frozenset({"techno", "dance", "beat"}), p) for p in sorted(KNOWN_BROKEN))
    annotations = Annotations(real_annotations().tags, real_annotations().clips + broken)
    ranking = rank(annotations, ALL_FIXTURE_FOLDERS)
    assert sorted(c.clip_id for c in ranking.known_broken) == sorted(ids[p] for p in KNOWN_BROKEN)
    assert not {c.clip.mp3_path for c in ranking.candidates} & KNOWN_BROKEN
    plan = make_plan(annotations, ALL_FIXTURE_FOLDERS, "fixture + known broken")
    assert {f.folder: f.known_broken for f in plan.folders if f.known_broken} == {"6": 1, "8": 1, "9": 1}


def test_plan_on_the_fixture_names_working_fixes() -> None:
    plan = default_plan()  # the default folders: no training folder has real labels here
    assert not plan.met
    assert plan.problems[0].startswith("244 eligible clips, fewer than the 1,000 needed")
    assert "no training clip is selected" in plan.problems[1]
    assert [f.changes for f in plan.fixes] == [
        {"dataset.excluded_folders": ["d", "e"], "dataset.min_clips": 576},
        {"dataset.excluded_folders": [], "dataset.min_clips": 851},
    ]
    for fix in plan.fixes:  # each suggested value really works
        changes = {name.removeprefix("dataset."): value for name, value in fix.changes.items()}
        again = make_plan(real_annotations(), DatasetSelection(**changes), "fixture")
        assert again.met
    met = make_plan(real_annotations(), ALL_FIXTURE_FOLDERS, "fixture")
    assert met.met and met.selected == {"train": 607, "validation": 244} and met.fixes == ()
    shares = {t.tag: t for t in met.tags}
    assert shares["techno"].clips > 0 and shares["house"].clips == 0  # house is a rare tag: zero here
    assert sum(t.score_share for t in met.tags) == pytest.approx(1.0)
    assert met.scores[-1].at_or_above == sum(f.clips - f.excluded_tag - f.known_broken for f in met.folders)
    # README, "The data": a min_score of 2 instead of 3 takes 1,106 clips of c-f instead of 851.
    lower_rules = ALL_FIXTURE_FOLDERS.model_copy(update={"min_score": 2.0})
    lower = make_plan(real_annotations(), lower_rules, "fixture")
    assert lower.selected_total == 1106
    added = Counter(c.matched_tags for c in rank(real_annotations(), lower_rules).candidates if c.score < 3)
    assert added.most_common(2) == [(("techno",), 176), (("electronic", "synth"), 58)]  # README, "The data"


@pytest.mark.parametrize("folders", [
    {"validation_folders": ["0"], "excluded_folders": []},  # validation names a folder with no eligible clip
    {"validation_folders": ["0"], "excluded_folders": ["c", "d", "e", "f"]},  # and every labelled folder is out
    {"validation_folders": ["c"], "excluded_folders": ["d", "e", "f"]},  # the defaults
])
def test_a_folder_layout_the_data_cannot_meet_gets_a_fix_that_works(folders: dict[str, list[str]]) -> None:
    """Whatever the folder settings, the plan names settings and values that meet the target, each checked by
    planning again (real labels of folders c-f: the fixture's only labelled folders)."""
    plan = make_plan(real_annotations(), DatasetSelection(**folders), "fixture")
    assert not plan.met and plan.fixes, plan.problems
    for fix in plan.fixes:
        changes = {name.removeprefix("dataset."): value for name, value in fix.changes.items()}
        again = make_plan(real_annotations(), DatasetSelection(**{**folders, **changes}), "fixture")
        assert again.met and again.selected["train"] and again.selected["validation"], fix.render()
