"""The claim-driven Monte Carlo kernel: pure JAX, key first, no I/O.

Parameters come as a table of *draws* (a leading axis ``draw``): a fixed-parameter scenario has
one draw; a posterior-driven one has one per posterior sample. Simulated year ``y`` uses draw
``y mod n_draws`` (of the rows ``draw_first ..`` when ``draw_first``/``draw_count`` are set), so
parameter and process uncertainty are carried together and a year's result still depends on
nothing but ``(key, y)``.

One simulated year, in order:

0. Year shocks. The year effect ``eps ~ N(0, sigma_year[d])`` multiplies every dispute rate
   and campaign rate by ``exp(eps)`` (the common shock: trade tension makes years bad for all).
   Each currency's FX rate to CNY moves by a lognormal factor with mean 1 and the currency's
   annual volatility.
1. Events. One Poisson count with the year's total event rate (Poisson splitting), by inverting
   one 32-bit word against the CDF summed over a fixed window (:func:`poisson_count`).
2. Entries. Each event picks a stratum (a (cell, sector) pair; per draw) and then an entry (a
   policy in the stratum; fixed weights, its exposure) with Walker's alias method (Walker 1977;
   Vose 1991) in 32-bit integer arithmetic. With one draw everything is one stratum.
3. Clusters (negative-binomial cells). NB(mean lam, concentration k) is compound Poisson:
   Poisson(k log(1 + r)) clusters of Logarithmic(theta = r/(1 + r)) disputes, r = lam/k (Johnson,
   Kemp & Kotz, *Univariate Discrete Distributions*, 5.3). Events are drawn at the dominating
   rate ``lam`` and thinned with probability ``log(1 + r) / r`` (<= 1), which is exact and lets
   ``lam`` change with the draw and the year effect without per-draw entry tables. Cells give
   either k (NB2: Var = lam + lam^2/k, fixed scenarios) or the dispersion index delta (NB1:
   k = lam/delta, Var = lam (1 + delta), the fitted model), where r = delta for every policy.
   Cluster sizes come from Kemp's (1981) method LK. Each policy-year count is exactly NB.
4. Campaigns (mass-defendant events: US Schedule A complaints, ITC 337 investigations). A
   Poisson number per year (by inversion, as the events'); each names ``1 + NB(m, k)`` insured
   sellers, each picked by its share of the campaign's target exposure, so one campaign brings
   many disputes in one year.
   The NB count inverts one 32-bit word against a per-(draw, kind) CDF table in fixed point
   (:func:`campaign_extra_sellers`); a word past the table's end makes the year overflow, and the
   recomputation resolves it exactly.
5. Cost of each dispute: the stage it ends at (litigation lifecycle; one stage for the plain
   frequency-severity cells of fixed scenarios), then the stage's severity quantile in survival
   form at a 32-bit uniform (the upper tail resolved to 2**-32), in CNY at baseline FX, times the
   year's FX factor for the forum's currency. Fee shifting where the loser pays: a dispute
   decided at trial or appeal is won with the forum's probability (the insured recovers a share
   of its own costs) or lost (it bears adverse costs, a multiple of its own).
6. Policy terms: ``min((1 - coinsurance) * max(cost - deductible, 0), limit_per_dispute)`` per
   dispute; then each policy's annual total is capped at its aggregate limit (a per-policy
   scratch row in float64). Capped policies are attributed to cells pro rata, so cell totals add
   up to the portfolio total to float64 rounding.

Layout. One buffer of slots per year (:func:`simulate_year`), or, where it pays, the flat layout
(:func:`simulate_batch`): a batch of years shares its slots, sized for the batch's total, and each
slot computes the words its year's own buffer would have given it, so the years are the same.

Randomness. Year ``y`` uses ``fold_in(key, y)`` only; per-slot draws are 1-D ``random.bits``
(campaign sizes and the year's event and campaign counts included: one word each, inverted, no
loop whose length depends on the draws), which are prefix-stable: a year recomputed
with larger buffers after an overflow draws the same disputes, and a year's result depends
neither on chunk size nor on device count.
"""

from __future__ import annotations

import functools
import math
import statistics
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p
from jax.scipy.special import ndtri

from ..vocabulary import STAGES, TRIAL  # noqa: F401 - litigation stages (re-exported); from TRIAL on, fee shifting applies
from .ordered import pairwise_sum, segment_total, settled
from .reinsurance import PER_EVENT_XL, Programs, cede, default_uniforms

# Severity families. The code is the index in FAMILIES. Lifecycle stages are lognormal.
FAMILIES = ("lognormal", "gamma", "pareto")
LOGNORMAL, GAMMA, PARETO = range(3)

# Columns of ``EngineParams.entry_row``: what a dispute needs from its (policy, cell) entry,
# fetched with one row gather (measured on a 2-core CPU: 1.8x faster than separate gathers).
ROW_DEDUCTIBLE, ROW_COINSURANCE, ROW_LIMIT, ROW_POLICY, ROW_CELL, ROW_WEIGHT = range(6)
ROW_WIDTH = 6

# Streams drawn with fold_in(year key, stream) apart from the year's own split, so that switching
# the payment pattern on or off never changes the losses (see also reinsurance.DEFAULT_STREAM).
PAYMENT_STREAM = 0x9A7_3E7


class EngineShape(NamedTuple):
    """Static sizes and switches: changing one recompiles, so the driver keeps them per run."""

    n_policies: int
    n_cells: int
    event_buffer: int  # event slots per year
    dispute_buffer: int  # dispute slots per year (== event_buffer unless clustered)
    campaign_buffer: int  # campaign slots per year (0: no campaigns)
    campaign_dispute_buffer: int  # slots for the disputes that campaigns bring
    n_stages: int  # 1 (plain severity) or len(STAGES) (lifecycle)
    stratified: bool  # more than one stratum: the first alias level is drawn
    clustered: bool  # any negative-binomial cell
    families: tuple[bool, bool, bool]  # which severity families occur (lognormal, gamma, pareto)
    fee_shifting: bool  # any cell where the loser pays
    fx: bool  # any currency with FX volatility
    year_effect: bool  # any draw with sigma_year > 0
    batch_years: int  # years vectorised together inside a chunk (cache-sized)
    n_reinsurers: int = 0  # 0: no reinsurance program; else default uniforms drawn per year
    program_kinds: tuple[tuple[int, ...], ...] = ()  # each reinsurance program's contract kinds (reinsurance.py)
    dev_years: int = 0  # 0: no payment pattern; else development years tracked (the last takes the tail)
    x64: bool = False  # sample in float64 too (default: float32 sampling, float64 accumulation)
    exact_tails: bool = False  # resolve campaign sizes beyond the CDF table exactly (recomputed years only)
    # The flat layout (simulate_batch): shared slots per year of a batch for the events, the ordinary
    # disputes and the campaigns' disputes (coarse values, so that similar scenarios share a compiled
    # kernel: compose.flat_slots); () = one buffer per year.
    flat: tuple[float, ...] = ()


