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


def test_required_capital_of_a_normal_loss():
    # N(mu, sigma): VaR_99.5 - mean = sigma * z_0.995.
    rng = np.random.default_rng(RNG_SEED)
    mu, sigma = 5.0e7, 1.0e7
    loss = rng.normal(mu, sigma, 400_000)
    out = capital.assess(loss, available=3.0e7, core=1.5e7)
    exact = sigma * stats.norm.ppf(0.995)
    assert abs(out["required"] - exact) <= 3 * out["se"]["required"]
    assert out["solvency_ratio"] == pytest.approx(3.0e7 / out["required"])
    assert out["core_ratio"] == pytest.approx(1.5e7 / out["required"])
    assert out["meets"] == {"comprehensive_100pct": True, "core_50pct": True}
    # P(loss - mean > 3e7) = 1 - Phi(3).
    p = 1.0 - stats.norm.cdf(3.0)
    assert abs(out["exhaustion_probability"] - p) <= 3 * out["se"]["exhaustion_probability"]


def test_counterparty_charge_adds_to_the_requirement():
    loss = np.random.default_rng(RNG_SEED).gamma(2.0, 1.0e6, 10_000)
    base = capital.assess(loss, available=1e7)
    charged = capital.assess(loss, available=1e7, charge=2.5e5)
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
