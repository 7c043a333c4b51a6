"""The validation pack a supervisor asks for (issue 20): model drift against a factor charge and the
IFRS 17 risk adjustment, in summary.json and configurable from the scenario."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leisim.errors import InputError
from leisim.scenarios.schema import load_scenario
from leisim.simulator import capital


def test_factor_charge_is_the_standard_formula():
    """Solvency II standard formula, legal expenses (Delegated Regulation 2015/35 Annex II): 3 sigma V, premium
    and reserve risk correlated 0.5, computed by hand."""
    out = capital.factor_charge(100.0, 40.0)
    p, r = 0.083 * 100.0, 0.055 * 40.0
    assert out["premium"] == pytest.approx(3 * p) and out["reserve"] == pytest.approx(3 * r)
    assert out["combined"] == pytest.approx(3 * math.sqrt(p * p + p * r + r * r))
    # Fully correlated would add up; uncorrelated would be the quadrature sum: the combination lies between.
    assert 3 * math.hypot(p, r) < out["combined"] < 3 * (p + r)


def test_drift_ratios_follow_the_spec():
    spec = capital.CapitalSpec.of({"factor_premium_sd": 0.1, "factor_reserve_sd": 0.2, "factor_multiplier": 2.0})
    out = capital.drift(30.0, 10.0, premium_volume=100.0, reserve_volume=50.0, spec=spec)
    assert out["factor"]["premium"] == pytest.approx(20.0) and out["factor"]["reserve"] == pytest.approx(20.0)
    assert out["ratio"]["premium"] == pytest.approx(1.5) and out["ratio"]["reserve"] == pytest.approx(0.5)
    assert out["internal"]["combined"] == pytest.approx(math.sqrt(900 + 300 + 100))
    assert out["ratio"]["combined"] == pytest.approx(out["internal"]["combined"] / out["factor"]["combined"])
    assert capital.drift(1.0, 1.0, premium_volume=0.0, reserve_volume=0.0)["ratio"]["premium"] is None


@pytest.mark.parametrize(("table", "key", "value"), [
    ("capital", "factor_premium_sd", 1.5), ("capital", "factor_multiplier", 0.0), ("capital", "factor_reserve_sd", "x"),
    ("reserves", "risk_adjustment_confidence", 0.3), ("reserves", "cost_of_capital_rate", -0.1),
    ("reserves", "discount_rate", 2.0),
])
def test_bad_settings_name_the_field(tmp_path, table, key, value):
    path = tmp_path / "bad.toml"
    literal = f'"{value}"' if isinstance(value, str) else repr(value)
    path.write_text(f'name = "bad"\nextends = "baseline"\n[{table}]\n{key} = {literal}\n')
    with pytest.raises(InputError, match=f"{table}.{key}"):
        load_scenario(path)


def test_good_settings_load(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text('name = "good"\nextends = "baseline"\n[capital]\nfactor_premium_sd = 0.1\n'
                    '[reserves]\nrisk_adjustment_confidence = 0.9\ncost_of_capital_rate = 0.05\n')
    scenario = load_scenario(path)
    assert scenario.capital_spec.factor_premium_sd == 0.1
    assert scenario.reserves["risk_adjustment_confidence"] == 0.9


# --------------------------------------------------------------------------------------------------
# Analysis of change (item 3): calibrated_fixed -> a variant with three changes, 2,000 years.


@pytest.fixture(scope="module")
def changed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attribution")
    path = folder / "changed.toml"
    path.write_text('name = "changed"\nextends = "calibrated_fixed"\n[shocks]\nfrequency = { US = 1.5 }\n'
                    'severity = { "*" = 1.2 }\n[capital]\navailable_cny = 9.0e7\n')
    return load_scenario(path)


@pytest.fixture(scope="module")
def document(changed):
    import jax

    from leisim.app import load_portfolio
    from leisim.scenarios import attribution

    return attribution.attribute(load_scenario("calibrated_fixed"), changed, load_portfolio(None),
                                 key=jax.random.key(5), years=2000, chunk_size=2000,
                                 metrics=("required_capital", "solvency_ratio", "gross_mean", "expected_result"))


@pytest.mark.slow
def test_steps_add_up_and_unchanged_steps_are_zero(document):
    # calibrated_fixed holds no own funds: its solvency ratio is undefined, so is the ratio's attribution.
    assert document["metrics"]["solvency_ratio"] is None
    for metric, block in document["metrics"].items():
        if block is None:
            continue
        assert sum(r["contribution"] for r in block["steps"]) == pytest.approx(block["total"], abs=1e-9), metric
        changed_steps = {r["step"] for r in block["steps"] if r["changed"]}
        assert changed_steps == {"frequency", "severity", "other"}, metric
        assert all(r["contribution"] == 0.0 for r in block["steps"] if not r["changed"])
    # The own-funds change is "other" alone: it moves neither the SCR nor the expected result.
    for metric in ("required_capital", "expected_result"):
        steps = {r["step"]: r for r in document["metrics"][metric]["steps"]}
        assert steps["other"]["contribution"] == 0.0
    expected = {r["step"]: r for r in document["metrics"]["expected_result"]["steps"]}
    assert expected["frequency"]["contribution"] < -4 * expected["frequency"]["se"]  # more disputes, worse result


@pytest.mark.slow
def test_each_step_is_the_stress_difference_of_its_scenarios(changed, document):
    """Independently of the attribution's bookkeeping: the frequency step alone, run as a stress scenario
    against calibrated_fixed on the same key, changes gross_mean by the step's contribution with the same
    paired SE (stress.compare)."""
    import jax

    from leisim.app import load_portfolio
    from leisim.scenarios import stress

    base = load_scenario("calibrated_fixed")
    only_frequency = base.updated({"shocks": {"frequency": {"US": 1.5}}}, name="frequency only")
    runs = stress.simulate([base, only_frequency], load_portfolio(None), key=jax.random.key(5), years=2000,
                           chunk_size=2000, share_within=math.inf)
    change = stress.compare(runs[0], runs, held_reserve=None)["frequency only"]["change_from_baseline"]
    step = {r["step"]: r for r in document["metrics"]["gross_mean"]["steps"]}["frequency"]
    assert step["contribution"] == pytest.approx(change["gross_mean"]["difference"], rel=1e-9)
    assert step["se"] == pytest.approx(change["gross_mean"]["se"], rel=1e-9)
    # More US disputes raise the gross mean, by more than 4 paired SEs.
    assert step["contribution"] > 4 * step["se"]


def test_order_must_name_every_step_once(changed):
    from leisim.scenarios import attribution

    base = load_scenario("calibrated_fixed")
    with pytest.raises(InputError, match="every step"):
        attribution.steps(base, changed, ("frequency", "severity"))
    with pytest.raises(InputError, match="each step once"):
        attribution.steps(base, changed, ("frequency", "frequency"))
    order = ("severity", "frequency", "exposure", "fx", "reinsurance", "default", "parameters", "other")
    plan = attribution.steps(base, changed, order)
    assert [name for name, _ in plan] == list(order)
    assert plan[-1][1].sha256 != base.sha256
    final = [s for _, s in plan if s is not None][-1]
    assert {k: v for k, v in final.raw.items() if k not in ("name", "description", "extends")} == \
        {k: v for k, v in changed.raw.items() if k not in ("name", "description", "extends")}


@pytest.mark.slow
def test_attribute_command(changed, tmp_path):
    import json

    from click.testing import CliRunner

    from leisim.cli import main

    out = tmp_path / "att"
    result = CliRunner().invoke(main, ["attribute", "calibrated_fixed", changed.source, "--years", "2000",
                                       "--chunk-size", "2000", "--seed", "5", "--out", str(out), "--json", "-q"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "attribution.json").read_text())
    assert (out / "attribution.png").stat().st_size > 10_000
    assert doc["order"] == ["exposure", "frequency", "severity", "fx", "reinsurance", "default", "parameters", "other"]
    bad = CliRunner().invoke(main, ["attribute", "calibrated_fixed", changed.source, "--metric", "sharpe",
                                    "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--metric" in bad.stderr and not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------------------------------
# Backtest against experience (item 1).


def test_backtest_calibration_is_the_binomial_floor_and_a_pit_test():
    from scipy import stats

    from leisim.app import backtest_calibration

    inside = [True] * 27 + [False] * 3  # 30 held-out counts, 27 inside their 90% intervals
    pit = list(np.linspace(0.01, 0.99, 30))
    checks = {"disputes_by_country_and_type": {"pit": pit, "intervals": {"0.5": {"inside": inside[:20] + [False] * 10},
                                                                         "0.9": {"inside": inside}}}}
    out = backtest_calibration(checks)
    assert (out["0.9"]["n"], out["0.9"]["covered"]) == (30, 27)
    assert out["0.9"]["lower_bound"] == stats.binom.ppf(0.001, 30, 0.9) and out["0.9"]["pass"]
    assert out["pit"]["pass"] and out["pit"]["ks_pvalue"] == pytest.approx(stats.kstest(pit, "uniform").pvalue)
    too_narrow = {"disputes_by_year": {"pit": [0.001] * 15 + [0.999] * 15,
                                       "intervals": {"0.5": {"inside": [False] * 30}, "0.9": {"inside": [False] * 30}}}}
    out = backtest_calibration(too_narrow)
    assert not out["0.9"]["pass"] and not out["0.5"]["pass"] and not out["pit"]["pass"]


@pytest.mark.slow
def test_backtest_on_the_shipped_history(tmp_path):
    """The shipped synthetic history is drawn from the model (NB1 counts, campaigns): held out its last two
    years, the fitted model's held-out counts are covered at least as often as the binomial floor allows, their
    PIT values pass the uniformity test, and every check passes."""
    from leisim import app

    doc = app.backtest_to_folder(tmp_path / "bt", None, holdout_years=2, seed=1, years=1000, chains=1, warmup=150,
                                 samples=150)
    assert doc["holdout_years"] == [2024, 2025] and doc["training_years"][1] == 2023
    assert (tmp_path / "bt" / "backtest.json").is_file() and (tmp_path / "bt" / "backtest.png").is_file()
    assert all(block["pass"] is not False for block in doc["calibration"].values()), doc["calibration"]
    assert doc["pass"], {k: v["pass"] for k, v in doc["checks"].items()}


# --------------------------------------------------------------------------------------------------
# Simulation-based calibration (item 2), at a size CI can afford: the shipped history's first two years
# as the design, 30 replicates (~3-7 minutes on 2 cores).


@pytest.mark.slow
def test_sbc_ranks_are_uniform(tmp_path):
    import json

    from click.testing import CliRunner

    from leisim.cli import main

    out = tmp_path / "sbc"
    result = CliRunner().invoke(main, ["sbc", "--replicates", "30", "--design-years", "2", "--warmup", "100",
                                       "--samples", "120", "--seed", "3", "--out", str(out), "--json", "-q"])
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "sbc.json").read_text()) and (out / "sbc.png").is_file()
    for name, block in doc["parameters"].items():
        ranks = np.array(block["ranks"])
        assert ranks.min() >= 0 and ranks.max() <= doc["posterior_draws"], name
        assert sum(block["histogram"]) == doc["replicates"]
    assert result.exit_code == 0 and doc["pass"], {k: v["p_value"] for k, v in doc["parameters"].items()}


def test_sbc_detects_a_miscalibrated_posterior():
    """The rank test itself: ranks of truths drawn from N(0, 1) among draws from N(0.8, 1) (a biased
    posterior) or N(0, 0.5) (an overconfident one) fail; among draws from N(0, 1) they pass."""
    from leisim.models.sbc import rank_test

    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    for shift, scale, expect in ((0.0, 1.0, True), (0.8, 1.0, False), (0.0, 0.5, False)):
        draws = rng.normal(shift, scale, size=(200, 40))
        assert rank_test((draws < truth[:, None]).sum(axis=1), 40, 6)["pass"] == expect, (shift, scale)


def test_report_validation_section_shows_backtest_and_sbc():
    from leisim import report

    backtest = {"training_years": [2019, 2023], "holdout_years": [2024, 2025], "history": "h", "frequency_family":
                "poisson", "checks": {"disputes_by_year": {"pass": False, "rule": "r1"}},
                "calibration": {"0.9": {"covered": 10, "n": 30, "lower_bound": 22, "upper_bound": 30, "pass": False,
                                        "rule": "r2"}}}
    sbc = {"replicates": 30, "posterior_draws": 30, "rule": "chi-square", "parameters": {
        "mu_type[0]": {"histogram": [5, 5, 5, 5, 5, 5], "p_value": 1.0, "pass": True}}}
    html = "".join(report._validation({}, {}, None, backtest, sbc))
    assert "Backtest against experience" in html and "pooled 90% coverage: 10 of 30" in html
    assert html.count("FAIL") == 2 and "Simulation-based calibration" in html and "mu_type[0]" in html
