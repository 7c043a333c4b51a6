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
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..countries import DURATION_SIGMA, duration_median_years
from ..errors import InputError
from ..formats.portfolio import Portfolio
from ..simulator.driver import require_x64
from ..simulator.engine import (
    FAMILIES,
    ROW_CELL,
    ROW_COINSURANCE,
    ROW_DEDUCTIBLE,
    ROW_LIMIT,
    ROW_POLICY,
    ROW_WEIGHT,
    ROW_WIDTH,
    TRIAL,
    EngineParams,
    EngineShape,
    flat_capacity,
)
from ..simulator.reinsurance import Contract, contracts_from_scenario, program_arrays
from .schema import Scenario
from .tables import ModelTables, fixed_tables, posterior_tables  # noqa: F401  (ModelTables: part of this module's interface)

# Buffers hold a year's conditional mean plus BUFFER_SDS conditional standard deviations (plus
# 16), at the 1 - BUFFER_TAIL quantile over draws and year effects: sized for the typical year, not
# the worst (draw, year effect) pair. A year beyond that is recomputed with larger buffers (never
# dropped; every draw is prefix-stable, so it draws the same disputes, and the years do not
# depend on the buffers). Under the shipped posterior about 1 year in 1,000 is recomputed (one
# grown shape per run, driver._grow); against 3 SDs at 1 - 1e-3 (1 year in 7,500 recomputed) the
# run is 1.4x faster, and buffers sized for 1 in 100,000 ran the kernel 3x slower
# (benchmarks/RESULTS.md, issue 18).
BUFFER_SDS = 2.0
BUFFER_TAIL = 1e-2
BUFFER_SAMPLES = 400_000
# Columns of the campaign-size CDF tables at most (u32[draw, kind, column]: 16 MB per 1,000 draws
# and kind at the most): words past a table's end are resolved exactly when the year is recomputed.
SIZE_TABLE_MAX = 4096
# Dispute slots per year at most: beyond this the buffers of a batch of years would not fit in
# memory (the pilot expects ~40 disputes a year; 30,000 policies ~5,000).
MAX_SLOTS = 1 << 20
# Development years tracked by the payment pattern; the last one takes the tail. The longest
# median stage duration is 3.5 years (appeals), so 10 leaves well under 1% of costs to the tail.
DEV_YEARS = 10
# Host and device bytes per (policy, cell) entry while composing (policies, weights, strata,
# cells, alias tables, the float64 row and its float32 device copy, the segment sort's
# temporaries), and [draw, stratum] float64 tables alive at once (rates, alias tables, the
# buffer sizing's variance terms): composing needs O(entries + draws x strata) memory.
ENTRY_BYTES = 256
DRAW_STRATUM_TABLES = 12


# Years vectorised together (EngineShape.batch_years). On a CPU, 128 (cache-sized; measured in
# the issue-8 benchmarks). An accelerator needs thousands of lanes busy and no year body has a loop
# whose length depends on the draws any more (issue 18), so a batch there is as many years as
# ACCELERATOR_BATCH_SLOTS dispute slots allow (~0.8 GB of per-slot temporaries), 128 .. 16,384.
CPU_BATCH_YEARS = 128
ACCELERATOR_BATCH_SLOTS = 1 << 22
ACCELERATOR_BATCH_YEARS = 1 << 14


