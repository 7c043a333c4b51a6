"""Reference workload: leisim's JAX engine against a NumPy claim-driven baseline and the RNG floor.

Workload (issue 2): 2,000 policies x 8 countries, ~0.02 disputes per policy-country-year,
lognormal severities, deductible, coinsurance, per-dispute and annual aggregate limits.

For each year count it reports:
- the JAX engine: compile time (first call) and the median of timed runs, in disputes/s and
  years/s;
- the same claim-driven algorithm in NumPy, written as well as NumPy allows (vectorised over a
  chunk of years, alias-method allocation, bincount aggregation), in the same process;
- the floor: JAX's float32 uniform and normal draws per second on this machine.

Usage:  python benchmarks/reference.py --years 10000 100000 --out benchmarks/out/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from leisim.simulator.driver import host_device_flags

os.environ["XLA_FLAGS"] = host_device_flags()  # one host device per core, as `leisim simulate` does

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from leisim.scenarios.compose import alias_table, compose  # noqa: E402
from leisim.scenarios.portfolio import Portfolio  # noqa: E402
from leisim.scenarios.schema import Scenario, validate  # noqa: E402
from leisim.simulator.driver import run_years  # noqa: E402

COUNTRIES = ("US", "DE", "GB", "FR", "NL", "JP", "KR", "IN")
N_POLICIES = 2000


def workload(seed: int = 0) -> tuple[Portfolio, Scenario]:
    rng = np.random.default_rng(seed)
    n = N_POLICIES
    # Exposures around 1 (CNY million), rates 0.02: ~0.02 disputes per policy-country-year.
    exposure = rng.gamma(4.0, 0.25, size=(n, len(COUNTRIES)))
    portfolio = Portfolio(
        policy_id=tuple(f"P{i}" for i in range(n)), sector=("x",) * n,
        premium_cny=np.full(n, 1e5), deductible_cny=rng.choice([0.0, 2e4, 5e4], n),
        coinsurance=rng.choice([0.1, 0.2], n), limit_per_dispute_cny=rng.choice([1e6, 2e6, 5e6], n),
        aggregate_limit_cny=rng.choice([2e6, 4e6, 1e7], n), subsidy_share=np.zeros(n),
        countries=COUNTRIES, exposure=exposure,
    )
    cells = [{"country": c, "dispute_type": "patent", "frequency": {"distribution": "poisson", "rate": 0.02},
              "severity": {"distribution": "lognormal", "median_cny": 2e5 * (1 + i), "sigma": 1.2}}
             for i, c in enumerate(COUNTRIES)]
    raw = {"name": "reference", "model": {"parameters": "fixed", "cells": cells}}
    validate(raw, "reference")
    return portfolio, Scenario(name="reference", raw=raw, source="reference")


def numpy_claim_driven(rng: np.random.Generator, portfolio: Portfolio, scenario: Scenario, years: int,
                       chunk: int = 10_000) -> tuple[np.ndarray, int]:
    """The same algorithm in NumPy: Poisson counts per group, alias allocation, terms, caps."""
    groups = []
    for c, cell in enumerate(scenario.cells):
        lam = cell["frequency"]["rate"] * portfolio.exposure[:, c]
        threshold, alias = alias_table(lam)
        groups.append((lam.sum(), threshold, alias, np.log(cell["severity"]["median_cny"]), cell["severity"]["sigma"]))
    rates = np.array([g[0] for g in groups])
    mu, sigma = np.array([g[3] for g in groups]), np.array([g[4] for g in groups])
    thresholds, aliases = np.stack([g[1] for g in groups]), np.stack([g[2] for g in groups])
    n_pol = portfolio.n_policies
    ded, coins = portfolio.deductible_cny, portfolio.coinsurance
    limit, aggregate = portfolio.limit_per_dispute_cny, portfolio.aggregate_limit_cny
    totals, n_disputes = np.empty(years), 0
    for start in range(0, years, chunk):
        y = min(chunk, years - start)
        counts = rng.poisson(rates, size=(y, len(rates)))
        n = int(counts.sum())
        n_disputes += n
        year = np.repeat(np.arange(y), counts.sum(axis=1))
        group = np.repeat(np.tile(np.arange(len(rates)), y), counts.ravel())
        position = rng.random(n) * n_pol
        column = position.astype(np.int64)
        policy = np.where(position - column < thresholds[group, column], column, aliases[group, column])
        cost = np.exp(mu[group] + sigma[group] * rng.standard_normal(n))
        paid = np.minimum((1 - coins[policy]) * np.maximum(cost - ded[policy], 0), limit[policy])
        per_policy = np.bincount(year * n_pol + policy, weights=paid, minlength=y * n_pol).reshape(y, n_pol)
        totals[start:start + y] = np.minimum(per_policy, aggregate).sum(axis=1)
    return totals, n_disputes


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rng_floor(n: int = 1 << 24, repeats: int = 5) -> dict:
    """JAX's float32 uniform and normal draws per second: on one device, and split over all local
    devices (one per core on a CPU). The floor quoted is the faster of the two."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    key = jax.random.key(0)
    mesh = Mesh(np.array(jax.local_devices()), ("x",))
    spread = NamedSharding(mesh, PartitionSpec("x"))
    out = {}
    for name, draw in (("uniform", jax.random.uniform), ("normal", jax.random.normal)):
        rates = []
        for shardings in ({}, {"out_shardings": spread}):
            fn = jax.jit(lambda k, draw=draw: draw(k, (n,), jnp.float32), **shardings)
            fn(key).block_until_ready()
            rates.append(n / median_time(lambda fn=fn: fn(key).block_until_ready(), repeats))
        out[f"{name}_per_s_one_device"], out[f"{name}_per_s_all_devices"] = rates
        out[f"{name}_per_s"] = max(rates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reserves", action=argparse.BooleanOptionalAction, default=False,
                        help="also track the payment pattern (as `leisim simulate` does) [default: off, the "
                             "issue-2 workload]")
    parser.add_argument("--reinsurance", action=argparse.BooleanOptionalAction, default=False,
                        help="also apply a quota share, a per-dispute XL and a stop loss (as the baseline does)")
    args = parser.parse_args()

    portfolio, scenario = workload()
    programs = None
    if args.reinsurance:
        from leisim.simulator.reinsurance import contracts_from_scenario

        programs = [contracts_from_scenario([
            {"type": "quota_share", "cession": 0.3},
            {"type": "per_dispute_xl", "retention_cny": 1.0e6, "limit_cny": 4.0e6, "reinstatements": 1},
            {"type": "stop_loss", "attachment_cny": 5.0e8, "limit_cny": 2.0e8},
        ], float(portfolio.premium_cny.sum()))]
    comp = compose(scenario, portfolio, programs=programs or [], dev_years=10 if args.reserves else 0)
    key = jax.random.key(0)
    floor = rng_floor()
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "device": str(jax.devices()[0]), "devices": jax.local_device_count(), "jax": jax.__version__,
        "workload": {"policies": N_POLICIES, "countries": len(COUNTRIES),
                     "expected_disputes_per_year": comp.expected_disputes, "shape": comp.shape._asdict()},
        "reserves": args.reserves, "reinsurance": args.reinsurance,
        "floor": floor, "runs": [],
    }
    print(f"floor: uniform {floor['uniform_per_s']:.3g}/s, normal {floor['normal_per_s']:.3g}/s; "
          f"{comp.expected_disputes:.0f} disputes/year expected")

    for years in args.years:
        chunk = min(args.chunk_size, years)
        t0 = time.perf_counter()
        first = run_years(key, comp.params, comp.shape, years=years, chunk_size=chunk)
        first_call = time.perf_counter() - t0
        run_s = median_time(lambda: run_years(key, comp.params, comp.shape, years=years, chunk_size=chunk),
                            args.repeats)
        disputes = int(first.disputes.sum())
        rng = np.random.default_rng(0)
        np_s = median_time(lambda: numpy_claim_driven(rng, portfolio, scenario, years), args.repeats)
        np_totals, np_disputes = numpy_claim_driven(np.random.default_rng(1), portfolio, scenario, years)
        # Same model, independent draws: the means must agree within a few standard errors.
        se = np.hypot(first.gross.std(), np_totals.std()) / np.sqrt(years)
        row = {
            "years": years, "chunk_size": chunk, "disputes": disputes,
            "jax_compile_s": max(first_call - run_s, 0.0), "jax_run_s": run_s,
            "jax_disputes_per_s": disputes / run_s, "jax_years_per_s": years / run_s,
            "numpy_run_s": np_s, "numpy_disputes_per_s": np_disputes / np_s,
            "speedup_vs_numpy": (disputes / run_s) / (np_disputes / np_s),
            "share_of_normal_floor": (disputes / run_s) / floor["normal_per_s"],
            "share_of_uniform_floor": (disputes / run_s) / floor["uniform_per_s"],
            "mean_gross_jax": float(first.gross.mean()), "mean_gross_numpy": float(np_totals.mean()),
            "means_agree_within_4se": bool(abs(first.gross.mean() - np_totals.mean()) < 4 * se),
        }
        report["runs"].append(row)
        print(f"{years:>9} years: JAX {row['jax_disputes_per_s']:.3g} disputes/s "
              f"({row['jax_years_per_s']:.3g} years/s, compile {row['jax_compile_s']:.2f}s); "
              f"NumPy {row['numpy_disputes_per_s']:.3g}/s; x{row['speedup_vs_numpy']:.1f}; "
              f"{row['share_of_normal_floor']:.0%} of the normal floor; means agree: {row['means_agree_within_4se']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