class EngineParams(NamedTuple):
    """Scenario numbers as arrays, so that a new scenario reuses the compiled kernel.

    Per draw (leading axis ``draw``): the rates and everything fitted. Fixed: the portfolio's
    entries. An entry is one (policy, cell) pair; a stratum is a set of entries whose weights are
    fixed relative to each other (a (cell, sector) pair under a posterior; all entries when there
    is a single draw). Entry ``e`` in stratum ``s`` has expected disputes (before the year
    effect) ``stratum_scale[d, s] * weight_e``. Amounts in CNY.
    """

    # per draw
    total_rate: jax.Array  # f64[draw]              events per year at the dominating rate
    stratum_accept: jax.Array  # u64[draw, stratum]  alias acceptance (keep iff frac32 < accept)
    stratum_alias: jax.Array  # i32[draw, stratum]  alias stratum (local: 0 .. stratum - 1)
    stratum_scale: jax.Array  # f32[draw, stratum]   expected disputes per unit weight
    cell_concentration: jax.Array  # f32[draw, cell] NB2 k; 0 otherwise
    cell_dispersion: jax.Array  # f32[draw, cell]    NB1 delta; 0 otherwise (0 and 0: Poisson)
    cell_stage_cdf: jax.Array  # f32[draw, cell, stage] cumulative stage probabilities
    cell_severity: jax.Array  # f32[draw, cell, stage, 3] lognormal (mu, sigma, 0) with mu in log CNY;
    #                           gamma (shape, scale, 0); Pareto II (alpha, scale, threshold)
    cell_fee: jax.Array  # f32[draw, cell, 3]       (P(insured wins | decided), recovered share, adverse ratio)
    year_sigma: jax.Array  # f32[draw]             sd of the log year effect
    campaign_rate: jax.Array  # f64[draw, kind]     campaigns per year
    campaign_size: jax.Array  # f32[draw, kind, 2]  (mean extra sellers hit, NB concentration)
    campaign_size_cdf: jax.Array  # u32[draw, kind, n] CDF of the extra sellers in 32-bit fixed point
    # fixed
    stratum_offset: jax.Array  # i32[stratum]       first entry of the stratum
    stratum_count: jax.Array  # i32[stratum]        entries in it (>= 1)
    entry_accept: jax.Array  # u64[entry]           alias acceptance within the stratum
    entry_alias: jax.Array  # i32[entry]            alias entry (local to its stratum's block)
    entry_row: jax.Array  # f32[entry, ROW_WIDTH]   terms, policy, cell and weight of the entry
    cell_family: jax.Array  # i32[cell]
    cell_currency: jax.Array  # i32[cell]           index into fx_sigma
    fx_sigma: jax.Array  # f32[currency]            annual log-volatility against CNY
    campaign_cell: jax.Array  # i32[kind]
    campaign_accept: jax.Array  # u64[kind, target] alias over the campaign's target policies
    campaign_alias: jax.Array  # i32[kind, target]  alias target (local to the kind's row)
    campaign_policy: jax.Array  # i32[kind, target]
    campaign_count: jax.Array  # i32[kind]          targets in use (>= 1)
    policy_terms: jax.Array  # f32[policy, 3]       (deductible, coinsurance, limit per dispute)
    aggregate_limit_cny: jax.Array  # f64[policy]
    # optional
    programs: Programs | None = None  # reinsurance programs [program, contract] (reinsurance.py)
    cell_duration: jax.Array | None = None  # f32[draw, cell, stage, 2] dispute duration: (log median years, log sd)
    cell_case_weight: jax.Array | None = None  # f32[draw, cell] an open dispute's case-reserve weight (its mean cost)
    # Which draws the years cycle through: year y uses draw ``draw_first + y mod draw_count``
    # (None: every row, y mod n_draws). Arrays, not shape, so that a run over other rows of the
    # same table (the posterior-mean row appended after the draws) reuses the compiled kernel.
    draw_first: jax.Array | None = None  # i32[]
    draw_count: jax.Array | None = None  # u32[] (>= 1)


# YearResult.overflow flags. OVERFLOW_SLOTS: the year ran past its batch's shared slots (flat layout),
# which depends on the batch it fell in, so the driver recomputes it without counting it as an overflow.
OVERFLOW_BUFFER, OVERFLOW_TABLE, OVERFLOW_SLOTS = 1, 2, 4


class YearResult(NamedTuple):
    """Per simulated year (a leading ``year`` axis when batched)."""

    gross: jax.Array  # f64: insurer's payments after all policy terms, CNY
    ground_up: jax.Array  # f64: legal costs before policy terms, CNY
    gross_by_group: jax.Array  # f64[cell]
    disputes_by_group: jax.Array  # i32[cell]: disputes per cell, campaigns' included
    max_dispute: jax.Array  # f64: largest single-dispute payment (OEP), CNY
    disputes: jax.Array  # i32: number of disputes, campaigns' included
    events: jax.Array  # i32: events at the dominating rate (before thinning)
    campaigns: jax.Array  # i32
    campaign_disputes: jax.Array  # i32
    overflow: jax.Array  # i32 flags, 0: none; the driver recomputes the year: OVERFLOW_BUFFER a buffer was
    #                      too small, OVERFLOW_TABLE a campaign size fell past its CDF table, OVERFLOW_SLOTS
    #                      past its batch's shared slots
    ceded_due: jax.Array  # f64[program, contract]: ceded before reinsurer default ([0, 0] without reinsurance)
    recovered: jax.Array  # f64[program, contract]: paid by the reinsurers
    net: jax.Array  # f64[program]: gross minus recoveries
    net_by_group: jax.Array  # f64[cell]: the first program's net, by cell
    payments: jax.Array  # f64[dev_year]: gross payments by development year (year 0: the underwriting year)
    open_disputes: jax.Array  # i32[dev_year]: disputes still open at the end of each development year
    open_weight: jax.Array  # f64[dev_year]: their case-reserve weights summed (reserving.py)


def _real(shape: EngineShape):
    """The sampling precision: float32 (default; totals are accumulated in float64 anyway), or
    float64 throughout with ``shape.x64`` (``leisim simulate --x64``, for precision checks)."""
    return jnp.float64 if shape.x64 else jnp.float32


def _uniform_from_bits(bits: jax.Array, n_bits: int = 32, dtype=jnp.float32) -> jax.Array:
    """Map ``n_bits``-bit integers to uniforms strictly inside (0, 1) (float32 unless ``dtype``).

    Small values keep full float32 relative precision, so survival-form quantiles resolve
    the tail down to 2**-n_bits. Values that round up to 1 are held just below it.
    """
    u = (bits.astype(dtype) + 0.5) * dtype(2.0**-n_bits)
    return jnp.minimum(u, dtype(1.0 - 2.0 ** -(24 if dtype == jnp.float32 else 53)))


def _alias_pick(low32: jax.Array, count: jax.Array, accept: jax.Array, alias: jax.Array,
                offset: jax.Array | int = 0) -> jax.Array:
    """Walker's alias draw from 32 random bits (held in a uint64), in integer arithmetic.

    ``low32 * count`` splits into the column (high part) and a 32-bit fraction (low part), so
    each outcome's probability is exact to ``count * 2**-32``. The table occupies
    ``accept[offset : offset + count]`` and ``alias[offset : offset + count]``; ``alias`` holds
    indices *local to the table* (0 .. count - 1), and so does the result: every alias table in
    leisim (strata per draw, entries per stratum, targets per campaign kind) uses this one
    convention, built by :func:`leisim.scenarios.compose.alias_rows`.
    """
    scaled = low32 * count.astype(jnp.uint64)
    column = (scaled >> jnp.uint64(32)).astype(jnp.int32)
    fraction = scaled & jnp.uint64(0xFFFFFFFF)
    at = offset + column
    return jnp.where(fraction < accept[at], column, alias[at])


def pick_entries(word: jax.Array, stratum_word: jax.Array | None, draw: jax.Array, params: EngineParams,
                 shape: EngineShape) -> tuple[jax.Array, jax.Array]:
    """Each event slot's stratum and entry (policy, cell) under draw ``draw``, from the slot's words.

    With several strata, the stratum comes from the draw's alias table (``stratum_word``), then
    the entry from the stratum's own table (``word``); with one stratum, ``word`` alone picks
    from the single table over every entry. Exposed so that tests can set the picks' empirical
    frequencies against the intended probabilities draw by draw.
    """
    if shape.stratified:
        n_strata = params.stratum_offset.shape[0]
        assert stratum_word is not None  # drawn when shape.stratified
        stratum = _alias_pick(_low32(stratum_word), jnp.int32(n_strata), params.stratum_accept.reshape(-1),
                              params.stratum_alias.reshape(-1), draw * n_strata)
        first = params.stratum_offset[stratum]
        entry = first + _alias_pick(_low32(word), params.stratum_count[stratum], params.entry_accept,
                                    params.entry_alias, first)
    else:  # one stratum: a single alias table over every entry
        stratum = jnp.zeros(word.shape, jnp.int32)
        entry = _alias_pick(_low32(word), jnp.int32(params.entry_accept.shape[0]), params.entry_accept,
                            params.entry_alias)
    return stratum, entry


def _per_draw(table: jax.Array, draw: jax.Array, index: jax.Array) -> jax.Array:
    """``table[draw, index]`` of a 2-D table by a scalar gather from the flattened table.

    Under ``vmap`` over years, ``table[draw]`` would be a per-year copy and the gather a batched
    one; and on XLA's CPU backend a gather of short rows is several times slower than one 1-D
    gather per column (measured: 2x on the whole kernel).
    """
    return table.reshape(-1)[draw * table.shape[1] + index]


def _per_draw_columns(table: jax.Array, draw: jax.Array, index: jax.Array) -> tuple[jax.Array, ...]:
    """``table[draw, index, j]`` of a 3-D table for every trailing column ``j``: one 1-D gather each,
    from the table as it lies (a reshape, no copy; a row's columns are neighbours in memory). Taking
    ``table[:, :, j]`` first copied every column of every draw on each call (measured: ~1.5 M values a
    batch of 128 years on the default book, ~17% of the kernel)."""
    width = table.shape[2]
    flat = table.reshape(-1)
    base = (draw * table.shape[1] + index) * width
    return tuple(flat[base + j] for j in range(width))


