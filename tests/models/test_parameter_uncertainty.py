"""Parameter uncertainty: drawing each year's parameters from the posterior widens the tail.

(Its own file, so that xdist can run it beside the fresh fit: both are long.)
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.scenarios.compose import compose
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import Scenario, load_scenario
from leisim.simulator import metrics
from leisim.simulator.driver import run_years


@pytest.mark.slow
def test_parameter_uncertainty_widens_the_tail(key):
    # Same years, same key (common random numbers): the posterior run's 99.5% VaR exceeds the run
    # at the posterior mean by more than 3 standard errors of the difference (SEs combined as if
    # independent, which overstates them under common random numbers). Measured: 5.6 such SEs at
    # 40,000 years (3.3 at 20,000), hence the 40,000.
    portfolio = load_portfolio(default_portfolio_dir())
    scenario = load_scenario("baseline")
    point = Scenario(name="p", raw=scenario.raw | {"model": {"parameters": "posterior", "point_estimate": True}},
                     source="p")
    measures = []
    for s in (scenario, point):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = compose(s, portfolio, programs=[], dev_years=0)  # gross only
        # Chunks of 1,000 years: the point-estimate kernel is the one `leisim simulate` compiles for
        # its comparison run (the CLI tests), so the session's compilation cache may hold it.
        out = run_years(jax.random.key(3), comp.params, comp.shape, years=40_000, chunk_size=1000)
        measures.append(metrics.risk_measures(out.gross))
    with_uncertainty, at_mean = measures
    se = np.hypot(with_uncertainty["se"]["var"]["0.995"], at_mean["se"]["var"]["0.995"])
    assert with_uncertainty["var"]["0.995"] - at_mean["var"]["0.995"] > 3 * se
    split = metrics.parameter_variance_share(np.zeros(10), np.arange(10) % 5)
    assert split["parameter_share"] == 0.0
