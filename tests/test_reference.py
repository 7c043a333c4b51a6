"""Posterior-driven runs against an independent implementation of the documented model.

``benchmarks/reference_model.py`` is a plain NumPy Monte Carlo written from docs/MODEL.md and the
shipped files alone (it imports nothing from leisim). Both are run on the same scenario and
compared statistic by statistic: two independent samples, so each difference is held to 4
combined standard errors, sqrt(SE_engine^2 + SE_reference^2), with the mean's SE sd / sqrt(n) and
the VaR's the order-statistic SE of leisim.simulator.metrics (checked for calibration in
test_metrics). A correct pair fails one check with probability ~6e-5; ~30 checks per case.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.models.posterior import default_posterior_path
from leisim.scenarios.compose import compose
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import load_scenario
from leisim.simulator import metrics
from leisim.simulator.driver import run_years
from leisim.simulator.results import by_label

ROOT = Path(__file__).resolve().parent.parent
YEARS = 20_000
COMBINED_SES = 4.0

pytestmark = pytest.mark.slow


def _reference():
    spec = importlib.util.spec_from_file_location("reference_model", ROOT / "benchmarks" / "reference_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_model"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# The baseline, and a stress of the kind the issue measured (US frequency x2, costs +30%, USD +10%).
CASES = {
    "baseline": None,
    "us_x2_costs_x1.3": {"frequency": {"US": 2.0}, "severity": {"*": 1.3}, "fx": {"USD": 1.1}},
}


def _scenario(tmp_path: Path, name: str, shocks: dict | None):
    base = tomllib.loads((ROOT / "scenarios" / "library" / "baseline.toml").read_text())
    if shocks is None:
        return load_scenario("baseline"), base
    raw = base | {"name": name, "shocks": shocks}
    lines = [f'name = "{name}"', 'extends = "baseline"', "[shocks]"]
    for kind, table in shocks.items():
        lines.append(f"{kind} = {{ " + ", ".join(f'"{k}" = {v}' for k, v in table.items()) + " }")
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_scenario(path), raw


def _stats(gross, net, by_country, disputes_by_country) -> dict:
    out = {}
    for name, x in (("gross", gross), ("net", net)):
        ordered = np.sort(x)
        out[f"{name} mean"] = (x.mean(), x.std() / math.sqrt(x.size))
        out[f"{name} VaR 99.5"] = (metrics.var(ordered, 0.995), metrics.var_se(ordered, 0.995))
        out[f"{name} VaR 90"] = (metrics.var(ordered, 0.9), metrics.var_se(ordered, 0.9))
    for label, table in (("gross", by_country), ("disputes", disputes_by_country)):
        for country, column in table.items():
            out[f"{label} {country}"] = (column.mean(), column.std() / math.sqrt(column.size))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_engine_agrees_with_the_independent_reference(case, tmp_path):
    scenario, raw = _scenario(tmp_path, case, CASES[case])
    portfolio = load_portfolio(default_portfolio_dir())
    comp = compose(scenario, portfolio, dev_years=0)
    table = run_years(jax.random.key(3), comp.params, comp.shape, years=YEARS, chunk_size=YEARS)
    countries = comp.countries
    engine = _stats(table.gross, table.net[:, 0],
                    dict(zip(countries, by_label(table.gross_by_group, comp.group_country, countries).T)),
                    dict(zip(countries, by_label(table.disputes_by_group, comp.group_country, countries).T)))

    reference = _reference()
    inputs = reference.load_inputs(posterior_path=default_posterior_path(), portfolio_dir=default_portfolio_dir(),
                                   scenario=raw)
    out = reference.simulate(inputs, years=YEARS, seed=4)
    ref_countries = list(out["countries"])
    assert sorted(ref_countries) == sorted(countries)
    ref = _stats(out["gross"], out["net"],
                 {c: out["gross_by_country"][:, ref_countries.index(c)] for c in countries},
                 {c: out["disputes_by_country"][:, ref_countries.index(c)] for c in countries})

    failures = []
    for name, (value, se) in engine.items():
        ref_value, ref_se = ref[name]
        combined = math.hypot(se, ref_se)
        if abs(value - ref_value) > COMBINED_SES * combined:
            failures.append(f"{case} {name}: engine {value:.6g} +- {se:.3g}, reference {ref_value:.6g} +- {ref_se:.3g}")
    assert not failures, "\n".join(failures)
