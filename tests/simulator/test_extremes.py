"""Extreme but legal inputs: results stay finite and match closed forms; meaningless requests are refused.

Tolerances: a mean is compared with its closed form within 4 Monte Carlo standard errors
(sd / sqrt(years), estimated from the same years); distributions are compared with SciPy by a
Kolmogorov-Smirnov test at the 0.1% level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import cell, composition, make_portfolio
from scipy import stats

from leisim.simulator import metrics
from leisim.simulator.driver import run_years

POISSON = {"distribution": "poisson", "rate": 1.0}
LOGNORMAL = {"distribution": "lognormal", "median_cny": 1e5, "sigma": 1.0}


def run(key, comp, years=20_000):
    return run_years(key, comp.params, comp.shape, years=years, chunk_size=years)


@pytest.mark.slow
def test_limits_of_zero_and_of_1e12(key):
    cells = [cell(frequency=POISSON, severity=LOGNORMAL)]
    nothing = run(key, composition(cells, make_portfolio(exposure=[[1.0]], limit=0.0, aggregate=0.0)))
    assert np.all(nothing.gross == 0.0) and nothing.ground_up.sum() > 0
    unlimited = run(key, composition(cells, make_portfolio(exposure=[[1.0]], limit=1e12, aggregate=1e12)))
    np.testing.assert_allclose(unlimited.gross, unlimited.ground_up, rtol=1e-6)  # no cap binds
    # Compound Poisson mean: rate x E[X], E[X] = median exp(sigma^2 / 2).
    exact = 1.0 * 1e5 * math.exp(0.5)
    assert abs(unlimited.gross.mean() - exact) < 4 * unlimited.gross.std() / math.sqrt(unlimited.gross.size)


@pytest.mark.slow
def test_zero_exposure_policy_and_empty_country_change_nothing(key):
    cells = [cell(frequency=POISSON, severity=LOGNORMAL)]
    alone = run(key, composition(cells, make_portfolio(exposure=[[1.0]])), 5_000)
    padded = run(key, composition(cells, make_portfolio(exposure=[[1.0, 0.0], [0.0, 0.0]], countries=("US", "DE"))),
                 5_000)
    np.testing.assert_array_equal(alone.gross, padded.gross)
    np.testing.assert_allclose(padded.gross_by_group.sum(axis=1), padded.gross, rtol=1e-12)


@pytest.mark.slow
def test_portfolio_of_100000_policies(key):
    # 100,000 small policies, 0.0001 disputes each a year: 10 a year; the mean matches the closed form.
    n = 100_000
    comp = composition([cell(frequency={"distribution": "poisson", "rate": 1e-4}, severity=LOGNORMAL)],
                       make_portfolio(exposure=np.ones((n, 1))))
    out = run(key, comp, 2_000)
    exact = n * 1e-4 * 1e5 * math.exp(0.5)
    assert np.all(np.isfinite(out.gross))
    assert abs(out.gross.mean() - exact) < 4 * out.gross.std() / math.sqrt(out.gross.size)


@pytest.mark.parametrize("severity, law", [
    ({"distribution": "lognormal", "median_cny": 1e5, "sigma": 4.0}, stats.lognorm(s=4.0, scale=1e5)),
    ({"distribution": "pareto", "alpha": 1.2, "scale_cny": 1e5, "threshold_cny": 0.0}, stats.lomax(1.2, scale=1e5)),
    ({"distribution": "pareto", "alpha": 0.8, "scale_cny": 1e5, "threshold_cny": 0.0}, stats.lomax(0.8, scale=1e5)),
], ids=["lognormal-sigma-4", "pareto-infinite-variance", "pareto-infinite-mean"])
@pytest.mark.slow
def test_heavy_tails_are_finite_and_exact(key, severity, law):
    comp = composition([cell(frequency=POISSON, severity=severity)], make_portfolio(exposure=[[1.0]]))
    out = run(key, comp)
    assert np.all(np.isfinite(out.ground_up)) and np.all(np.isfinite(out.gross))
    single = out.ground_up[out.disputes == 1]
    assert stats.kstest(single, law.cdf).pvalue > 1e-3
    # The tail is resolved: the 99.5% quantile of one dispute's cost within 4 of its
    # order-statistic (binomial) standard errors.
    ordered = np.sort(single)
    assert abs(metrics.var(ordered, 0.995) - law.ppf(0.995)) < 4 * metrics.var_se(ordered, 0.995)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_meaningless_levels_are_refused(level):
    x = np.sort(np.random.default_rng(0).exponential(1.0, 1000))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        metrics.tvar(x, level)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        metrics.var(x, level)
