"""Numerical precision: float32 sampling against float64 throughout; float64 sums over 1e7 years."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from leisim.simulator import metrics, results
from leisim.simulator.driver import run_years


@pytest.mark.slow
def test_float32_sampling_agrees_with_float64_within_monte_carlo_error(key, baseline):
    # Same key and years, but the float64 normals and gammas consume the random bits differently,
    # so the two runs are independent samples of the same model: each figure must agree within
    # 4 combined Monte Carlo standard errors, hypot(se_32, se_64) (false alarm rate ~6e-5).
    years = 20_000
    x64 = dataclasses.replace(baseline, shape=baseline.shape._replace(x64=True))
    a = run_years(key, baseline.params, baseline.shape, years=years, chunk_size=5_000)
    b = run_years(key, x64.params, x64.shape, years=years, chunk_size=5_000)
    m32, m64 = metrics.risk_measures(a.gross, (0.99, 0.995)), metrics.risk_measures(b.gross, (0.99, 0.995))
    assert abs(m32["mean"] - m64["mean"]) < 4 * math.hypot(m32["se"]["mean"], m64["se"]["mean"])
    for level in ("0.99", "0.995"):
        assert abs(m32["var"][level] - m64["var"][level]) < 4 * math.hypot(m32["se"]["var"][level], m64["se"]["var"][level])
        assert abs(m32["tvar"][level] - m64["tvar"][level]) < 4 * math.hypot(m32["se"]["tvar"][level],
                                                                            m64["se"]["tvar"][level])
    assert abs(a.disputes.mean() - b.disputes.mean()) < 4 * math.hypot(a.disputes.std(), b.disputes.std()) / math.sqrt(years)


def test_sums_over_ten_million_years_lose_less_than_1e_minus_9():
    # Heavy-tailed annual totals (lognormal, sigma 2, ~1e7 CNY), 1e7 years in 1,000 chunks, summed
    # as the summary sums them (pairwise within each chunk, then across chunks), against the
    # exactly rounded sum (math.fsum). Naive left-to-right float64 summation would be allowed
    # an error of n * eps = 2e-9; pairwise summation's bound is log2(n) * eps ~ 5e-15.
    rng = np.random.default_rng(20261123)
    values = rng.lognormal(np.log(1e7), 2.0, 10_000_000)
    years = results.MemoryYears([{"gross": chunk} for chunk in np.split(values, 1000)])
    total = float(results._sums(years, lambda r: r["gross"]))
    exact = math.fsum(values)
    assert abs(total - exact) / exact < 1e-9
    gathered = metrics.gather((r["gross"] for r in years.records()), years.years)
    assert abs(float(gathered.sum()) - exact) / exact < 1e-9
    assert abs(metrics.risk_measures(np.sort(gathered), (0.995,), presorted=True)["mean"] * values.size - exact) / exact < 1e-9
