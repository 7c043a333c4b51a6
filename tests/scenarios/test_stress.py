"""Stress testing: the library moves the metrics the way each scenario says, on common random numbers.

Tolerances: a change counts as a move when it exceeds 3 standard errors of the *paired*
difference (influence functions on the same simulated years, scenarios.stress.compare). That
rule fails a correct simulator with probability ~0.1% only if the test has the power for it: the
expected change must be >= 6 SEs, so that 3 SEs is 3 SEs below it. Measured on 20,000 years (seed
11), the weakest checks are the fixed-premium solvency drops (us_patent_surge 7.9 SEs,
legal_cost_inflation 8.5; every other check >= 11.9); SEs shrink as 1/sqrt(years), so the library
runs YEARS = 12,000 years (the weakest expected at ~6.1 SEs). At 2,000 years they were ~2.5 SEs:
a pass was luck, and a change of random stream (issue 18's sampler) failed them.
"""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.scenarios import stress
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import library_names, load_scenario

YEARS = 12_000  # the power the weakest check needs (module docstring)
SEED = 11

# Scenario -> metrics that must rise (+) or fall (-), as its description says.
EXPECTED = {
    "us_patent_surge": {"gross_mean": +1, "net_mean": +1, "reserve_adequacy": -1, "expected_result": -1,
                        "solvency_ratio": -1},
    "schedule_a_wave": {"gross_mean": +1, "net_mean": +1},
    "itc_337_cluster": {"gross_mean": +1, "net_mean": +1, "net_tvar_0.99": +1, "required_capital": +1,
                        "expected_result": -1, "solvency_ratio": -1},
    "upc_expansion": {"gross_mean": +1, "net_mean": +1, "expected_result": -1},
    "legal_cost_inflation": {"gross_mean": +1, "net_mean": +1, "net_tvar_0.99": +1, "reserve_adequacy": -1,
                             "expected_result": -1, "required_capital": +1, "solvency_ratio": -1},
    "cny_depreciation": {"gross_mean": +1, "net_mean": +1, "net_tvar_0.99": +1, "expected_result": -1},
    "reinsurer_default": {"net_mean": +1, "net_tvar_0.99": +1},
    # (its heavier net TVaR shows at 100,000 years, +15 ± 0.9 million, not at the test's few years)
    "trade_war_combined": {"net_mean": +1, "net_loss_ratio": +1, "solvency_ratio": -1},
}


@pytest.mark.slow
def test_an_adverse_stress_with_fixed_premiums_lowers_solvency_by_more_than_3_paired_ses(library_runs):
    # The capital definition the issue asked for: premiums and reinsurance prices stay at the
    # baseline's, so higher frequency and costs must lower the ratio (the old "VaR minus mean"
    # subtracted the stressed mean and let stresses raise it).
    _, table = library_runs
    for name in ("legal_cost_inflation", "us_patent_surge", "trade_war_combined"):
        change = table[name]["change_from_baseline"]["solvency_ratio"]
        assert change["difference"] < -3 * change["se"], (name, change)
        levels = table[name]["metrics"]
        assert levels["solvency_ratio"] < table["baseline"]["metrics"]["solvency_ratio"]
        assert levels["expected_result"] < table["baseline"]["metrics"]["expected_result"]


@pytest.fixture(scope="module")
def portfolio():
    return load_portfolio(default_portfolio_dir())


