"""The flat layout (engine.simulate_batch: a batch of years draws its disputes into shared slots)
against one buffer per year (engine.simulate_year, the layout the statistical tests of the engine
established): every simulated year must come out bit for bit the same, overflowing years included.

This is a check against an implementation computed another way (per-year buffers, the words drawn by
``random.bits`` rather than slot by slot), not an invariance of one implementation: the two share the
sampling formulas but not the layout, the slot-to-year bookkeeping or the way the words are made.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from helpers import campaign_book, cell, composition, make_portfolio

from leisim.simulator import engine
from leisim.simulator.driver import YearTable, run_years

SEED = 20261202


def _same_years(a: YearTable, b: YearTable) -> None:
    for field in dataclasses.fields(YearTable):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


def test_default_book_flat_years_equal_per_year_buffers(baseline):
    # The default book (posterior draws, strata, NB1 clusters, campaigns, lifecycle stages, fee shifting,
    # FX, year effect, reinsurance, payment pattern) runs flat: same years as with a buffer per year.
    assert baseline.shape.flat, "compose should choose the flat layout for the default book"
    key = jax.random.key(SEED)
    assert engine._flat_supported(key, baseline.shape)  # else both runs below would be per-year
    flat = run_years(key, baseline.params, baseline.shape, years=3000, chunk_size=1500)
    own = run_years(key, baseline.params, baseline.shape._replace(flat=()), years=3000, chunk_size=1500)
    assert flat.recomputed_years.size > 0  # the comparison covers years recomputed after an overflow
    _same_years(flat, own)


def test_an_event_layer_flat_years_equal_per_year_buffers():
    # A per-event excess-of-loss layer needs each slot's event (ordinary disputes their own, a campaign's
    # disputes shared), which the flat layout numbers where it lays the disputes out: the same cessions.
    qs = {"type": "quota_share", "cession": 0.3}
    event_xl = {"type": "per_event_xl", "retention_cny": 1.5e6, "limit_cny": 2.0e6, "reinstatements": 1}
    params, shape = campaign_book([[qs, event_xl], [qs, event_xl | {"type": "per_dispute_xl"}], [event_xl]])
    assert shape.flat, "compose should choose the flat layout for this book"
    key = jax.random.key(20261203)  # tests/simulator/test_event_xl.py's years (their per-year kernel, compiled once)
    assert engine._flat_supported(key, shape)
    flat = run_years(key, params, shape, years=2000, chunk_size=1000)
    own = run_years(key, params, shape._replace(flat=()), years=2000, chunk_size=1000)
    assert flat.campaign_disputes.sum() > flat.campaigns.sum() > 0 and (flat.ceded_due[:, 0, 1] > 0).any()
    _same_years(flat, own)


@pytest.mark.slow
def test_years_past_the_shared_slots_are_recomputed_exactly(baseline):
    # Shared slots sized for a quarter of the expected counts: most years of each batch run past them,
    # are flagged and recomputed; none may be lost or changed.
    tight = baseline.shape._replace(flat=tuple(x / 4.0 for x in baseline.shape.flat))
    key = jax.random.key(SEED + 1)
    assert engine._flat_supported(key, tight)
    flat = run_years(key, baseline.params, tight, years=640, chunk_size=640)
    own = run_years(key, baseline.params, baseline.shape._replace(flat=()), years=640, chunk_size=640)
    # Years past the shared slots are recomputed but not reported as overflows (that depends on the batch a
    # year fell in, not on the year): the reported years are the per-year run's too.
    _same_years(flat, own)


@pytest.mark.slow
@pytest.mark.parametrize("frequency", [{"distribution": "poisson", "rate": 0.9},
                                       {"distribution": "negative_binomial", "rate": 0.9, "concentration": 0.4}],
                         ids=["poisson", "nb2"])
def test_fixed_cells_flat_years_equal_per_year_buffers(frequency):
    # One stratum (no per-draw alias level), Poisson cells (no clusters: disputes are the events) or NB2
    # clusters, no campaigns, Pareto and lognormal severities: the flat layout forced on.
    portfolio = make_portfolio(exposure=[[1.0, 0.5], [2.0, 0.0], [0.5, 3.0], [4.0, 1.0]], countries=("US", "DE"),
                               deductible=2e4, coinsurance=0.1)
    pareto = {"distribution": "pareto", "alpha": 2.5, "scale_cny": 2e5}
    comp = composition([cell("US", frequency=frequency, severity={"distribution": "lognormal", "median_cny": 3e5,
                                                                   "sigma": 1.1}),
                        cell("DE", frequency={"distribution": "poisson", "rate": 0.5}, severity=pareto)], portfolio)
    mean = 0.9 * 7.5 + 0.5 * 4.5  # disputes per year; shared slots for ~1.2x that
    shape = comp.shape._replace(flat=(1.2 * mean, 1.5 * mean, 0.0))
    key = jax.random.key(SEED + 2)
    assert engine._flat_supported(key, shape)
    flat = run_years(key, comp.params, shape, years=2000, chunk_size=1000)
    own = run_years(key, comp.params, shape._replace(flat=()), years=2000, chunk_size=1000)
    assert flat.disputes.sum() > 0
    _same_years(flat, own)
