"""Severity model (NumPyro): the litigation lifecycle of a dispute and what it costs.

For a dispute in country ``c`` of type ``t``:

- the stage it ends at, ``s`` in (early, discovery, trial, appeal), with logits against
  ``early``: ``nu[t] + tau_stage * z_stage[c]`` (type means, country offsets pooled);
- its own legal cost, lognormal in CNY at baseline FX with ``log median = kappa[t, s] + psi[c]``
  (``psi``: the countries' cost levels, pooled, zero-sum over countries) and log-sd
  ``sigma[s]``;
- its duration, lognormal with log median ``delta[s]`` and log-sd ``sigma_duration``;
- where the loser pays, P(the insured wins | decided at trial or appeal) with logit
  ``win_mu + tau_win * z_win[c]``.

Observation (what makes the naive fit biased): a dispute appears in the claims file only if its
cost exceeded the deductible ``d`` (truncation), and a payment at the per-dispute limit tells only
that the cost reached the limit's cost ``u`` (censoring). So a closed dispute contributes

    log p_s + log f_s(x) - log sum_s' p_s' S_s'(d)        (cost seen)
    log p_s + log S_s(u) - log sum_s' p_s' S_s'(d)        (at the limit)

and an open dispute, which has reached stage ``s0`` and cost ``x0`` so far,
``log sum_{s >= s0} p_s S_s(x0) - log sum_s' p_s' S_s'(d)``; its duration so far is a right-
censored duration (Klugman, Panjer & Willmot, *Loss Models*, ch. 12-13).

Campaign disputes (Schedule A, ITC 337) have their own lognormal cost per campaign kind, with the
same truncation and censoring.

Priors (docs/CALIBRATION.md): US patent medians by stage from AIPLA 2015 ($300k early [J], $950k
through discovery, $2.0M through trial, $3.0M through appeal [S]); kappa is centred on the typical
forum, a notch below the US [J], with sd 1.5; stage shares from RPX 2021 (~half settle, 26% +
12% dismissals, 3% merits) [S]; durations ~1, 1.6, 2.4 (PwC 2015), 3.5 years [S/J]; defendants
win ~2/3 of decided cases (patentees win ~33% [S]; 74% rejected in Japan [S]).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr, logsumexp
from scipy import stats

from ..vocabulary import STAGES
from .history import History
from .truth import BASE_FX_CNY, CAMPAIGN_KINDS, DISPUTE_TYPES, fee_shifting

N_STAGES = len(STAGES)
_US = BASE_FX_CNY["USD"]
PRIOR_LOG_MEDIAN_US = np.log(np.array([3.0e5, 9.5e5, 2.0e6, 3.0e6]) * _US)
PRIOR_STAGE_LOGIT = np.log(np.array([0.26, 0.12, 0.06]) / 0.56)  # discovery, trial, appeal vs early
PRIOR_DURATION = np.log(np.array([1.0, 1.6, 2.4, 3.5]))
PRIOR_CAMPAIGN_LOG_MEDIAN = {"schedule_a": math.log(2.0e4 * _US), "itc_337": math.log(1.5e6 * _US)}


@dataclasses.dataclass(frozen=True)
class SeverityData:
    """Arrays the severity model needs (disputes with a payment)."""

    country: np.ndarray
    dispute_type: np.ndarray
    stage: np.ndarray
    closed: np.ndarray  # bool
    log_cost: np.ndarray
    log_deductible: np.ndarray  # -1e3 where there is none
    censored: np.ndarray  # bool: cost is a lower bound
    log_duration: np.ndarray
    decided: np.ndarray  # bool: decided on the merits in a loser-pays forum
    won: np.ndarray  # 0/1 where decided
    n_countries: int
    campaign_kind: np.ndarray
    campaign_log_cost: np.ndarray
    campaign_log_deductible: np.ndarray
    campaign_censored: np.ndarray
    weight: np.ndarray  # [dispute] 1, or 0 for padding
    campaign_weight: np.ndarray  # [campaign dispute] 1, or 0 for padding

    def padded(self, n_disputes: int, n_campaign_disputes: int) -> SeverityData:
        """The same data padded with zero-weight rows to fixed sizes (one compilation for many fits)."""
        def pad(x, n, value):
            extra = n - x.shape[0]
            if extra < 0:
                raise ValueError(f"cannot pad {x.shape[0]} rows down to {n}")
            return np.concatenate([x, np.full((extra,) + x.shape[1:], value, dtype=x.dtype)])
        dispute = {f: pad(getattr(self, f), n_disputes, v) for f, v in (
            ("country", 0), ("dispute_type", 0), ("stage", 0), ("closed", True), ("log_cost", 10.0),
            ("log_deductible", -1e3), ("censored", False), ("log_duration", 0.0), ("decided", False), ("won", 0),
            ("weight", 0.0))}
        campaign = {f: pad(getattr(self, f), n_campaign_disputes, v) for f, v in (
            ("campaign_kind", 0), ("campaign_log_cost", 10.0), ("campaign_log_deductible", -1e3),
            ("campaign_censored", False), ("campaign_weight", 0.0))}
        return dataclasses.replace(self, **dispute, **campaign)

    @classmethod
    def from_history(cls, history: History, *, truncation: bool = True, censoring: bool = True) -> SeverityData:
        """``truncation=False`` / ``censoring=False`` build the naive fit's data (for comparison only)."""
        loser_pays = np.array([sum(fee_shifting(c)) > 0 for c in history.countries])
        decided = (history.dispute_decided_won >= 0) & loser_pays[history.dispute_country]

        def log_d(d):
            # log(0) as -1e3 rather than -inf: S = 1 exactly, and no inf - inf in the gradients.
            return np.log(np.maximum(d, 1e-300)).clip(-1e3) if truncation else np.full(d.shape, -1e3)

        with np.errstate(divide="ignore"):
            return cls(
                country=history.dispute_country, dispute_type=history.dispute_type, stage=history.dispute_stage,
                closed=history.dispute_closed if censoring else np.ones_like(history.dispute_closed),
                log_cost=np.log(history.dispute_cost), log_deductible=log_d(history.dispute_deductible),
                censored=history.dispute_censored if censoring else np.zeros_like(history.dispute_censored),
                log_duration=np.log(np.maximum(history.dispute_duration, 1e-3)),
                decided=decided, won=np.maximum(history.dispute_decided_won, 0),
                n_countries=len(history.countries),
                campaign_kind=history.campaign_dispute_kind, campaign_log_cost=np.log(history.campaign_dispute_cost),
                campaign_log_deductible=log_d(history.campaign_dispute_deductible),
                campaign_censored=history.campaign_dispute_censored if censoring
                else np.zeros_like(history.campaign_dispute_censored),
                weight=np.ones(history.dispute_cost.size), campaign_weight=np.ones(history.campaign_dispute_cost.size),
            )


