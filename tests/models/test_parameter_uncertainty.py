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


def _same_years(a, b) -> None:
    import dataclasses

    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


@pytest.mark.slow
def test_the_posterior_mean_row_is_the_point_estimate_scenario_year_by_year():
    # `leisim simulate` compares the posterior run with the same years at the posterior mean by
    # appending the mean as one more row of the same tables (one kernel, one compile). Checked
    # against the point-estimate scenario composed on its own (model.point_estimate = true: one
    # draw, models.posterior._point): every per-year value bit for bit, through one shape; and
    # the appended row leaves the posterior years as they were.
    portfolio = load_portfolio(default_portfolio_dir())
    scenario = load_scenario("baseline")
    point = scenario.updated({"model": {"point_estimate": True}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = compose(scenario, portfolio, programs=[], dev_years=0, point_estimate_row=True)
        plain = compose(scenario, portfolio, programs=[], dev_years=0)
        alone = compose(point, portfolio, programs=[], dev_years=0)
    assert both.has_point_estimate and not plain.has_point_estimate and not alone.has_point_estimate
    assert both.n_draws == plain.n_draws == both.params.total_rate.shape[0] - 1 > 1 and alone.n_draws == 1
    assert both.expected_disputes == plain.expected_disputes
    # Sized over the draws alone: the same buffers and, for the draws, the same campaign-size tables.
    assert both.shape == plain.shape
    np.testing.assert_array_equal(both.params.campaign_size_cdf[:-1], plain.params.campaign_size_cdf)
    key, shape, years = jax.random.key(7), both.shape, 400
    at_mean = both.at_point_estimate()
    assert at_mean.shape == shape  # the same compiled kernel
    _same_years(run_years(key, at_mean.params, shape, years=years, chunk_size=years),
                run_years(key, alone.params, shape, years=years, chunk_size=years))
    _same_years(run_years(key, both.params, shape, years=years, chunk_size=years),
                run_years(key, plain.params, shape, years=years, chunk_size=years))