def campaign_extra_sellers(word: jax.Array, row: jax.Array, params: EngineParams, shape: EngineShape
                           ) -> tuple[jax.Array, jax.Array]:
    """The sellers a campaign names beyond the first, NB(m, k) per (draw, kind) ``row``, by inverting the
    32-bit word against the row's fixed-point CDF (compose.nb_cdf_table): a binary search of
    log2(columns) steps, no loop whose length depends on the draw, one word per slot (prefix-stable).

    Returns the counts and whether a word fell past the table's end. Such a word is flagged (the year
    is recomputed, like a buffer overflow) and, with ``shape.exact_tails``, resolved exactly: the
    smallest n with P(N <= n) >= (word + 1/2) / 2**32 (the table's rounding), by bisection on the
    regularised incomplete beta function, P(N <= n) = I_p(k, n + 1) with p = k / (k + m).
    """
    table = params.campaign_size_cdf.reshape(-1, params.campaign_size_cdf.shape[-1])
    length = table.shape[1]
    flat = table.reshape(-1)
    base = row * length
    count = jnp.zeros(word.shape, jnp.int32)
    step = 1 << (length.bit_length() - 1)  # table lengths are powers of two
    while step >= 1:
        probe = count + step - 1
        count = jnp.where((probe < length) & (flat[base + jnp.minimum(probe, length - 1)] <= word),
                          count + step, count)
        step //= 2
    beyond = count >= length
    if not shape.exact_tails:
        return count, beyond
    m, k = (params.campaign_size.reshape(-1, 2)[row, j].astype(jnp.float64) for j in range(2))
    target = (word.astype(jnp.float64) + 0.5) / 2.0**32
    p = k / (k + m)

    def halve(_, bounds):  # invariant: F(lo) < target <= F(hi)
        lo, hi = bounds
        mid = jnp.floor(0.5 * (lo + hi))
        below = jax.scipy.special.betainc(k, mid + 1.0, p) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    # hi - lo = 2**30 + 1 halves to 1 in 31 fixed steps (a loop of fixed length: no lane waits for another)
    _, hi = jax.lax.fori_loop(0, 31, halve, (jnp.full(word.shape, -1.0), jnp.full(word.shape, 2.0**30)))
    return jnp.where(beyond, jnp.minimum(hi, 2.0**22).astype(jnp.int32), count), jnp.zeros_like(beyond)


# Poisson counts by inversion (poisson_count): the window starts 8 sds below the mean, where the
# Chernoff bound P(N <= lam - x) <= exp(-x^2 / (2 lam)) leaves less than e**-32 (~2**-46) below it,
# and holds up to the count that Bernstein's P(N >= lam + x) <= exp(-x^2 / (2 (lam + x / 3))) puts
# under 2**-46 above it (x = L/3 + sqrt(L^2/9 + 2 L lam), L = 46 log 2), for every rate up to the
# buffer. The 32-bit uniforms inverted are >= 2**-33 from 0 and 1, so what the window leaves out
# moves a count only for a uniform within ~2**-45 of a CDF step.
_TAIL_LOG = 46.0 * math.log(2.0)
_LOW_SDS = 8.0


@functools.cache
def _log_factorials(n: int) -> np.ndarray:
    """log k! for k = 0 .. n - 1 (float64, correctly rounded to about an ulp)."""
    return np.array([math.lgamma(k + 1.0) for k in range(n)], dtype=np.float64)


def prefix_sum(x: jax.Array) -> jax.Array:
    """Inclusive cumulative sum along the last axis by a parallel prefix (log n steps).

    ``jnp.cumsum`` lowers to a reduce-window, O(n^2) on XLA's CPU backend (measured: 2x slower at
    200 terms, more beyond). Integer sums are exact either way; float sums may associate differently.
    """
    return jax.lax.associative_scan(jnp.add, x, axis=x.ndim - 1)


def poisson_window(buffer: int) -> int:
    """Terms of the Poisson CDF that :func:`poisson_count` sums: enough for any rate up to ``buffer``."""
    upper = _TAIL_LOG / 3.0 + math.sqrt(_TAIL_LOG**2 / 9.0 + 2.0 * _TAIL_LOG * buffer)
    return int(math.ceil((_LOW_SDS * math.sqrt(buffer) + upper + 4.0) / 8.0) * 8)


def poisson_count(word: jax.Array, rate: jax.Array, buffer: int) -> jax.Array:
    """A Poisson(``rate``) count by inverting one 32-bit ``word``: the smallest n with F(n) >= u,
    u = (word + 1/2) / 2**32, with no loop whose length depends on the rate (no lane waits for
    another under vmap) and one word per count (prefix-stable).

    F is summed in float64 over a fixed window of :func:`poisson_window` terms from
    ``max(0, floor(rate - 8 sqrt(rate)))``; the mass outside it (< 2**-45 for every rate up to
    ``buffer``) is left out, so the count is exact but for u within ~2**-45 of a CDF step. A rate
    above ``buffer`` returns more than ``buffer`` (whatever the word): the year overflows its
    buffer and is recomputed with a larger one, hence a wider window.
    """
    width = poisson_window(buffer)
    lam = jnp.maximum(rate.astype(jnp.float64), 1e-300)  # 0 -> every term but the first underflows to 0
    low = jnp.minimum(jnp.maximum(jnp.floor(lam - _LOW_SDS * jnp.sqrt(lam)), 0.0), float(buffer))
    # log p(k) = k log lam - lam - log k!, log k! from a float64 table (math.lgamma: XLA's lgamma is
    # too coarse at large counts); normalised by the window's mass (1 up to 2**-45).
    k = low.astype(jnp.int32) + jnp.arange(width, dtype=jnp.int32)
    weight = jnp.exp(settled(k.astype(jnp.float64) * jnp.log(lam)) - lam - jnp.asarray(_log_factorials(buffer + width))[k])
    cdf = prefix_sum(weight)
    cdf = cdf / cdf[-1]
    u = (word.astype(jnp.float64) + 0.5) * 2.0**-32
    below = jnp.sum(cdf < u).astype(jnp.int32)
    count = low.astype(jnp.int32) + below
    return jnp.where((below >= width) | (lam > buffer), jnp.maximum(count, buffer + 1), count)


def slot_total(x: jax.Array, shape: EngineShape) -> jax.Array:
    """Sum of a per-slot array (the year's disputes, then the campaigns' disputes), in an order that
    no buffer size changes: each part by :func:`pairwise_sum`, then the two parts."""
    if shape.campaign_buffer == 0:
        return pairwise_sum(x)
    split = shape.dispute_buffer
    return pairwise_sum(x[..., :split]) + pairwise_sum(x[..., split:])


def _slot_bits(key: jax.Array, shape: EngineShape) -> jax.Array:
    """32 random bits per slot, each part (disputes, campaigns' disputes) from its own stream, so that
    a slot's bits do not move when the buffer before it grows (prefix-stable per part)."""
    bits = jax.random.bits(jax.random.fold_in(key, 0), (shape.dispute_buffer,), dtype=jnp.uint32)
    if shape.campaign_buffer == 0:
        return bits
    extra = jax.random.bits(jax.random.fold_in(key, 1), (shape.campaign_dispute_buffer,), dtype=jnp.uint32)
    return jnp.concatenate([bits, extra])


def _low32(word: jax.Array) -> jax.Array:
    return word & jnp.uint64(0xFFFFFFFF)


def _high_uniform(word: jax.Array, dtype=jnp.float32) -> jax.Array:
    return _uniform_from_bits((word >> jnp.uint64(32)).astype(jnp.uint32), dtype=dtype)


def _quantile(key: jax.Array, u: jax.Array, family: jax.Array | None, theta: tuple[jax.Array, ...],
              shape: EngineShape) -> jax.Array:
    """Severity quantile in survival form at ``u`` (float32). ``theta``: the 3 parameter columns."""
    a, b, c = theta
    has_lognormal, has_gamma, has_pareto = shape.families
    single = sum(shape.families) == 1

    def pick(code: int, value: jax.Array, otherwise: jax.Array) -> jax.Array:
        return value if single else jnp.where(family == code, value, otherwise)

    cost = jnp.zeros_like(u)
    if has_lognormal:
        # Settled (ordered.py): the product rounds before the subtraction in every program (no FMA).
        cost = pick(LOGNORMAL, jnp.exp(a - settled(b * ndtri(u))), cost)
    if has_pareto:
        # Pareto II (Lomax) shifted by a threshold: S(x) = (1 + (x - c)/b)^-a for x >= c.
        cost = pick(PARETO, c + settled(b * jnp.expm1(-jnp.log(u) / a)), cost)
    if has_gamma:
        # Gamma has no cheap quantile; draw it by rejection from the slot's own key.
        draws = jax.random.gamma(key, a if single else jnp.where(family == GAMMA, a, 1.0), dtype=_real(shape))
        cost = pick(GAMMA, draws * b, cost)
    return cost


def _needs_stage_bits(shape: EngineShape) -> bool:
    return shape.n_stages > 1 or shape.fee_shifting