def _log_survival(log_x, mu, sigma):
    """log P(X > x) for a lognormal; log_x = -1e3 gives 0."""
    return log_ndtr(-(log_x - mu) / sigma)


def _log_density(log_x, mu, sigma):
    z = (log_x - mu) / sigma
    return -0.5 * z * z - jnp.log(sigma) - 0.5 * math.log(2 * math.pi) - log_x


def severity_model(data: SeverityData, *, pointwise: bool = False) -> None:
    """The NumPyro model (likelihood through ``numpyro.factor``: truncated, censored mixtures).

    ``pointwise=True`` keeps one log-likelihood term per observation in each factor (the same joint
    density), for :func:`numpyro.infer.log_likelihood`; the sampler sums them.
    """
    # The sampler's factors stay scalar sums, exactly as fitted (the shipped posterior's draws).
    total = (lambda terms: terms) if pointwise else jnp.sum
    n_types, n_c = len(DISPUTE_TYPES), data.n_countries
    nu = numpyro.sample("stage_logit", dist.Normal(jnp.asarray(PRIOR_STAGE_LOGIT), 1.0).expand([n_types, N_STAGES - 1]).to_event(2))
    tau_stage = numpyro.sample("tau_stage", dist.HalfNormal(0.5))
    z_stage = numpyro.sample("z_stage", dist.Normal(0.0, 1.0).expand([n_c, N_STAGES - 1]).to_event(2))
    logits = nu[None, :, :] + tau_stage * z_stage[:, None, :]  # [country, type, stage-1]
    logits = jnp.concatenate([jnp.zeros(logits.shape[:2] + (1,)), logits], axis=2)
    log_p = numpyro.deterministic("stage_log_probability", logits - logsumexp(logits, axis=2, keepdims=True))

    kappa = numpyro.sample("kappa", dist.Normal(jnp.asarray(PRIOR_LOG_MEDIAN_US - 1.0), 1.5).expand([n_types, N_STAGES]).to_event(2))
    tau_cost = numpyro.sample("tau_cost", dist.HalfNormal(1.5))
    # Country cost levels sum to zero, so kappa is the average forum's level: without it kappa and
    # the country levels slide against each other and NUTS mixes slowly (measured: R-hat 1.02).
    cost_level = numpyro.sample("cost_level", dist.ZeroSumNormal(tau_cost, event_shape=(n_c,)))
    log_median = numpyro.deterministic("log_median", kappa[None, :, :] + cost_level[:, None, None])
    sigma = numpyro.sample("sigma", dist.LogNormal(math.log(0.8), 0.5).expand([N_STAGES]).to_event(1))

    # Individual disputes.
    c, t = data.country, data.dispute_type
    mu_all = log_median[c, t]  # [dispute, stage]
    lp_all = log_p[c, t]
    log_norm = logsumexp(lp_all + _log_survival(data.log_deductible[:, None], mu_all, sigma), axis=1)
    mu_s = jnp.take_along_axis(mu_all, data.stage[:, None], axis=1)[:, 0]
    lp_s = jnp.take_along_axis(lp_all, data.stage[:, None], axis=1)[:, 0]
    sigma_s = sigma[data.stage]
    seen = lp_s + _log_density(data.log_cost, mu_s, sigma_s)
    at_limit = lp_s + _log_survival(data.log_cost, mu_s, sigma_s)
    later = jnp.arange(N_STAGES)[None, :] >= data.stage[:, None]
    still_open = logsumexp(jnp.where(later, lp_all + _log_survival(data.log_cost[:, None], mu_all, sigma), -jnp.inf), axis=1)
    closed_term = jnp.where(data.censored, at_limit, seen)
    numpyro.factor("disputes", total(data.weight * (jnp.where(data.closed, closed_term, still_open) - log_norm)))

    # Durations: closed are exact, open are right-censored (stage not yet known: stages >= s0).
    delta = numpyro.sample("duration_log_median", dist.Normal(jnp.asarray(PRIOR_DURATION), 0.5).to_event(1))
    sigma_duration = numpyro.sample("duration_sigma", dist.HalfNormal(0.7))
    exact = _log_density(data.log_duration, delta[data.stage], sigma_duration) + data.log_duration
    weights = jnp.where(later, lp_all, -jnp.inf)
    open_so_far = (logsumexp(weights + _log_survival(data.log_duration[:, None], delta[None, :], sigma_duration), axis=1)
                   - logsumexp(weights, axis=1))
    numpyro.factor("durations", total(data.weight * jnp.where(data.closed, exact, open_so_far)))

    # Fee shifting: who wins a decided case where the loser pays.
    win_mu = numpyro.sample("win_logit_mean", dist.Normal(math.log(0.62 / 0.38), 0.7))
    tau_win = numpyro.sample("tau_win", dist.HalfNormal(0.5))
    z_win = numpyro.sample("z_win", dist.Normal(0.0, 1.0).expand([n_c]).to_event(1))
    p_win = numpyro.deterministic("win_probability", jax.nn.sigmoid(win_mu + tau_win * z_win))
    numpyro.factor("outcomes", total(jnp.where(
        data.decided, data.won * jnp.log(p_win[c]) + (1 - data.won) * jnp.log1p(-p_win[c]), 0.0)))

    # Campaign disputes.
    n_kinds = len(CAMPAIGN_KINDS)
    zeta = numpyro.sample("campaign_log_median", dist.Normal(
        jnp.array([PRIOR_CAMPAIGN_LOG_MEDIAN[k] for k in CAMPAIGN_KINDS]), 1.5).to_event(1))
    campaign_sigma = numpyro.sample("campaign_sigma", dist.LogNormal(math.log(0.8), 0.5).expand([n_kinds]).to_event(1))
    if data.campaign_kind.shape[0]:
        k = data.campaign_kind
        mu_k, s_k = zeta[k], campaign_sigma[k]
        term = jnp.where(data.campaign_censored, _log_survival(data.campaign_log_cost, mu_k, s_k),
                         _log_density(data.campaign_log_cost, mu_k, s_k))
        numpyro.factor("campaign_disputes", total(
            data.campaign_weight * (term - _log_survival(data.campaign_log_deductible, mu_k, s_k))))


