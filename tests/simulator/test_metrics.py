"""Risk measures: definitions on hand-checked samples, accuracy against the normal law, and
calibration of the stated standard errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from leisim.simulator import metrics


def test_var_and_tvar_on_a_hand_checked_sample():
    losses = np.arange(1.0, 11.0)  # 1..10, each with probability 0.1
    ordered = np.sort(losses)
    assert metrics.var(ordered, 0.9) == 9.0
    assert metrics.tvar(ordered, 0.9) == pytest.approx(10.0)
    # 85%: the worst 15% is 10 (weight 0.10) and half of 9 (weight 0.05).
    assert metrics.var(ordered, 0.85) == 9.0
    assert metrics.tvar(ordered, 0.85) == pytest.approx((0.10 * 10 + 0.05 * 9) / 0.15)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5])
def test_meaningless_levels_are_refused(level):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        metrics.var(np.arange(10.0), level)


def test_measures_match_the_normal_law():
    # 1e6 standard normal draws: each estimate within 3 of its stated standard errors.
    x = np.random.default_rng(7).standard_normal(1_000_000)
    out = metrics.risk_measures(x)
    assert abs(out["mean"]) < 3 * out["se"]["mean"]
    for level in metrics.LEVELS:
        label = f"{level:g}"
        q = stats.norm.ppf(level)
        es = stats.norm.pdf(q) / (1 - level)
        assert abs(out["var"][label] - q) < 3 * out["se"]["var"][label]
        assert abs(out["tvar"][label] - es) < 3 * out["se"]["tvar"][label]


@pytest.mark.slow
def test_standard_errors_are_calibrated():
    # Over 400 replications of 5,000 lognormal years, the spread of each estimate must agree
    # with the average stated SE. The ratio's own sampling error with 400 replications is
    # ~1/sqrt(2 * 400) = 3.5%, so 20% leaves room for the asymptotic SE's small-sample bias.
    rng = np.random.default_rng(11)
    samples = np.exp(rng.standard_normal((400, 5000)))
    for level in (0.99, 0.995):
        label = f"{level:g}"
        runs = [metrics.risk_measures(s, (level,)) for s in samples]
        for name in ("var", "tvar"):
            spread = np.std([r[name][label] for r in runs], ddof=1)
            stated = np.mean([r["se"][name][label] for r in runs])
            assert stated / spread == pytest.approx(1.0, abs=0.2), (name, level, stated, spread)


def test_exceedance_curve_reads_quantiles():
    losses = np.arange(1.0, 10_001.0)
    curve = metrics.exceedance_curve(losses)
    assert curve["return_period"][-1] == 1000  # only periods with >= 10 expected exceedances
    i = curve["return_period"].index(100)
    assert curve["loss"][i] == 9900.0  # exceeded by 100 of 10,000 years


def test_tail_contributions_add_up_to_tvar():
    rng = np.random.default_rng(3)
    parts = rng.lognormal(size=(100_000, 3))  # no ties, so no straddling year
    total = parts.sum(axis=1)
    level = 0.99
    contributions = metrics.tail_contributions(total, parts, level)
    assert contributions.sum() == pytest.approx(metrics.tvar(np.sort(total), level), rel=1e-3)


def test_parameter_variance_share_recovers_a_known_split():
    # X = mu_d + eps with mu_d ~ N(0, 2^2), eps ~ N(0, 1): the parameter share is 4 / 5. With 500
    # groups the between-variance estimate has sd ~ 4 sqrt(2 / 499) = 0.25, a share sd ~ 0.01;
    # the tolerance is 4 of those. Unequal group sizes exercise n0.
    rng = np.random.default_rng(11)
    draw = rng.integers(0, 500, 20_000)
    losses = rng.normal(0, 2.0, 500)[draw] + rng.normal(0, 1.0, draw.size)
    split = metrics.parameter_variance_share(losses, draw)
    assert split["draws"] == 500
    assert abs(split["parameter_share"] - 0.8) < 0.04
    assert abs(split["process_variance"] - 1.0) < 0.04
