"""Capital: required capital, solvency, Euler allocation against closed forms for normal laws.

Tolerances: 3 Monte Carlo standard errors as reported by the functions under test (their SEs
are what a regulator reads, so the checks also test that they are honest), with fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from leisim.simulator import capital, metrics

RNG_SEED = 20261122


@pytest.mark.parametrize("income", [5.0e7, 4.0e7, 6.5e7])
def test_scr_of_a_normal_net_cost_is_the_var_of_the_one_year_loss(income):
    # Net cost N(mu, sigma), fixed income I: result = I - cost, SCR = VaR_99.5(-result)
    # = mu + sigma z_0.995 - I. An income below the expected cost (I = 4e7 < mu) raises the SCR
    # by the expected loss; above it (6.5e7) lowers it. "VaR minus mean" ignores the income.
    rng = np.random.default_rng(RNG_SEED)
    mu, sigma = 5.0e7, 1.0e7
    loss = rng.normal(mu, sigma, 400_000)
    out = capital.assess(loss, available=3.0e7, income=income, core=1.5e7)
    exact = mu + sigma * stats.norm.ppf(0.995) - income
    assert abs(out["required"] - exact) <= 3 * out["se"]["required"]
    assert abs(out["var_minus_mean"]["required"] - sigma * stats.norm.ppf(0.995)) <= 3 * out["se"]["required"]
    assert abs(out["expected_result"] - (income - mu)) <= 3 * out["se"]["expected_result"]
    assert out["solvency_ratio"] == pytest.approx(3.0e7 / out["required"])
    assert out["core_ratio"] == pytest.approx(1.5e7 / out["required"])
    assert out["meets"] == {"comprehensive_100pct": out["solvency_ratio"] >= 1.0, "core_50pct": out["core_ratio"] >= 0.5}
    # Own funds exhausted: P(cost - income > 3e7) = 1 - Phi((income + 3e7 - mu) / sigma).
    p = 1.0 - stats.norm.cdf((income + 3.0e7 - mu) / sigma)
    assert abs(out["exhaustion_probability"] - p) <= 3 * out["se"]["exhaustion_probability"]


def test_scr_is_floored_at_zero_when_even_the_worst_years_make_a_profit():
    loss = np.random.default_rng(RNG_SEED).uniform(0.0, 1.0e6, 10_000)
    out = capital.assess(loss, available=1e7, income=5.0e6)
    assert out["required"] == 0.0 and out["solvency_ratio"] is None and out["se"]["required"] == 0.0
    assert out["meets"] == {"comprehensive_100pct": True, "core_50pct": True}  # no capital needed: met
    assert out["result_var_0.995"] > 0


def test_a_worse_cost_with_the_same_income_needs_more_capital():
    # What a stress with fixed premiums does: the same years, costs x1.3.
    loss = np.random.default_rng(RNG_SEED).gamma(2.0, 1.0e6, 50_000)
    base = capital.assess(loss, available=2e7, income=2.5e6)
    stressed = capital.assess(1.3 * loss, available=2e7, income=2.5e6)
    assert stressed["required"] > base["required"] and stressed["solvency_ratio"] < base["solvency_ratio"]
    # The old figure moves less: it subtracts the stressed mean that the premium does not carry.
    assert (stressed["required"] - base["required"]
            > stressed["var_minus_mean"]["required"] - base["var_minus_mean"]["required"])


def test_counterparty_charge_adds_to_the_requirement():
    loss = np.random.default_rng(RNG_SEED).gamma(2.0, 1.0e6, 10_000)
    base = capital.assess(loss, available=1e7, income=2.0e6)
    charged = capital.assess(loss, available=1e7, income=2.0e6, charge=2.5e5)
    assert charged["required"] == pytest.approx(base["required"] + 2.5e5)
    assert charged["solvency_ratio"] < base["solvency_ratio"]


def test_euler_allocation_of_a_normal_vector():
    # For jointly normal parts, d TVaR_a / d part_g - mean_g = Cov(X_g, X) / sd(X) * phi(z_a) / (1 - a).
    rng = np.random.default_rng(RNG_SEED)
    cov = np.array([[4.0, 1.0, -0.5], [1.0, 2.0, 0.3], [-0.5, 0.3, 1.0]])
    parts = rng.multivariate_normal([1.0, 2.0, 3.0], cov, 400_000)
    total = parts.sum(axis=1)
    level = 0.99
    out = capital.euler_allocation(total, parts, level)
    sd = math.sqrt(cov.sum())
    exact = cov.sum(axis=1) / sd * stats.norm.pdf(stats.norm.ppf(level)) / (1 - level)
    assert np.all(np.abs(out["contribution"] - exact) <= 3 * out["se"])
    assert out["contribution"].sum() == pytest.approx(out["tvar"] - out["mean"], rel=1e-10)
    assert out["tvar"] == pytest.approx(metrics.tvar(np.sort(total), level), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(parts=arrays(np.float64, (200, 3), elements=st.floats(0.0, 1e6)),
       level=st.sampled_from([0.9, 0.99, 0.995]), required=st.floats(1.0, 1e8))
def test_allocations_add_up_to_the_total(parts, level, required):
    total = parts.sum(axis=1)
    euler = capital.euler_allocation(total, parts, level)
    assert euler["tvar_contribution"].sum() == pytest.approx(metrics.tvar(np.sort(total), level), rel=1e-9, abs=1e-6)
    allocation = capital.allocate(total, parts, ["a", "b", "c"], required, level)
    shares = sum(v["share"] for v in allocation.values())
    if euler["contribution"].sum() > 1e-6 * max(total.max(), 1.0):
        assert sum(v["capital"] for v in allocation.values()) == pytest.approx(required, rel=1e-9)
        assert shares == pytest.approx(1.0, rel=1e-9)