@pytest.fixture(scope="module")
def library_runs(portfolio):
    # event_xl changes the program, not the model (a stress keeps the baseline's reinsurance, see
    # test_the_library_has_the_named_scenarios): its kernel shape would be compiled for no check here.
    names = ["baseline"] + [n for n in library_names() if n not in ("baseline", "calibrated_fixed", "event_xl")]
    scenarios = [load_scenario(n) for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # One kernel for the whole library (the largest buffers; results unchanged, draws are
        # prefix-stable), so that the library compiles once.
        runs = stress.simulate(scenarios, portfolio, key=jax.random.key(SEED), years=YEARS, chunk_size=2000,
                               share_within=math.inf)
    held = float(runs[0].series["run_off"].mean())
    return runs, stress.compare(runs[0], runs, held_reserve=held)


def test_the_library_has_the_named_scenarios():
    assert set(EXPECTED) | {"baseline"} <= set(library_names())
    for name in EXPECTED:
        scenario = load_scenario(name)
        assert scenario.description and scenario.raw["reinsurance"] == load_scenario("baseline").raw["reinsurance"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_scenario_moves_the_metrics_its_description_says(library_runs, name):
    _, table = library_runs
    change = table[name]["change_from_baseline"]
    for metric, sign in EXPECTED[name].items():
        c = change[metric]
        assert sign * c["difference"] > 3 * c["se"], (name, metric, c)


@pytest.mark.slow
def test_reinsurer_default_leaves_the_gross_alone(library_runs):
    runs, _ = library_runs
    by_name = {r.name: r for r in runs}
    np.testing.assert_array_equal(by_name["reinsurer_default"].series["gross"], by_name["baseline"].series["gross"])


@pytest.mark.slow
def test_common_random_numbers(library_runs, portfolio):
    runs, table = library_runs
    base = runs[0]
    # A multiplier of 1.0 reproduces the baseline year by year.
    same = stress.with_multiplier(base.scenario, "frequency", "US", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = stress.simulate([base.scenario, same], portfolio, key=jax.random.key(SEED), years=500, chunk_size=500)
    np.testing.assert_array_equal(again[1].table.gross, again[0].table.gross)
    np.testing.assert_array_equal(again[1].series["net"], again[0].series["net"])
    np.testing.assert_array_equal(again[0].table.gross, base.table.gross[:500])
    # The SE of a difference is far below that of either scenario alone.
    for name in ("us_patent_surge", "legal_cost_inflation"):
        c = table[name]["change_from_baseline"]["net_mean"]
        assert c["se"] < 0.5 * c["se_if_independent"], c


@pytest.mark.slow
def test_reverse_stress_lands_on_its_target(portfolio):
    # A fixed-parameter scenario keeps this fast; the target is 20% above today's net TVaR 99.
    base = load_scenario("calibrated_fixed")
    key = jax.random.key(SEED)
    years = 3000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        today = stress.simulate([base], portfolio, key=key, years=years, chunk_size=1000)[0]
        target = 1.2 * stress.evaluate(today, held_reserve=None)["net_tvar_0.99"]
        found = stress.reverse(base, portfolio, kind="severity", key="*", target="net_tvar_0.99", value=target,
                               jax_key=key, years=years, chunk_size=1000, tolerance=1e-3)
        assert found["found"] and found["multiplier"] > 1.0
        plain = stress.with_multiplier(base, "severity", "*", found["multiplier"])
        again = stress.simulate([plain], portfolio, key=key, years=years, chunk_size=1000)[0]
    value = stress.evaluate(again, held_reserve=None)["net_tvar_0.99"]
    assert value >= target  # breached at the multiplier found ...
    lower = stress.with_multiplier(base, "severity", "*", found["bracket"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        below = stress.evaluate(stress.simulate([lower], portfolio, key=key, years=years, chunk_size=1000)[0],
                                held_reserve=None)["net_tvar_0.99"]
    assert below < target  # ... and not just below it
    assert abs(value - target) <= 3 * found["metric_se"]  # lands within its stated uncertainty
    assert found["multiplier_se"] is not None and found["multiplier_se"] > 0


@pytest.mark.slow
def test_reverse_stress_on_legal_costs_lowers_solvency_to_a_target_at_a_finite_multiplier(portfolio):
    # On the one-year-result SCR a cost shock with fixed premiums lowers the ratio (the old "VaR
    # minus mean" never moved it, even at x256). Per-dispute and aggregate limits cap what a cost
    # shock can do: the ratio levels off near 1.0 (x256 on 20,000 years: 0.996, 1.005, 0.998 over
    # seeds 11, 1, 2), so 100% is not a target a cost shock reliably reaches; 120% is (the baseline
    # is ~1.52, the plateau ~1.00, each ~0.03 SE at 2,000 years).
    base = load_scenario("baseline")
    key = jax.random.key(SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = stress.reverse(base, portfolio, kind="severity", key="*", target="solvency_ratio", value=1.2,
                               jax_key=key, years=2000, chunk_size=2000, tolerance=0.03)
    assert found["found"] and not found.get("already_breached") and 1.0 < found["multiplier"] < 256.0, found
    assert found["metric"] <= 1.2 and found["multiplier_se"] is not None
    # The search prices reinsurance as the stress table does (at the unshocked scenario's prices):
    # the scenario at the multiplier found, run as a stress set, gives the same ratio.
    plain = stress.with_multiplier(base, "severity", "*", found["multiplier"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = stress.simulate([base, plain], portfolio, key=key, years=2000, chunk_size=2000)
    assert stress.evaluate(runs[1], held_reserve=None)["solvency_ratio"] == pytest.approx(found["metric"], rel=1e-9)


def test_a_scenario_without_reinsurance_is_stressed_and_its_capital_is_the_summarys(portfolio):
    # No contracts: the stress table must not read recoveries that do not exist, and its capital
    # figures are summary.json's (results.capital_block) for the same years.
    from leisim.simulator import results

    base = load_scenario("calibrated_fixed").updated({"reinsurance": []}, name="no reinsurance")
    heavier = base.updated({"shocks": {"severity": {"*": 3.0}}}, name="costs x3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = stress.simulate([base, heavier], portfolio, key=jax.random.key(SEED), years=500, chunk_size=500)
    table = stress.compare(runs[0], runs, held_reserve=None)
    stressed = table["costs x3"]["metrics"]
    assert stressed["net_var_0.995"] > table["no reinsurance"]["metrics"]["net_var_0.995"]
    assert stressed["required_capital"] > 0
    summary = results.summarize(runs[1].table, runs[1].composition, provenance_attrs={"scenario": "x", "seed": SEED},
                                capital_spec=heavier.capital_spec)
    for key, summary_key in (("required_capital", "required"), ("solvency_ratio", "solvency_ratio"),
                             ("exhaustion_probability", "exhaustion_probability")):
        assert stressed[key] == summary["capital"][summary_key], key
