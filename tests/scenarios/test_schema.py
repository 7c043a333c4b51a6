"""Scenario files: the library validates; each kind of bad file gets a message that says how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from leisim.errors import InputError
from leisim.scenarios.schema import library_names, load_scenario

BASE = """
name = "mine"
[model]
parameters = "fixed"
[[model.cells]]
country = "US"
dispute_type = "patent"
frequency = { distribution = "poisson", rate = 0.01 }
severity = { distribution = "lognormal", median_cny = 1e6, sigma = 1.0 }
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", library_names())
def test_library_scenarios_validate(name):
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description


def test_extends_merges_tables_and_replaces_arrays(tmp_path):
    write(tmp_path, "parent.toml", BASE + '\n[shocks]\nfrequency = { US = 2.0 }\n[capital]\navailable_cny = 5e7\n')
    child = write(tmp_path, "child.toml", 'name = "child"\nextends = "parent.toml"\n[shocks]\nseverity = { "*" = 1.3 }\n')
    scenario = load_scenario(child)
    assert scenario.name == "child"
    assert scenario.shocks == {"frequency": {"US": 2.0}, "severity": {"*": 1.3}}
    assert scenario.capital_available_cny == 5e7
    assert len(scenario.cells) == 1


def test_extends_a_library_scenario(tmp_path):
    child = write(tmp_path, "c.toml", 'name = "c"\nextends = "calibrated_fixed"\n[shocks]\nfrequency = { US = 2.0 }\n')
    scenario = load_scenario(child)
    assert scenario.parameters == "fixed" and len(scenario.cells) > 5
    assert scenario.sha256 != load_scenario("calibrated_fixed").sha256
    assert load_scenario("baseline").parameters == "posterior"


@pytest.mark.parametrize(
    "text, field, fragment",
    [
        (BASE + "\n[capitl]\navailable_cny = 1\n", "capitl", "Did you mean 'capital'"),
        (BASE.replace("rate = 0.01", "rate = -0.01"), "model.cells[0].frequency.rate", "must be >= 0"),
        (BASE.replace("rate = 0.01", 'rate = "high"'), "model.cells[0].frequency.rate", "must be a number"),
        (BASE.replace('country = "US"', 'country = "EU"'), "model.cells[0].country", "Valid choices"),
        (BASE.replace('"poisson"', '"negative_binomial"'), "model.cells[0].frequency.concentration", "needs concentration"),
        (BASE.replace("sigma = 1.0", "sigmaa = 1.0"), "model.cells[0].severity.sigmaa", "Did you mean 'sigma'"),
        (BASE + '\n[[reinsurance]]\ntype = "per_dispute_xl"\nretention_cny = 1e6\nlimit_cny = -4e6\n',
         "reinsurance[0].limit_cny", "must be > 0"),
        (BASE + '\n[[reinsurance]]\ntype = "quota_share"\ncession = 1.3\n', "reinsurance[0].cession", "<= 1"),
        (BASE + "\n[shocks]\nfrequency = { US = -2.0 }\n", "shocks.frequency.US", "must be >= 0"),
        ("years = 0\n" + BASE, "years", "must be >= 1"),
        (BASE + "\n[shocks]\nfrequncy = { US = 2.0 }\n", "shocks.frequncy", "Did you mean 'frequency'"),
        (BASE + "\n[shocks]\nfrequency_by_type = { patents = 2.0 }\n", "shocks.frequency_by_type.patents",
         "Did you mean 'patent'"),
        (BASE + "\n[shocks]\nseverity_by_stage = { trial = -1.0 }\n", "shocks.severity_by_stage.trial", "must be >= 0"),
        (BASE + "\n[shocks]\ncampaigns = { schedule_a = { rate = \"x3\" } }\n", "shocks.campaigns.schedule_a.rate",
         "must be a number"),
        (BASE + "\n[shocks]\nyear_factor = -1\n", "shocks.year_factor", "must be >= 0"),
        (BASE + "\n[shocks]\nreinsurer_default = { probability = 1.5 }\n", "shocks.reinsurer_default.probability",
         "<= 1"),
        (BASE + "\n[shocks]\nsubsidy_withdrawal = { lapse_elasticty = 0.5 }\n", "shocks.subsidy_withdrawal.lapse_elasticty",
         "Did you mean 'lapse_elasticity'"),
    ],
    ids=["unknown-key", "negative-rate", "wrong-type", "unknown-country", "nb-without-k", "unknown-parameter",
         "negative-limit", "cession-above-1", "negative-shock", "zero-years", "unknown-shock", "unknown-type",
         "negative-stage", "campaign-wrong-type", "negative-year-factor", "default-above-1", "subsidy-key"],
)
def test_bad_values_name_the_file_and_field(tmp_path, text, field, fragment):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(InputError) as err:
        load_scenario(path)
    message = str(err.value)
    assert str(path) in message and field in message and fragment in message, message


def test_malformed_toml(tmp_path):
    path = write(tmp_path, "bad.toml", 'name = "x"\n[model\n')
    with pytest.raises(InputError, match="not valid TOML"):
        load_scenario(path)


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path, "a.toml", 'name = "a"\nextends = "b.toml"\n')
    write(tmp_path, "b.toml", 'name = "b"\nextends = "a.toml"\n')
    with pytest.raises(InputError, match="extends cycle"):
        load_scenario(tmp_path / "a.toml")


