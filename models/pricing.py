"""Technical premiums: each policy's expected annual cost under the documented true parameters.

Used to price the synthetic default portfolio (data/generate.py) the way an insurer would price a
book it knows: ``premium = max(minimum rate on line x aggregate limit, expected cost / target loss
ratio)``. The expected cost is exact (closed form, float64) before the annual aggregate limit,
so it is an upper bound of the expected payment:

    E[cost_p] = sum over (country c, type t) of lambda_pct E[exp(eps)] E[pay | c, t, terms_p]
              + sum over campaign kinds k of rate_k e_p,c_k (1 + m_k) E[exp(eps)] E[pay | k, terms_p]

with ``E[pay]`` the stage mixture of lognormal costs times the lognormal FX factor (mean 1) times
the fee-shifting outcome, through the deductible, the coinsurance and the per-dispute limit: the
lognormal's limited expected value ``E[min(Y, u)] = e^(mu + s^2/2) Phi((ln u - mu - s^2)/s) + u (1 -
Phi((ln u - mu)/s))`` (Klugman, Panjer & Willmot, *Loss Models*, 3.2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ..countries import COUNTRIES
from ..formats.portfolio import Portfolio
from ..vocabulary import TRIAL
from .history import true_log_median, true_stage_probability, true_win_probability
from .truth import CAMPAIGN_KINDS, CAMPAIGN_TARGETS, DISPUTE_TYPES, FX_VOLATILITY, REFERENCE_SECTOR, TRUTH, fee_shifting

# Expected gross loss ratio a technical premium aims at [E]: PICC P&C's 2023 combined ratio was
# 97.8% [S, docs/CALIBRATION.md]; with expenses at 30% of premium (simulator/capital.py) and
# reinsurance costing a few percent of premium, a 60% loss ratio leaves a thin positive
# underwriting result, as a subsidised pilot line would be priced.
TARGET_LOSS_RATIO = 0.60


def _lognormal_lev(mu: float, sigma: float, u: np.ndarray) -> np.ndarray:
    """E[min(Y, u)] for Y ~ lognormal(mu, sigma); u may be 0 or inf."""
    u = np.asarray(u, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_u = np.log(u)
        below = math.exp(mu + 0.5 * sigma * sigma) * ndtr((log_u - mu - sigma * sigma) / sigma)
        above = np.where(np.isfinite(u), u * (1.0 - ndtr((log_u - mu) / sigma)), 0.0)
    return np.where(u > 0, below + np.nan_to_num(above), 0.0)


def expected_payment(mu: float, sigma: float, deductible: np.ndarray, coinsurance: np.ndarray,
                     limit: np.ndarray) -> np.ndarray:
    """E[min((1 - c) max(Y - d, 0), L)] for Y ~ lognormal(mu, sigma), per policy's terms."""
    share = 1.0 - np.asarray(coinsurance, dtype=np.float64)
    top = deductible + np.where(share > 0, limit / np.where(share > 0, share, 1.0), 0.0)
    return share * (_lognormal_lev(mu, sigma, top) - _lognormal_lev(mu, sigma, deductible))


def _dispute_payment(country: str, stages: np.ndarray, log_median: np.ndarray, sigmas, fx_sigma: float,
                     p_win: float, terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    recovered, adverse = fee_shifting(country)
    out = 0.0
    for s, p_stage in enumerate(stages):
        # The FX factor exp(v Z - v^2/2) times a lognormal cost is lognormal again.
        mu, sigma = log_median[s] - 0.5 * fx_sigma**2, math.sqrt(sigmas[s] ** 2 + fx_sigma**2)
        outcomes = [(1.0, 1.0)]
        if s >= TRIAL and (recovered > 0 or adverse > 0):
            outcomes = [(p_win, 1.0 - recovered), (1.0 - p_win, 1.0 + adverse)]
        for p_outcome, factor in outcomes:
            if p_outcome > 0 and factor > 0:
                out = out + p_stage * p_outcome * expected_payment(mu + math.log(factor), sigma, *terms)
    return np.asarray(out)


def expected_cost_by_policy(portfolio: Portfolio, truth: dict | None = None) -> np.ndarray:
    """Each policy's expected annual payment (CNY) under ``truth`` (default TRUTH), before its aggregate limit."""
    truth = TRUTH if truth is None else truth
    terms = (portfolio.deductible_cny, portfolio.coinsurance, portfolio.limit_per_dispute_cny)
    sectors = np.asarray(portfolio.sector)
    lift = math.exp(0.5 * truth["year_sigma"] ** 2)
    cost = np.zeros(portfolio.n_policies)
    for c, country in enumerate(portfolio.countries):
        exposure = portfolio.exposure[:, c]
        if not np.any(exposure > 0):
            continue
        fx_sigma = FX_VOLATILITY.get(COUNTRIES[country].currency, 0.0)
        for t in DISPUTE_TYPES:
            rate = truth["rate"][t].get(country)
            if rate is None:
                continue
            relativity = np.exp([0.0 if s == REFERENCE_SECTOR else truth["sector"][t].get(s, 0.0) for s in sectors])
            lam = rate * relativity * exposure * lift
            pay = _dispute_payment(country, true_stage_probability(country, t), true_log_median(country, t),
                                   truth["stage_sigma"], fx_sigma, true_win_probability(country), terms)
            cost += lam * pay
    for kind in CAMPAIGN_KINDS:
        country, _, target_sectors = CAMPAIGN_TARGETS[kind]
        if country not in portfolio.countries:
            continue
        exposure = portfolio.exposure[:, portfolio.countries.index(country)]
        if target_sectors is not None:
            exposure = exposure * np.isin(sectors, target_sectors)
        m, _ = truth["campaign_size"][kind]
        median, sigma = truth["campaign_cost"][kind]
        fx_sigma = FX_VOLATILITY.get(COUNTRIES[country].currency, 0.0)
        pay = expected_payment(math.log(median) - 0.5 * fx_sigma**2, math.sqrt(sigma**2 + fx_sigma**2), *terms)
        cost += truth["campaign_rate"][kind] * exposure * (1.0 + m) * lift * pay
    return cost
