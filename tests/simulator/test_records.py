"""Per-dispute records (driver.run_dispute_records): the disputes of given years, as run_years simulates them.

The records are computed by the per-year layout and run_years by the flat one (the default book's),
so each check below compares two programs: per year, the records' amounts must add up to run_years'
totals (float64 sums in another order: rtol 1e-12; ceded against gross - net, a difference: 1e-9),
and their counts must be its counts exactly. Years past their buffers: tests/simulator/test_event_xl.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import SEED

from leisim.simulator.driver import run_dispute_records, run_years


@pytest.fixture(scope="module")
def runs(baseline):
    key = jax.random.key(SEED)
    # tests/simulator/test_store.py's run (its compiled kernel), of which every third year is recorded.
    table = run_years(key, baseline.params, baseline.shape, years=3000, chunk_size=1000)
    years = np.arange(0, 1000, 3)
    return table, years, run_dispute_records(key, years, baseline.params, baseline.shape, chunk_size=1000)


def test_records_add_up_to_the_years(runs, baseline):
    table, years, records = runs
    row = np.searchsorted(years, records.year)
    assert np.array_equal(years[row], records.year) and np.all(np.diff(records.year) >= 0)  # in year order
    n = years.size
    np.testing.assert_array_equal(np.bincount(row, minlength=n), table.disputes[years])
    np.testing.assert_allclose(np.bincount(row, weights=records.gross, minlength=n), table.gross[years], rtol=1e-12)
    np.testing.assert_allclose(np.bincount(row, weights=records.ground_up, minlength=n), table.ground_up[years],
                               rtol=1e-12)
    first_program_ceded = table.gross[years] - table.net[years, 0]
    np.testing.assert_allclose(np.bincount(row, weights=records.ceded, minlength=n), first_program_ceded, rtol=1e-9,
                               atol=1e-3)
    assert (first_program_ceded > 0).all()  # the baseline's quota share cedes every year with a dispute
    by_cell = np.zeros((n, baseline.shape.n_cells))
    np.add.at(by_cell, (row, records.cell), records.gross)
    np.testing.assert_allclose(by_cell, table.gross_by_group[years], rtol=1e-12, atol=1e-6)
    assert np.all((records.policy >= 0) & (records.policy < baseline.shape.n_policies))
    assert np.all((records.stage >= 0) & (records.stage < baseline.shape.n_stages))
    assert np.all(records.gross <= records.ground_up * (1 + 1e-6)) and np.all(records.ceded <= records.gross * (1 + 1e-9))


def test_campaign_disputes_share_their_campaigns_event(runs):
    table, years, records = runs
    row = np.searchsorted(years, records.year)
    np.testing.assert_array_equal(np.bincount(row, weights=records.campaign, minlength=years.size).astype(int),
                                  table.campaign_disputes[years])
    for year in years:
        mine = records.year == year
        campaign_events = np.unique(records.event[mine & records.campaign])
        assert campaign_events.size == table.campaigns[year]  # every campaign names >= 1 seller
        ordinary = records.event[mine & ~records.campaign]
        # Ordinary disputes are their own events, numbered 0 .. n - 1; campaigns follow.
        assert np.array_equal(ordinary, np.arange(ordinary.size))
        assert np.all(campaign_events >= ordinary.size)
    assert table.campaigns[years].sum() > 50 and table.campaign_disputes[years].sum() > table.campaigns[years].sum()