def _truncated_lognormal(rng: np.random.Generator, log_low: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Lognormal draws conditioned on exceeding ``exp(log_low)`` (the deductible's truncation), by
    inverting the survival function: exact however far the deductible lies in the tail."""
    alpha = (log_low - mu) / sigma
    tail = np.maximum(stats.norm.sf(alpha), np.finfo(float).tiny)
    z = np.maximum(stats.norm.isf((1.0 - rng.random(np.shape(mu))) * tail), alpha)
    return np.exp(mu + sigma * z)


def replicate(rng: np.random.Generator, draws: dict[str, np.ndarray], data: SeverityData) -> dict[str, np.ndarray]:
    """Replicated observations under parameter draws [draw, ...] (the posterior and prior predictive).

    Per draw: each dispute's cost given its recorded stage, above its deductible and, where the
    recorded cost is a lower bound (paid at the limit, or open: the cost so far), capped at it as
    the record is; each dispute's outcome (meaningful where ``data.decided``); each campaign
    dispute's cost, truncated and censored likewise. Durations are not replicated (an open
    dispute's final stage is unknown). Returns ``cost_cny`` and ``won`` [draw, dispute] and
    ``campaign_cost_cny`` [draw, campaign dispute].
    """
    c, t, stage = np.asarray(data.country), np.asarray(data.dispute_type), np.asarray(data.stage)
    mu = np.asarray(draws["log_median"], np.float64)[:, c, t, stage]
    cost = _truncated_lognormal(rng, np.asarray(data.log_deductible), mu, np.asarray(draws["sigma"], np.float64)[:, stage])
    lower_bound = np.asarray(data.censored) | ~np.asarray(data.closed)
    out = {"cost_cny": np.where(lower_bound, np.minimum(cost, np.exp(np.asarray(data.log_cost))), cost),
           "won": (rng.random(mu.shape) < np.asarray(draws["win_probability"])[:, c]).astype(np.int64)}
    if np.shape(data.campaign_kind)[0]:
        k = np.asarray(data.campaign_kind)
        campaign = _truncated_lognormal(rng, np.asarray(data.campaign_log_deductible),
                                        np.asarray(draws["campaign_log_median"], np.float64)[:, k],
                                        np.asarray(draws["campaign_sigma"], np.float64)[:, k])
        out["campaign_cost_cny"] = np.where(np.asarray(data.campaign_censored),
                                            np.minimum(campaign, np.exp(np.asarray(data.campaign_log_cost))), campaign)
    return out


# A pytree, so that NUTS can take the data as a traced argument (one compilation per shape).
jax.tree_util.register_dataclass(
    SeverityData, data_fields=[f.name for f in dataclasses.fields(SeverityData) if f.name != "n_countries"],
    meta_fields=["n_countries"])
