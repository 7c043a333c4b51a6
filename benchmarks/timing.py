"""Timing helpers shared by the benchmarks: the median of repeats, steady kernel throughput with the
compile time apart, the machine's CPU model."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

from ..simulator.driver import run_years


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _Tally:
    """A sink that keeps only the disputes and the sum and sum of squares of the annual totals."""

    def __init__(self):
        self.disputes, self.total, self.square = 0, 0.0, 0.0

    def __call__(self, start, table) -> None:
        self.disputes += int(table.disputes.sum())
        self.total += float(table.gross.sum())
        self.square += float((table.gross**2).sum())


def time_kernel(comp, years: int, *, chunk_size: int, repeats: int, devices) -> dict:
    """Compile time (first call minus a steady call on one chunk) and steady throughput."""
    key = jax.random.key(0)
    chunk = min(chunk_size, years)

    def once(n_years: int) -> _Tally:
        tally = _Tally()
        run_years(key, comp.params, comp.shape, years=n_years, chunk_size=chunk, devices=devices, sink=tally)
        return tally

    t0 = time.perf_counter()
    once(chunk)
    first = time.perf_counter() - t0
    compile_s = max(first - median_time(lambda: once(chunk), 2), 0.0)
    times, tally = [], None
    for _ in range(repeats):  # compiled already: every run is steady state
        t0 = time.perf_counter()
        tally = once(years)
        times.append(time.perf_counter() - t0)
    run_s = statistics.median(times)
    return {"years": years, "chunk_size": chunk, "devices": len(devices), "disputes": tally.disputes,
            "compile_s": compile_s, "run_s": run_s, "disputes_per_s": tally.disputes / run_s,
            "years_per_s": years / run_s, "mean_gross": tally.total / years,
            "sd_gross": float(np.sqrt(max(tally.square / years - (tally.total / years) ** 2, 0.0)))}