def test_missing_extends_file(tmp_path):
    path = write(tmp_path, "a.toml", 'name = "a"\nextends = "nowhere.toml"\n')
    with pytest.raises(InputError, match="scenario file not found") as err:
        load_scenario(path)
    assert "extends" in str(err.value)


def test_unknown_library_name_lists_the_choices():
    with pytest.raises(InputError, match="baseline"):
        load_scenario("baselin")


def test_reinsurance_tables_are_parsed_once_into_typed_contracts():
    import math

    from leisim.simulator.reinsurance import ContractSpec

    scenario = load_scenario("baseline").updated({"reinsurance": [
        {"type": "quota_share", "cession": 0.25, "ceding_commission": 0.3},
        {"type": "per_dispute_xl", "retention_cny": 2e6, "limit_cny": 6e6, "reinstatements": 1,
         "rate_on_line": 0.1, "reinsurer": "R"},
        {"type": "per_dispute_xl", "retention_cny": 8e6, "limit_cny": 4e6},
        {"type": "stop_loss", "attachment_loss_ratio": 1.3, "limit_loss_ratio": 0.5, "loading": 0.4, "name": "SL"},
    ]})
    qs, xl, xl_free, sl = scenario.contracts
    assert all(isinstance(c, ContractSpec) for c in scenario.contracts)
    assert (qs.kind, qs.cession, qs.ceding_commission, qs.name, qs.reinsurer) == ("quota_share", 0.25, 0.3,
                                                                                 "1: quota_share", "#0")
    assert (xl.reinstatements, xl.rate_on_line, xl.reinsurer) == (1.0, 0.1, "R")
    assert math.isinf(xl_free.reinstatements) and xl_free.premium_cny is None  # "unlimited" by default
    assert (sl.attachment_loss_ratio, sl.limit_loss_ratio, sl.loading, sl.name) == (1.3, 0.5, 0.4, "SL")
    premium = 5e7  # resolved on a portfolio: loss ratios to CNY, premiums fixed or left to pricing
    resolved = [c.resolve(premium) for c in scenario.contracts]
    assert (resolved[0].lower, resolved[0].premium) == (0.25, 0.25 * premium)
    assert (resolved[1].lower, resolved[1].limit, resolved[1].premium, resolved[1].cover) == (2e6, 6e6, 6e5, 12e6)
    assert resolved[2].premium is None and math.isinf(resolved[2].cover)
    assert (resolved[3].lower, resolved[3].limit, resolved[3].premium) == (1.3 * premium, 0.5 * premium, None)
    # Frozen: a variant is a new validated scenario, never an edited contract.
    with pytest.raises(AttributeError):
        qs.cession = 0.5  # type: ignore[misc]


def test_shocks_are_parsed_once_into_a_typed_read_only_table():
    from leisim.scenarios.shocks import Shocks
    from leisim.simulator.reinsurance import contracts_from_scenario

    scenario = load_scenario("baseline").updated({"shocks": {
        "frequency": {"US": 2.0, "*": 1.5}, "frequency_by_type": {"patent": 1.2},
        "frequency_by_country_and_type": {"DE": {"trademark": 3.0}}, "severity": {"*": 1.1},
        "severity_by_stage": {"trial": 1.4}, "fx": {"USD": 1.25}, "year_factor": 2.0,
        "campaigns": {"schedule_a": {"rate": 4.0}}, "subsidy_withdrawal": {"adverse_selection": 1.3},
        "reinsurer_default": {"probability": 0.2},
    }})
    shocks = scenario.shocks_spec
    assert isinstance(shocks, Shocks) and Shocks.of(shocks) is shocks
    # Each multiplier is the product the [shocks] documentation gives (scenarios/shocks.py).
    assert shocks.frequency_multiplier("US", "patent", "x") == pytest.approx(2.0 * 1.2 * 1.3)
    assert shocks.frequency_multiplier("FR", "trademark", "x") == pytest.approx(1.5 * 1.3)
    assert shocks.frequency_multiplier("DE", "trademark", "x") == pytest.approx(1.5 * 3.0 * 1.3)
    assert shocks.cost_multiplier("US", "USD") == pytest.approx(1.1 * 1.25)
    assert list(shocks.stage_multipliers(4)) == [1.0, 1.0, 1.4, 1.0] and list(shocks.stage_multipliers(1)) == [1.0]
    assert shocks.campaign_multipliers("schedule_a") == (4.0, 1.0) and shocks.campaign_multipliers("itc_337") == (1.0, 1.0)
    assert shocks.year_factor == 2.0 and Shocks().year_factor == 1.0 and Shocks().frequency_multiplier("US", "x", "y") == 1.0
    # reinsurer_default sets what it names and leaves the rest of each contract as it was.
    contracts = contracts_from_scenario(
        [{"type": "quota_share", "cession": 0.3, "default_probability": 0.01, "recovery_rate": 0.4}], 1e6)
    (shocked,) = shocks.apply_to_contracts(contracts)
    assert (shocked.default_probability, shocked.recovery_rate) == (0.2, 0.4)
    with pytest.raises(TypeError):
        shocks.frequency["US"] = 3.0  # type: ignore[index]  # read-only
    with pytest.raises(AttributeError):
        shocks.year_factor = 1.0  # type: ignore[misc]  # frozen
