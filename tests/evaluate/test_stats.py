"""Wilson intervals against published values, Fisher's exact test against scipy and the hypergeometric sum."""

from __future__ import annotations

import math

import pytest
from scipy.stats import fisher_exact, hypergeom

from aurax.evaluate.stats import fisher_greater, wilson_interval


@pytest.mark.parametrize("successes, trials, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no continuity
    # correction)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    # symmetric and boundary cases
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
])
def test_wilson_known_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("trials", [1, 7, 40, 100])
def test_wilson_matches_the_closed_form(trials: int) -> None:
    z = 1.959963984540054
    for successes in range(trials + 1):
        p = successes / trials
        centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
        half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
        low, high = wilson_interval(successes, trials)
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-9)
        assert low <= p <= high


def test_wilson_without_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("table", [(8, 10, 1, 10), (3, 10, 3, 10), (0, 10, 10, 10), (40, 100, 15, 100),
                                   (1, 1, 0, 1)])
def test_fisher_greater_matches_scipy_and_the_hypergeometric_tail(table: tuple[int, int, int, int]) -> None:
    t_k, t_n, c_k, c_n = table
    p = fisher_greater(t_k, t_n, c_k, c_n)
    table_2x2 = [[t_k, t_n - t_k], [c_k, c_n - c_k]]
    assert p == pytest.approx(fisher_exact(table_2x2, alternative="greater").pvalue)
    # P(X >= t_k) with X ~ treatment successes given the margins
    assert p == pytest.approx(min(1.0, hypergeom.sf(t_k - 1, t_n + c_n, t_k + c_k, t_n)), abs=1e-12)
    assert 0.0 <= p <= 1.0


def test_fisher_one_sided_direction() -> None:
    assert fisher_greater(9, 10, 1, 10) < 0.01
    assert fisher_greater(1, 10, 9, 10) > 0.99
