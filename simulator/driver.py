"""Stream simulated years through the kernel in fixed-shape chunks (host side).

Every chunk has the same shape, so the kernel compiles once. The last chunk is padded with
year indices past the end, and those years are discarded. Each chunk's years are split evenly
over the local devices (``shard_map`` over a one-axis mesh): year ``y`` still draws only from
``fold_in(key, y)``, so results are bit-identical whatever the chunk size or device count. On a
CPU, the command line exposes one device per core (see :func:`host_device_flags`).

A year whose disputes overflow the buffers is recomputed with larger buffers. Its draws are
prefix-stable (see engine.py), so the result is exactly what an unbounded buffer would give.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Collection, Sequence
from typing import overload

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import stored
from .engine import (
    OVERFLOW_BUFFER,
    OVERFLOW_TABLE,
    DisputeSlots,
    EngineParams,
    EngineShape,
    YearResult,
    dispute_records,
    simulate_years,
)

RECOMPUTE_BLOCK = 16  # years per recomputation call (fixed, so it compiles once per buffer size)


@dataclasses.dataclass(frozen=True)
class YearTable:
    """Per-year results on the host, amounts in CNY, float64."""

    gross: np.ndarray  # [year]
    ground_up: np.ndarray  # [year]
    gross_by_group: np.ndarray  # [year, group]
    disputes_by_group: np.ndarray  # [year, group] int32, campaigns' disputes included
    max_dispute: np.ndarray  # [year]
    disputes: np.ndarray  # [year] int32, campaigns' disputes included
    campaign_disputes: np.ndarray  # [year] int32
    campaigns: np.ndarray  # [year] int32: campaigns (Schedule A complaints, ITC 337 investigations)
    recomputed_years: np.ndarray  # year indices that overflowed the first buffers
    ceded_due: np.ndarray  # [year, program, contract] ceded before reinsurer default ([year, 0, 0]: none)
    recovered: np.ndarray  # [year, program, contract] paid by reinsurers
    net: np.ndarray  # [year, program] gross minus recoveries ([year, 0]: no reinsurance)
    net_by_group: np.ndarray  # [year, group] the first program's net
    payments: np.ndarray  # [year, development year] gross payments ([year, 0]: not tracked)
    open_disputes: np.ndarray  # [year, development year] disputes open at each year-end
    open_weight: np.ndarray  # [year, development year] their case-reserve weights summed

    @property
    def years(self) -> int:
        return int(self.gross.shape[0])

    @classmethod
    def concatenate(cls, tables: Sequence[YearTable]) -> YearTable:
        """Consecutive chunks as one table."""
        if len(tables) == 1:
            return tables[0]
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables])
                      for f in dataclasses.fields(cls)})


def host_device_flags(flags: str | None = None, cores: int | None = None) -> str:
    """XLA_FLAGS with one host (CPU) device per core, unless the flags already choose a count.

    Must be in the environment before JAX starts its backends. One CPU device runs on about one
    core, so this is what lets the year axis use every core (measured: 1.35x on 2 cores).
    """
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    if "xla_force_host_platform_device_count" in flags:
        return flags
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"{flags} --xla_force_host_platform_device_count={max(1, cores)}".strip()


_TRACES: collections.Counter = collections.Counter()


def traces(shape: EngineShape) -> int:
    """How many times the year kernel of ``shape`` has been traced (each trace is a compilation) in
    this process: new scenario numbers (arrays) must not add one, a new shape adds one."""
    return _TRACES[shape]


@functools.lru_cache(maxsize=64)
def sharded_kernel(shape: EngineShape, devices: tuple[jax.Device, ...]):
    """The kernel compiled once per (shape, devices): years split evenly over ``devices``.

    Returns (function of (key, year_ids, params), sharding of the year axis, replicated sharding).
    """
    mesh = Mesh(np.array(devices), ("year",))

    def local(key, year_ids, params):
        _TRACES[shape] += 1  # runs while JAX traces the kernel, never when it runs
        return simulate_years(key, year_ids, params, shape)

    # check_vma=False: jax.random.gamma's rejection loop (gamma severities) mixes per-device and
    # replicated values in its carry; every value here is per-device anyway.
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec("year"), PartitionSpec()),
                           out_specs=PartitionSpec("year"), check_vma=False)
    return _Kernel(jax.jit(mapped), shape, devices), NamedSharding(mesh, PartitionSpec("year")), \
        NamedSharding(mesh, PartitionSpec())


class _Kernel:
    """The jitted kernel of one (shape, devices), its lowered program kept between runs (stored.py):
    a warm process loads it instead of tracing and lowering it again. Same results either way."""

    def __init__(self, jitted, shape: EngineShape, devices: tuple[jax.Device, ...]):
        self._jitted, self._shape, self._devices = jitted, shape, devices
        self._programs: dict = {}  # per argument signature: the loaded program, or None (use jitted)

    def __call__(self, key: jax.Array, year_ids: jax.Array, params: EngineParams) -> YearResult:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        key_data = jax.random.key_data(key)
        args = (key_data, year_ids, *leaves)
        impl = jax.random.key_impl(key)
        signature = (treedef, str(impl), tuple((a.shape, a.dtype, getattr(a, "sharding", None)) for a in args))
        if signature not in self._programs:
            jitted = self._jitted

            def flat(key_data, year_ids, *leaves):
                key = jax.random.wrap_key_data(key_data, impl=impl)
                return tuple(jitted(key, year_ids, jax.tree_util.tree_unflatten(treedef, leaves)))

            def loaded() -> None:
                _TRACES[self._shape] += 1

            label = f"{self._shape!r} {impl} {treedef}"
            self._programs[signature] = stored.load_or_export(flat, label, self._devices, args, loaded)
        program = self._programs[signature]
        if program is None:
            return self._jitted(key, year_ids, params)
        return YearResult(*program(*args))


def require_x64() -> None:
    """Totals are float64 (docs/STYLE.md rule 12): refuse to build or run a kernel without it, before
    JAX would silently truncate the tables to float32."""
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "leisim accumulates totals in float64: call leisim.runtime.setup_jax() (or "
            "jax.config.update('jax_enable_x64', True)) before composing or simulating; leisim.simulate "
            "and the leisim command line do this for you"
        )




def _grow(shape: EngineShape, events: int, disputes: int, campaigns: int, campaign_disputes: int) -> EngineShape:
    """Buffers that hold the largest counts seen: ``shape`` itself when they fit it already, it
    resolves campaign tails and has one buffer per year; else every buffer at least 4x as large (with room for those counts),
    so that one grown shape, compiled once, usually serves the whole run (each shape is a
    compilation: ~12 s cold, ~1 s loaded), with campaign sizes past their CDF table resolved
    exactly (the incomplete-beta bisection costs little on the few recomputed years; a year sent
    back only for its table therefore grows the main shape too)."""
    has_campaigns = shape.campaign_buffer > 0
    fits = events <= shape.event_buffer and disputes <= shape.dispute_buffer and (
        not has_campaigns or (campaigns <= shape.campaign_buffer and campaign_disputes <= shape.campaign_dispute_buffer))
    if fits and (shape.exact_tails or not has_campaigns) and not shape.flat:
        return shape
    # (A year of a flat shape may also have run past its batch's shared slots, its counts fitting its
    # buffers: it grows as an overflow would, so that the run still compiles one grown shape.)

    def size(n: int, current: int) -> int:
        return max(4 * current, 1 << max(6, math.ceil(math.log2(max(n, 1) * 1.25))))

    event_buffer = size(events, shape.event_buffer)
    grown = shape._replace(
        flat=(),  # one buffer per year: the few recomputed years need no shared slots
        event_buffer=event_buffer,
        dispute_buffer=size(disputes, shape.dispute_buffer) if shape.clustered else event_buffer,
    )
    if has_campaigns:
        grown = grown._replace(campaign_buffer=size(campaigns, shape.campaign_buffer),
                               campaign_dispute_buffer=size(campaign_disputes, shape.campaign_dispute_buffer),
                               exact_tails=True)
    return grown


@overload
def run_years(key: jax.Array, params: EngineParams, shape: EngineShape, *, years: int, chunk_size: int = ...,
              first_year: int = ..., progress: Callable[[int], None] | None = ...,
              devices: Sequence[jax.Device] | None = ..., sink: None = ..., skip: Collection[int] = ...) -> YearTable: ...


@overload
def run_years(key: jax.Array, params: EngineParams, shape: EngineShape, *, years: int, chunk_size: int = ...,
              first_year: int = ..., progress: Callable[[int], None] | None = ...,
              devices: Sequence[jax.Device] | None = ..., sink: Callable[[int, YearTable], None],
              skip: Collection[int] = ...) -> None: ...


def run_years(
    key: jax.Array,
    params: EngineParams,
    shape: EngineShape,
    *,
    years: int,
    chunk_size: int = 10_000,
    first_year: int = 0,
    progress: Callable[[int], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    sink: Callable[[int, YearTable], None] | None = None,
    skip: Collection[int] = (),
) -> YearTable | None:
    """Simulate years ``first_year .. first_year + years - 1``.

    Args:
        key: the run's key; year ``y`` uses ``fold_in(key, y)``.
        params, shape: from :func:`leisim.scenarios.compose.compose`.
        years: number of simulated years.
        chunk_size: years per kernel call (memory grows with it; results do not change). Each
            call is padded to a multiple of the device count (the padding years are dropped), so
            chunk boundaries do not depend on the devices.
        progress: called with the number of years just finished.
        devices: where to run [default: every device of every process (:func:`run_devices`)].
            Results do not depend on it.
        sink: called with ``(start, chunk)`` for each finished chunk, in order (``start`` counts
            from ``first_year``), which is then dropped: memory stays constant however many years
            are run, and nothing is returned. Without it, the whole table is returned.
        skip: chunk starts not to simulate (they were finished before: resumed runs). Chunk
            boundaries are multiples of ``chunk_size``.

    With several processes (``jax.distributed``), every process calls this with the same
    arguments; each simulates the years of its own devices, and every process receives every
    chunk (an all-gather), so ``sink`` sees the same chunks everywhere.
    """
    require_x64()
    if years < 1 or chunk_size < 1:
        raise ValueError(f"years and chunk_size must be >= 1, got {years} and {chunk_size}")
    devices = tuple(devices or run_devices())
    chunk_size = min(chunk_size, years)
    batch = rounded_chunk_size(chunk_size, years, len(devices))
    kernel, year_sharding, replicated = sharded_kernel(shape, devices)
    key, params = _replicate((key, params), replicated)
    grown = [shape]  # buffers that held the largest overflowing year so far
    chunks: list[YearTable] = []

    def finish(start: int, out: YearResult) -> None:
        n = min(start + chunk_size, years) - start
        ids = np.arange(first_year + start, first_year + start + n, dtype=np.int64)
        table = _recompute_overflows(_to_host(out, n), key, params, grown, devices, ids)
        if sink is None:
            chunks.append(table)
        else:
            sink(start, table)
        if progress is not None:
            progress(n)

    pending = None
    for start in range(0, years, chunk_size):
        if start in skip:
            continue
        ids = np.arange(first_year + start, first_year + start + batch, dtype=np.uint32)
        out = kernel(key, _global_array(ids, year_sharding), params)  # dispatched asynchronously
        if pending is not None:
            finish(*pending)  # copy the previous chunk while this one runs
        pending = (start, out)
    if pending is not None:
        finish(*pending)
    if sink is not None:
        return None
    if not chunks:
        raise ValueError("every chunk was skipped: nothing to return")
    return YearTable.concatenate(chunks)


def run_year_ids(key: jax.Array, year_ids: np.ndarray, params: EngineParams, shape: EngineShape, *,
                 chunk_size: int = 10_000, devices: Sequence[jax.Device] | None = None) -> YearTable:
    """Simulate the given year indices (any order, any subset), exactly as :func:`run_years` would.

    Year ``y`` draws only from ``fold_in(key, y)``, so its row equals row ``y`` of a run of all the
    years. Used to study one posterior draw at a time (year ``y`` uses draw ``y mod n_draws``).
    """
    require_x64()
    year_ids = np.asarray(year_ids, dtype=np.int64)
    if year_ids.ndim != 1 or year_ids.size == 0 or year_ids.min() < 0 or year_ids.max() >= 2**32:
        raise ValueError("year_ids must be a non-empty 1-D array of indices in [0, 2**32)")
    devices = tuple(devices or run_devices())
    chunk_size = min(chunk_size, year_ids.size)
    batch = rounded_chunk_size(chunk_size, year_ids.size, len(devices))
    kernel, year_sharding, replicated = sharded_kernel(shape, devices)
    key, params = _replicate((key, params), replicated)
    grown = [shape]
    chunks = []
    for start in range(0, year_ids.size, chunk_size):
        ids = year_ids[start:start + chunk_size]
        out = kernel(key, _global_array(_padded(ids, batch), year_sharding), params)
        chunks.append(_recompute_overflows(_to_host(out, ids.size), key, params, grown, devices, ids))
    return YearTable.concatenate(chunks)


@dataclasses.dataclass(frozen=True)
class DisputeTable:
    """The disputes of some simulated years, one row each (valid disputes only), on the host: the years
    in the order asked, each year's disputes in the kernel's slot order (ordinary, then campaigns')."""

    year: np.ndarray  # int64: the simulated year (its index, as in run_years)
    event: np.ndarray  # int64: the loss event within its year: 0 .. n - 1 for the year's n ordinary disputes (each
    #                    its own), then n + c for every dispute of the year's campaign c (shared)
    campaign: np.ndarray  # bool: a campaign's dispute (Schedule A complaint, ITC 337 investigation)
    policy: np.ndarray  # int32: index into the portfolio's policies
    cell: np.ndarray  # int32: the (country, dispute type) group, as YearTable.gross_by_group's columns
    stage: np.ndarray  # int32: the stage reached (index into vocabulary.STAGES; 0 for single-stage cells)
    ground_up: np.ndarray  # float64: legal cost before policy terms, CNY
    gross: np.ndarray  # float64: the insurer's payment after policy terms (pro rata under an aggregate cap), CNY
    ceded: np.ndarray  # float64: the first program's recoveries attributed to the dispute, after default, CNY

    @property
    def size(self) -> int:
        return int(self.year.size)


@functools.lru_cache(maxsize=16)
def _records_kernel(shape: EngineShape, devices: tuple[jax.Device, ...]):
    """engine.dispute_records compiled once per (shape, devices), years split over ``devices``."""
    mesh = Mesh(np.array(devices), ("year",))
    mapped = jax.shard_map(lambda key, year_ids, params: dispute_records(key, year_ids, params, shape), mesh=mesh,
                           in_specs=(PartitionSpec(), PartitionSpec("year"), PartitionSpec()),
                           out_specs=PartitionSpec("year"), check_vma=False)
    return jax.jit(mapped), NamedSharding(mesh, PartitionSpec("year")), NamedSharding(mesh, PartitionSpec())


def run_dispute_records(key: jax.Array, year_ids: np.ndarray, params: EngineParams, shape: EngineShape, *,
                        chunk_size: int = 1_000, devices: Sequence[jax.Device] | None = None) -> DisputeTable:
    """Every dispute of the given years, exactly as :func:`run_years` simulates them (same key, params, shape).

    Per year, the rows' ``gross`` add up to run_years' ``gross`` and their ``ceded`` to the first program's
    ``gross - net`` (to rounding: the kernel totals the same amounts in a fixed order); a year past its
    buffers is recomputed with larger ones, as run_years does, so that every dispute is there. One buffer
    per year (not the hot path); ``chunk_size`` years per kernel call (memory: about 70 bytes per slot).
    """
    require_x64()
    year_ids = np.asarray(year_ids, dtype=np.int64)
    if year_ids.ndim != 1 or year_ids.size == 0 or year_ids.min() < 0 or year_ids.max() >= 2**32:
        raise ValueError("year_ids must be a non-empty 1-D array of indices in [0, 2**32)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    devices = tuple(devices or run_devices())
    # The payment pattern changes no amount (its own stream): left out. One buffer per year.
    shape = shape._replace(flat=(), dev_years=0)
    grown = [shape]  # the largest buffers the recomputed years needed so far (one compilation per size)
    chunk_size = min(chunk_size, year_ids.size)
    batch = rounded_chunk_size(chunk_size, year_ids.size, len(devices))
    pieces: list[DisputeTable] = []
    for start in range(0, year_ids.size, chunk_size):
        ids = year_ids[start:start + chunk_size]
        slots = _records_of(key, ids, params, shape, devices, batch)
        todo = np.flatnonzero(slots["overflow"])
        tried = None
        while todo.size:  # as _recompute_overflows: grown buffers, kept for the next chunks
            grown[0] = _grow(grown[0], int(slots["events"][todo].max()),
                             int((slots["disputes"] - slots["campaign_disputes"])[todo].max()),
                             int(slots["campaigns"][todo].max()), int(slots["campaign_disputes"][todo].max()))
            if grown[0] == tried:  # cannot happen: an overflowing year reports a count beyond its buffer
                raise RuntimeError(f"years {ids[todo].tolist()} overflow buffers that hold their counts")
            tried = grown[0]
            again = _records_of(key, ids[todo], params, grown[0]._replace(batch_years=RECOMPUTE_BLOCK), devices,
                                -(-RECOMPUTE_BLOCK // len(devices)) * len(devices))
            slots = _merged(slots, todo, again)
            todo = todo[slots["overflow"][todo] != 0]
        pieces.append(_table_of(slots, ids))
    return DisputeTable(**{f.name: np.concatenate([getattr(p, f.name) for p in pieces])
                           for f in dataclasses.fields(DisputeTable)})


def _records_of(key: jax.Array, ids: np.ndarray, params: EngineParams, shape: EngineShape,
                devices: tuple[jax.Device, ...], batch: int) -> dict[str, np.ndarray]:
    """engine.dispute_records of ``ids`` on the host (DisputeSlots' fields), in calls of ``batch`` years
    (padded with the first)."""
    kernel, year_sharding, replicated = _records_kernel(shape, devices)
    key, params = _replicate((key, params), replicated)
    parts = []
    for start in range(0, ids.size, batch):
        block = ids[start:start + batch]
        out = kernel(key, _global_array(_padded(block, batch), year_sharding), params)
        parts.append(_to_host(out, block.size))
    return {name: np.concatenate([np.asarray(getattr(p, name)) for p in parts]) for name in DisputeSlots._fields}


def _merged(slots: dict[str, np.ndarray], rows: np.ndarray, again: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``slots`` with years ``rows`` replaced by their recomputation (wider slots: the rest padded as empty)."""
    n_slots = max(slots["valid"].shape[1], again["valid"].shape[1])

    def widened(x: np.ndarray) -> np.ndarray:
        if x.ndim == 1 or x.shape[1] == n_slots:
            return x.copy()
        return np.concatenate([x, np.zeros((x.shape[0], n_slots - x.shape[1]), x.dtype)], axis=1)

    out = {}
    for name, old in slots.items():
        out[name] = widened(old)
        out[name][rows] = widened(again[name])
    return out


def _table_of(slots: dict[str, np.ndarray], ids: np.ndarray) -> DisputeTable:
    """The valid slots, year by year (row-major: each year's slots in order)."""
    valid = slots["valid"].astype(bool)
    year = np.broadcast_to(ids[:, None], valid.shape)
    types = {"event": np.int64, "campaign": bool, "policy": np.int32, "cell": np.int32, "stage": np.int32,
             "ground_up": np.float64, "gross": np.float64, "ceded": np.float64}
    return DisputeTable(year=year[valid].astype(np.int64),
                        **{name: slots[name][valid].astype(dtype) for name, dtype in types.items()})


def run_devices(limit: int | None = None) -> tuple[jax.Device, ...]:
    """The devices a run uses: all of them (every process's, under ``jax.distributed``), or the
    first ``limit`` local ones."""
    if limit is None:
        return tuple(jax.devices())
    if limit < 1:
        raise ValueError(f"the device limit must be >= 1, got {limit}")
    if jax.process_count() > 1:
        raise ValueError("a device limit applies to one process; with jax.distributed every device is used")
    return tuple(jax.local_devices()[:limit])


def rounded_chunk_size(chunk_size: int, years: int, n_devices: int) -> int:
    """Years per kernel call: at most ``years``, rounded up to a multiple of the device count."""
    return -(-min(chunk_size, years) // n_devices) * n_devices


def _padded(ids: np.ndarray, batch: int) -> np.ndarray:
    """``ids`` as a kernel call's ``batch`` year ids (uint32), the tail filled with the first (discarded after)."""
    padded = np.full(batch, ids[0], np.uint32)
    padded[: ids.size] = ids
    return padded


def _global_array(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """``values`` (the same on every process) as an array sharded over ``sharding``'s devices."""
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def _replicate(tree, sharding: NamedSharding):
    """Put ``tree`` (the same on every process) on every device of ``sharding``."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(_global_array(data, sharding), impl=jax.random.key_impl(leaf))
        return _global_array(np.asarray(leaf), sharding)

    return jax.tree_util.tree_map(put, tree)


def _to_host(out, n: int):
    """The first ``n`` years of a kernel result (a YearResult, DisputeSlots) as NumPy arrays (gathered
    from every process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    return type(out)(*(np.asarray(field)[:n] for field in out))  # host copies


def _recompute_overflows(out: YearResult, key, params, grown: list[EngineShape], devices, ids: np.ndarray) -> YearTable:
    """Recompute the years whose buffers overflowed with larger buffers; return the chunk's table.

    ``grown[0]`` keeps the largest buffers used so far, so each size compiles once per run.
    Every process sees the same chunk, so they all take the same decisions (collectives match).
    """
    fields = {name: np.array(value) for name, value in out._asdict().items()}
    overflow = fields["overflow"].astype(bool)
    # Reported: the years past a buffer or a CDF table (a property of the year). Years past a batch's shared
    # slots only (flat layout: a property of the batch the year fell in) are recomputed too, unreported.
    recomputed = np.flatnonzero(fields["overflow"] & (OVERFLOW_BUFFER | OVERFLOW_TABLE))
    todo = np.flatnonzero(overflow)
    n_devices = len(devices)
    block_size = -(-RECOMPUTE_BLOCK // n_devices) * n_devices
    tried = None  # the shape the years in todo were last computed with
    while todo.size:
        grown[0] = _grow(grown[0], int(fields["events"][todo].max()),
                         int((fields["disputes"] - fields["campaign_disputes"])[todo].max()),
                         int(fields["campaigns"][todo].max()), int(fields["campaign_disputes"][todo].max()))
        if grown[0] == tried:  # cannot happen: an overflowing year always reports a count beyond its buffer
            raise RuntimeError(f"years {ids[todo].tolist()} overflow buffers that hold their counts")
        tried = grown[0]
        big_kernel, year_sharding, _ = sharded_kernel(grown[0]._replace(batch_years=RECOMPUTE_BLOCK), devices)
        for block in range(0, todo.size, block_size):
            rows = todo[block:block + block_size]
            block_ids = np.full(block_size, ids[rows[0]], np.uint32)
            block_ids[: rows.size] = ids[rows]
            again = _to_host(big_kernel(key, _global_array(block_ids, year_sharding), params), rows.size)
            for name, value in again._asdict().items():
                fields[name][rows] = value
        overflow = fields["overflow"].astype(bool)
        todo = todo[overflow[todo]]
    n = overflow.size
    if grown[0].n_reinsurers == 0:  # the kernel's one-element placeholders: nothing ceded
        fields["ceded_due"] = fields["recovered"] = np.zeros((n, 0, 0))
        fields["net"] = np.zeros((n, 0))
    if grown[0].dev_years == 0:  # payments not tracked
        fields["payments"] = fields["open_weight"] = np.zeros((n, 0))
        fields["open_disputes"] = np.zeros((n, 0), np.int32)
    return YearTable(
        gross=fields["gross"],
        ground_up=fields["ground_up"],
        gross_by_group=fields["gross_by_group"],
        disputes_by_group=fields["disputes_by_group"].astype(np.int32),
        max_dispute=fields["max_dispute"],
        disputes=fields["disputes"].astype(np.int32),
        campaign_disputes=fields["campaign_disputes"].astype(np.int32),
        campaigns=fields["campaigns"].astype(np.int32),
        recomputed_years=np.asarray(ids)[recomputed].astype(np.int64),
        ceded_due=fields["ceded_due"],
        recovered=fields["recovered"],
        net=fields["net"],
        net_by_group=fields["net_by_group"],
        payments=fields["payments"],
        open_disputes=fields["open_disputes"].astype(np.int32),
        open_weight=fields["open_weight"],
    )
