"""Compose a validated scenario and portfolio into the engine's arrays (host side, NumPy).

Two sources fill the same intermediate form, :class:`ModelTables`:

- ``parameters = "fixed"``: the scenario's ``[[model.cells]]`` (one draw, one severity stage);
- ``parameters = "posterior"``: the fitted model's posterior draws (:mod:`leisim.models.posterior`).

:func:`assemble` turns it into :class:`EngineParams` and :class:`EngineShape`, sizes the
buffers, and builds the alias tables.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax.numpy as jnp
import numpy as np

from ..countries import COUNTRIES
from ..errors import InputError
from ..simulator.engine import (
    FAMILIES, ROW_CELL, ROW_COINSURANCE, ROW_DEDUCTIBLE, ROW_LIMIT, ROW_POLICY, ROW_WEIGHT, ROW_WIDTH, TRIAL,
    EngineParams, EngineShape,
)
from ..countries import DURATION_SIGMA, duration_median_years
from ..simulator.reinsurance import Contract, contracts_from_scenario, program_arrays
from . import shocks as shock_rules
from .portfolio import Portfolio
from .schema import Scenario

# Buffers hold a year's conditional mean plus BUFFER_SDS conditional standard deviations (plus
# 16), at the 1 - BUFFER_TAIL quantile over draws and year effects. A year beyond that is
# recomputed with a larger buffer (never dropped): with one draw and no year effect, 4.5 SDs make
# that ~1e-6 per Poisson year; under a posterior, ~1e-5: most runs pay the recomputation's
# extra compilation (~8 s on 2 cores) at most once, and larger buffers would cost more.
BUFFER_SDS = 4.5
BUFFER_TAIL = 1e-5
BUFFER_SAMPLES = 400_000
# Dispute slots per year at most: beyond this the buffers of a batch of years would not fit in
# memory (the pilot expects ~40 disputes a year; 30,000 policies ~5,000).
MAX_SLOTS = 1 << 20
# Development years tracked by the payment pattern; the last one takes the tail. The longest
# median stage duration is 3.5 years (appeals), so 10 leaves well under 1% of costs to the tail.
DEV_YEARS = 10
# [draw, entry] float64 tables alive at once while the buffers are sized (rates, concentrations,
# NB flags, variance terms and their temporaries).
ASSEMBLE_TABLES = 8


def available_memory() -> float:
    """Bytes available to new allocations (Linux MemAvailable), or inf where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return math.inf


@dataclasses.dataclass(frozen=True)
class Composition:
    """Everything the driver needs, plus the labels that the outputs use."""

    params: EngineParams
    shape: EngineShape
    group_country: tuple[str, ...]  # per cell
    group_dispute_type: tuple[str, ...]
    countries: tuple[str, ...]  # the output's country axis: the portfolio's countries
    expected_disputes: float  # per year, averaged over draws and year effects
    premium_cny: float
    n_draws: int = 1
    parameters: str = "fixed"
    programs: tuple[tuple[Contract, ...], ...] = ()  # reinsurance programs run on common random numbers
    dev_years: int = 0  # development years of the payment pattern (0: not tracked)


