"""The benchmark of what users run: the posterior-driven baseline (lifecycle model, campaigns,
reinsurance, payment pattern), on synthetic pilot books of several sizes, beside the plain NumPy
reference implementation of the same model (:mod:`leisim.benchmarks.reference_model`, written from
the documentation; it shares no code with the engine).

Per portfolio size, in one run on one machine:

- the kernel's compile time and steady years/s and disputes/s (:func:`timing.time_kernel`), on
  the composition `leisim simulate` builds (the posterior-mean row included);
- the random 32-bit words the kernel draws per simulated year, counted from its traced program
  (every ``random_bits`` output; draws inside rejection loops counted once per loop, so the
  figure is a lower bound), against the random variates the reference implementation draws per
  year (counted on its NumPy generator): what the model needs, done plainly;
- the reference's years/s on the same book and its mean gross beside the kernel's (the same
  model, independent draws: they agree within Monte Carlo error);
- with Numba installed (``leisim[bench]``), the plain Numba peer of the same model
  (:mod:`leisim.benchmarks.numba_model`), on one thread and on every core: the speed target's
  yardstick (the kernel >= 2x the Numba peer).
"""

from __future__ import annotations

import tempfile
import time
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from ..data.generate import write_portfolio
from ..formats.portfolio import load_portfolio
from ..scenarios.compose import compose
from ..scenarios.schema import library_path, load_scenario
from ..simulator.engine import simulate_years
from . import reference_model
from .timing import time_kernel


def kernel_words_per_year(comp) -> float:
    """Random 32-bit words one simulated year draws in the compiled kernel (from its jaxpr)."""
    batch = comp.shape.batch_years
    traced = jax.make_jaxpr(lambda key, ids, params: simulate_years(key, ids, params, comp.shape))(
        jax.random.key(0), np.arange(batch, dtype=np.uint32), comp.params)

    def words(jaxpr, repeat: int = 1) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "random_bits":
                total += repeat * sum(int(np.prod(v.aval.shape)) * max(1, v.aval.dtype.itemsize // 4)
                                      for v in eqn.outvars)
            elif eqn.primitive.name == "threefry2x32":  # the flat layout's words, slot by slot: 64 bits a slot
                total += repeat * sum(int(np.prod(v.aval.shape)) for v in eqn.outvars)
            times = repeat * (int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1)
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += words(inner, times)
        return total

    return words(traced.jaxpr) / batch


class _CountingGenerator:
    """A NumPy Generator that counts the variates it returns."""

    def __init__(self, generator: np.random.Generator, tally: list[int]):
        self._generator, self._tally = generator, tally

    def __getattr__(self, name: str):
        method = getattr(self._generator, name)
        if not callable(method):
            return method

        def counted(*args, **kwargs):
            out = method(*args, **kwargs)
            self._tally[0] += int(np.size(out))
            return out

        return counted


def baseline_inputs(book: Path):
    """The reference models' inputs for ``book`` under the shipped baseline (read once per book)."""
    with open(library_path("baseline"), "rb") as handle:
        scenario = tomllib.load(handle)
    return reference_model.load_inputs(posterior_path=reference_model.DEFAULT_POSTERIOR, portfolio_dir=book,
                                       scenario=scenario)


def reference_run(inputs, years: int, seed: int = 1) -> dict:
    """The reference implementation on ``inputs`` (:func:`baseline_inputs`): years/s, variates/year,
    mean gross."""
    tally = [0]
    start = time.perf_counter()
    out = reference_model.simulate(inputs, years=years, seed=seed,
                                   generator=lambda seed_seq: _CountingGenerator(np.random.default_rng(seed_seq), tally))
    seconds = time.perf_counter() - start
    return {"reference_years_per_s": years / seconds, "reference_run_s": seconds,
            "reference_variates_per_year": tally[0] / years, "reference_mean_gross": float(out["gross"].mean()),
            "reference_disputes_per_s": float(out["disputes"].sum()) / seconds,
            "reference_sd_gross": float(out["gross"].std())}


def numba_run(inputs, years: int, seed: int = 1) -> dict:
    """The plain Numba peer (:mod:`leisim.benchmarks.numba_model`) on ``inputs``, single-thread and
    over every core (``prange``), its JIT compile apart; {} without Numba (``pip install 'leisim[bench]'``)."""
    try:
        from . import numba_model
    except ImportError:
        return {}
    row = {}
    for label, parallel in (("numba_1thread", False), ("numba_parallel", True)):
        numba_model.simulate(inputs, years=2, seed=seed, block=1, parallel=parallel)  # compile
        start = time.perf_counter()
        out = numba_model.simulate(inputs, years=years, seed=seed, parallel=parallel)
        seconds = time.perf_counter() - start
        row[f"{label}_years_per_s"] = years / seconds
        row[f"{label}_mean_gross"] = float(out["gross"].mean())
    return row


def scan(policies: list[int], *, years: int, chunk_size: int, repeats: int, devices, reference_years: int,
         reference_max_policies: int, progress: Callable[[str], None] = lambda line: None) -> list[dict]:
    """One row per portfolio size (synthetic pilot books, ``leisim data generate``'s generator)."""
    rows = []
    for n_policies in policies:
        with tempfile.TemporaryDirectory() as folder:
            write_portfolio(folder, seed=0, n_policies=n_policies)
            portfolio = load_portfolio(folder)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                comp = compose(load_scenario("baseline"), portfolio, point_estimate_row=True)
            row = {"policies": n_policies, "entries": int(comp.params.entry_row.shape[0]),
                   "compose_s": time.perf_counter() - start, "expected_disputes_per_year": comp.expected_disputes}
            row |= time_kernel(comp, years, chunk_size=chunk_size, repeats=repeats, devices=devices)
            row["kernel_words_per_year"] = kernel_words_per_year(comp)
            if n_policies <= reference_max_policies and reference_years > 0:
                inputs = baseline_inputs(Path(folder))
                row |= reference_run(inputs, reference_years)
                row["speedup_vs_reference"] = row["years_per_s"] / row["reference_years_per_s"]
                row["words_vs_reference_variates"] = row["kernel_words_per_year"] / row["reference_variates_per_year"]
                se = np.hypot(row["sd_gross"] / np.sqrt(years), row["reference_sd_gross"] / np.sqrt(reference_years))
                row["means_agree_within_4se"] = bool(abs(row["mean_gross"] - row["reference_mean_gross"]) < 4 * se)
                row |= numba_run(inputs, reference_years)
                if "numba_parallel_years_per_s" in row:  # against the faster of its two runs
                    row["speedup_vs_numba"] = row["years_per_s"] / max(row["numba_1thread_years_per_s"],
                                                                       row["numba_parallel_years_per_s"])
        text = (f"posterior baseline, {n_policies:>7,} policies: {row['years_per_s']:.3g} years/s, "
                f"{row['disputes_per_s']:.3g} disputes/s (compile {row['compile_s']:.1f} s), "
                f"{row['kernel_words_per_year']:,.0f} random words/year")
        if "reference_years_per_s" in row:
            text += (f"; reference {row['reference_years_per_s']:.3g} years/s (x{row['speedup_vs_reference']:.1f}), "
                     f"{row['reference_variates_per_year']:,.0f} variates/year")
        if "numba_parallel_years_per_s" in row:
            text += (f"; Numba {row['numba_1thread_years_per_s']:.3g} years/s on one thread, "
                     f"{row['numba_parallel_years_per_s']:.3g} on every core (x{row['speedup_vs_numba']:.1f} the faster)")
        progress(text)
        rows.append(row)
    return rows
