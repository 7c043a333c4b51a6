"""Costs truncated at the deductible and censored at the limit: ours recovers, the naive fit misses.

A book with a CNY 1.5M deductible and a CNY 3M per-dispute limit (20% coinsurance) loses most
cheap disputes to truncation and half the rest to censoring. Fixed seeds; the check is on the
US patent stage medians with the most data (early exits and exits after discovery): the truth
must lie inside our 90% interval and outside the naive one (which treats recorded costs as
exact and every dispute as reported).
"""

from __future__ import annotations

import copy
import dataclasses

import jax
import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.models.fit import run_nuts_many
from leisim.models.history import generate_history, load_history, true_log_median, write_history
from leisim.models.settings import FitSettings
from leisim.models.severity import SeverityData, severity_model
from leisim.models.truth import TRUTH
from leisim.scenarios.portfolio import load_portfolio


@pytest.mark.slow
def test_truncated_and_censored_costs_recover_the_median_and_the_naive_fit_misses(tmp_path):
    portfolio = load_portfolio(default_portfolio_dir())
    n = portfolio.n_policies
    portfolio = dataclasses.replace(portfolio, deductible_cny=np.full(n, 1.5e6), coinsurance=np.full(n, 0.2),
                                    limit_per_dispute_cny=np.full(n, 3.0e6))
    truth = copy.deepcopy(TRUTH)
    truth["rate"] = {t: {c: v * 4.0 for c, v in table.items()} for t, table in TRUTH["rate"].items()}
    history = load_history(write_history(tmp_path, generate_history(portfolio, seed=1, truth=truth)))
    assert history.dispute_censored.mean() > 0.3  # the data really are censored
    us = history.countries.index("US")
    target = true_log_median("US", "patent")[:2]
    settings = FitSettings(chains=1, warmup=250, samples=250)
    # The two fits run side by side (one per device), each with its own adaptation.
    datasets = [SeverityData.from_history(history), SeverityData.from_history(history, truncation=False, censoring=False)]
    draws = run_nuts_many(severity_model, datasets, key=jax.random.key(0), settings=settings)
    intervals = {name: np.quantile(draws["log_median"][i][:, us, 0, :2], [0.05, 0.95], axis=0)
                 for i, name in enumerate(("ours", "naive"))}
    lo, hi = intervals["ours"]
    assert np.all((lo <= target) & (target <= hi)), (lo, target, hi)
    lo, hi = intervals["naive"]
    assert np.all((target < lo) | (target > hi)), (lo, target, hi)