@dataclasses.dataclass(frozen=True)
class ModelTables:
    """A model on a portfolio, before it becomes engine arrays. Amounts in CNY.

    Strata: ``stratum_cell[s]`` and its entries ``stratum_policies[s]`` with fixed weights
    ``stratum_weights[s]``; the expected disputes of entry ``i`` of stratum ``s`` in draw ``d``
    are ``stratum_scale[d, s] * stratum_weights[s][i]`` before the year effect.
    """

    cell_country: tuple[str, ...]
    cell_dispute_type: tuple[str, ...]
    cell_family: np.ndarray  # [cell] index into FAMILIES
    cell_currency: tuple[str, ...]  # [cell]
    stratum_cell: np.ndarray  # [stratum]
    stratum_policies: tuple[np.ndarray, ...]
    stratum_weights: tuple[np.ndarray, ...]
    stratum_scale: np.ndarray  # [draw, stratum]
    cell_concentration: np.ndarray  # [draw, cell] NB2 k, 0 = not NB2
    cell_stage_probability: np.ndarray  # [draw, cell, stage]
    cell_severity: np.ndarray  # [draw, cell, stage, 3]
    cell_fee: np.ndarray  # [draw, cell, 3]
    year_sigma: np.ndarray  # [draw]
    fx_sigma: dict[str, float]  # currency -> annual log-volatility
    cell_dispersion: np.ndarray | None = None  # [draw, cell] NB1 delta, 0 = not NB1 (None: all 0)
    campaign_cell: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, int))  # [kind]
    campaign_policies: tuple[np.ndarray, ...] = ()  # per kind: target policies
    campaign_weights: tuple[np.ndarray, ...] = ()  # per kind: their weights
    campaign_rate: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0)))  # [draw, kind]
    campaign_size: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0, 2)))  # [draw, kind, 2]
    cell_duration: np.ndarray | None = None  # [draw, cell, stage, 2] (log median years, log sd); None: by country

    @property
    def n_draws(self) -> int:
        return self.stratum_scale.shape[0]


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's stable construction) for probabilities proportional to ``weights``.

    Returns (threshold, alias): draw column ``i`` uniformly and a uniform ``f``; take ``i`` if
    ``f < threshold[i]``, else ``alias[i]``. All-zero weights give the uniform table.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = len(weights)
    total = weights.sum()
    scaled = weights * n / total if total > 0 else np.ones(n)
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


def _accept(threshold: np.ndarray) -> np.ndarray:
    """Integer acceptance for the engine: keep the column iff its 32-bit fraction < ceil(t * 2**32)."""
    return np.minimum(np.ceil(threshold * 2.0**32), 2.0**32).astype(np.uint64)


