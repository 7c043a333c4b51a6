"""Stream simulated years through the kernel in fixed-shape chunks (host side).

Every chunk has the same shape, so the kernel compiles once. The last chunk is padded with
year indices past the end, and those years are discarded. A year whose disputes overflow the
buffers is recomputed with larger buffers. Its draws are prefix-stable (see engine.py), so the
result is exactly what an unbounded buffer would give.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .engine import EngineParams, EngineShape, YearResult, simulate_years_jit

RECOMPUTE_BLOCK = 16  # years per recomputation call (fixed, so it compiles once per buffer size)


@dataclasses.dataclass(frozen=True)
class YearTable:
    """Per-year results on the host, amounts in CNY, float64."""

    gross: np.ndarray  # [year]
    ground_up: np.ndarray  # [year]
    gross_by_group: np.ndarray  # [year, group]
    max_dispute: np.ndarray  # [year]
    disputes: np.ndarray  # [year] int32
    recomputed_years: np.ndarray  # year indices that overflowed the first buffers


def _require_x64() -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "leisim accumulates totals in float64: call jax.config.update('jax_enable_x64', True) "
            "before simulating (the leisim command line does this for you)"
        )


def _grow(shape: EngineShape, events: int, disputes: int) -> EngineShape:
    def size(n: int) -> int:
        return 1 << max(6, math.ceil(math.log2(max(n, 1) * 1.25)))

    return shape._replace(
        event_buffer=max(shape.event_buffer, size(events)),
        dispute_buffer=max(shape.dispute_buffer, size(disputes)) if shape.clustered else max(shape.event_buffer, size(events)),
    )


def run_years(
    key: jax.Array,
    params: EngineParams,
    shape: EngineShape,
    *,
    years: int,
    chunk_size: int = 10_000,
    first_year: int = 0,
    progress: Callable[[int], None] | None = None,
) -> YearTable:
    """Simulate years ``first_year .. first_year + years - 1``.

    Args:
        key: the run's key; year ``y`` uses ``fold_in(key, y)``.
        params, shape: from :func:`leisim.scenarios.compose.compose`.
        years: number of simulated years.
        chunk_size: years per kernel call (memory grows with it; results do not change).
        progress: called with the number of years just finished.
    """
    _require_x64()
    if years < 1 or chunk_size < 1:
        raise ValueError(f"years and chunk_size must be >= 1, got {years} and {chunk_size}")
    chunk_size = min(chunk_size, years)
    n_groups = shape.n_groups
    gross, ground_up = np.empty(years), np.empty(years)
    by_group, max_dispute = np.empty((years, n_groups)), np.empty(years)
    disputes, events = np.empty(years, np.int64), np.empty(years, np.int64)
    overflow = np.zeros(years, bool)

    def put(rows, out: YearResult, n: int) -> None:
        gross[rows] = np.asarray(out.gross)[:n]
        ground_up[rows] = np.asarray(out.ground_up)[:n]
        by_group[rows] = np.asarray(out.gross_by_group)[:n]
        max_dispute[rows] = np.asarray(out.max_dispute)[:n]
        disputes[rows] = np.asarray(out.disputes)[:n]
        events[rows] = np.asarray(out.events)[:n]
        overflow[rows] = np.asarray(out.overflow)[:n]

    def store(start: int, out: YearResult) -> None:
        n = min(start + chunk_size, years) - start
        put(slice(start, start + n), out, n)
        if progress is not None:
            progress(n)

    pending = None
    for start in range(0, years, chunk_size):
        year_ids = jnp.arange(first_year + start, first_year + start + chunk_size, dtype=jnp.uint32)
        out = simulate_years_jit(key, year_ids, params, shape)  # dispatched asynchronously
        if pending is not None:
            store(*pending)  # copy the previous chunk while this one runs
        pending = (start, out)
    store(*pending)

    recomputed = np.flatnonzero(overflow)
    todo, big = recomputed, shape
    while todo.size:
        big = _grow(big, int(events[todo].max()), int(disputes[todo].max()))
        for block in range(0, todo.size, RECOMPUTE_BLOCK):
            rows = todo[block:block + RECOMPUTE_BLOCK]
            ids = np.full(RECOMPUTE_BLOCK, first_year + rows[0], np.uint32)
            ids[: rows.size] = first_year + rows
            out = simulate_years_jit(key, jnp.asarray(ids), params, big._replace(batch_years=RECOMPUTE_BLOCK))
            put(rows, out, rows.size)
        todo = todo[overflow[todo]]

    return YearTable(
        gross=gross,
        ground_up=ground_up,
        gross_by_group=by_group,
        max_dispute=max_dispute,
        disputes=disputes.astype(np.int32),
        recomputed_years=recomputed + first_year,
    )
