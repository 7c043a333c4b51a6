"""The validation pack a supervisor asks for (issue 20): model drift against a factor charge and the
IFRS 17 risk adjustment, in summary.json and configurable from the scenario."""

from __future__ import annotations

import math

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