def alias_rows(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The engine's form of :func:`alias_table`: (integer acceptance, alias) with alias indices
    local to the table (0 .. len - 1), the one convention ``engine._alias_pick`` reads."""
    threshold, alias = alias_table(weights)
    if alias.size and not (alias.min() >= 0 and alias.max() < alias.size):
        raise AssertionError("alias indices must be local to their table")
    return _accept(threshold), alias


def _severity_params(sev: dict, multiplier: float) -> tuple[int, tuple[float, float, float]]:
    """Engine parameters of a severity, scaled by ``multiplier`` (cost inflation times FX)."""
    family = FAMILIES.index(sev["distribution"])
    if sev["distribution"] == "lognormal":
        return family, (math.log(sev["median_cny"] * multiplier), float(sev["sigma"]), 0.0)
    if sev["distribution"] == "gamma":
        scale = sev["scale_cny"] if "scale_cny" in sev else sev["mean_cny"] / sev["shape"]
        return family, (float(sev["shape"]), scale * multiplier, 0.0)
    return family, (float(sev["alpha"]), sev["scale_cny"] * multiplier, sev.get("threshold_cny", 0.0) * multiplier)


def fixed_tables(scenario: Scenario, portfolio: Portfolio) -> tuple[ModelTables, np.ndarray]:
    """The scenario's ``[[model.cells]]`` on the portfolio: one draw, one stratum, one stage.

    The expected count for policy ``p`` in cell ``g`` is
    ``rate_g * frequency shock(country) * sector_relativity_g(sector_p) * exposure[p, country]``.
    Returns the tables and each entry's cell.
    """
    shocks = scenario.shocks
    column = {country: c for c, country in enumerate(portfolio.countries)}
    sector = np.asarray(portfolio.sector)
    uncovered = [c for c in portfolio.countries if c not in {cell["country"] for cell in scenario.cells}
                 and portfolio.exposure[:, column[c]].sum() > 0]
    if uncovered:
        warnings.warn(
            f"{scenario.source}: the portfolio has exposure to {', '.join(uncovered)} but the scenario has no "
            "[[model.cells]] for it: no disputes are simulated there. Add cells for these countries.",
            stacklevel=3,
        )
    cells = []
    for spec in scenario.cells:
        country = spec["country"]
        if country not in column:
            continue  # the portfolio has no exposure there
        rel = spec.get("sector_relativity", {})
        relativity = np.array([float(rel.get(s, 1.0)) for s in sector])
        shocked = np.array([shock_rules.frequency_multiplier(shocks, country, spec["dispute_type"], s) for s in sector])
        lam = spec["frequency"]["rate"] * shocked * relativity * portfolio.exposure[:, column[country]]
        policies = np.flatnonzero(lam > 0)
        if policies.size == 0:
            continue
        currency = spec.get("currency", COUNTRIES[country].currency)
        multiplier = shock_rules.cost_multiplier(shocks, country, currency)
        k = float(spec["frequency"]["concentration"]) if spec["frequency"]["distribution"] == "negative_binomial" else 0.0
        duration = spec.get("duration", {})
        cells.append(dict(country=country, dispute_type=spec["dispute_type"], policies=policies, lam=lam[policies],
                          k=k, currency=currency, severity=_severity_params(spec["severity"], multiplier),
                          duration=(math.log(float(duration.get("median_years", duration_median_years(country)))),
                                    float(duration.get("sigma", DURATION_SIGMA)))))
    if not cells:
        # Nothing can happen: keep one empty cell so that the kernel's shapes stay valid.
        cells.append(dict(country=portfolio.countries[0] if portfolio.countries else "US", dispute_type="patent",
                          policies=np.zeros(1, int), lam=np.zeros(1), k=0.0, currency="CNY",
                          severity=(0, (0.0, 1.0, 0.0)), duration=(0.0, DURATION_SIGMA)))
    n_cells = len(cells)
    fx_vol = scenario.raw.get("fx", {}).get("volatility", {})
    return ModelTables(
        cell_country=tuple(c["country"] for c in cells),
        cell_dispute_type=tuple(c["dispute_type"] for c in cells),
        cell_family=np.array([c["severity"][0] for c in cells]),
        cell_currency=tuple(c["currency"] for c in cells),
        # One stratum holding every entry with its full rate (the scale is 1).
        stratum_cell=np.zeros(1, int),
        stratum_policies=(np.concatenate([c["policies"] for c in cells]),),
        stratum_weights=(np.concatenate([c["lam"] for c in cells]),),
        stratum_scale=np.ones((1, 1)),
        cell_concentration=np.array([[c["k"] for c in cells]]),
        cell_stage_probability=np.ones((1, n_cells, 1)),
        cell_severity=np.array([[[c["severity"][1]] for c in cells]]),
        cell_fee=np.zeros((1, n_cells, 3)),
        year_sigma=np.array([float(scenario.raw.get("model", {}).get("year_effect_sd", 0.0))
                             * float(shocks.get("year_factor", 1.0))]),
        fx_sigma={str(k): float(v) for k, v in fx_vol.items()},
        cell_duration=np.array([[[c["duration"]] for c in cells]]),
    ), np.concatenate([np.full(len(c["policies"]), i) for i, c in enumerate(cells)])


def _mean_cost(tables: ModelTables) -> np.ndarray:
    """Mean ground-up cost of a dispute per (draw, cell), before FX and fee-shifting noise.

    The case-reserve weight of an open dispute (reserving.py): what an insurer expects a dispute
    in that forum to cost. A Pareto tail without a mean (alpha <= 1) uses its median instead.
    """
    a, b, c = (tables.cell_severity[..., j] for j in range(3))  # [draw, cell, stage]
    family = tables.cell_family[None, :, None]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        lognormal = np.exp(a + 0.5 * b * b)
        gamma = a * b
        pareto = np.where(a > 1.0, c + b / np.where(a > 1.0, a - 1.0, 1.0), c + b * np.expm1(np.log(2.0) / a))
    per_stage = np.select([family == FAMILIES.index("lognormal"), family == FAMILIES.index("gamma")],
                          [lognormal, gamma], pareto)
    mean = np.sum(tables.cell_stage_probability * per_stage, axis=2)
    return np.minimum(np.nan_to_num(mean, nan=0.0, posinf=3e38), 3e38)


def assemble(tables: ModelTables, portfolio: Portfolio, *, entry_cells: np.ndarray | None = None,
             batch_years: int = 128, programs: list[list[Contract]] = (), dev_years: int = 0,
             ) -> tuple[EngineParams, EngineShape, float]:
    """Engine arrays for ``tables`` on ``portfolio``; also the expected disputes per year.

    ``entry_cells`` gives each entry's cell when a stratum mixes cells (the single stratum of a
    fixed scenario); by default an entry's cell is its stratum's. ``programs``: reinsurance
    programs run side by side (none: no reinsurance arrays). ``dev_years``: development years of
    the payment pattern (0: not tracked).
    """
    n_draws, n_strata = tables.stratum_scale.shape
    n_cells = len(tables.cell_country)
    if portfolio.n_policies >= 2**24 or n_cells >= 2**24:
        raise InputError(f"at most {2**24 - 1:,} policies and cells are supported (float32 indices)",
                         file=portfolio.source, field="policies", value=portfolio.n_policies)
    counts = np.array([max(len(p), 1) for p in tables.stratum_policies])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_entries = int(counts.sum())
    # The buffer sizing below holds a few [draw, entry] float64 tables at once: refuse a book too
    # large for this machine with the estimate, instead of being killed for memory.
    need = ASSEMBLE_TABLES * 8.0 * n_draws * n_entries
    available = available_memory()
    if need > 0.8 * available:
        raise InputError(f"composing {n_entries:,} (policy, cell) entries under {n_draws:,} parameter draws needs about "
                         f"{need / 1e9:,.1f} GB of memory and {available / 1e9:,.1f} GB are available; use a smaller "
                         "portfolio (or split it), or a fixed-parameter scenario for a book this large",
                         file=portfolio.source, field="policies", value=portfolio.n_policies)
    policies = np.concatenate([p if len(p) else np.zeros(1, int) for p in tables.stratum_policies])
    weights = np.concatenate([w if len(w) else np.zeros(1) for w in tables.stratum_weights])
    entry_stratum = np.repeat(np.arange(n_strata), counts)
    cells = entry_cells if entry_cells is not None else tables.stratum_cell[entry_stratum]

    entry_accept, entry_alias = np.empty(n_entries, np.uint64), np.empty(n_entries, np.int64)
    for s in range(n_strata):
        lo, hi = offsets[s], offsets[s] + counts[s]
        entry_accept[lo:hi], entry_alias[lo:hi] = alias_rows(weights[lo:hi])

    stratum_weight = np.array([weights[offsets[s]:offsets[s] + counts[s]].sum() for s in range(n_strata)])
    stratum_rate = tables.stratum_scale * stratum_weight[None, :]  # [draw, stratum] expected disputes
    # Dominating event rate: expected disputes (the NB thinning keeps k log(1 + lam/k) of them).
    total_rate = stratum_rate.sum(axis=1)
    stratum_accept = np.empty((n_draws, n_strata), np.uint64)
    stratum_alias = np.empty((n_draws, n_strata), np.int64)
    for d in range(n_draws):
        stratum_accept[d], stratum_alias[d] = alias_rows(stratum_rate[d])

    row = np.zeros((n_entries, ROW_WIDTH))
    row[:, ROW_DEDUCTIBLE] = portfolio.deductible_cny[policies]
    row[:, ROW_COINSURANCE] = portfolio.coinsurance[policies]
    row[:, ROW_LIMIT] = portfolio.limit_per_dispute_cny[policies]
    row[:, ROW_POLICY] = policies
    row[:, ROW_CELL] = cells
    row[:, ROW_WEIGHT] = weights

    currencies = sorted(set(tables.cell_currency))
    fx_sigma = np.array([tables.fx_sigma.get(c, 0.0) for c in currencies])
    cell_currency = np.array([currencies.index(c) for c in tables.cell_currency])

    # Campaigns: one alias table over each kind's target policies, padded to a common width.
    n_kinds = len(tables.campaign_policies)
    width = max([len(p) for p in tables.campaign_policies] + [1])
    campaign_accept = np.full((max(n_kinds, 1), width), 2**32, np.uint64)
    campaign_alias = np.zeros((max(n_kinds, 1), width), np.int64)
    campaign_policy = np.zeros((max(n_kinds, 1), width), np.int64)
    campaign_count = np.ones(max(n_kinds, 1), np.int64)
    for k in range(n_kinds):
        n = len(tables.campaign_policies[k])
        campaign_accept[k, :n], campaign_alias[k, :n] = alias_rows(tables.campaign_weights[k])
        campaign_policy[k, :n], campaign_count[k] = tables.campaign_policies[k], n
    campaign_rate = tables.campaign_rate if n_kinds else np.zeros((n_draws, 1))
    campaign_size = tables.campaign_size if n_kinds else np.ones((n_draws, 1, 2))
    campaign_cell = tables.campaign_cell if n_kinds else np.zeros(1, int)

    # Buffers: the count a year reaches with probability ~1e-4, over draws and year effects. For a
    # sample of (draw, year effect) pairs, the conditional mean plus BUFFER_SDS conditional sds;
    # the buffer is that quantity's 1 - BUFFER_TAIL quantile. Rarer years overflow and are
    # recomputed exactly with larger buffers (never dropped).
    rng = np.random.default_rng(0)
    draw = rng.integers(0, n_draws, BUFFER_SAMPLES)
    level = np.exp(tables.year_sigma[draw] * rng.standard_normal(BUFFER_SAMPLES))
    lam_entry = tables.stratum_scale[:, entry_stratum] * weights[None, :]  # [draw, entry]
    dispersion = tables.cell_dispersion if tables.cell_dispersion is not None else np.zeros_like(tables.cell_concentration)
    k_entry = tables.cell_concentration[:, cells]
    nb_entry = k_entry > 0
    clustered = bool(nb_entry.any() or np.any(dispersion > 0))
    # Variance of the year's dispute count given the draw: sum over entries (NB2 terms scale with
    # the square of the year level, the rest linearly).
    var_linear = np.where(nb_entry, lam_entry, lam_entry * (1.0 + dispersion[:, cells])).sum(axis=1)
    var_square = np.where(nb_entry, lam_entry**2 / np.where(nb_entry, k_entry, 1.0), 0.0).sum(axis=1)

    def quantile_buffer(mean: np.ndarray, variance: np.ndarray) -> int:
        high = float(np.quantile(mean + BUFFER_SDS * np.sqrt(np.maximum(variance, 0.0)), 1.0 - BUFFER_TAIL))
        if not high <= MAX_SLOTS:  # also NaN and inf
            raise InputError(f"the portfolio and scenario give up to {high:,.0f} disputes in a year, more than "
                             f"leisim simulates ({MAX_SLOTS:,}); check the exposure units (CNY million of exports), "
                             "the frequency rates and the frequency or exposure shocks", field="frequency")
        return int(math.ceil((high + 16) / 32.0) * 32)

    event_mean = total_rate[draw] * level
    event_buffer = quantile_buffer(event_mean, event_mean)
    dispute_buffer = (quantile_buffer(event_mean, var_linear[draw] * level + var_square[draw] * level**2)
                      if clustered else event_buffer)
    if n_kinds:
        camp_mean = campaign_rate.sum(axis=1)[draw] * level
        mean_hits = 1.0 + campaign_size[..., 0]  # [draw, kind]
        second_moment = campaign_size[..., 0] + campaign_size[..., 0] ** 2 / campaign_size[..., 1] + mean_hits**2
        hit_mean = (campaign_rate * mean_hits).sum(axis=1)[draw] * level
        hit_var = (campaign_rate * second_moment).sum(axis=1)[draw] * level  # compound Poisson
        campaign_buffer = quantile_buffer(camp_mean, camp_mean)
        campaign_dispute_buffer = quantile_buffer(hit_mean, hit_var)
    else:
        campaign_buffer = campaign_dispute_buffer = 0

    # Expected disputes per year, averaged over draws; E[exp(eps)] = exp(sigma^2 / 2).
    lift = np.exp(0.5 * tables.year_sigma**2)
    expected = float(np.mean(stratum_rate.sum(axis=1) * lift))
    if n_kinds:
        expected += float(np.mean((campaign_rate * (1.0 + campaign_size[..., 0])).sum(axis=1) * lift))

    n_stages = tables.cell_stage_probability.shape[2]
    duration = tables.cell_duration
    if duration is None:
        duration = np.broadcast_to(np.array([[math.log(duration_median_years(c)), DURATION_SIGMA]
                                             for c in tables.cell_country])[None, :, None, :],
                                   (n_draws, n_cells, n_stages, 2))
    case_weight = _mean_cost(tables)
    if programs:
        program_params, program_kinds, reinsurers = program_arrays(list(programs))
    else:
        program_params, program_kinds, reinsurers = None, (), ()
    families = tuple(bool(np.any(tables.cell_family == f)) for f in range(len(FAMILIES)))
    params = EngineParams(
        total_rate=jnp.asarray(total_rate, jnp.float64),
        stratum_accept=jnp.asarray(stratum_accept, jnp.uint64),
        stratum_alias=jnp.asarray(stratum_alias, jnp.int32),
        stratum_scale=jnp.asarray(tables.stratum_scale, jnp.float32),
        cell_concentration=jnp.asarray(tables.cell_concentration, jnp.float32),
        cell_dispersion=jnp.asarray(dispersion, jnp.float32),
        cell_stage_cdf=jnp.asarray(np.cumsum(tables.cell_stage_probability, axis=2), jnp.float32),
        cell_severity=jnp.asarray(tables.cell_severity, jnp.float32),
        cell_fee=jnp.asarray(tables.cell_fee, jnp.float32),
        year_sigma=jnp.asarray(tables.year_sigma, jnp.float32),
        campaign_rate=jnp.asarray(campaign_rate, jnp.float64),
        campaign_size=jnp.asarray(campaign_size, jnp.float32),
        stratum_offset=jnp.asarray(offsets, jnp.int32),
        stratum_count=jnp.asarray(counts, jnp.int32),
        entry_accept=jnp.asarray(entry_accept, jnp.uint64),
        entry_alias=jnp.asarray(entry_alias, jnp.int32),
        entry_row=jnp.asarray(row, jnp.float32),
        cell_family=jnp.asarray(tables.cell_family, jnp.int32),
        cell_currency=jnp.asarray(cell_currency, jnp.int32),
        fx_sigma=jnp.asarray(fx_sigma, jnp.float32),
        campaign_cell=jnp.asarray(campaign_cell, jnp.int32),
        campaign_accept=jnp.asarray(campaign_accept, jnp.uint64),
        campaign_alias=jnp.asarray(campaign_alias, jnp.int32),
        campaign_policy=jnp.asarray(campaign_policy, jnp.int32),
        campaign_count=jnp.asarray(campaign_count, jnp.int32),
        policy_terms=jnp.asarray(np.stack([portfolio.deductible_cny, portfolio.coinsurance,
                                           portfolio.limit_per_dispute_cny], axis=1), jnp.float32),
        aggregate_limit_cny=jnp.asarray(portfolio.aggregate_limit_cny, jnp.float64),
        programs=program_params,
        cell_duration=jnp.asarray(duration, jnp.float32),
        cell_case_weight=jnp.asarray(case_weight, jnp.float32),
    )
    shape = EngineShape(
        n_policies=portfolio.n_policies,
        n_cells=n_cells,
        event_buffer=event_buffer,
        dispute_buffer=dispute_buffer,
        campaign_buffer=campaign_buffer,
        campaign_dispute_buffer=campaign_dispute_buffer,
        n_stages=n_stages,
        stratified=n_strata > 1,
        clustered=clustered,
        families=families,
        fee_shifting=bool(np.any(tables.cell_fee[..., 0] > 0) or np.any(tables.cell_fee[..., 2] > 0))
        and n_stages > TRIAL,
        fx=bool(np.any(fx_sigma > 0)),
        year_effect=bool(np.any(tables.year_sigma > 0)),
        batch_years=batch_years,
        n_reinsurers=max(len(reinsurers), 1) if programs else 0,
        program_kinds=program_kinds,
        dev_years=dev_years,
    )
    return params, shape, expected


def compose(scenario: Scenario, portfolio: Portfolio, *, batch_years: int = 128, posterior=None,
            programs: list[list[Contract]] | None = None, dev_years: int = DEV_YEARS, x64: bool = False) -> Composition:
    """Turn a scenario and a portfolio into engine arrays.

    Args:
        posterior: the fitted posterior (an xarray Dataset) for ``parameters = "posterior"``;
            by default the one shipped with leisim.
        programs: reinsurance programs to run side by side on common random numbers [default:
            the scenario's own ``[[reinsurance]]``, if any]. The first is the one reported as
            ``ceded``/``net``.
        dev_years: development years of the payment pattern (0: reserves not tracked).
        x64: sample in float64 as well (default: float32 sampling, float64 accumulation).
    """
    shocks = scenario.shocks
    missing = shock_rules.unknown_sectors(portfolio, shocks)
    if missing:
        warnings.warn(f"{scenario.source}: shocks name sectors the portfolio does not have: {', '.join(missing)} "
                      f"(its sectors: {', '.join(sorted(set(portfolio.sector)))})", stacklevel=2)
    portfolio = shock_rules.apply_to_portfolio(portfolio, shocks)
    premium = float(portfolio.premium_cny.sum())
    if programs is None:
        programs = [contracts_from_scenario(scenario.reinsurance, premium)] if scenario.reinsurance else []
    programs = [shock_rules.apply_to_contracts(list(p), shocks) for p in programs]
    if scenario.parameters == "fixed" and any(k in shocks for k in ("severity_by_stage", "campaigns")):
        warnings.warn(f"{scenario.source}: severity_by_stage and campaigns shocks act on the posterior-driven "
                      "lifecycle model only; a fixed scenario has one stage and no campaigns", stacklevel=2)
    if scenario.parameters == "fixed":
        tables, entry_cells = fixed_tables(scenario, portfolio)
    else:
        from ..models.posterior import posterior_tables

        tables, entry_cells = posterior_tables(scenario, portfolio, posterior), None
    params, shape, expected = assemble(tables, portfolio, entry_cells=entry_cells, batch_years=batch_years,
                                       programs=programs, dev_years=dev_years)
    return Composition(
        params=params,
        shape=shape._replace(x64=x64),
        group_country=tables.cell_country,
        group_dispute_type=tables.cell_dispute_type,
        countries=portfolio.countries,
        expected_disputes=expected,
        premium_cny=premium,
        n_draws=tables.n_draws,
        parameters=scenario.parameters,
        programs=tuple(tuple(p) for p in programs),
        dev_years=dev_years,
    )
