"""The engine's posterior-side features against exact laws: NB1 counts, the litigation-lifecycle
mixture with fee shifting, FX, and mass-defendant campaigns.

Each test builds ModelTables by hand (one draw), so the exact law is known in closed form.
Tolerances as in test_engine: 3-4 Monte Carlo standard errors, or KS at the 0.1% level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_portfolio
from scipy import stats

from leisim.scenarios.compose import ModelTables, assemble
from leisim.simulator.driver import run_years

STAGE_P = np.array([0.5, 0.3, 0.15, 0.05])
STAGE_MEDIAN = np.array([2e5, 6e5, 1.5e6, 3e6])
STAGE_SIGMA = np.array([0.8, 0.7, 0.6, 0.6])


def _tables(*, rate=1.0, dispersion=0.0, fee=(0.0, 0.0, 0.0), fx_sigma=0.0, campaign=None) -> ModelTables:
    severity = np.stack([np.log(STAGE_MEDIAN), STAGE_SIGMA, np.zeros(4)], axis=-1)[None, None]  # [1, 1, 4, 3]
    extra = {}
    if campaign is not None:
        rate_c, mean_extra, k = campaign
        extra = dict(campaign_cell=np.array([0]), campaign_policies=(np.array([0, 1]),),
                     campaign_weights=(np.array([1.0, 3.0]),), campaign_rate=np.array([[rate_c]]),
                     campaign_size=np.array([[[mean_extra, k]]]))
    return ModelTables(
        cell_country=("DE",), cell_dispute_type=("patent",), cell_family=np.zeros(1, int), cell_currency=("EUR",),
        stratum_cell=np.zeros(1, int), stratum_policies=(np.array([0]),), stratum_weights=(np.array([1.0]),),
        stratum_scale=np.array([[rate]]), cell_concentration=np.zeros((1, 1)),
        cell_stage_probability=STAGE_P[None, None], cell_severity=severity,
        cell_fee=np.array([[fee]], dtype=float), year_sigma=np.zeros(1), fx_sigma={"EUR": fx_sigma},
        cell_dispersion=np.array([[dispersion]]), **extra)


def _run(key, tables, years):
    portfolio = make_portfolio(exposure=[[1.0], [1.0]], countries=("DE",))
    params, shape, _ = assemble(tables, portfolio)
    return run_years(key, params, shape, years=years, chunk_size=years)


@pytest.mark.slow
def test_nb1_counts_are_negative_binomial(key):
    # NB1(mean 2, delta 1.5): concentration mean / delta; pmf at 0..12 within 4 binomial SEs.
    mean, delta = 2.0, 1.5
    out = _run(key, _tables(rate=mean, dispersion=delta), 100_000)
    law = stats.nbinom(mean / delta, 1.0 / (1.0 + delta))
    for count in range(13):
        p = law.pmf(count)
        assert abs(np.mean(out.disputes == count) - p) < 4 * math.sqrt(p * (1 - p) / out.disputes.size), count


def test_lifecycle_mixture_with_fee_shifting_matches_the_exact_law(key):
    # One dispute a year on average: the cost of a one-dispute year is one draw from the mixture
    # over stages of lognormals, decided stages (trial, appeal) scaled by (1 - recovered) when won
    # (probability 0.6) and by (1 + adverse) when lost.
    p_win, recovered, adverse = 0.6, 0.4, 0.5
    out = _run(key, _tables(fee=(p_win, recovered, adverse)), 40_000)
    single = out.ground_up[out.disputes == 1]

    def cdf(x):
        total = np.zeros_like(x)
        for s in range(4):
            law = stats.lognorm(STAGE_SIGMA[s], scale=STAGE_MEDIAN[s])
            if s < 2:
                total += STAGE_P[s] * law.cdf(x)
            else:
                total += STAGE_P[s] * (p_win * law.cdf(x / (1 - recovered)) + (1 - p_win) * law.cdf(x / (1 + adverse)))
        return total

    assert stats.kstest(single, cdf).pvalue > 1e-3


@pytest.mark.slow
def test_fx_moves_costs_but_keeps_their_mean(key):
    # FX factor exp(s Z - s^2/2) has mean 1 and is independent of the cost: the mean ground-up cost
    # is unchanged, its variance grows by E[X^2] (e^{s^2} - 1).
    sigma = 0.3
    out = _run(key, _tables(fx_sigma=sigma), 100_000)
    ex = float(np.sum(STAGE_P * STAGE_MEDIAN * np.exp(STAGE_SIGMA**2 / 2)))
    ex2 = float(np.sum(STAGE_P * STAGE_MEDIAN**2 * np.exp(2 * STAGE_SIGMA**2)))
    mean = ex  # Poisson(1) disputes a year
    # One currency, so F is shared within a year: Var(F S) = E[F^2] (Var S + E[S]^2) - E[S]^2 with
    # S compound Poisson(1): Var S = E[X^2], E[S] = E[X].
    variance = math.exp(sigma**2) * (ex2 + ex**2) - ex**2
    se = math.sqrt(variance / out.ground_up.size)
    assert abs(out.ground_up.mean() - mean) < 4 * se


@pytest.mark.slow
def test_campaigns_bring_clustered_disputes(key):
    # Campaigns Poisson(0.8) a year, each naming 1 + NB(mean 3, k 0.7) sellers: the yearly number of
    # campaign disputes is compound Poisson with mean r (1 + m) and variance r E[L^2].
    r, m, k = 0.8, 3.0, 0.7
    out = _run(key, _tables(rate=1e-9, campaign=(r, m, k)), 100_000)
    counts = out.campaign_disputes.astype(float)
    mean, second = r * (1 + m), r * (m + m * m / k + (1 + m) ** 2)
    n = counts.size
    assert abs(counts.mean() - mean) < 4 * math.sqrt(second / n)
    centred = counts - counts.mean()
    m4 = float(np.mean(centred**4))
    assert abs(counts.var() - second) < 4 * math.sqrt(max(m4 - counts.var() ** 2, 0.0) / n)


@pytest.mark.slow
def test_campaign_sizes_past_a_short_table_are_recomputed_exactly(key, monkeypatch):
    """CDF tables cut at 64 columns (a long-tailed NB: mean 40, k 0.3, P(N >= 64) ~ 0.2) flag the
    years whose campaigns fall past the end; the driver recomputes them with the exact tail. Every
    year then equals the run with full tables, bit for bit: the inversion is exact either way and
    each campaign's size comes from the same word."""
    import leisim.scenarios.compose as compose_mod

    tables = _tables(rate=0.5, campaign=(1.5, 40.0, 0.3))
    full = _run(key, tables, 2_000)
    monkeypatch.setattr(compose_mod, "SIZE_TABLE_MAX", 64)
    short = _run(key, tables, 2_000)
    assert short.recomputed_years.size > 200  # the short table really sends years down the exact path
    assert full.recomputed_years.size < short.recomputed_years.size
    for name in ("gross", "disputes", "campaign_disputes", "campaigns", "ground_up"):
        np.testing.assert_array_equal(getattr(short, name), getattr(full, name), err_msg=name)
    assert full.campaign_disputes.max() > 64 + 1  # sizes beyond the short table occur