def default_batch_years(slots_per_year: int, backend: str | None = None) -> int:
    """Years per vectorised batch for ``backend`` (default: JAX's default backend). Results do not
    depend on it (tests/simulator/test_engine.py); only speed and memory do."""
    if (backend or jax.default_backend()) == "cpu":
        return CPU_BATCH_YEARS
    fit = max(ACCELERATOR_BATCH_SLOTS // max(slots_per_year, 1), 1)
    return int(min(ACCELERATOR_BATCH_YEARS, max(CPU_BATCH_YEARS, 1 << (fit.bit_length() - 1))))


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

    @property
    def has_point_estimate(self) -> bool:
        """Whether the posterior-mean row follows the draws (``compose(point_estimate_row=True)``)."""
        return self.params.total_rate.shape[0] == self.n_draws + 1 and self.n_draws > 1

    def at_point_estimate(self) -> Composition:
        """Every year at the posterior mean parameters: the same arrays and shape (so the same
        compiled kernel), the years pointed at the row after the draws."""
        if not self.has_point_estimate:
            raise ValueError("no posterior-mean row: compose with point_estimate_row=True")
        params = self.params._replace(draw_first=jnp.asarray(self.n_draws, jnp.int32),
                                      draw_count=jnp.asarray(1, jnp.uint32))
        return dataclasses.replace(self, params=params, n_draws=1)


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


class _Entries(NamedTuple):
    """The (policy, cell) entries of every stratum, laid end to end, with their alias tables and rows."""

    counts: np.ndarray  # [stratum] entries (at least 1: an empty stratum holds one zero-weight entry)
    offsets: np.ndarray  # [stratum] first entry
    stratum: np.ndarray  # [entry]
    cells: np.ndarray  # [entry]
    weights: np.ndarray  # [entry]
    accept: np.ndarray  # [entry] alias thresholds (uint64)
    alias: np.ndarray  # [entry]
    row: np.ndarray  # [entry, ROW_WIDTH] deductible, coinsurance, limit, policy, cell, weight


class _Campaigns(NamedTuple):
    """One alias table over each campaign kind's target policies, padded to a common width."""

    n_kinds: int
    accept: np.ndarray
    alias: np.ndarray
    policy: np.ndarray
    targets: np.ndarray  # [kind] target policies
    rate: np.ndarray  # [draw, kind]
    size: np.ndarray  # [draw, kind, 2]
    cell: np.ndarray  # [kind]
    size_cdf: np.ndarray  # u32[draw, kind, length]: the extra sellers' CDF in 32-bit fixed point


def nb_cdf_table(mean: np.ndarray, concentration: np.ndarray, *, max_length: int | None = None) -> np.ndarray:
    """CDF of NB(mean, concentration) (the sellers a campaign names beyond the first) in 32-bit fixed
    point: ``table[..., n] = round(P(N <= n) * 2**32)``, capped at ``2**32 - 1``, as many columns as the
    longest row needs to reach that cap (a multiple of 64, at most ``max_length``).

    A 32-bit uniform word ``u`` then gives ``N = #{n : table[n] <= u}``, exact to the word's resolution
    (2**-32, as the severity quantiles). Rows longer than the table leave the last entry below the cap:
    words at or beyond it are flagged and resolved exactly (engine.campaign_extra_sellers).
    pmf(0) = p**k, pmf(n + 1) = pmf(n) * (n + k) / (n + 1) * (1 - p), with p = k / (k + m).
    """
    max_length = SIZE_TABLE_MAX if max_length is None else max_length
    mean = np.asarray(mean, np.float64)
    k = np.asarray(concentration, np.float64)
    with np.errstate(divide="ignore"):
        log_q = np.log(mean / (mean + k))  # log(1 - p)
        log_p0 = k * np.log(k / (mean + k))
    length, limit = 64, 2.0**32 - 1.0
    while True:
        n = np.arange(length - 1, dtype=np.float64)
        steps = np.log(n + k[..., None]) - np.log(n + 1.0) + log_q[..., None]
        log_pmf = np.concatenate([log_p0[..., None], log_p0[..., None] + np.cumsum(steps, axis=-1)], axis=-1)
        pmf = np.where(mean[..., None] > 0, np.exp(log_pmf), np.where(np.arange(length) == 0, 1.0, 0.0))
        table = np.minimum(np.floor(np.cumsum(pmf, axis=-1) * 2.0**32 + 0.5), limit)
        if np.all(table[..., -1] >= limit) or length >= max_length:
            return table.astype(np.uint32)
        length = min(length * 2, max_length)


def _refuse_too_large(tables: ModelTables, portfolio: Portfolio, n_entries: int) -> None:
    """Refuse a book too large for this machine with the estimate, instead of being killed for memory."""
    n_draws, n_strata = tables.stratum_scale.shape
    if portfolio.n_policies >= 2**24 or len(tables.cell_country) >= 2**24:
        raise InputError(f"at most {2**24 - 1:,} policies and cells are supported (float32 indices)",
                         file=portfolio.source, field="policies", value=portfolio.n_policies)
    need = ENTRY_BYTES * n_entries + DRAW_STRATUM_TABLES * 8.0 * n_draws * n_strata
    available = available_memory()
    if need > 0.8 * available:
        raise InputError(f"composing {n_entries:,} (policy, cell) entries under {n_draws:,} parameter draws needs about "
                         f"{need / 1e9:,.1f} GB of memory and {available / 1e9:,.1f} GB are available; use a smaller "
                         "portfolio (or split it)", file=portfolio.source, field="policies", value=portfolio.n_policies)


def _entries(tables: ModelTables, portfolio: Portfolio, entry_cells: np.ndarray | None) -> _Entries:
    n_strata = tables.stratum_scale.shape[1]
    counts = np.array([max(len(p), 1) for p in tables.stratum_policies])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_entries = int(counts.sum())
    _refuse_too_large(tables, portfolio, n_entries)
    policies = np.concatenate([p if len(p) else np.zeros(1, int) for p in tables.stratum_policies])
    weights = np.concatenate([w if len(w) else np.zeros(1) for w in tables.stratum_weights])
    entry_stratum = np.repeat(np.arange(n_strata), counts)
    cells = entry_cells if entry_cells is not None else tables.stratum_cell[entry_stratum]
    accept, alias = np.empty(n_entries, np.uint64), np.empty(n_entries, np.int64)
    for s in range(n_strata):
        lo, hi = offsets[s], offsets[s] + counts[s]
        accept[lo:hi], alias[lo:hi] = alias_rows(weights[lo:hi])
    row = np.zeros((n_entries, ROW_WIDTH))
    row[:, ROW_DEDUCTIBLE] = portfolio.deductible_cny[policies]
    row[:, ROW_COINSURANCE] = portfolio.coinsurance[policies]
    row[:, ROW_LIMIT] = portfolio.limit_per_dispute_cny[policies]
    row[:, ROW_POLICY] = policies
    row[:, ROW_CELL] = cells
    row[:, ROW_WEIGHT] = weights
    return _Entries(counts, offsets, entry_stratum, cells, weights, accept, alias, row)


def _campaigns(tables: ModelTables, main_draws: int) -> _Campaigns:
    n_draws = tables.stratum_scale.shape[0]
    n_kinds = len(tables.campaign_policies)
    width = max([len(p) for p in tables.campaign_policies] + [1])
    accept = np.full((max(n_kinds, 1), width), 2**32, np.uint64)
    alias = np.zeros((max(n_kinds, 1), width), np.int64)
    policy = np.zeros((max(n_kinds, 1), width), np.int64)
    targets = np.ones(max(n_kinds, 1), np.int64)
    for k in range(n_kinds):
        n = len(tables.campaign_policies[k])
        accept[k, :n], alias[k, :n] = alias_rows(tables.campaign_weights[k])
        policy[k, :n], targets[k] = tables.campaign_policies[k], n
    return _Campaigns(n_kinds=n_kinds, accept=accept, alias=alias, policy=policy, targets=targets,
                      rate=tables.campaign_rate if n_kinds else np.zeros((n_draws, 1)),
                      size=tables.campaign_size if n_kinds else np.ones((n_draws, 1, 2)),
                      cell=tables.campaign_cell if n_kinds else np.zeros(1, int),
                      size_cdf=_size_tables(tables.campaign_size, main_draws) if n_kinds
                      else np.full((n_draws, 1, 1), 2**32 - 1, np.uint32))


def _size_tables(size: np.ndarray, main_draws: int) -> np.ndarray:
    """The campaign-size CDF tables [draw, kind, length], as long as the main draws need: rows after
    them (the posterior-mean row) are cut or padded to that length, so that they can never change
    how a main draw's words are read (a word past a cut row is recomputed exactly, as any other)."""
    main = nb_cdf_table(size[:main_draws, :, 0], size[:main_draws, :, 1])
    if size.shape[0] == main_draws:
        return main
    length = main.shape[-1]
    rest = nb_cdf_table(size[main_draws:, :, 0], size[main_draws:, :, 1], max_length=length)
    padded = np.full(rest.shape[:-1] + (length,), 2**32 - 1, np.uint32)
    padded[..., :rest.shape[-1]] = rest
    return np.concatenate([main, padded])


def _quantile_buffer(mean: np.ndarray, variance: np.ndarray) -> int:
    """Slots for the count a year passes with a probability of the order of BUFFER_TAIL (a multiple of 32)."""
    high = float(np.quantile(mean + BUFFER_SDS * np.sqrt(np.maximum(variance, 0.0)), 1.0 - BUFFER_TAIL))
    if not high <= MAX_SLOTS:  # also NaN and inf
        raise InputError(f"the portfolio and scenario give up to {high:,.0f} disputes in a year, more than "
                         f"leisim simulates ({MAX_SLOTS:,}); check the exposure units (CNY million of exports), "
                         "the frequency rates and the frequency or exposure shocks", field="frequency")
    return int(math.ceil((high + 16) / 32.0) * 32)


def count_variance(tables: ModelTables, entries: _Entries, dispersion: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per draw, the variance of a year's dispute count at year level ``L``: ``var_linear * L +
    var_square * L**2`` (a sum over entries: NB2 entries ``lam + lam**2 / k``, NB1 ``lam * (1 +
    delta)``, Poisson ``lam``, with ``lam = stratum_scale[d, s] * weight``); and whether any entry
    is overdispersed.

    Entries of one (stratum, cell) segment share their draw's scale and cell parameters, so the
    sum runs over segments of the entries' weights and squared weights: [draw, segment] arrays,
    never [draw, entry] (a posterior stratum is one cell: segments = strata).
    """
    n_cells = tables.cell_concentration.shape[1]
    segments, inverse = np.unique(entries.stratum.astype(np.int64) * n_cells + entries.cells, return_inverse=True)
    w1 = np.bincount(inverse, weights=entries.weights, minlength=segments.size)
    w2 = np.bincount(inverse, weights=entries.weights**2, minlength=segments.size)
    seg_scale, seg_cell = tables.stratum_scale[:, segments // n_cells], segments % n_cells
    k_seg = tables.cell_concentration[:, seg_cell]
    nb_seg = k_seg > 0
    lam_seg = seg_scale * w1[None, :]
    var_linear = np.where(nb_seg, lam_seg, lam_seg * (1.0 + dispersion[:, seg_cell])).sum(axis=1)
    var_square = np.where(nb_seg, seg_scale**2 * w2[None, :] / np.where(nb_seg, k_seg, 1.0), 0.0).sum(axis=1)
    return var_linear, var_square, bool(nb_seg.any() or np.any(dispersion > 0))


def _moments(mean: np.ndarray, variance: np.ndarray) -> tuple[float, float]:
    """A count's mean and variance over the sampled (draw, year effect) pairs, from its conditional ones."""
    return float(mean.mean()), float(variance.mean() + mean.var())


def _buffers(tables: ModelTables, entries: _Entries, campaigns: _Campaigns, total_rate: np.ndarray,
             dispersion: np.ndarray, main_draws: int) -> tuple[int, int, int, int, bool, tuple[float, ...]]:
    """Event, dispute, campaign and campaign-dispute buffers, and whether disputes come in clusters.

    The count a year passes with probability ~1e-3, over draws and year effects: for a sample of
    (draw, year effect) pairs, the conditional mean plus BUFFER_SDS conditional sds; the buffer is
    that quantity's 1 - BUFFER_TAIL quantile. Rarer years overflow and are recomputed exactly with
    larger buffers (never dropped). Sized over the main draws (the years' draws), so that a row
    appended after them (the posterior mean) changes nothing. Also the (mean, variance) per year of the
    events, disputes and campaigns' disputes, from which the flat layout sizes a batch's slots.
    """
    rng = np.random.default_rng(0)
    draw = rng.integers(0, main_draws, BUFFER_SAMPLES)
    level = np.exp(tables.year_sigma[draw] * rng.standard_normal(BUFFER_SAMPLES))
    var_linear, var_square, clustered = count_variance(tables, entries, dispersion)
    event_mean = total_rate[draw] * level
    event_buffer = _quantile_buffer(event_mean, event_mean)
    dispute_var = var_linear[draw] * level + var_square[draw] * level**2
    dispute_buffer = _quantile_buffer(event_mean, dispute_var) if clustered else event_buffer
    moments = _moments(event_mean, event_mean) + _moments(event_mean, dispute_var if clustered else event_mean)
    if not campaigns.n_kinds:
        return event_buffer, dispute_buffer, 0, 0, clustered, moments + (0.0, 0.0)
    rate, size = campaigns.rate, campaigns.size
    camp_mean = rate.sum(axis=1)[draw] * level
    mean_hits = 1.0 + size[..., 0]  # [draw, kind]
    second_moment = size[..., 0] + size[..., 0] ** 2 / size[..., 1] + mean_hits**2
    hit_mean = (rate * mean_hits).sum(axis=1)[draw] * level
    hit_var = (rate * second_moment).sum(axis=1)[draw] * level  # compound Poisson
    return event_buffer, dispute_buffer, _quantile_buffer(camp_mean, camp_mean), _quantile_buffer(hit_mean, hit_var), \
        clustered, moments + _moments(hit_mean, hit_var)


def _row_aliases(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One alias table per row of ``weights`` [rows, outcomes] (indices local to the row)."""
    accept = np.empty(weights.shape, np.uint64)
    alias = np.empty(weights.shape, np.int64)
    for d in range(weights.shape[0]):
        accept[d], alias[d] = alias_rows(weights[d])
    return accept, alias


def _durations(tables: ModelTables, n_stages: int) -> np.ndarray:
    """[draw, cell, stage, 2] dispute durations (log median years, log sd): the tables', else by country."""
    if tables.cell_duration is not None:
        return tables.cell_duration
    by_cell = np.array([[math.log(duration_median_years(c)), DURATION_SIGMA] for c in tables.cell_country])
    return np.broadcast_to(by_cell[None, :, None, :], (tables.n_draws, len(tables.cell_country), n_stages, 2))


def _expected_disputes(tables: ModelTables, total_rate: np.ndarray, campaigns, draws: int) -> float:
    """Expected disputes per year, averaged over the first ``draws`` draws; E[exp(eps)] = exp(sigma^2 / 2)."""
    lift = np.exp(0.5 * tables.year_sigma[:draws] ** 2)
    expected = float(np.mean(total_rate[:draws] * lift))
    if campaigns.n_kinds:
        per_draw = (campaigns.rate[:draws] * (1.0 + campaigns.size[:draws, :, 0])).sum(axis=1)
        expected += float(np.mean(per_draw * lift))
    return expected


def assemble(tables: ModelTables, portfolio: Portfolio, *, entry_cells: np.ndarray | None = None,
             batch_years: int | None = None, programs: Sequence[Sequence[Contract]] = (), dev_years: int = 0,
             main_draws: int | None = None) -> tuple[EngineParams, EngineShape, float]:
    """Engine arrays for ``tables`` on ``portfolio``; also the expected disputes per year.

    ``entry_cells`` gives each entry's cell when a stratum mixes cells (the single stratum of a
    fixed scenario); by default an entry's cell is its stratum's. ``programs``: reinsurance
    programs run side by side (none: no reinsurance arrays). ``dev_years``: development years of
    the payment pattern (0: not tracked). ``main_draws``: the years cycle through the first this
    many draws (default: all); the rows after them are there to be run on their own (the
    posterior-mean row, :meth:`Composition.at_point_estimate`), and the expected disputes are
    the main draws'.
    """
    require_x64()
    n_draws, n_strata = tables.stratum_scale.shape
    main_draws = n_draws if main_draws is None else main_draws
    n_cells = len(tables.cell_country)
    entries = _entries(tables, portfolio, entry_cells)
    stratum_weight = np.array([entries.weights[entries.offsets[s]:entries.offsets[s] + entries.counts[s]].sum()
                               for s in range(n_strata)])
    stratum_rate = tables.stratum_scale * stratum_weight[None, :]  # [draw, stratum] expected disputes
    # Dominating event rate: expected disputes (the NB thinning keeps k log(1 + lam/k) of them).
    total_rate = stratum_rate.sum(axis=1)
    stratum_accept, stratum_alias = _row_aliases(stratum_rate)
    currencies = sorted(set(tables.cell_currency))
    fx_sigma = np.array([tables.fx_sigma.get(c, 0.0) for c in currencies])
    campaigns = _campaigns(tables, main_draws)
    dispersion = tables.cell_dispersion if tables.cell_dispersion is not None else np.zeros_like(tables.cell_concentration)
    event_buffer, dispute_buffer, campaign_buffer, campaign_dispute_buffer, clustered, moments = _buffers(
        tables, entries, campaigns, total_rate, dispersion, main_draws)
    expected = _expected_disputes(tables, total_rate, campaigns, main_draws)
    n_stages = tables.cell_stage_probability.shape[2]
    duration = _durations(tables, n_stages)
    program_params, program_kinds, reinsurers = (program_arrays([list(p) for p in programs]) if programs
                                                 else (None, (), ()))
    lognormal, gamma, pareto = (bool(np.any(tables.cell_family == f)) for f in range(len(FAMILIES)))
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
        campaign_rate=jnp.asarray(campaigns.rate, jnp.float64),
        campaign_size=jnp.asarray(campaigns.size, jnp.float32),
        campaign_size_cdf=jnp.asarray(campaigns.size_cdf, jnp.uint32),
        stratum_offset=jnp.asarray(entries.offsets, jnp.int32),
        stratum_count=jnp.asarray(entries.counts, jnp.int32),
        entry_accept=jnp.asarray(entries.accept, jnp.uint64),
        entry_alias=jnp.asarray(entries.alias, jnp.int32),
        entry_row=jnp.asarray(entries.row, jnp.float32),
        cell_family=jnp.asarray(tables.cell_family, jnp.int32),
        cell_currency=jnp.asarray(np.array([currencies.index(c) for c in tables.cell_currency]), jnp.int32),
        fx_sigma=jnp.asarray(fx_sigma, jnp.float32),
        campaign_cell=jnp.asarray(campaigns.cell, jnp.int32),
        campaign_accept=jnp.asarray(campaigns.accept, jnp.uint64),
        campaign_alias=jnp.asarray(campaigns.alias, jnp.int32),
        campaign_policy=jnp.asarray(campaigns.policy, jnp.int32),
        campaign_count=jnp.asarray(campaigns.targets, jnp.int32),
        policy_terms=jnp.asarray(np.stack([portfolio.deductible_cny, portfolio.coinsurance,
                                           portfolio.limit_per_dispute_cny], axis=1), jnp.float32),
        aggregate_limit_cny=jnp.asarray(portfolio.aggregate_limit_cny, jnp.float64),
        programs=program_params,
        cell_duration=jnp.asarray(duration, jnp.float32),
        cell_case_weight=jnp.asarray(_mean_cost(tables), jnp.float32),
        draw_first=jnp.asarray(0, jnp.int32), draw_count=jnp.asarray(main_draws, jnp.uint32),
    )
    if batch_years is None:
        batch_years = default_batch_years(dispute_buffer + campaign_dispute_buffer)
    shape = EngineShape(
        n_policies=portfolio.n_policies, n_cells=n_cells, event_buffer=event_buffer, dispute_buffer=dispute_buffer,
        campaign_buffer=campaign_buffer, campaign_dispute_buffer=campaign_dispute_buffer, n_stages=n_stages,
        stratified=n_strata > 1, clustered=clustered, families=(lognormal, gamma, pareto),
        fee_shifting=bool(np.any(tables.cell_fee[..., 0] > 0) or np.any(tables.cell_fee[..., 2] > 0))
        and n_stages > TRIAL,
        fx=bool(np.any(fx_sigma > 0)), year_effect=bool(np.any(tables.year_sigma > 0)), batch_years=batch_years,
        n_reinsurers=max(len(reinsurers), 1) if programs else 0, program_kinds=program_kinds, dev_years=dev_years,
    )
    return params, shape._replace(flat=_shared_slots(shape, moments)), expected


# The flat layout (engine.simulate_batch) where a batch's shared slots are at most this share of its
# years' own buffers: it saves the empty slots' words and sampling, at the cost of laying slots out.
FLAT_SHARE = 0.6
FLAT_SDS = 4.0  # shared slots: a batch's mean total + FLAT_SDS sds + 32 (a batch past them: recomputed)


def flat_slots(mean: float, variance: float, years: int) -> float:
    """Shared slots per year for a batch of ``years`` years of a count with this mean and variance per
    year, rounded up to a grid of two significant bits (1, 1.5, 2, 3, 4, 6, 8, 12, ...), so that
    scenarios of similar rates share one compiled kernel (the slots are part of its static shape)."""
    need = (years * mean + FLAT_SDS * math.sqrt(years * max(variance, 0.0)) + 32.0) / years
    step = 2.0 ** (math.floor(math.log2(need)) - 1)
    return math.ceil(need / step) * step


def _shared_slots(shape: EngineShape, moments: tuple[float, ...]) -> tuple[float, ...]:
    """Shared slots per year when the flat layout pays for ``shape`` (and can run it), else () (one
    buffer a year)."""
    if shape.families[1] or shape.batch_years < 2:  # gamma severities: by rejection, not flat
        return ()
    years = shape.batch_years
    buffers = (shape.event_buffer, shape.dispute_buffer, shape.campaign_dispute_buffer)
    slots = tuple(flat_slots(moments[2 * i], moments[2 * i + 1], years) if buffer else 0.0
                  for i, buffer in enumerate(buffers))
    shared = sum(flat_capacity(n, years, buffer) for n, buffer in zip(slots, buffers) if buffer)
    return slots if shared <= FLAT_SHARE * years * sum(buffers) else ()


def compose(scenario: Scenario, portfolio: Portfolio, *, batch_years: int | None = None, posterior=None,
            programs: list[list[Contract]] | None = None, dev_years: int = DEV_YEARS, x64: bool = False,
            point_estimate_row: bool = False) -> Composition:
    """Turn a scenario and a portfolio into engine arrays.

    Args:
        posterior: the fitted posterior (an xarray Dataset) for ``parameters = "posterior"``;
            by default the one shipped with leisim.
        programs: reinsurance programs to run side by side on common random numbers [default:
            the scenario's own ``[[reinsurance]]``, if any]. The first is the one reported as
            ``ceded``/``net``.
        dev_years: development years of the payment pattern (0: reserves not tracked).
        x64: sample in float64 as well (default: float32 sampling, float64 accumulation).
        point_estimate_row: a posterior-driven scenario: append the posterior-mean parameters as
            one more row after the draws (the years still cycle through the draws), so that
            :meth:`Composition.at_point_estimate` runs the same years at the posterior mean
            through the same compiled kernel.
    """
    shocks = scenario.shocks_spec
    missing = shocks.unknown_sectors(portfolio)
    if missing:
        warnings.warn(f"{scenario.source}: shocks name sectors the portfolio does not have: {', '.join(missing)} "
                      f"(its sectors: {', '.join(sorted(set(portfolio.sector)))})", stacklevel=2)
    portfolio = shocks.apply_to_portfolio(portfolio)
    premium = float(portfolio.premium_cny.sum())
    if programs is None:
        programs = [contracts_from_scenario(scenario.contracts, premium)] if scenario.reinsurance else []
    programs = [shocks.apply_to_contracts(list(p)) for p in programs]
    if scenario.parameters == "fixed" and any(k in scenario.shocks for k in ("severity_by_stage", "campaigns")):
        warnings.warn(f"{scenario.source}: severity_by_stage and campaigns shocks act on the posterior-driven "
                      "lifecycle model only; a fixed scenario has one stage and no campaigns", stacklevel=2)
    if scenario.parameters == "fixed":
        tables, entry_cells = fixed_tables(scenario, portfolio)
    else:
        tables, entry_cells = posterior_tables(scenario, portfolio, posterior), None
    main_draws = tables.n_draws
    if point_estimate_row and scenario.parameters == "posterior":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same warnings as the draws' tables
            at_mean = posterior_tables(scenario.updated({"model": {"point_estimate": True}}), portfolio, posterior)
        tables = tables.with_draws_of(at_mean)
    params, shape, expected = assemble(tables, portfolio, entry_cells=entry_cells, batch_years=batch_years,
                                       programs=programs, dev_years=dev_years, main_draws=main_draws)
    return Composition(
        params=params,
        shape=shape._replace(x64=x64),
        group_country=tables.cell_country,
        group_dispute_type=tables.cell_dispute_type,
        countries=portfolio.countries,
        expected_disputes=expected,
        premium_cny=premium,
        n_draws=main_draws,
        parameters=scenario.parameters,
        programs=tuple(tuple(p) for p in programs),
        dev_years=dev_years,
    )
