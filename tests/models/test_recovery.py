"""Parameter recovery (BlackJAX-style): fit synthetic histories drawn from known parameters.

The 20 fits per model run as independent chains vectorised together (models.fit.run_nuts_many:
each has its own adaptation, as separate fits would), 2.6x faster than one after another.

Tolerance: a calibrated 90% interval covers the truth with probability ~0.9; over the n >= 240
intervals per quantity pooled from 20 histories (12 rates, 48 stage probabilities, 48 medians per
history), coverage below 85% is more than 2.5 binomial standard errors (sqrt(0.9 * 0.1 / 240) =
1.9%) below 90%. Intervals within a history are correlated, so the real SE is larger; 85% is the
issue's threshold, and the naive severity fit covers far less (test_censoring).
"""

from __future__ import annotations

import copy
import dataclasses

import jax
import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.models.fit import run_nuts_many
from leisim.models.frequency import FrequencyData, frequency_model
from leisim.models.history import (
    History,
    generate_history,
    load_history,
    true_log_median,
    true_stage_probability,
    write_history,
)
from leisim.models.settings import FitSettings
from leisim.models.severity import SeverityData, severity_model
from leisim.models.truth import DISPUTE_TYPES, TRUTH
from leisim.scenarios.portfolio import load_portfolio

N_HISTORIES = 20
SETTINGS = FitSettings(chains=1, warmup=100, samples=100, max_tree_depth=7)
COUNTRIES = ("US", "DE", "JP", "GB")  # a smaller world than the pilot's, so that 40 fits fit in CI
YEARS = tuple(range(2020, 2026))


def _truth_with_more_data() -> dict:
    # Rates x2: enough disputes per country that the intervals mean something.
    truth = copy.deepcopy(TRUTH)
    truth["rate"] = {t: {c: v * 2.0 for c, v in table.items()} for t, table in TRUTH["rate"].items()}
    return truth


def _book():
    """The pilot portfolio's policies, exposed to COUNTRIES only."""
    portfolio = load_portfolio(default_portfolio_dir())
    keep = [portfolio.countries.index(c) for c in COUNTRIES]
    exposure = portfolio.exposure[:, keep]
    policies = np.flatnonzero(exposure.sum(axis=1) > 0)
    return dataclasses.replace(
        portfolio, countries=COUNTRIES, exposure=exposure[policies],
        policy_id=tuple(portfolio.policy_id[p] for p in policies), sector=tuple(portfolio.sector[p] for p in policies),
        **{f: getattr(portfolio, f)[policies] for f in ("premium_cny", "deductible_cny", "coinsurance",
                                                        "limit_per_dispute_cny", "aggregate_limit_cny", "subsidy_share")})


@pytest.fixture(scope="module")
def histories(tmp_path_factory) -> list[History]:
    book, truth = _book(), _truth_with_more_data()
    out = []
    for seed in range(N_HISTORIES):
        folder = tmp_path_factory.mktemp(f"history{seed}")
        rows = generate_history(book, seed=100 + seed, truth=truth, years=YEARS)
        out.append(load_history(write_history(folder, rows)))
    return out


def _coverage(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return (lo <= truth) & (truth <= hi)


@pytest.mark.slow
def test_frequency_intervals_cover_the_true_country_rates(histories):
    truth = _truth_with_more_data()
    data = [FrequencyData.from_history(h) for h in histories]
    n_campaigns = max(d.campaign_extra.shape[0] for d in data)
    draws = run_nuts_many(frequency_model, [d.padded(n_campaigns) for d in data], key=jax.random.key(1),
                          settings=SETTINGS)
    hits = []
    for i, history in enumerate(histories):
        for c, country in enumerate(history.countries):
            for t, dispute_type in enumerate(DISPUTE_TYPES):
                hits.append(_coverage(draws["log_rate"][i][:, c, t], np.log(truth["rate"][dispute_type][country])))
    coverage = float(np.mean(hits))
    assert len(hits) >= 240 and coverage >= 0.85, coverage


@pytest.mark.slow
def test_severity_intervals_cover_the_true_stage_probabilities_and_cost_medians(histories):
    data = [SeverityData.from_history(h) for h in histories]
    n_disputes = max(d.country.shape[0] for d in data)
    n_campaign_disputes = max(d.campaign_kind.shape[0] for d in data)
    draws = run_nuts_many(severity_model, [d.padded(n_disputes, n_campaign_disputes) for d in data],
                          key=jax.random.key(2), settings=SETTINGS)
    stage_hits, median_hits = [], []
    for i, history in enumerate(histories):
        for c, country in enumerate(history.countries):
            for t, dispute_type in enumerate(DISPUTE_TYPES):
                stage_hits.extend(_coverage(np.exp(draws["stage_log_probability"][i][:, c, t]),
                                            true_stage_probability(country, dispute_type)))
                median_hits.extend(_coverage(draws["log_median"][i][:, c, t], true_log_median(country, dispute_type)))
    for name, hits in (("stage probabilities", stage_hits), ("stage cost medians", median_hits)):
        coverage = float(np.mean(hits))
        assert len(hits) >= 240 and coverage >= 0.85, (name, coverage)
