"""Compose a validated scenario and portfolio into the engine's arrays (host side, NumPy)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax.numpy as jnp
import numpy as np

from ..countries import COUNTRIES
from ..errors import InputError
from ..simulator.engine import (
    FAMILIES, ROW_COINSURANCE, ROW_DEDUCTIBLE, ROW_FAMILY, ROW_GROUP, ROW_LIMIT, ROW_LOG1M_THETA, ROW_POLICY,
    ROW_SEV_A, ROW_SEV_B, ROW_SEV_C, ROW_WIDTH, EngineParams, EngineShape,
)
from .portfolio import Portfolio
from .schema import Scenario

# Buffers hold the mean plus this many standard deviations (plus 16); a year beyond that is
# recomputed with a larger buffer (never dropped). Six SDs make that ~1e-9 per Poisson year, so
# a run rarely pays the recomputation's extra compilation.
BUFFER_SDS = 6.0


@dataclasses.dataclass(frozen=True)
class Composition:
    """Everything the driver needs, plus the labels that the outputs use."""

    params: EngineParams
    shape: EngineShape
    group_country: tuple[str, ...]  # per group
    group_dispute_type: tuple[str, ...]
    countries: tuple[str, ...]  # the output's country axis: the portfolio's countries
    expected_disputes: float  # per year
    premium_cny: float


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's stable construction) for probabilities proportional to ``weights``.

    Returns (threshold, alias): draw column ``i`` uniformly and a uniform ``f``; take ``i`` if
    ``f < threshold[i]``, else ``alias[i]``.
    """
    n = len(weights)
    scaled = np.asarray(weights, dtype=np.float64) * n / np.sum(weights)
    threshold, alias = np.ones(n), np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        threshold[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    for i in small + large:  # leftovers are 1 up to rounding
        threshold[i] = 1.0
    return threshold, alias


def _multiplier(table: dict, country: str) -> float:
    return float(table.get(country, table.get("*", 1.0)))


def _severity_params(sev: dict, multiplier: float) -> tuple[int, tuple[float, float, float]]:
    """Engine parameters of a severity, scaled by ``multiplier`` (cost inflation times FX)."""
    family = FAMILIES.index(sev["distribution"])
    if sev["distribution"] == "lognormal":
        return family, (math.log(sev["median_cny"] * multiplier), float(sev["sigma"]), 0.0)
    if sev["distribution"] == "gamma":
        scale = sev["scale_cny"] if "scale_cny" in sev else sev["mean_cny"] / sev["shape"]
        return family, (float(sev["shape"]), scale * multiplier, 0.0)
    return family, (float(sev["alpha"]), sev["scale_cny"] * multiplier, sev.get("threshold_cny", 0.0) * multiplier)


def _buffer(mean: float, variance: float) -> int:
    size = mean + BUFFER_SDS * math.sqrt(variance) + 16
    return int(math.ceil(size / 32.0) * 32)


def compose(scenario: Scenario, portfolio: Portfolio, *, batch_years: int = 128) -> Composition:
    """Turn a fixed-parameter scenario and a portfolio into engine arrays.

    The expected count for policy ``p`` in cell ``g`` is
    ``rate_g * frequency shock(country) * sector_relativity_g(sector_p) * exposure[p, country]``.
    """
    if scenario.parameters != "fixed":
        raise InputError(
            'parameters = "posterior" needs a fitted model, which this version does not have yet; '
            'set [model] parameters = "fixed" and give [[model.cells]]',
            file=scenario.source, field="model.parameters", value=scenario.parameters, choices=["fixed"],
        )
    shocks = scenario.shocks
    freq_shock, sev_shock, fx_shock = shocks.get("frequency", {}), shocks.get("severity", {}), shocks.get("fx", {})
    column = {country: c for c, country in enumerate(portfolio.countries)}
    sector = np.asarray(portfolio.sector)

    uncovered = [c for c in portfolio.countries if c not in {cell["country"] for cell in scenario.cells}
                 and portfolio.exposure[:, column[c]].sum() > 0]
    if uncovered:
        warnings.warn(
            f"{scenario.source}: the portfolio has exposure to {', '.join(uncovered)} but the scenario has no "
            "[[model.cells]] for it: no disputes are simulated there. Add cells for these countries.",
            stacklevel=2,
        )

    groups = []
    for cell in scenario.cells:
        country = cell["country"]
        if country not in column:
            continue  # the portfolio has no exposure there
        rel = cell.get("sector_relativity", {})
        relativity = np.array([float(rel.get(s, 1.0)) for s in sector])
        lam = (cell["frequency"]["rate"] * _multiplier(freq_shock, country)
               * relativity * portfolio.exposure[:, column[country]])
        policies = np.flatnonzero(lam > 0)
        if policies.size == 0:
            continue
        lam = lam[policies]
        if cell["frequency"]["distribution"] == "negative_binomial":
            k = float(cell["frequency"]["concentration"])
            event_rate = k * np.log1p(lam / k)  # clusters per year, Poisson
            log1m_theta = -np.log1p(lam / k)  # log(1 - theta), theta = lam / (k + lam)
            variance = lam + lam**2 / k
        else:
            event_rate, log1m_theta, variance = lam, np.zeros_like(lam), lam
        currency = cell.get("currency", COUNTRIES[country].currency)
        multiplier = _multiplier(sev_shock, country) * float(fx_shock.get(currency, 1.0))
        groups.append(dict(country=country, dispute_type=cell["dispute_type"], policies=policies,
                           lam=lam, event_rate=event_rate, log1m_theta=log1m_theta, variance=variance,
                           severity=_severity_params(cell["severity"], multiplier)))
    if not groups:
        # Nothing can happen: keep one empty group so that the kernel's shapes stay valid.
        groups.append(dict(country=portfolio.countries[0] if portfolio.countries else "US", dispute_type="patent",
                           policies=np.zeros(1, int), lam=np.zeros(1), event_rate=np.zeros(1),
                           log1m_theta=np.zeros(1), variance=np.zeros(1), severity=(0, (0.0, 1.0, 0.0))))

    rates = np.concatenate([g["event_rate"] for g in groups])
    threshold, alias = alias_table(rates if rates.sum() > 0 else np.ones_like(rates))
    entry_policy = np.concatenate([g["policies"] for g in groups])
    entry_group = np.concatenate([np.full(len(g["policies"]), i) for i, g in enumerate(groups)])

    clustered = any(np.any(g["log1m_theta"] < 0) for g in groups)
    event_mean = float(rates.sum())
    dispute_mean = float(sum(g["lam"].sum() for g in groups))
    event_buffer = _buffer(event_mean, event_mean)
    dispute_buffer = _buffer(dispute_mean, float(sum(g["variance"].sum() for g in groups))) if clustered else event_buffer

    families = tuple(any(g["severity"][0] == f for g in groups) for f in range(len(FAMILIES)))
    if portfolio.n_policies >= 2**24 or len(groups) >= 2**24:
        raise InputError(f"at most {2**24 - 1:,} policies and cells are supported (float32 indices)",
                         field="policies", value=portfolio.n_policies)
    group_severity = np.array([g["severity"][1] for g in groups], np.float64)
    group_family = np.array([g["severity"][0] for g in groups], np.float64)
    row = np.zeros((len(rates), ROW_WIDTH))
    row[:, [ROW_SEV_A, ROW_SEV_B, ROW_SEV_C]] = group_severity[entry_group]
    row[:, ROW_FAMILY] = group_family[entry_group]
    row[:, ROW_DEDUCTIBLE] = portfolio.deductible_cny[entry_policy]
    row[:, ROW_COINSURANCE] = portfolio.coinsurance[entry_policy]
    row[:, ROW_LIMIT] = portfolio.limit_per_dispute_cny[entry_policy]
    row[:, ROW_POLICY] = entry_policy
    row[:, ROW_GROUP] = entry_group
    row[:, ROW_LOG1M_THETA] = np.concatenate([g["log1m_theta"] for g in groups])
    params = EngineParams(
        event_rate=jnp.asarray(event_mean, jnp.float64),
        # keep the column iff its 32-bit fraction < ceil(threshold * 2**32); 2**32 always keeps it
        entry_accept=jnp.asarray(np.minimum(np.ceil(threshold * 2.0**32), 2.0**32).astype(np.uint64), jnp.uint64),
        entry_alias=jnp.asarray(alias, jnp.int32),
        entry_row=jnp.asarray(row, jnp.float32),
        aggregate_limit_cny=jnp.asarray(portfolio.aggregate_limit_cny, jnp.float64),
    )
    shape = EngineShape(
        n_policies=portfolio.n_policies,
        n_groups=len(groups),
        event_buffer=event_buffer,
        dispute_buffer=dispute_buffer,
        clustered=bool(clustered),
        families=families,
        batch_years=batch_years,
    )
    return Composition(
        params=params,
        shape=shape,
        group_country=tuple(g["country"] for g in groups),
        group_dispute_type=tuple(g["dispute_type"] for g in groups),
        countries=portfolio.countries,
        expected_disputes=dispute_mean,
        premium_cny=float(portfolio.premium_cny.sum()),
    )
