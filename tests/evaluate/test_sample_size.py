"""How many clips the decision evaluation needs: exact power, and its time and cost in `aurax estimate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from aurax.cli import main
from aurax.ops.sample_size import (
    authenticity_power,
    clips_needed,
    critical_count,
    evaluation_hours,
    evaluation_plan,
    mcnemar_power,
)
from aurax_contracts import RunConfig
from aurax_control.stats import mcnemar_exact_greater


@pytest.mark.parametrize(("clips", "least"), [(100, 44), (200, 82), (300, 120)])
def test_critical_counts_of_the_exact_test_against_35_percent(clips: int, least: int) -> None:
    assert critical_count(clips, 0.35, 0.05) == least


@pytest.mark.parametrize(("clips", "power"), [(200, 0.89), (300, 0.96)])
def test_power_at_a_true_45_percent(clips: int, power: float) -> None:
    # The reference: 200-300 clips per arm give 0.89-0.96 power at a true 45%.
    assert authenticity_power(clips, 0.35, 0.45, 0.05) == pytest.approx(power, abs=0.005)


def test_mcnemar_power_equals_brute_force_enumeration_of_the_pairs() -> None:
    n, p, c, alpha = 20, 0.45, 0.15, 0.05
    p10, p01 = p * (1 - c), c * (1 - p)
    brute = 0.0
    for b in range(n + 1):
        for d in range(n + 1 - b):
            if mcnemar_exact_greater(b, d) <= alpha:
                ways = math.factorial(n) // (math.factorial(b) * math.factorial(d) * math.factorial(n - b - d))
                brute += ways * p10 ** b * p01 ** d * (1 - p10 - p01) ** (n - b - d)
    assert mcnemar_power(n, p, c, alpha) == pytest.approx(brute, rel=1e-9)
    assert mcnemar_power(50, 0.2, 0.2, alpha) < alpha  # no effect: at most the test's size


def test_clips_needed_is_the_least_size_reaching_the_power() -> None:
    def power(n: int) -> float:
        return authenticity_power(n, 0.35, 0.45, 0.05)

    needed = clips_needed(power, 0.8)
    assert needed is not None and power(needed) >= 0.8 and power(needed - 1) < 0.8
    assert clips_needed(lambda n: authenticity_power(n, 0.35, 0.30, 0.05), 0.8) is None  # true rate below


def test_clips_needed_for_the_authenticity_test_stay_enough_above_it() -> None:
    # The exact test's power saw-tooths: 148 counted clips reach 80.003% at a true 45%, half of 149-164 fall below
    # (152: 78.7%). "80% power needs N clips" must hold for the sizes a user rounds N up to, so N is the least
    # size from which every size up to twice it reaches the power.
    def power(n: int) -> float:
        return authenticity_power(n, 0.35, 0.45, 0.05)

    assert power(148) >= 0.8 > power(152)
    needed = clips_needed(power, 0.8, stable=True)
    assert needed == 165 and all(power(n) >= 0.8 for n in range(needed, 2 * needed + 1))
    # Through the default config: clips cycle 12 Amapiano and 12 tag prompts, so 165 Amapiano clips need 321 per
    # arm (13 full cycles, 156, and the first 9 of a 14th).
    plan = evaluation_plan(RunConfig(run_id="est-1"))
    assert plan.clips_for_authenticity == 321


def test_default_evaluation_is_powered_and_costed() -> None:
    config = RunConfig(run_id="est-1")
    plan = evaluation_plan(config)
    # The decision counts the Amapiano prompts' half of the clips: 300 of 600 give 96% power at a true 45%.
    assert (plan.clips_per_model, plan.prompt_set, plan.decision_clips) == (600, "amapiano", 300)
    assert plan.authenticity_power == pytest.approx(authenticity_power(300, 0.35, 0.45, 0.05))
    assert plan.authenticity_power > 0.95 and plan.comparison_power > 0.99
    assert plan.clips_for_authenticity is not None and plan.clips_for_authenticity <= 600
    assert plan.hours == pytest.approx(evaluation_hours(config)) and plan.usd == pytest.approx(plan.hours * 0.22)
    # 1,200 clips of 10 s at 0.22 s per second of audio, +8% interruptions, + a 420 s job start
    assert plan.hours == pytest.approx((1200 * 10 * 0.22 * 1.08 + 420) / 3600)


def test_the_power_is_that_of_the_decisions_prompt_set() -> None:
    config = RunConfig.model_validate({"run_id": "est-1", "evaluation": {"clips_per_model": 100}})
    # 12 Amapiano then 12 tag-style prompts cycle: 4 full cycles (48 of each) and the first 4 of a 5th are
    # Amapiano clips.
    assert config.evaluation.clips_in("amapiano") == 52 and config.evaluation.clips_in("in-distribution") == 48
    plan = evaluation_plan(config)
    assert plan.decision_clips == 52
    assert plan.authenticity_power == pytest.approx(authenticity_power(52, 0.35, 0.45, 0.05))
    counted = evaluation_plan(config.model_copy(update={"decision": config.decision.model_copy(
        update={"prompt_set": "all"})}))
    assert counted.decision_clips == 100 and counted.authenticity_power > plan.authenticity_power
    # Clips needed are clips per arm to generate, of which the decision's set gets its share.
    assert plan.clips_for_authenticity is not None and counted.clips_for_authenticity is not None
    assert config.evaluation.clips_in("amapiano", plan.clips_for_authenticity) >= counted.clips_for_authenticity


def test_a_decision_prompt_set_without_clips_is_refused() -> None:
    with pytest.raises(ValidationError, match="decision.prompt_set 'amapiano' gets no evaluation clips"):
        RunConfig.model_validate({"run_id": "est-1", "evaluation": {"prompts": []}})
    RunConfig.model_validate({"run_id": "est-1", "evaluation": {"prompts": []}, "decision": {"prompt_set": "all"}})


def test_estimate_shows_the_evaluations_power_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("run_id: est-1\nevaluation: {clips_per_model: 100}\ndecision: {prompt_set: all}\n")
    assert main(["estimate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "decision evaluation: 100 clips per arm of 10 s" in out
    assert "authenticity (exact test against 35% at 0.05): 0.62; 80% power needs" in out
    assert main(["estimate", "--config", str(config), "--true-rate", "0.5", "--power", "0.9", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["evaluation"]
    assert plan["true_rate"] == 0.5 and plan["target_power"] == 0.9 and plan["clips_for_authenticity"] == 100
    # (96 clips reach 90% at a true 50% first, but 97-99 dip below it: scipy.stats.binom agrees.)
    assert main(["estimate", "--config", str(config), "--power", "1.5"]) == 64  # a bad argument
    assert "--power must be between 0 and 1" in capsys.readouterr().err
