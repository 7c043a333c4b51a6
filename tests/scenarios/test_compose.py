"""Composition in O(entries + draws x strata) memory: the buffer sizing's count variance summed over
(stratum, cell) segments equals its definition, a sum over every (policy, cell) entry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.scenarios import compose
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import load_scenario
from leisim.scenarios.tables import fixed_tables, posterior_tables


def _dense_variance(tables, entries, dispersion):
    """The definition, entry by entry ([draw, entry] arrays): NB2 lam + lam^2 / k (the lam^2 / k part
    scales with the square of the year level), NB1 lam (1 + delta), Poisson lam."""
    lam = tables.stratum_scale[:, entries.stratum] * entries.weights[None, :]
    k = tables.cell_concentration[:, entries.cells]
    delta = dispersion[:, entries.cells]
    linear = np.where(k > 0, lam, lam * (1.0 + delta)).sum(axis=1)
    square = np.where(k > 0, lam**2 / np.where(k > 0, k, 1.0), 0.0).sum(axis=1)
    return linear, square


@pytest.mark.parametrize("name", ["baseline", "calibrated_fixed", "schedule_a_wave"])
def test_the_count_variance_over_segments_is_the_sum_over_entries(name):
    portfolio = load_portfolio(default_portfolio_dir())
    scenario = load_scenario(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scenario.parameters == "fixed":  # one stratum mixing every cell
            tables, entry_cells = fixed_tables(scenario, portfolio)
        else:  # one stratum per (cell, sector), a row per posterior draw
            tables, entry_cells = posterior_tables(scenario, portfolio), None
    entries = compose._entries(tables, portfolio, entry_cells)
    dispersion = (tables.cell_dispersion if tables.cell_dispersion is not None
                  else np.zeros_like(tables.cell_concentration))
    linear, square, clustered = compose.count_variance(tables, entries, dispersion)
    want_linear, want_square = _dense_variance(tables, entries, dispersion)
    assert linear.shape == (tables.n_draws,)
    # Sums of the same positive terms in another order: equal to a few ulps of the total.
    np.testing.assert_allclose(linear, want_linear, rtol=1e-12)
    np.testing.assert_allclose(square, want_square, rtol=1e-12, atol=1e-300)
    assert clustered == bool(np.any(tables.cell_concentration > 0) or np.any(dispersion > 0))
    assert np.all(linear > 0)
