"""Small builders for test portfolios and scenarios."""

from __future__ import annotations

import numpy as np

from leisim.scenarios.compose import compose
from leisim.scenarios.portfolio import Portfolio
from leisim.scenarios.schema import Scenario, validate


def make_portfolio(*, exposure, countries=("US",), deductible=0.0, coinsurance=0.0,
                   limit=1e30, aggregate=1e30, sectors=None) -> Portfolio:
    """A portfolio from arrays: ``exposure[p, c]``; terms broadcast over policies."""
    exposure = np.atleast_2d(np.asarray(exposure, dtype=float))
    n = exposure.shape[0]

    def full(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()

    return Portfolio(
        policy_id=tuple(f"P{i}" for i in range(n)),
        sector=tuple(sectors or ["x"] * n),
        premium_cny=full(1.0),
        deductible_cny=full(deductible),
        coinsurance=full(coinsurance),
        limit_per_dispute_cny=full(limit),
        aggregate_limit_cny=full(aggregate),
        subsidy_share=full(0.0),
        countries=tuple(countries),
        exposure=exposure,
    )


def make_scenario(cells: list[dict], **extra) -> Scenario:
    raw = {"name": "test", "model": {"parameters": "fixed", "cells": cells}} | extra
    validate(raw, "test.toml")
    return Scenario(name="test", raw=raw, source="test.toml")


def cell(country="US", dispute_type="patent", *, frequency, severity, **extra) -> dict:
    return {"country": country, "dispute_type": dispute_type, "frequency": frequency, "severity": severity} | extra


def composition(cells, portfolio, **kw):
    return compose(make_scenario(cells), portfolio, **kw)


def interrupt_after_chunks(monkeypatch, chunks: int):
    """Make the checkpoint raise KeyboardInterrupt (Ctrl-C) when chunk number ``chunks`` + 1 is written.

    Returns a function that restores the real ``ChunkStore.put``.
    """
    from leisim.formats import checkpoint as store_module

    put, written = store_module.ChunkStore.put, []

    def interrupted(self, stream, start, record):
        if len(written) == chunks:
            raise KeyboardInterrupt
        written.append(start)
        put(self, stream, start, record)

    monkeypatch.setattr(store_module.ChunkStore, "put", interrupted)
    return lambda: monkeypatch.setattr(store_module.ChunkStore, "put", put)


def campaign_book(programs, *, mean_extra: float = 3.0, concentration: float = 3.0, campaign_rate: float = 2.0):
    """A fixed-parameter book with one campaign kind: four policies, Poisson US patent disputes (lognormal
    costs), ``campaign_rate`` campaigns a year naming ``1 + NB(mean_extra, concentration)`` of the policies
    (by exposure) in the same cell. Fixed scenarios have no campaigns, so they are added to the tables
    here. ``programs``: [[reinsurance] tables]. Returns (params, shape) of the engine, no payment pattern."""
    import dataclasses

    from leisim.scenarios.compose import assemble
    from leisim.scenarios.tables import fixed_tables
    from leisim.simulator.reinsurance import contracts_from_scenario

    exposure = np.array([1.0, 2.0, 0.5, 1.5])
    portfolio = make_portfolio(exposure=exposure[:, None], deductible=5e4, coinsurance=0.1, limit=4e6, aggregate=9e6)
    scenario = make_scenario([cell(frequency={"distribution": "poisson", "rate": 0.5},
                                   severity={"distribution": "lognormal", "median_cny": 8e5, "sigma": 0.9})])
    tables, entry_cells = fixed_tables(scenario, portfolio)
    tables = dataclasses.replace(tables, campaign_cell=np.array([0]), campaign_policies=(np.arange(4),),
                                 campaign_weights=(exposure,), campaign_rate=np.array([[campaign_rate]]),
                                 campaign_size=np.array([[[mean_extra, concentration]]]))
    params, shape, _ = assemble(tables, portfolio, entry_cells=entry_cells,
                                programs=[contracts_from_scenario(p, 1.0) for p in programs], dev_years=0)
    return params, shape
