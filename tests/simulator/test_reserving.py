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


def test_ifrs17_risk_adjustment_of_an_exponential_run_off():
    """Run-off O_0 ~ Exponential(mean m), all paid in development year 1 (so O_1 = 0): closed forms
    RA_a = m (ln(1 / (1 - a)) - 1), C_0 = m (ln 200 - 1), RA_CoC = c C_0 / (1 + r), equivalent level
    1 - exp(-(m + RA_CoC) / m). Tolerance 5 SEs: the VaR's SE is sqrt(a (1 - a) / n) / f(q) = m sqrt(a (1 - a)
    / n) / (1 - a); C_0's the same at 99.5% (~0.032 m at n = 200,000)."""
    m, n = 2.0e6, 200_000
    paid = np.zeros((n, 3))
    paid[:, 1] = np.random.default_rng(3).exponential(m, n)
    out = reserving.summarize(paid, np.ones((n, 3)), None)
    ra = out["risk_adjustment"]
    se_75 = m * math.sqrt(0.75 * 0.25 / n) / 0.25
    assert ra["confidence_level"] == 0.75
    assert ra["at_confidence"] == pytest.approx(m * (math.log(4.0) - 1.0), abs=5 * se_75)
    assert se_75 * 0.5 < ra["at_confidence_se"] < se_75 * 3  # the SE is of the right size
    coc = ra["cost_of_capital"]
    c0 = m * (math.log(200.0) - 1.0)
    assert coc["capital_by_year_end"][1:] == [0.0, 0.0]
    assert coc["risk_adjustment"] == pytest.approx(0.06 * c0, abs=5 * 0.06 * m * math.sqrt(0.995 * 0.005 / n) / 0.005)
    level = 1.0 - math.exp(-(m + coc["risk_adjustment"]) / m)
    assert coc["equivalent_confidence_level"] == pytest.approx(level, abs=5 * coc["equivalent_confidence_level_se"])
    # Configurable: a discounted cost of capital at another rate and another confidence level.
    other = reserving.risk_adjustment(np.sort(paid[:, 1]), np.array(coc["capital_by_year_end"]), confidence=0.9,
                                      cost_of_capital=0.1, discount_rate=0.05, presorted=True)
    assert other["cost_of_capital"]["risk_adjustment"] == pytest.approx(0.1 * coc["capital_by_year_end"][0] / 1.05)
    assert other["at_confidence"] == pytest.approx(m * (math.log(10.0) - 1.0), abs=5 * m * math.sqrt(0.09 / n) / 0.1)
