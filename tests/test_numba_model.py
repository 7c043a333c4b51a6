"""benchmarks/numba_model.py (the plain Numba speed peer) simulates the model of benchmarks/reference_model.py.

Two independent samples of the default job (baseline scenario, embedded posterior and portfolio): each
statistic's difference is held to 4 combined standard errors, sqrt(SE_numba^2 + SE_reference^2), so a
correct pair fails one check with probability ~6e-5.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib

import numpy as np
import pytest

pytest.importorskip("numba")

from leisim.benchmarks import numba_model, reference_model  # noqa: E402

pytestmark = pytest.mark.slow

YEARS = 20_000
COMBINED_SES = 4.0


@pytest.fixture(scope="module")
def inputs():
    with open(reference_model.DEFAULT_SCENARIO, "rb") as handle:
        scenario = tomllib.load(handle)
    return reference_model.load_inputs(posterior_path=reference_model.DEFAULT_POSTERIOR,
                                       portfolio_dir=reference_model.DEFAULT_PORTFOLIO, scenario=scenario)


@pytest.fixture(scope="module")
def runs(inputs):
    return reference_model.simulate(inputs, years=YEARS, seed=1), numba_model.simulate(inputs, years=YEARS, seed=2)


def test_the_outputs_are_those_of_the_reference(runs):
    ref, nb = runs
    assert set(nb) == set(ref)
    for key in ("gross", "net", "disputes", "gross_by_country", "disputes_by_country"):
        assert nb[key].shape == ref[key].shape and nb[key].dtype == ref[key].dtype, key
    assert np.allclose(nb["gross_by_country"].sum(axis=1), nb["gross"])
    assert (nb["disputes_by_country"].sum(axis=1) == nb["disputes"]).all()
    assert (nb["net"] <= nb["gross"] + 1e-6).all() and (nb["net"] >= 0).all()
    summary = reference_model.summarize(nb)
    assert summary["premium"] == ref["premium"] and set(summary["gross_by_country"]) == set(ref["countries"])


def test_means_agree_with_the_reference(runs):
    # Mean of n years: SE = sd / sqrt(n) per run; the two runs are independent, so the SE of the
    # difference is hypot(SE_reference, SE_numba). Not ground-up: its cost log-sd reaches ~3.4 in some
    # posterior samples, so its sample SE is itself too noisy to hold a difference to.
    ref, nb = runs
    failures = []
    for key in ("gross", "net", "disputes", "pay_before_aggregate"):
        a, b = ref[key].astype(float), nb[key].astype(float)
        se = math.hypot(a.std(ddof=1) / math.sqrt(a.size), b.std(ddof=1) / math.sqrt(b.size))
        if abs(a.mean() - b.mean()) > COMBINED_SES * se:
            failures.append(f"{key}: reference {a.mean():.6g}, numba {b.mean():.6g}, combined SE {se:.3g}")
    assert not failures, "\n".join(failures)


def _quantile_se(x: np.ndarray, q: float, width: float = 0.01) -> float:
    """Order-statistic SE of the empirical q-quantile: sqrt(q (1 - q) / n) / f(x_q).

    The sample q-quantile is asymptotically normal with variance q (1 - q) / (n f(x_q)^2) (f the density
    at the true quantile). f is estimated by the histogram bin between the sample quantiles at q -+ width,
    which holds probability 2 width: f ~ 2 width / (x_{q + width} - x_{q - width})."""
    lo, hi = np.quantile(x, [q - width, q + width])
    density = 2 * width / (hi - lo)
    return math.sqrt(q * (1 - q) / x.size) / density


@pytest.mark.parametrize("key", ["gross", "net"])
def test_the_90_percent_quantile_agrees_with_the_reference(runs, key):
    ref, nb = runs
    q = 0.9
    a, b = ref[key], nb[key]
    se = math.hypot(_quantile_se(a, q), _quantile_se(b, q))
    diff = np.quantile(a, q) - np.quantile(b, q)
    assert abs(diff) <= COMBINED_SES * se, (key, np.quantile(a, q), np.quantile(b, q), se)


def _closed_form_failures(out: dict, inputs) -> list[str]:
    failures = []
    for key, exact in (("disputes", reference_model.expected_disputes(inputs)),
                       ("pay_before_aggregate", reference_model.expected_pay_before_aggregate(inputs))):
        x = out[key].astype(float)
        se = x.std(ddof=1) / math.sqrt(x.size)
        if abs(x.mean() - exact) > COMBINED_SES * se:
            failures.append(f"{key}: numba {x.mean():.6g}, exact {exact:.6g}, SE {se:.3g}")
    return failures


def test_the_means_are_the_closed_forms(runs, inputs):
    # Exact over the D posterior samples (a run of a multiple of D years): counts, and the per-dispute
    # severity chain (stage mix, cost, FX, fee shifting, deductible, coinsurance, per-dispute limit).
    failures = _closed_form_failures(runs[1], inputs)
    assert not failures, "\n".join(failures)


def test_the_shocks_are_applied():
    # A stress of the kind tests/test_reference.py runs: US frequency x2, costs +30%, USD +10%.
    with open(reference_model.DEFAULT_SCENARIO, "rb") as handle:
        scenario = tomllib.load(handle)
    scenario["shocks"] = {"frequency": {"US": 2.0}, "severity": {"*": 1.3}, "fx": {"USD": 1.1}}
    inputs = reference_model.load_inputs(posterior_path=reference_model.DEFAULT_POSTERIOR,
                                         portfolio_dir=reference_model.DEFAULT_PORTFOLIO, scenario=scenario)
    failures = _closed_form_failures(numba_model.simulate(inputs, years=10_000, seed=3), inputs)
    assert not failures, "\n".join(failures)


def test_a_seed_gives_the_same_years_single_thread_or_parallel(inputs):
    one = numba_model.simulate(inputs, years=3000, seed=7, block=1000)
    two = numba_model.simulate(inputs, years=3000, seed=7, block=1000)
    par = numba_model.simulate(inputs, years=3000, seed=7, block=1000, parallel=True)
    other = numba_model.simulate(inputs, years=3000, seed=8, block=1000)
    for key in ("gross", "net", "disputes", "gross_by_country", "disputes_by_country"):
        assert np.array_equal(one[key], two[key]), key
        assert np.array_equal(one[key], par[key]), key
    assert not np.array_equal(one["gross"], other["gross"])


def test_no_campaigns_and_no_reinsurance(inputs):
    # The empty campaign and contract tables: net is gross, and the counts are the ordinary ones.
    bare = dataclasses.replace(inputs, campaigns=[], reinsurance=[])
    out = numba_model.simulate(bare, years=2000, seed=5)
    assert np.array_equal(out["net"], out["gross"])
    d = out["disputes"].astype(float)
    assert abs(d.mean() - reference_model.expected_disputes(bare)) <= COMBINED_SES * d.std(ddof=1) / math.sqrt(d.size)
    assert reference_model.expected_disputes(bare) < reference_model.expected_disputes(inputs) - 1
