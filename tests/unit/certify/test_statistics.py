"""The binomial statistics against scipy's own exact tests."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from bastion.certify.statistics import binomial_p_value, clopper_pearson_lower


@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_lower_matches_scipy_exact_interval(alpha: float) -> None:
    n = 1000
    k = torch.tensor([0, 1, 17, 500, 950, 999, 1000])
    got = clopper_pearson_lower(k, n, alpha)
    # The one-sided (1 - alpha) bound is the lower end of the two-sided (1 - 2 alpha) exact interval.
    want = [stats.binomtest(int(v), n).proportion_ci(1 - 2 * alpha, method="exact").low for v in k]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert float(got[0]) == 0.0
    assert bool((got[1:] < k[1:] / n).all())  # a lower bound sits below the point estimate


def test_binomial_p_value_matches_scipy_binomtest() -> None:
    top = torch.tensor([0, 5, 50, 60, 90, 100])
    runner_up = torch.tensor([0, 5, 50, 40, 3, 0])
    got = binomial_p_value(top, runner_up)
    want = [
        stats.binomtest(int(a), int(a + b), 0.5).pvalue if a + b else 1.0
        for a, b in zip(top.tolist(), runner_up.tolist(), strict=True)
    ]
    assert got.tolist() == pytest.approx(want, rel=1e-9)