def _dispute_costs(key: jax.Array, n_slots: int, cell: jax.Array, u_cost: jax.Array, draw: jax.Array,
                   fx_factor: jax.Array | None, params: EngineParams, shape: EngineShape,
                   stage_bits: jax.Array | None = None, fx_offset: jax.Array | int = 0) -> tuple[jax.Array, jax.Array]:
    """Ground-up cost in CNY (float32) of each dispute slot, given its cell and cost uniform; and its stage.

    The stage and fee-shifting word of each slot is ``random.bits(split(key)[1], (n_slots,))``, or
    ``stage_bits`` when given (the flat layout computes the same words slot by slot); the FX factor
    of a slot is ``fx_factor.ravel()[fx_offset + currency]``.
    """
    k_gamma, k_stage = jax.random.split(key)
    family = params.cell_family[cell] if sum(shape.families) > 1 else None
    if _needs_stage_bits(shape):
        extra = jax.random.bits(k_stage, (n_slots,), dtype=jnp.uint32) if stage_bits is None else stage_bits
        u_stage = _uniform_from_bits(extra & jnp.uint32(0xFFFF), 16)
        u_win = _uniform_from_bits(extra >> jnp.uint32(16), 16)
    if shape.n_stages > 1:
        cdf = _per_draw_columns(params.cell_stage_cdf, draw, cell)  # a column per stage
        stage = sum(((u_stage >= threshold).astype(jnp.int32) for threshold in cdf[:-1]), jnp.zeros(n_slots, jnp.int32))
        n_stages = params.cell_stage_cdf.shape[2]
        severity = params.cell_severity.reshape(params.cell_severity.shape[0], -1, 3)
        theta = _per_draw_columns(severity, draw, cell * n_stages + stage)
    else:
        stage = jnp.zeros(n_slots, jnp.int32)
        theta = _per_draw_columns(params.cell_severity[:, :, 0], draw, cell)
    cost = _quantile(k_gamma, u_cost, family, theta, shape)
    if fx_factor is not None:  # shape.fx
        cost = cost * fx_factor.reshape(-1)[fx_offset + params.cell_currency[cell]]
    if shape.fee_shifting:
        p_win, recovered, adverse = _per_draw_columns(params.cell_fee, draw, cell)
        decided = stage >= TRIAL
        shifted = jnp.where(u_win < p_win, 1.0 - recovered, 1.0 + adverse)
        cost = cost * jnp.where(decided, shifted, 1.0)
    return settled(cost), stage  # one rounding for every consumer (ordered.py)


@functools.cache
def _normal_quantile_table() -> np.ndarray:
    """``ndtri`` at every 16-bit uniform that :func:`_uniform_from_bits` can make (float32)."""
    u = (np.arange(2**16, dtype=np.float64) + 0.5) * 2.0**-16
    return np.array([statistics.NormalDist().inv_cdf(x) for x in u], dtype=np.float32)


