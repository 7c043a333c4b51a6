"""The claim-driven engine against closed forms and exact compound distributions.

Tolerances: every comparison allows 3 Monte Carlo standard errors, estimated from the same
run, so that with fixed keys a correct engine fails a given check with probability ~0.3%.
- The mean's SE is sd / sqrt(n).
- The variance's SE is sqrt((m4 - s^4) / n), from the sample fourth central moment m4.
- VaR and TVaR SEs are those of leisim.simulator.metrics, which test_metrics checks for calibration.
Exact references bracket the truth (tests/exact.py), so discretisation adds no slack.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import numpy as np
import pytest
from exact import discretise, lognormal, negbin_ab, panjer, payment_cdf, poisson_ab, var_tvar_from_pmf
from helpers import cell, composition, make_portfolio
from scipy import stats

from leisim.scenarios.compose import alias_table
from leisim.simulator import metrics
from leisim.simulator.driver import run_years, traces

LOGNORMAL = {"distribution": "lognormal", "median_cny": 1.0e6, "sigma": 0.8}


def _moment_se(x: np.ndarray) -> tuple[float, float]:
    n = x.size
    centred = x - x.mean()
    m2, m4 = (centred**2).mean(), (centred**4).mean()
    return math.sqrt(m2 / n), math.sqrt(max(m4 - m2**2, 0.0) / n)


def _lognormal_raw_moment(median: float, sigma: float, r: int) -> float:
    return math.exp(r * math.log(median) + 0.5 * r * r * sigma * sigma)


def test_compound_poisson_mean_and_variance(key):
    # Three policies, two countries, different severities: a Poisson mixture whose moments are
    # sums over (policy, cell) of rate * E[X^r].
    portfolio = make_portfolio(exposure=[[1.0, 0.5], [2.0, 0.0], [0.5, 3.0]], countries=("US", "DE"))
    de = {"distribution": "lognormal", "median_cny": 3.0e5, "sigma": 0.5}
    comp = composition([cell("US", frequency={"distribution": "poisson", "rate": 0.8}, severity=LOGNORMAL),
                        cell("DE", frequency={"distribution": "poisson", "rate": 0.4}, severity=de)], portfolio)
    out = run_years(key, comp.params, comp.shape, years=200_000, chunk_size=50_000)
    lam_us, lam_de = 0.8 * 3.5, 0.4 * 3.5
    mean = lam_us * _lognormal_raw_moment(1e6, 0.8, 1) + lam_de * _lognormal_raw_moment(3e5, 0.5, 1)
    var = lam_us * _lognormal_raw_moment(1e6, 0.8, 2) + lam_de * _lognormal_raw_moment(3e5, 0.5, 2)
    se_mean, se_var = _moment_se(out.gross)
    assert abs(out.gross.mean() - mean) < 3 * se_mean
    assert abs(out.gross.var() - var) < 3 * se_var
    # Counts: Poisson(4.9 + 2.1).
    assert abs(out.disputes.mean() - (lam_us + lam_de)) < 3 * math.sqrt((lam_us + lam_de) / out.disputes.size)


@pytest.mark.slow
def test_compound_negative_binomial_mean_and_variance(key):
    # Each policy-year count is NB(mean m_p, k) independently, so the total variance is the
    # sum over policies of m_p E[X^2] + m_p^2 / k E[X]^2.
    exposures = np.array([1.0, 2.0, 4.0])
    portfolio = make_portfolio(exposure=exposures[:, None])
    k, rate = 0.7, 0.9
    comp = composition([cell(frequency={"distribution": "negative_binomial", "rate": rate, "concentration": k},
                             severity=LOGNORMAL)], portfolio)
    out = run_years(key, comp.params, comp.shape, years=200_000, chunk_size=50_000)
    m = rate * exposures
    ex1, ex2 = _lognormal_raw_moment(1e6, 0.8, 1), _lognormal_raw_moment(1e6, 0.8, 2)
    mean = m.sum() * ex1
    var = (m * ex2 + m**2 / k * ex1**2).sum()
    se_mean, se_var = _moment_se(out.gross)
    assert abs(out.gross.mean() - mean) < 3 * se_mean
    assert abs(out.gross.var() - var) < 3 * se_var


@pytest.mark.slow
def test_negative_binomial_count_distribution(key):
    # One policy: the yearly count must be NB(mean 2.5, k 0.8) exactly; compare the pmf at
    # 0..12 with binomial standard errors (13 checks at 4 SE: family-wise error < 0.1%).
    comp = composition([cell(frequency={"distribution": "negative_binomial", "rate": 2.5, "concentration": 0.8},
                             severity=LOGNORMAL)], make_portfolio(exposure=[[1.0]]))
    out = run_years(key, comp.params, comp.shape, years=100_000, chunk_size=50_000)
    k, mean = 0.8, 2.5
    law = stats.nbinom(k, k / (k + mean))
    n = out.disputes.size
    for count in range(13):
        p = law.pmf(count)
        observed = np.mean(out.disputes == count)
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / n), count


def _exact_brackets(freq_ab: dict, components: list[tuple[float, object, dict]], h: float, n_sev: int,
                    n_total: int, levels, aggregate: float = np.inf):
    """VaR/TVaR brackets from Panjer on the down- and up-rounded payment mixture."""
    out = {}
    for direction in ("down", "up"):
        pmf = sum(w * discretise(lambda y, d=dist, t=terms: payment_cdf(d, y, **t), h, n_sev, direction)
                  for w, dist, terms in components)
        compound = panjer(pmf, n_total, **freq_ab)
        if np.isfinite(aggregate):
            cap = int(round(aggregate / h))
            # Everything at or above the cap, including the mass beyond the grid, sits at the cap.
            compound = np.concatenate([compound[:cap], [1.0 - compound[:cap].sum()]])
        out[direction] = {level: var_tvar_from_pmf(compound, h, level) for level in levels}
    return out


@pytest.mark.slow
def test_var_tvar_match_exact_compound_poisson_with_terms(key):
    # Three policies with their own deductible, coinsurance and per-dispute limit, in two
    # countries: the portfolio's annual payment is compound Poisson with a mixture severity.
    portfolio = make_portfolio(exposure=[[1.0, 0.0], [0.5, 1.0], [1.5, 0.5]], countries=("US", "DE"),
                               deductible=[50e3, 0.0, 200e3], coinsurance=[0.2, 0.0, 0.1],
                               limit=[2e6, 5e6, 1e6])
    de = {"distribution": "lognormal", "median_cny": 5e5, "sigma": 1.2}
    comp = composition([cell("US", frequency={"distribution": "poisson", "rate": 1.2}, severity=LOGNORMAL),
                        cell("DE", frequency={"distribution": "poisson", "rate": 0.8}, severity=de)], portfolio)
    out = run_years(key, comp.params, comp.shape, years=200_000, chunk_size=100_000)
    terms = [dict(deductible=50e3, coinsurance=0.2, limit=2e6), dict(deductible=0.0, coinsurance=0.0, limit=5e6),
             dict(deductible=200e3, coinsurance=0.1, limit=1e6)]
    rates = [(1.2 * 1.0, 0, None), (1.2 * 0.5, 1, None), (1.2 * 1.5, 2, None),
             (0.8 * 1.0, 1, "DE"), (0.8 * 0.5, 2, "DE")]
    total = sum(r for r, _, _ in rates)
    components = [(r / total, lognormal(5e5, 1.2) if c else lognormal(1e6, 0.8), terms[p]) for r, p, c in rates]
    levels = (0.99, 0.995)
    h = 5e3
    brackets = _exact_brackets(poisson_ab(total), components, h, n_sev=int(5e6 / h) + 2, n_total=8000, levels=levels)
    measures = metrics.risk_measures(out.gross, levels)
    for level in levels:
        label = f"{level:g}"
        for i, name in enumerate(("var", "tvar")):
            lo, hi = brackets["down"][level][i], brackets["up"][level][i]
            se = measures["se"][name][label]
            slack = 3 * se + 1e-9 * hi  # 1e-9: float64 summation rounding where the SE is 0 (all at a cap)
            assert lo - slack <= measures[name][label] <= hi + slack, (name, level, lo, hi, measures[name][label], se)


@pytest.mark.slow
def test_var_tvar_match_exact_compound_negative_binomial_with_aggregate(key):
    # One policy: deductible, coinsurance, per-dispute limit and an annual aggregate limit.
    portfolio = make_portfolio(exposure=[[1.0]], deductible=100e3, coinsurance=0.2, limit=3e6, aggregate=8e6)
    comp = composition([cell(frequency={"distribution": "negative_binomial", "rate": 2.0, "concentration": 1.5},
                             severity=LOGNORMAL)], portfolio)
    out = run_years(key, comp.params, comp.shape, years=200_000, chunk_size=100_000)
    levels = (0.9, 0.99, 0.995)
    h = 5e3
    terms = dict(deductible=100e3, coinsurance=0.2, limit=3e6)
    brackets = _exact_brackets(negbin_ab(2.0, 1.5), [(1.0, lognormal(1e6, 0.8), terms)], h,
                               n_sev=int(3e6 / h) + 2, n_total=int(20e6 / h), levels=levels, aggregate=8e6)
    measures = metrics.risk_measures(out.gross, levels)
    assert out.gross.max() <= 8e6
    for level in levels:
        label = f"{level:g}"
        for i, name in enumerate(("var", "tvar")):
            lo, hi = brackets["down"][level][i], brackets["up"][level][i]
            se = measures["se"][name][label]
            slack = 3 * se + 1e-9 * hi  # 1e-9: float64 summation rounding where the SE is 0 (all at a cap)
            assert lo - slack <= measures[name][label] <= hi + slack, (name, level, lo, hi, measures[name][label], se)


@pytest.mark.slow
def test_overflowing_years_are_recomputed_exactly(key):
    comp = composition([cell(frequency={"distribution": "negative_binomial", "rate": 20.0, "concentration": 2.0},
                             severity=LOGNORMAL)], make_portfolio(exposure=[[1.0], [0.5]], aggregate=3e7))
    roomy = run_years(key, comp.params, comp.shape._replace(event_buffer=256, dispute_buffer=512), years=3000,
                      chunk_size=3000)
    assert roomy.recomputed_years.size == 0
    tight = run_years(key, comp.params, comp.shape._replace(event_buffer=64, dispute_buffer=64), years=3000,
                      chunk_size=3000)
    assert tight.recomputed_years.size > 100  # the test really forces overflows
    np.testing.assert_array_equal(tight.disputes, roomy.disputes)
    # Sums over longer buffers may associate differently: equal to float64 rounding.
    np.testing.assert_allclose(tight.gross, roomy.gross, rtol=1e-12, atol=0)
    np.testing.assert_allclose(tight.gross_by_group, roomy.gross_by_group, rtol=1e-12, atol=0)


def test_new_scenario_numbers_reuse_the_compiled_kernel(key):
    portfolio = make_portfolio(exposure=[[1.0], [2.0]])
    first = composition([cell(frequency={"distribution": "poisson", "rate": 0.5}, severity=LOGNORMAL)], portfolio)
    second = composition([cell(frequency={"distribution": "poisson", "rate": 0.6},
                               severity=LOGNORMAL | {"sigma": 1.1})], portfolio)
    assert first.shape == second.shape
    before = traces(first.shape)
    run_years(key, first.params, first.shape, years=500, chunk_size=500)
    compiled = traces(first.shape)
    assert compiled - before <= 1  # compiled at most once (another test may have compiled it)
    run_years(key, second.params, second.shape, years=500, chunk_size=500)
    assert traces(first.shape) == compiled >= 1


@pytest.mark.slow
def test_per_year_results_identical_for_any_chunk_size_device_count_buffer_and_batch_size(key, baseline):
    # The default scenario (posterior, campaigns, reinsurance, payment pattern). Chunks of 1000 on
    # four devices with the composed buffers, against one chunk of 4001 on one device (other lax.map
    # remainders) with buffers so small that one year in ~15 overflows and is recomputed with grown ones (as after a resume,
    # which grows them from another start): every per-year output agrees bit for bit. This fails
    # with a ``sum()`` whose tree XLA picks by buffer length, with payment draws over the joined
    # slot arrays (not prefix-stable per part), or with an FMA contracted in one program and not
    # in another (simulator/ordered.py).
    assert jax.local_device_count() == 4  # conftest sets four host devices
    shape = baseline.shape
    # ... and 512 years vectorised together instead of 128 (an accelerator's batch, compose.default_batch_years).
    small = shape._replace(event_buffer=40, dispute_buffer=40, campaign_buffer=16, campaign_dispute_buffer=48,
                           batch_years=512)
    four = run_years(key, baseline.params, shape, years=4001, chunk_size=1000)
    one = run_years(key, baseline.params, small, years=4001, chunk_size=4001, devices=jax.local_devices()[:1])
    assert four.recomputed_years.size <= 20 and 100 <= one.recomputed_years.size <= 800  # ~1 in 1,000; ~1 in 15
    assert shape.n_reinsurers > 0 and shape.dev_years > 0 and shape.campaign_buffer > 0
    for field in dataclasses.fields(four):
        if field.name != "recomputed_years":
            np.testing.assert_array_equal(getattr(one, field.name), getattr(four, field.name), err_msg=field.name)


@pytest.mark.parametrize(
    "severity, law",
    [
        ({"distribution": "lognormal", "median_cny": 2e5, "sigma": 2.5}, stats.lognorm(s=2.5, scale=2e5)),
        ({"distribution": "gamma", "shape": 0.6, "mean_cny": 3e5}, stats.gamma(0.6, scale=5e5)),
        ({"distribution": "pareto", "alpha": 1.5, "scale_cny": 1e5, "threshold_cny": 2e4},
         stats.lomax(1.5, loc=2e4, scale=1e5)),
    ],
    ids=["lognormal", "gamma", "pareto"],
)
def test_severity_matches_scipy(key, severity, law):
    # One dispute per year on average, no terms: the ground-up cost of years with exactly one
    # dispute is one severity draw. KS test at the 0.1% level.
    comp = composition([cell(frequency={"distribution": "poisson", "rate": 1.0}, severity=severity)],
                       make_portfolio(exposure=[[1.0]]))
    out = run_years(key, comp.params, comp.shape, years=20_000, chunk_size=20_000)
    single = out.ground_up[out.disputes == 1]
    assert stats.kstest(single, law.cdf).pvalue > 1e-3


def test_alias_table_reproduces_the_weights():
    weights = np.array([0.1, 5.0, 0.0, 2.5, 1e-6, 3.0])
    threshold, alias = alias_table(weights)
    n = len(weights)
    implied = threshold / n
    np.add.at(implied, alias, (1.0 - threshold) / n)
    np.testing.assert_allclose(implied, weights / weights.sum(), rtol=0, atol=1e-15)


def test_run_requires_float64(key, monkeypatch):
    comp = composition([cell(frequency={"distribution": "poisson", "rate": 0.5}, severity=LOGNORMAL)],
                       make_portfolio(exposure=[[1.0]]))
    monkeypatch.setattr(jax.config, "read", lambda name: False)
    with pytest.raises(RuntimeError, match="jax_enable_x64"):
        run_years(key, comp.params, comp.shape, years=10)
    # Composing refuses first, with the fix, before JAX would warn and truncate float64 tables.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="setup_jax"):
            composition([cell(frequency={"distribution": "poisson", "rate": 0.5}, severity=LOGNORMAL)],
                        make_portfolio(exposure=[[1.0]]))
