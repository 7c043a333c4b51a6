"""Reserves: the simulated payment pattern against its integral, and the reserve statistics.

A dispute starts at U ~ Uniform(0, 1) in the underwriting year, lasts D ~ lognormal, and is
paid evenly while it runs; so the expected share paid by year-end t is E[clip((t - U) / D, 0, 1)],
computed here by Gauss-Legendre (U) x Gauss-Hermite (log D) quadrature, independently of the
kernel's scatter-add formula. Tolerances: Z Monte Carlo SEs (sd / sqrt(years)), fixed keys, with Z
Bonferroni-corrected over the module's 12 mean checks (6 development years x payments and open
disputes) for a 0.3% family-wise false-alarm rate: Z = Phi^-1(1 - 0.003 / 24) = 3.66. (Checked over
30 other seeds: the z-scores of every check have mean ~0 and sd ~1.)
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from helpers import cell, make_portfolio, make_scenario
from scipy import stats

from leisim.scenarios.compose import compose
from leisim.simulator import reserving
from leisim.simulator.driver import run_years

SEED = 20261122
MEDIAN, SIGMA_D = 1.4, 0.6
LAM, COST_MEDIAN, COST_SIGMA = 4.0, 1.0e6, 0.5
DEV = 6
Z = 3.66


def _expected_share_paid_by(t: float) -> float:
    u, wu = np.polynomial.legendre.leggauss(400)
    u, wu = 0.5 * (u + 1.0), 0.5 * wu
    z, wz = np.polynomial.hermite_e.hermegauss(80)
    wz = wz / math.sqrt(2 * math.pi)
    d = MEDIAN * np.exp(SIGMA_D * z)
    share = np.clip((t - u[:, None]) / d[None, :], 0.0, 1.0)
    return float(wu @ share @ wz)


def _expected_open_at(t: float) -> float:
    # P(U + D > t) = E_U[P(D > t - U)].
    u, wu = np.polynomial.legendre.leggauss(400)
    u, wu = 0.5 * (u + 1.0), 0.5 * wu
    return LAM * float(wu @ stats.lognorm(s=SIGMA_D, scale=MEDIAN).sf(t - u))


@pytest.fixture(scope="module")
def run():
    scenario = make_scenario([cell(frequency={"distribution": "poisson", "rate": LAM},
                                   severity={"distribution": "lognormal", "median_cny": COST_MEDIAN,
                                             "sigma": COST_SIGMA},
                                   duration={"median_years": MEDIAN, "sigma": SIGMA_D})])
    comp = compose(scenario, make_portfolio(exposure=[[1.0]]), programs=[], dev_years=DEV)
    return run_years(jax.random.key(SEED), comp.params, comp.shape, years=100_000, chunk_size=50_000)


def test_payments_add_up_to_the_year(run):
    np.testing.assert_allclose(run.payments.sum(axis=1), run.gross, rtol=1e-9, atol=1e-3)
    assert np.all(run.payments >= 0)


def test_payment_pattern_matches_its_integral(run):
    mean_cost = LAM * COST_MEDIAN * math.exp(0.5 * COST_SIGMA**2)
    paid_by = [0.0] + [_expected_share_paid_by(t) for t in range(1, DEV)] + [1.0]
    for j in range(DEV):
        expected = mean_cost * (paid_by[j + 1] - paid_by[j])
        sample = run.payments[:, j]
        se = sample.std(ddof=1) / math.sqrt(sample.size)
        assert abs(sample.mean() - expected) <= Z * se + 1e-9 * mean_cost, (j, sample.mean(), expected, se)


def test_open_disputes_match_the_survival_integral(run):
    for t in range(1, DEV + 1):
        sample = run.open_disputes[:, t - 1]
        se = sample.std(ddof=1) / math.sqrt(sample.size)
        assert abs(sample.mean() - _expected_open_at(t)) <= Z * se + 1e-12


def test_reserve_statistics(run):
    out = reserving.summarize(run.payments, run.open_disputes)
    run_off = run.payments[:, 1:].sum(axis=1)
    assert out["expected_outstanding"] == pytest.approx(run_off.mean(), rel=1e-12)
    assert out["adequacy"]["probability"] == pytest.approx(np.mean(run_off <= run_off.mean()))
    assert out["expected_outstanding_by_year_end"][-1] == 0.0
    assert out["payment_pattern"]["cumulative_share"][-1] == pytest.approx(1.0)
    # The one-year development result of an unbiased best estimate has mean zero.
    risk = out["one_year_reserve_risk"]
    assert abs(risk["mean"]) <= 3 * risk["se"]["mean"]
    assert risk["capital"] > 0


def test_adequacy_of_an_exponential_run_off():
    # O ~ Exp(1): P(O <= R) = 1 - exp(-R), E[(O - R)+] = exp(-R).
    run_off = np.random.default_rng(SEED).exponential(1.0, 200_000)
    out = reserving.adequacy(run_off, 2.0)
    assert abs(out["probability"] - (1 - math.exp(-2.0))) <= 3 * out["probability_se"]
    assert abs(out["expected_shortfall"] - math.exp(-2.0)) <= 3 * out["expected_shortfall_se"]
    assert out["mean_shortfall_when_short"] == pytest.approx(1.0, rel=0.05)  # memoryless: E[O - R | O > R] = 1