def _payment_pattern(key: jax.Array | None, amount: jax.Array, valid: jax.Array, cell: jax.Array, stage: jax.Array,
                     draw: jax.Array, params: EngineParams, shape: EngineShape,
                     bits: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Payments by development year, disputes open at each year-end and their case-reserve weight.

    A dispute starts at a uniform time ``s`` in the underwriting year (year 0), ends at
    ``e = s + D`` with a lognormal duration ``D`` for its cell and final stage, and its cost ``x``
    is paid evenly while it runs (legal fees are billed as the work is done). The last
    development year takes everything after it.

    Paid by an integer time ``t >= 1``: ``sum_i r_i (min(t, e_i) - s_i)`` with ``r_i = x_i / D_i``
    (``s_i < 1 <= t``) ``= t R - sum r_i s_i - (t A(t) - B(t))``, where ``A(t)``, ``B(t)`` sum
    ``r_i`` and ``r_i e_i`` over disputes ended before ``t``. One scatter-add by ``floor(e_i)``
    gives A and B for every year-end, instead of a [dispute, year] table (measured 2x faster).
    """
    if bits is None:  # else the same words, computed slot by slot by the flat layout
        assert key is not None
        bits = _slot_bits(key, shape)
    start = _uniform_from_bits(bits & jnp.uint32(0xFFFF), 16).astype(jnp.float64)
    # The duration's normal quantile from 16 bits, by table: exact (65,536 values), 1.3x faster.
    z = jnp.asarray(_normal_quantile_table())[(bits >> jnp.uint32(16)).astype(jnp.int32)]
    assert params.cell_duration is not None and params.cell_case_weight is not None  # shape.dev_years > 0
    n_stages = params.cell_duration.shape[2]
    log_median, sigma = _per_draw_columns(params.cell_duration.reshape(params.cell_duration.shape[0], -1, 2), draw,
                                          cell * n_stages + stage)
    # Settled (ordered.py): every sum below reads the same rounding of the durations.
    start, duration = settled((start, jnp.maximum(jnp.exp(log_median + settled(sigma * z)), 1e-3).astype(jnp.float64)))
    end = start + duration
    rate = amount / duration
    n_dev = shape.dev_years
    ended_before = jnp.clip(jnp.floor(end), 0, n_dev).astype(jnp.int32)  # end < t  <=>  ended_before <= t - 1
    weight = jnp.where(valid, _per_draw(params.cell_case_weight, draw, cell), 0.0).astype(jnp.float64)
    sums = segment_total(jnp.stack([rate, rate * end, valid.astype(jnp.float64), weight], axis=1), ended_before,
                         n_dev + 1)
    done = jnp.cumsum(sums[:n_dev], axis=0)  # row t - 1: totals over disputes ended before t
    t = jnp.arange(1, n_dev + 1, dtype=jnp.float64)
    t_rate, t_done = settled((t * slot_total(rate, shape), t * done[:, 0]))
    paid_by = t_rate - slot_total(rate * start, shape) - (t_done - done[:, 1])
    total = slot_total(amount, shape)
    # Rounding in the cancellation above can break monotonicity by a few ulps: restore it.
    paid_by = jax.lax.cummax(jnp.clip(paid_by, 0.0, total).at[-1].set(total))
    payments = jnp.diff(paid_by, prepend=0.0)
    open_disputes = (valid.sum() - done[:, 2]).astype(jnp.int32)
    open_weight = jnp.maximum(slot_total(weight, shape) - done[:, 3], 0.0)
    return payments, open_disputes, open_weight


class YearShocks(NamedTuple):
    """What one simulated year shares across its disputes."""

    draw: jax.Array  # int32: the posterior draw this year follows
    level: jax.Array  # the year effect on every rate (1 without one)
    fx_factor: jax.Array | None  # [currency] this year's exchange-rate factors (None: no FX noise)


class Disputes(NamedTuple):
    """One year's dispute slots (empty slots have ``valid`` False) and the policy terms they meet."""

    valid: jax.Array
    policy: jax.Array
    cell: jax.Array
    cost: jax.Array  # ground-up, CNY (float32)
    stage: jax.Array
    # The loss event (per-event reinsurance, the dispute records): an ordinary dispute's own index
    # among the year's ordinary disputes; for a campaign's disputes, the year's ordinary count plus the
    # campaign's index in the year (one event per Schedule A complaint or ITC 337 investigation). Any
    # value in empty slots.
    event: jax.Array
    deductible: jax.Array
    coinsurance: jax.Array
    limit: jax.Array

    def join(self, other: Disputes) -> Disputes:
        """Slots of ``self`` then of ``other``."""
        return Disputes(*(jnp.concatenate([a, b]) for a, b in zip(self, other)))


class Counts(NamedTuple):
    """How many events, disputes and campaigns the year drew, and whether a buffer overflowed."""

    events: jax.Array
    disputes: jax.Array
    campaigns: jax.Array
    campaign_disputes: jax.Array
    overflow: jax.Array


class Payouts(NamedTuple):
    """The insurer's side of the year's disputes after the policy terms."""

    paid: jax.Array  # [slot] after deductible, coinsurance and the per-dispute limit (float64)
    amount: jax.Array  # [slot] paid after the annual aggregate limit: each dispute's share of the gross
    by_cell: jax.Array  # [cell]
    gross: jax.Array
    largest: jax.Array  # the largest single-dispute payment


class Recoveries(NamedTuple):
    """Reinsurance of the year (placeholders of one element without programs: never read)."""

    due: jax.Array  # [program, contract]
    recovered: jax.Array  # [program, contract]
    net: jax.Array  # [program]
    net_by_group: jax.Array  # [cell], the first program's
    by_slot: jax.Array  # [slot] the first program's recoveries attributed to each dispute


def _year_shocks(key: jax.Array, year: jax.Array, params: EngineParams, shape: EngineShape) -> YearShocks:
    """0. The year's posterior draw, year effect and exchange-rate factors."""
    if params.draw_count is None or params.draw_first is None:
        draw = (year % params.total_rate.shape[0]).astype(jnp.int32)
    else:
        draw = params.draw_first + (year.astype(jnp.uint32) % params.draw_count).astype(jnp.int32)
    k_year, k_fx = jax.random.split(key)
    real = _real(shape)
    level = jnp.exp(params.year_sigma[draw] * jax.random.normal(k_year, dtype=real)) if shape.year_effect \
        else real(1.0)
    fx_factor = None
    if shape.fx:
        sigma = params.fx_sigma
        fx_factor = jnp.exp(settled(sigma * jax.random.normal(k_fx, sigma.shape, real)) - settled(0.5 * sigma * sigma))
    return YearShocks(draw, level, fx_factor)


def _cluster_size(size_word: jax.Array, stratum: jax.Array, row: jax.Array, u_high: jax.Array, draw: jax.Array,
                  level: jax.Array, event_valid: jax.Array, params: EngineParams, shape: EngineShape) -> jax.Array:
    """Each event slot's disputes: 0 if thinned away (or empty), else Kemp's LK cluster size (1 for Poisson
    cells), from the slot's 64-bit ``size_word`` (thinning, V) and ``u_high`` (U). ``draw`` and ``level``
    are the year's (scalars) or each slot's."""
    real = _real(shape)
    lam = _per_draw(params.stratum_scale, draw, stratum) * level * row[:, ROW_WEIGHT]
    cell = row[:, ROW_CELL].astype(jnp.int32)
    k = _per_draw(params.cell_concentration, draw, cell)
    delta = _per_draw(params.cell_dispersion, draw, cell)
    nb = (k > 0) | (delta > 0)
    ratio = jnp.where(k > 0, lam / jnp.where(k > 0, k, 1.0), delta)  # mean / concentration
    log1p_ratio = jnp.log1p(ratio)
    keep_probability = jnp.where(nb, log1p_ratio / jnp.maximum(ratio, 1e-30), 1.0)
    kept = _uniform_from_bits((size_word & jnp.uint64(0xFFFFFFFF)).astype(jnp.uint32), dtype=real) < keep_probability
    v = _high_uniform(size_word, real)
    r = -jnp.expm1(-u_high * log1p_ratio)  # 1 - (1 - theta)^U with log(1 - theta) = -log1p(ratio)
    size = 1.0 + jnp.floor(jnp.log(v) / jnp.log(r))
    size = jnp.where(nb, jnp.clip(size, 1.0, 2.0**30), 1.0).astype(jnp.int32)
    return jnp.where(event_valid & kept, size, 0)


def _cluster_sizes(keys: tuple[jax.Array, jax.Array], shocks: YearShocks, stratum: jax.Array, row: jax.Array,
                   u_high: jax.Array, event_valid: jax.Array, params: EngineParams, shape: EngineShape):
    """3. Thinning and Kemp's LK: L = 1 + floor(log V / log(1 - (1 - theta)^U)); the disputes' slots.

    Returns each dispute slot's entry row, its validity, the number of disputes and the slots' cost uniforms.
    """
    k_size, k_cost = keys
    real = _real(shape)
    size_word = jax.random.bits(k_size, (shape.event_buffer,), dtype=jnp.uint64)
    size = _cluster_size(size_word, stratum, row, u_high, shocks.draw, shocks.level, event_valid, params, shape)
    cum_size = prefix_sum(size)
    n_disputes = cum_size[-1]
    slot = jnp.arange(shape.dispute_buffer, dtype=jnp.int32)
    owner = jnp.minimum(jnp.searchsorted(cum_size, slot, side="right", method="scan_unrolled"),
                        shape.event_buffer - 1)
    u_cost = _uniform_from_bits(jax.random.bits(k_cost, (shape.dispute_buffer,), dtype=jnp.uint32), dtype=real)
    return row[owner], slot < n_disputes, n_disputes, u_cost


def _ordinary_disputes(keys: tuple[jax.Array, ...], shocks: YearShocks, params: EngineParams,
                       shape: EngineShape) -> tuple[Disputes, Counts]:
    """1-3. Events at the dominating rate, their entries (policy x cell), cluster sizes, costs."""
    k_count, k_stratum, k_event, k_size, k_cost, k_sev = keys
    real = _real(shape)
    rate = params.total_rate[shocks.draw] * shocks.level.astype(jnp.float64)
    n_events = poisson_count(jax.random.bits(k_count, (), jnp.uint32), rate, shape.event_buffer)
    event_valid = jnp.arange(shape.event_buffer, dtype=jnp.int32) < n_events
    # 2. Stratum, then entry, from the slot's words.
    word = jax.random.bits(k_event, (shape.event_buffer,), dtype=jnp.uint64)
    stratum_word = jax.random.bits(k_stratum, (shape.event_buffer,), dtype=jnp.uint64) if shape.stratified else None
    stratum, entry = pick_entries(word, stratum_word, shocks.draw, params, shape)
    row = params.entry_row[entry]
    u_high = _high_uniform(word, real)
    if shape.clustered:
        row, valid, n_disputes, u_cost = _cluster_sizes((k_size, k_cost), shocks, stratum, row, u_high, event_valid,
                                                        params, shape)
        overflow = (n_events > shape.event_buffer) | (n_disputes > shape.dispute_buffer)
    else:
        valid, n_disputes, u_cost = event_valid, n_events, u_high
        overflow = n_events > shape.event_buffer
    cell = row[:, ROW_CELL].astype(jnp.int32)
    cost, stage = _dispute_costs(k_sev, valid.shape[0], cell, u_cost, shocks.draw, shocks.fx_factor, params, shape)
    disputes = Disputes(valid=valid, policy=row[:, ROW_POLICY].astype(jnp.int32), cell=cell, cost=cost, stage=stage,
                        event=jnp.arange(valid.shape[0], dtype=jnp.int32), deductible=row[:, ROW_DEDUCTIBLE],
                        coinsurance=row[:, ROW_COINSURANCE], limit=row[:, ROW_LIMIT])
    none = jnp.int32(0)
    return disputes, Counts(n_events, n_disputes, none, none, overflow)


def _campaign_disputes(keys: tuple[jax.Array, jax.Array], shocks: YearShocks, n_ordinary: jax.Array,
                       params: EngineParams, shape: EngineShape) -> tuple[Disputes, jax.Array, jax.Array, jax.Array]:
    """4. Campaigns (Schedule A complaints, ITC investigations) and the disputes each brings.

    Returns the campaign disputes' slots (events numbered from ``n_ordinary``, the year's ordinary
    disputes), the number of campaigns and of their disputes, and whether a campaign's size fell past
    its CDF table (the year is then recomputed with ``exact_tails``).
    """
    k_camp, k_camp_sev = keys
    real = _real(shape)
    campaigns = _year_campaigns(k_camp, shocks, params, shape)
    n_campaigns, kind, cum_hits, n_campaign_disputes, past_table, k_pick = campaigns
    hit_slot = jnp.arange(shape.campaign_dispute_buffer, dtype=jnp.int32)
    campaign = jnp.minimum(jnp.searchsorted(cum_hits, hit_slot, side="right", method="scan_unrolled"),
                           shape.campaign_buffer - 1).astype(jnp.int32)
    hit_kind = kind[campaign]
    hit_word = jax.random.bits(k_pick, (shape.campaign_dispute_buffer,), dtype=jnp.uint64)
    policy, cell = _campaign_targets(hit_word, hit_kind, params)
    cost, stage = _dispute_costs(k_camp_sev, shape.campaign_dispute_buffer, cell, _high_uniform(hit_word, real),
                                 shocks.draw, shocks.fx_factor, params, shape)
    terms = params.policy_terms[policy]
    disputes = Disputes(valid=hit_slot < n_campaign_disputes, policy=policy, cell=cell, cost=cost, stage=stage,
                        event=n_ordinary.astype(jnp.int32) + campaign, deductible=terms[:, 0], coinsurance=terms[:, 1],
                        limit=terms[:, 2])
    return disputes, n_campaigns, n_campaign_disputes, past_table


def _campaign_targets(hit_word: jax.Array, hit_kind: jax.Array, params: EngineParams) -> tuple[jax.Array, jax.Array]:
    """The policy each campaign dispute names (alias pick over the kind's targets) and its cell."""
    n_targets = params.campaign_accept.shape[1]
    target = hit_kind * n_targets + _alias_pick(_low32(hit_word), params.campaign_count[hit_kind],
                                                params.campaign_accept.reshape(-1),
                                                params.campaign_alias.reshape(-1), hit_kind * n_targets)
    return params.campaign_policy.reshape(-1)[target], params.campaign_cell[hit_kind]


class YearCampaigns(NamedTuple):
    """A year's campaigns: how many, each slot's kind and the running count of the disputes they bring."""

    n_campaigns: jax.Array
    kind: jax.Array  # [campaign slot]
    cum_hits: jax.Array  # [campaign slot] inclusive running total of disputes (0 for empty slots)
    n_disputes: jax.Array
    past_table: jax.Array  # a live campaign's size fell past its CDF table
    k_pick: jax.Array  # the key of the disputes' target words


def _year_campaigns(k_camp: jax.Array, shocks: YearShocks, params: EngineParams, shape: EngineShape) -> YearCampaigns:
    """4 (per year). The number of campaigns, their kinds and sizes."""
    k_n, k_kind, k_extra, _, k_pick, _ = jax.random.split(k_camp, 6)
    kind_rates = params.campaign_rate[shocks.draw] * shocks.level.astype(jnp.float64)
    n_campaigns = poisson_count(jax.random.bits(k_n, (), jnp.uint32), kind_rates.sum(), shape.campaign_buffer)
    camp_slot = jnp.arange(shape.campaign_buffer, dtype=jnp.int32)
    u_kind = jax.random.uniform(k_kind, (shape.campaign_buffer,), jnp.float64)
    cum_kind = jnp.cumsum(kind_rates) / jnp.maximum(kind_rates.sum(), 1e-300)
    kind = jnp.minimum(jnp.sum(u_kind[:, None] >= cum_kind[None, :-1], axis=1), kind_rates.shape[0] - 1)
    # 1 + NB(m, k) sellers per campaign, (m, k) per (draw, kind), by CDF inversion of one word each.
    size_word = jax.random.bits(k_extra, (shape.campaign_buffer,), dtype=jnp.uint32)
    extra, beyond = campaign_extra_sellers(size_word, shocks.draw * params.campaign_size_cdf.shape[1] + kind,
                                           params, shape)
    live = camp_slot < n_campaigns
    hits = jnp.where(live, 1 + extra, 0)
    cum_hits = prefix_sum(hits)
    return YearCampaigns(n_campaigns, kind, cum_hits, cum_hits[-1], jnp.any(beyond & live), k_pick)


def _policy_terms(disputes: Disputes, params: EngineParams, shape: EngineShape) -> Payouts:
    """5-6. Deductible, coinsurance and the per-dispute limit, then the annual aggregate per policy."""
    valid, policy = disputes.valid, disputes.policy
    cost = jnp.where(valid, disputes.cost, 0.0)
    paid = settled(jnp.minimum((1.0 - disputes.coinsurance) * jnp.maximum(cost - disputes.deductible, 0.0),
                               disputes.limit).astype(jnp.float64))
    policy_or_sink = jnp.where(valid, policy, shape.n_policies)  # empty slots go to a sink row
    per_policy = jnp.zeros(shape.n_policies + 1, jnp.float64).at[policy_or_sink].add(paid)
    aggregate = params.aggregate_limit_cny[policy]
    year_total = per_policy[policy]
    scale = jnp.where(year_total > aggregate, aggregate / jnp.where(year_total > 0, year_total, 1.0), 1.0)
    amount = settled(jnp.where(valid, paid * scale, 0.0))  # each dispute's share of the gross (f64)
    # The portfolio total is the exact sum of min(policy total, aggregate limit), so that it can
    # never exceed a limit by rounding; the pro-rata split above only attributes it to cells.
    gross = jnp.minimum(per_policy[: shape.n_policies], params.aggregate_limit_cny).sum()
    return Payouts(paid=paid, amount=amount, by_cell=segment_total(amount, disputes.cell, shape.n_cells), gross=gross,
                   largest=jnp.max(jnp.minimum(paid, aggregate)))


def _reinsure(key: jax.Array, payouts: Payouts, disputes: Disputes, params: EngineParams,
              shape: EngineShape) -> Recoveries:
    """7. Every reinsurance program on the same disputes (common random numbers), in inuring order."""
    if shape.n_reinsurers == 0:
        # lax.map's batching cannot reshape empty outputs: one-element placeholders, never read.
        nothing = jnp.zeros((1, 1), jnp.float64)
        return Recoveries(due=nothing, recovered=nothing, net=jnp.zeros(1, jnp.float64), net_by_group=payouts.by_cell,
                          by_slot=jnp.zeros_like(payouts.amount))
    assert params.programs is not None  # set with the programs' shape
    event = None
    if any(PER_EVENT_XL in program for program in shape.program_kinds):  # static: traced only when used
        n_slots = disputes.valid.shape[0]
        # Empty slots share one event of their own (nothing retained); a valid id is below the slot count
        # but in a year past its buffers (recomputed anyway), hence the clip.
        event = jnp.where(disputes.valid, jnp.clip(disputes.event, 0, n_slots - 1), n_slots)
    ceded = cede(default_uniforms(key, shape.n_reinsurers), payouts.amount, payouts.gross, params.programs,
                 shape.program_kinds, functools.partial(slot_total, shape=shape), event)
    recovered_by_cell = segment_total(ceded.recovered_by_slot, disputes.cell, shape.n_cells)
    return Recoveries(due=ceded.due, recovered=ceded.recovered, net=ceded.net,
                      net_by_group=jnp.maximum(payouts.by_cell - recovered_by_cell, 0.0), by_slot=ceded.recovered_by_slot)


def simulate_year(key: jax.Array, year: jax.Array, params: EngineParams, shape: EngineShape) -> YearResult:
    """Simulate one year of the portfolio. ``key`` must be this year's own key.

    The stages, each a pure function of its keys and the stages before: year shocks, ordinary
    disputes, campaign disputes, policy terms, reinsurance, payment pattern.
    """
    return _finish_year(key, *_year_disputes(key, year, params, shape), params, shape)


def _year_disputes(key: jax.Array, year: jax.Array, params: EngineParams,
                   shape: EngineShape) -> tuple[YearShocks, Disputes, Counts, jax.Array]:
    """0-4 of one year (its own ``key``): shocks, its dispute slots (ordinary, then campaigns'), the
    counts, and whether a campaign's size fell past its CDF table."""
    (k_shock, k_count, k_stratum, k_event, k_size, k_cost,
     k_sev, k_camp, k_camp_sev) = jax.random.split(key, 9)
    shocks = _year_shocks(k_shock, year, params, shape)
    disputes, counts = _ordinary_disputes((k_count, k_stratum, k_event, k_size, k_cost, k_sev), shocks, params, shape)
    if shape.campaign_buffer > 0:
        hits, n_campaigns, n_hits, past_table = _campaign_disputes((k_camp, k_camp_sev), shocks, counts.disputes,
                                                                   params, shape)
        disputes = disputes.join(hits)
        counts = counts._replace(campaigns=n_campaigns, campaign_disputes=n_hits, overflow=counts.overflow
                                 | (n_campaigns > shape.campaign_buffer) | (n_hits > shape.campaign_dispute_buffer))
    else:
        past_table = jnp.zeros((), bool)
    return shocks, disputes, counts, past_table


def _overflow_flags(counts: Counts, past_table: jax.Array, past_slots: jax.Array | None = None) -> jax.Array:
    """YearResult.overflow: why the driver must recompute the year (0: it need not)."""
    return (jnp.where(counts.overflow, OVERFLOW_BUFFER, 0) | jnp.where(past_table, OVERFLOW_TABLE, 0)
            | (0 if past_slots is None else jnp.where(past_slots, OVERFLOW_SLOTS, 0)))


def _finish_year(key: jax.Array, shocks: YearShocks, disputes: Disputes, counts: Counts, past_table: jax.Array,
                 params: EngineParams, shape: EngineShape, pay_bits: jax.Array | None = None,
                 past_slots: jax.Array | None = None) -> YearResult:
    """5-8 of one year from its dispute slots (ordinary, then campaigns'): policy terms, reinsurance,
    payment pattern (its per-slot words ``pay_bits`` if given, else drawn here), the year's totals."""
    payouts = _policy_terms(disputes, params, shape)
    recoveries = _reinsure(key, payouts, disputes, params, shape)
    # 8. Payment pattern for reserving.
    if shape.dev_years > 0:
        payments, open_disputes, open_weight = _payment_pattern(
            jax.random.fold_in(key, PAYMENT_STREAM), payouts.amount, disputes.valid, disputes.cell, disputes.stage,
            shocks.draw, params, shape, bits=pay_bits)
    else:
        payments, open_disputes = jnp.zeros(1, jnp.float64), jnp.zeros(1, jnp.int32)  # placeholders
        open_weight = payments
    return YearResult(
        gross=payouts.gross,
        ground_up=slot_total(jnp.where(disputes.valid, disputes.cost, 0.0).astype(jnp.float64), shape),
        gross_by_group=payouts.by_cell,
        disputes_by_group=jax.ops.segment_sum(disputes.valid.astype(jnp.int32), disputes.cell,
                                              num_segments=shape.n_cells),
        max_dispute=payouts.largest,
        disputes=(counts.disputes + counts.campaign_disputes).astype(jnp.int32),
        events=counts.events.astype(jnp.int32),
        campaigns=counts.campaigns.astype(jnp.int32),
        campaign_disputes=counts.campaign_disputes.astype(jnp.int32),
        overflow=_overflow_flags(counts, past_table, past_slots),
        ceded_due=recoveries.due,
        recovered=recoveries.recovered,
        net=recoveries.net,
        net_by_group=recoveries.net_by_group,
        payments=payments,
        open_disputes=open_disputes,
        open_weight=open_weight,
    )


# ---------------------------------------------------------------------------------------------
# The flat layout: a batch of years draws its disputes into shared slots.
#
# One buffer per year holds the year's count at its 1 - BUFFER_TAIL quantile, so that most of its slots
# are empty (default book: ~40 disputes a year in 192 slots), and every slot costs its random words and
# its sampling. A batch of B years instead lays its events, then its disputes, then its campaigns'
# disputes end to end in slots sized for the batch's total (compose.flat_slots: its mean plus 4 sds,
# on a coarse grid), and computes each one where it lies. A year's k-th event (dispute, ...) reads the words
# that its own buffer's slot k would: ``random.bits(k, (n,))[j]`` of the partitionable Threefry is
# ``threefry2x32(k, (0, j))`` (jax.extend.random.threefry2x32_p), so each slot's words depend on its
# year's key and its index in the year alone, and every year comes out bit for bit as simulate_year
# gives it (tests/simulator/test_flat.py). The disputes are then gathered back into the year's own
# slots for the policy terms, reinsurance and payment totals (cheap, no randomness), in the same order.
# A year whose slots run past the batch's is flagged (OVERFLOW_SLOTS) and recomputed like a buffer
# overflow.

def flat_capacity(slots_per_year: float, years: int, buffer: int) -> int:
    """Shared slots of a batch of ``years`` years: a multiple of 32, at most the years' own buffers."""
    return int(min(math.ceil(years * slots_per_year / 32.0) * 32, years * buffer))


def _words(key_data: jax.Array, index: jax.Array, wide: bool) -> jax.Array:
    """Word ``index`` of ``random.bits(key, (n,), uint64 if wide else uint32)`` for any n > index, slot by
    slot (``key_data``: each slot's ``random.key_data(key)``), under the partitionable Threefry."""
    index = index.astype(jnp.uint32)
    high, low = threefry2x32_p.bind(key_data[..., 0], key_data[..., 1], jnp.zeros_like(index), index)
    if wide:
        return (high.astype(jnp.uint64) << jnp.uint64(32)) | low.astype(jnp.uint64)
    return high ^ low


def _owners(first: jax.Array, counts: jax.Array, capacity: int) -> jax.Array:
    """For each of ``capacity`` slots, the last item (index into ``first``) whose run of ``counts[i]``
    slots from ``first[i]`` starts at or before it (items in order, runs end to end); -1 before the first.

    One scatter of the items' starts and a running maximum (a parallel prefix): cheaper than a binary
    search per slot."""
    items = jnp.arange(first.shape[0], dtype=jnp.int32)
    marks = jnp.full(capacity, -1, jnp.int32).at[jnp.where(counts > 0, first, capacity)].max(items, mode="drop")
    return jax.lax.associative_scan(jnp.maximum, marks)


def _lay_out(counts: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Counts per year laid end to end in ``capacity`` slots: each slot's year (clipped), its index in
    the year, whether it holds one; each year's first slot; whether the year fits."""
    end = prefix_sum(counts)
    start = end - counts
    slot = jnp.arange(capacity, dtype=jnp.int32)
    year = jnp.maximum(_owners(start, counts, capacity), 0)
    index = slot - start[year]
    return year, index, (slot < end[-1]) & (index < counts[year]), start, end <= capacity


def simulate_batch(key: jax.Array, years: jax.Array, params: EngineParams, shape: EngineShape) -> YearResult:
    """Simulate a batch of years (``years``: [B]) in the flat layout; the same years as simulate_year."""
    n_years = years.shape[0]
    real = _real(shape)
    event_slots, dispute_slots, hit_slots = shape.flat
    year_keys = jax.vmap(lambda y: jax.random.fold_in(key, y))(years)
    subkeys = jax.vmap(lambda k: jax.random.split(k, 9))(year_keys)  # [B, 9]: simulate_year's split
    data = jax.random.key_data(subkeys)  # [B, 9, 2]
    shocks = jax.vmap(lambda k, y: _year_shocks(k, y, params, shape))(subkeys[:, 0], years)
    level = shocks.level
    rate = params.total_rate[shocks.draw] * level.astype(jnp.float64)
    n_events = jax.vmap(lambda k, r: poisson_count(jax.random.bits(k, (), jnp.uint32), r, shape.event_buffer))(
        subkeys[:, 1], rate)

    # 1-2. Events: a year above its buffer overflows anyway; it keeps only its buffer's slots here.
    capacity = flat_capacity(event_slots, n_years, shape.event_buffer)
    held = jnp.minimum(n_events, shape.event_buffer)
    e_year, e_index, e_live, e_start, e_fits = _lay_out(held, capacity)
    draw = shocks.draw[e_year]
    word = _words(data[e_year, 3], e_index, True)
    stratum_word = _words(data[e_year, 2], e_index, True) if shape.stratified else None
    stratum, entry = pick_entries(word, stratum_word, draw, params, shape)
    row = params.entry_row[entry]
    u_high = _high_uniform(word, real)
    fits = e_fits
    if shape.clustered:
        # 3. Cluster sizes (capped at the buffer: a year holding a larger cluster overflows anyway), then
        # the disputes laid out as the events were; dispute k of a year belongs to the event whose running
        # total of sizes (in the year) first exceeds k.
        size = _cluster_size(_words(data[e_year, 4], e_index, True), stratum, row, u_high, draw, level[e_year],
                             e_live, params, shape)
        size = jnp.minimum(size, shape.dispute_buffer + 1)
        running = prefix_sum(size)
        before = jnp.concatenate([jnp.zeros(1, running.dtype), running])
        first = before[jnp.minimum(e_start, capacity)]
        n_disputes = before[jnp.minimum(e_start + held, capacity)] - first
        d_capacity = flat_capacity(dispute_slots, n_years, shape.dispute_buffer)
        d_held = jnp.minimum(n_disputes, shape.dispute_buffer)
        d_year, d_index, d_live, d_start, d_fits = _lay_out(d_held, d_capacity)
        # Event i's disputes start at shared slot d_start[b] + (running total before i, in its year).
        event_first = d_start[e_year] + (running - size) - first[e_year]
        owner = jnp.maximum(_owners(jnp.where(e_live, event_first, d_capacity), size, d_capacity), 0)
        d_row = row[owner]
        u_cost = _uniform_from_bits(_words(data[d_year, 5], d_index, False), dtype=real)
        overflow = (n_events > shape.event_buffer) | (n_disputes > shape.dispute_buffer)
        fits = fits & d_fits
    else:
        n_disputes, d_held, d_capacity = n_events, held, capacity
        d_year, d_index, d_live, d_start, d_row, u_cost = e_year, e_index, e_live, e_start, row, u_high
        overflow = n_events > shape.event_buffer
    ordinary = _flat_disputes(subkeys[:, 6], d_year, d_index, d_live, d_row[:, ROW_CELL].astype(jnp.int32),
                              d_row[:, ROW_POLICY].astype(jnp.int32), d_row[:, :3], u_cost, d_index, shocks, params,
                              shape)
    pay_keys = jax.vmap(lambda k: jax.random.fold_in(k, PAYMENT_STREAM))(year_keys)

    def payment_words(part: int, year: jax.Array, index: jax.Array) -> jax.Array | None:
        """The words _slot_bits gives slot ``index`` of the year's ``part`` (0 ordinary, 1 campaigns')."""
        if shape.dev_years == 0:
            return None
        return _words(jax.random.key_data(jax.vmap(lambda k: jax.random.fold_in(k, part))(pay_keys))[year], index, False)

    ordinary_pay = payment_words(0, d_year, d_index)
    parts = [(ordinary, ordinary_pay, d_start, d_held, shape.dispute_buffer)]
    n_campaigns = n_hits = jnp.zeros(n_years, jnp.int32)
    past_table = jnp.zeros(n_years, bool)
    if shape.campaign_buffer > 0:
        # 4. Campaigns per year (few slots), their disputes laid out across the batch.
        campaigns = jax.vmap(lambda k, sh: _year_campaigns(k, sh, params, shape))(subkeys[:, 7], shocks)
        n_campaigns, n_hits, past_table = campaigns.n_campaigns, campaigns.n_disputes, campaigns.past_table
        hits = jnp.diff(campaigns.cum_hits, axis=1, prepend=0)
        hits = jnp.minimum(hits, shape.campaign_dispute_buffer + 1).reshape(-1)  # [B * campaign slot]
        hit_running = prefix_sum(hits)
        hit_before = jnp.concatenate([jnp.zeros(1, hit_running.dtype), hit_running])
        hit_first = hit_before[jnp.arange(n_years) * shape.campaign_buffer]
        h_capacity = flat_capacity(hit_slots, n_years, shape.campaign_dispute_buffer)
        h_held = jnp.minimum(n_hits, shape.campaign_dispute_buffer)
        h_year, h_index, h_live, h_start, h_fits = _lay_out(h_held, h_capacity)
        slot_year = jnp.arange(hits.shape[0], dtype=jnp.int32) // shape.campaign_buffer
        campaign_first = h_start[slot_year] + (hit_running - hits) - hit_first[slot_year]
        campaign = jnp.maximum(_owners(campaign_first, hits, h_capacity), 0)
        hit_kind = campaigns.kind.reshape(-1)[campaign]
        hit_word = _words(jax.random.key_data(campaigns.k_pick)[h_year], h_index, True)
        policy, cell = _campaign_targets(hit_word, hit_kind, params)
        # The campaign's index in its year, after the year's ordinary disputes (Disputes.event).
        hit_event = n_disputes[h_year].astype(jnp.int32) + campaign % shape.campaign_buffer
        hit_disputes = _flat_disputes(subkeys[:, 8], h_year, h_index, h_live, cell, policy, params.policy_terms[policy],
                                      _high_uniform(hit_word, real), hit_event, shocks, params, shape)
        parts.append((hit_disputes, payment_words(1, h_year, h_index), h_start, h_held, shape.campaign_dispute_buffer))
        overflow = overflow | (n_campaigns > shape.campaign_buffer) | (n_hits > shape.campaign_dispute_buffer)
        fits = fits & h_fits
    # Back into each year's own slots (ordinary, then campaigns'): slot k of year b reads shared slot
    # start[b] + k if the year has that many, else an empty one.
    disputes, pay_bits = _per_year_slots(parts)
    counts = Counts(events=n_events, disputes=n_disputes, campaigns=n_campaigns, campaign_disputes=n_hits,
                    overflow=overflow)
    return jax.vmap(lambda k, sh, d, c, p, pb, ps: _finish_year(k, sh, d, c, p, params, shape, pb, ps))(
        year_keys, shocks, disputes, counts, past_table, pay_bits, ~fits)


def _flat_disputes(sev_keys: jax.Array, year: jax.Array, index: jax.Array, live: jax.Array, cell: jax.Array,
                   policy: jax.Array, terms: jax.Array, u_cost: jax.Array, event: jax.Array, shocks: YearShocks,
                   params: EngineParams, shape: EngineShape) -> Disputes:
    """5. Costs of shared dispute slots: ``sev_keys`` [B] are the years' keys of _dispute_costs."""
    stage_bits = None
    if _needs_stage_bits(shape):
        k_stage = jax.vmap(lambda k: jax.random.split(k)[1])(sev_keys)
        stage_bits = _words(jax.random.key_data(k_stage)[year], index, False)
    n_currencies = params.fx_sigma.shape[0]
    # (The key passed on feeds only gamma severities, which the flat layout does not run: _flat_supported.)
    cost, stage = _dispute_costs(sev_keys[0], cell.shape[0], cell, u_cost, shocks.draw[year], shocks.fx_factor,
                                 params, shape, stage_bits=stage_bits, fx_offset=year * n_currencies)
    return Disputes(valid=live, policy=policy, cell=cell, cost=cost, stage=stage, event=event, deductible=terms[:, 0],
                    coinsurance=terms[:, 1], limit=terms[:, 2])


def _per_year_slots(parts) -> tuple[Disputes, jax.Array | None]:
    """Each year's dispute slots gathered from the shared ones: [B, slots] fields, and payment words."""
    fields: list[Disputes] = []
    words: list[jax.Array] = []
    for disputes, pay, start, held, buffer in parts:
        k = jnp.arange(buffer, dtype=jnp.int32)
        size = disputes.valid.shape[0]
        at = jnp.where(k[None, :] < held[:, None], start[:, None] + k[None, :], size)  # size: the empty slot

        def gather(x, at=at):
            return jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)])[at]

        fields.append(Disputes(*(gather(x) for x in disputes)))
        if pay is not None:  # payment words: every part or none (shape.dev_years)
            words.append(gather(pay))
    joined = Disputes(*(jnp.concatenate(columns, axis=1) for columns in zip(*fields)))
    return joined, (jnp.concatenate(words, axis=1) if words else None)


