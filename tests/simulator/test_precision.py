"""Numerical precision: float32 sampling against float64 throughout; float64 sums over 1e7 years."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from leisim.simulator import metrics, results
from leisim.simulator.driver import run_years


@pytest.mark.slow
def test_float32_sampling_agrees_with_float64_within_monte_carlo_error(key, baseline):
    # Same key, same years: the two runs draw the same random bits and differ only in the
    # precision of the arithmetic that turns them into costs. Tolerance: 3 standard errors of the
    # paired difference of the means (sd(x32 - x64) / sqrt(n)), and the difference must also be
    # far inside the Monte Carlo error of the mean itself (sd / sqrt(n)), so that float32 sampling
    # never moves a reported figure by as much as its own standard error.
    years = 20_000
    x64 = dataclasses.replace(baseline, shape=baseline.shape._replace(x64=True))
    a = run_years(key, baseline.params, baseline.shape, years=years, chunk_size=5_000)
    b = run_years(key, x64.params, x64.shape, years=years, chunk_size=5_000)
    diff = a.gross - b.gross
    paired_se = diff.std(ddof=1) / math.sqrt(years)
    mc_se = b.gross.std(ddof=1) / math.sqrt(years)
    assert abs(diff.mean()) <= 3 * paired_se + 1e-9 * abs(b.gross.mean())
    assert abs(diff.mean()) < 0.1 * mc_se
    # Per year, float32 costs agree with float64 to float32 precision (relative 1e-5 allowing
    # for a few roundings per dispute and the quantile's conditioning at sigma ~ 1.5-2).
    assert np.median(np.abs(diff) / np.maximum(b.gross, 1.0)) < 1e-5
    var32, var64 = metrics.risk_measures(a.gross, (0.995,)), metrics.risk_measures(b.gross, (0.995,))
    assert abs(var32["var"]["0.995"] - var64["var"]["0.995"]) <= var64["se"]["var"]["0.995"]


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
