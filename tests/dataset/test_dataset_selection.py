"""Selection: eligibility, score order, seeded ties, album-safe folder split, prompts, unknown tags."""

from __future__ import annotations

import pytest

from aurax.dataset.annotations import AnnotatedClip, Annotations, parse_annotations
from aurax.dataset.selection import min_clips, rank
from aurax_contracts import ContractError
from tests.dataset.mtat_fixture import ELIGIBLE_TRAIN, ELIGIBLE_VALIDATION, MTAT_TAGS, annotations_bytes, run_config


def test_eligible_clips_ranked_by_score_and_split_by_folder() -> None:
    ranking = rank(parse_annotations(annotations_bytes()), run_config().dataset)
    ids = [c.clip.clip_id for c in ranking.candidates]
    assert sorted(ids) == sorted(ELIGIBLE_TRAIN + ELIGIBLE_VALIDATION)
    assert [c.score for c in ranking.candidates] == sorted((c.score for c in ranking.candidates), reverse=True)
    assert ids[0] == 29  # house + deep + bass = 7.0, the best
    assert {c.clip.clip_id for c in ranking.candidates if c.split == "validation"} == set(ELIGIBLE_VALIDATION)
    assert all(c.clip.folder == "c" for c in ranking.candidates if c.split == "validation")
    assert ranking.rejected == {"below-min-score": 1, "excluded-tag": 1, "excluded-folder": 1}
    assert [c.clip_id for c in ranking.known_broken] == [53]


def test_candidate_says_why_it_was_kept() -> None:
    ranking = rank(parse_annotations(annotations_bytes()), run_config().dataset)
    best = next(c for c in ranking.candidates if c.clip.clip_id == 2)
    assert best.score == 6.5 and best.matched_tags == ("house", "percussion", "electronic")
    assert best.prompt == "house, percussion, electronic, fast"


def test_ties_are_broken_by_the_seed_and_are_reproducible() -> None:
    clips = tuple(AnnotatedClip(i, frozenset({"house"}), f"{i % 10}/clip-{i}.mp3") for i in range(40))
    annotations = Annotations(tags=tuple(MTAT_TAGS), clips=clips)
    order = [c.clip.clip_id for c in rank(annotations, run_config(seed=1).dataset).candidates]
    assert order == [c.clip.clip_id for c in rank(annotations, run_config(seed=1).dataset).candidates]
    assert order != [c.clip.clip_id for c in rank(annotations, run_config(seed=2).dataset).candidates]
    assert sorted(order) == list(range(40))


def test_unknown_tag_names_it_and_suggests_close_matches() -> None:
    rules = run_config(include_tags={"hous": 2.0, "percusion": 1.0}, exclude_tags=["clasical", "zzzz"]).dataset
    with pytest.raises(ContractError) as caught:
        rank(parse_annotations(annotations_bytes()), rules)
    text = str(caught.value)
    assert "'hous' is not a MagnaTagATune tag" in text and "did you mean 'house'" in text
    assert "'percusion'" in text and "'percussion'" in text
    assert "dataset.exclude_tags: 'zzzz' is not a MagnaTagATune tag" in text
    assert len(caught.value.problems) == 3  # 'clasical' is MTAT's own misspelt column: known, accepted


@pytest.mark.parametrize("target, tolerance, fewest", [(8000, 0.05, 7600), (11, 0.2, 9), (11, 0.0, 11), (1, 0.9, 1)])
def test_min_clips_is_the_target_less_its_tolerance(target: int, tolerance: float, fewest: int) -> None:
    assert min_clips(run_config(target_clips=target, target_tolerance=tolerance).dataset) == fewest


def test_default_in_distribution_prompts_read_exactly_like_training_prompts() -> None:
    """The evaluation's tag-style prompts claim to be in the training captions' distribution: each must be
    what `tag_prompt` writes for a clip with those MTAT tags under the default weights (same words, same order)."""
    from aurax.dataset.mtat_tags import MTAT_TAGS as PUBLISHED
    from aurax.dataset.selection import tag_prompt
    from aurax_contracts.config import DEFAULT_INCLUDE_TAGS, DEFAULT_TAG_PROMPTS

    for prompt in DEFAULT_TAG_PROMPTS:
        tags = prompt.split(", ")
        assert set(tags) <= set(PUBLISHED), prompt
        assert tag_prompt(tags, DEFAULT_INCLUDE_TAGS) == prompt