def simulate_years(key: jax.Array, years: jax.Array, params: EngineParams, shape: EngineShape) -> YearResult:
    """Simulate the given year indices; year ``y`` draws only from ``fold_in(key, y)``."""
    if shape.flat and _flat_supported(key, shape):
        n = years.shape[0]
        batch = min(shape.batch_years, n)
        padded = -(-n // batch) * batch
        ids = jnp.concatenate([years, jnp.full(padded - n, years[-1], years.dtype)]).reshape(-1, batch)
        out = jax.lax.map(lambda b: simulate_batch(key, b, params, shape), ids)
        return jax.tree_util.tree_map(lambda x: x.reshape((padded,) + x.shape[2:])[:n], out)

    def one_year(year):
        return simulate_year(jax.random.fold_in(key, year), year, params, shape)

    return jax.lax.map(one_year, years, batch_size=min(shape.batch_years, years.shape[0]))


class DisputeSlots(NamedTuple):
    """The dispute slots of given years (fields ``[year, slot]``, ordinary slots then campaigns'; empty
    slots have ``valid`` False), with the counts that tell whether a year must be recomputed (``[year]``)."""

    valid: jax.Array  # bool
    event: jax.Array  # i32: the loss event (Disputes.event: ordinary disputes their own, campaigns' shared)
    campaign: jax.Array  # bool: a campaign's dispute
    policy: jax.Array  # i32: index into the portfolio's policies
    cell: jax.Array  # i32: the (country, dispute type) group of YearResult.gross_by_group
    stage: jax.Array  # i32: the stage reached (index into STAGES; 0 for single-stage cells)
    ground_up: jax.Array  # f64: the legal cost before policy terms, CNY
    gross: jax.Array  # f64: the insurer's payment after policy terms (its share of a capped aggregate), CNY
    ceded: jax.Array  # f64: the first program's recoveries attributed to the dispute (0 without one), CNY
    events: jax.Array  # i32[year]: YearResult's counts and overflow flags
    disputes: jax.Array
    campaigns: jax.Array
    campaign_disputes: jax.Array
    overflow: jax.Array


def dispute_records(key: jax.Array, years: jax.Array, params: EngineParams, shape: EngineShape) -> DisputeSlots:
    """Every dispute slot of the given years as :func:`simulate_years` simulates them (one buffer per year,
    whatever ``shape.flat``: the layouts give the same years; no payment pattern, which draws its own
    stream and changes no amount), for per-dispute loss tables. Year ``y`` uses ``fold_in(key, y)``."""

    def one_year(year):
        year_key = jax.random.fold_in(key, year)
        shocks, disputes, counts, past_table = _year_disputes(year_key, year, params, shape)
        payouts = _policy_terms(disputes, params, shape)
        recoveries = _reinsure(year_key, payouts, disputes, params, shape)
        valid = disputes.valid
        return DisputeSlots(
            valid=valid, event=disputes.event, campaign=jnp.arange(valid.shape[0]) >= shape.dispute_buffer,
            policy=disputes.policy, cell=disputes.cell, stage=disputes.stage,
            ground_up=jnp.where(valid, disputes.cost, 0.0).astype(jnp.float64), gross=payouts.amount,
            ceded=recoveries.by_slot, events=counts.events.astype(jnp.int32),
            disputes=(counts.disputes + counts.campaign_disputes).astype(jnp.int32),
            campaigns=counts.campaigns.astype(jnp.int32), campaign_disputes=counts.campaign_disputes.astype(jnp.int32),
            overflow=_overflow_flags(counts, past_table))

    return jax.lax.map(one_year, years, batch_size=min(shape.batch_years, years.shape[0]))


def _flat_supported(key: jax.Array, shape: EngineShape) -> bool:
    """The flat layout computes Threefry's words slot by slot (partitionable Threefry keys only) and has no
    rejection sampler (gamma severities draw by rejection from per-slot keys)."""
    return (str(jax.random.key_impl(key)) == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)  # type: ignore[attr-defined]
            and not shape.families[GAMMA])
