"""Benchmarks of the claim-driven kernel (host side): throughput, scaling, compile time, baselines.

Reference workload (issue 2): ``policies`` policies x 8 countries, ~0.02 disputes per
policy-country-year (321 expected disputes a year at 2,000 policies), lognormal severities,
deductibles, coinsurance, per-dispute and annual aggregate limits. Reinsurance and the payment
pattern can be switched on to time the kernel as ``leisim simulate`` runs it.

In one run, on one machine:

- years scan: disputes/s and simulated years/s at each year count (steady state; the first
  call's compile time is reported separately), on every device;
- policies scan: the same at each portfolio size;
- devices scan: the same on 1, 2, 4, ... devices (a CPU has one host device per core);
- the NumPy baseline: the same claim-driven algorithm, vectorised as well as NumPy allows
  (alias allocation, ``bincount`` aggregation), on the same workload;
- the floor: JAX's float32 uniform and normal draws per second on the same devices.

Runs stream their years through a sink that keeps only counts and sums, so 1e7 years run in
constant memory.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..formats.portfolio import Portfolio
from ..scenarios.compose import alias_table, compose
from ..scenarios.schema import Scenario, validate
from .timing import cpu_model, median_time, time_kernel

COUNTRIES = ("US", "DE", "GB", "FR", "NL", "JP", "KR", "IN")
REFERENCE_POLICIES = 2000
RATE = 0.02  # disputes per policy-country-year (per unit exposure)


def workload(n_policies: int = REFERENCE_POLICIES, seed: int = 0) -> tuple[Portfolio, Scenario]:
    """The reference portfolio and its fixed-parameter scenario."""
    rng = np.random.default_rng(seed)
    n = n_policies
    exposure = rng.gamma(4.0, 0.25, size=(n, len(COUNTRIES)))  # around 1 (CNY million)
    portfolio = Portfolio(
        policy_id=tuple(f"P{i}" for i in range(n)), sector=("x",) * n,
        premium_cny=np.full(n, 1e5), deductible_cny=rng.choice([0.0, 2e4, 5e4], n),
        coinsurance=rng.choice([0.1, 0.2], n), limit_per_dispute_cny=rng.choice([1e6, 2e6, 5e6], n),
        aggregate_limit_cny=rng.choice([2e6, 4e6, 1e7], n), subsidy_share=np.zeros(n),
        countries=COUNTRIES, exposure=exposure,
    )
    cells = [{"country": c, "dispute_type": "patent", "frequency": {"distribution": "poisson", "rate": RATE},
              "severity": {"distribution": "lognormal", "median_cny": 2e5 * (1 + i), "sigma": 1.2}}
             for i, c in enumerate(COUNTRIES)]
    raw = {"name": "reference", "model": {"parameters": "fixed", "cells": cells}}
    validate(raw, "reference")
    return portfolio, Scenario(name="reference", raw=raw, source="reference")


def reference_composition(n_policies: int, *, reinsurance: bool, reserves: bool):
    portfolio, scenario = workload(n_policies)
    programs = []
    if reinsurance:
        from ..simulator.reinsurance import contracts_from_scenario

        programs = [contracts_from_scenario([
            {"type": "quota_share", "cession": 0.3},
            {"type": "per_dispute_xl", "retention_cny": 1.0e6, "limit_cny": 4.0e6, "reinstatements": 1},
            {"type": "stop_loss", "attachment_cny": 5.0e8, "limit_cny": 2.0e8},
        ], float(portfolio.premium_cny.sum()))]
    return portfolio, scenario, compose(scenario, portfolio, programs=programs, dev_years=10 if reserves else 0)


def numpy_claim_driven(rng: np.random.Generator, portfolio: Portfolio, scenario: Scenario, years: int,
                       chunk: int = 10_000) -> tuple[float, float, int]:
    """The same algorithm in NumPy: Poisson counts per group, alias allocation, terms, caps.

    Returns the sum and sum of squares of the annual totals, and the number of disputes.
    """
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
    total = square = 0.0
    n_disputes = 0
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
        totals = np.minimum(per_policy, aggregate).sum(axis=1)
        total, square = total + totals.sum(), square + (totals**2).sum()
    return total, square, n_disputes


def rng_floor(devices, n: int = 1 << 24, repeats: int = 5) -> dict:
    """JAX's float32 uniform and normal draws per second, split over ``devices``."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    n = -(-n // len(devices)) * len(devices)
    key = jax.random.key(0)
    spread = NamedSharding(Mesh(np.array(devices), ("x",)), PartitionSpec("x"))
    out = {}
    for name, draw in (("uniform", jax.random.uniform), ("normal", jax.random.normal)):
        fn = jax.jit(lambda k, draw=draw: draw(k, (n,), jnp.float32), out_shardings=spread)
        fn(key).block_until_ready()
        out[f"{name}_per_s"] = n / median_time(lambda fn=fn: fn(key).block_until_ready(), repeats)
    return out


def run(*, years: list[int], policies: list[int], policy_years: int, device_counts: list[int], chunk_size: int,
        repeats: int, numpy_max_years: int, reinsurance: bool, reserves: bool, posterior_policies: list[int] = (),
        posterior_years: int = 20_000, reference_years: int = 5_000, reference_max_policies: int = 3_000,
        progress: Callable[[str], None] = lambda line: None) -> dict:
    """The whole benchmark as one JSON-ready dict; ``progress`` gets a line per measurement.

    ``posterior_policies``: also the posterior baseline on books of these sizes, beside the plain
    reference implementation (on books up to ``reference_max_policies``; :mod:`.posterior`)."""
    devices = jax.local_devices()
    floor = rng_floor(devices)
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": f"{devices[0].platform}:{getattr(devices[0], 'device_kind', '')}", "devices": len(devices),
        "jax": jax.__version__, "reinsurance": reinsurance, "reserves": reserves,
        "workload": {"countries": len(COUNTRIES), "rate_per_policy_country_year": RATE,
                     "reference_policies": REFERENCE_POLICIES},
        "floor": floor, "years_scan": [], "policies_scan": [], "devices_scan": [], "posterior_scan": [],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    progress(f"floor on {len(devices)} devices: uniform {floor['uniform_per_s']:.3g}/s, "
             f"normal {floor['normal_per_s']:.3g}/s")

    def describe(row: dict) -> str:
        text = (f"{row['years']:>10,} years, {row['policies']:>6,} policies, {row['devices']} devices: "
                f"{row['disputes_per_s']:.3g} disputes/s, {row['years_per_s']:.3g} years/s "
                f"(compile {row['compile_s']:.1f} s, {row['share_of_normal_floor']:.0%} of the normal floor)")
        if "numpy_disputes_per_s" in row:
            text += f"; NumPy {row['numpy_disputes_per_s']:.3g}/s (x{row['speedup_vs_numpy']:.1f})"
        return text

    def measure(n_policies: int, n_years: int, n_devices: int, with_numpy: bool) -> dict:
        portfolio, scenario, comp = reference_composition(n_policies, reinsurance=reinsurance, reserves=reserves)
        reps = repeats if n_years < 1_000_000 else 1
        row = time_kernel(comp, n_years, chunk_size=chunk_size, repeats=reps, devices=devices[:n_devices])
        row |= {"policies": n_policies, "expected_disputes_per_year": comp.expected_disputes,
                "share_of_normal_floor": row["disputes_per_s"] / floor["normal_per_s"],
                "share_of_uniform_floor": row["disputes_per_s"] / floor["uniform_per_s"]}
        if with_numpy and n_years <= numpy_max_years:
            np_s = median_time(lambda: numpy_claim_driven(np.random.default_rng(0), portfolio, scenario, n_years), reps)
            total, square, np_disputes = numpy_claim_driven(np.random.default_rng(1), portfolio, scenario, n_years)
            np_mean = total / n_years
            np_sd = float(np.sqrt(max(square / n_years - np_mean**2, 0.0)))
            se = float(np.hypot(row["sd_gross"], np_sd) / np.sqrt(n_years))
            row |= {"numpy_run_s": np_s, "numpy_disputes_per_s": np_disputes / np_s,
                    "speedup_vs_numpy": row["disputes_per_s"] / (np_disputes / np_s), "mean_gross_numpy": np_mean,
                    # same model, independent draws (without reinsurance): means within 4 SE
                    "means_agree_within_4se": bool(abs(row["mean_gross"] - np_mean) < 4 * se)}
        progress(describe(row))
        return row

    for n_years in years:
        report["years_scan"].append(measure(REFERENCE_POLICIES, n_years, len(devices), True))
    for n_policies in policies:
        report["policies_scan"].append(measure(n_policies, policy_years, len(devices), True))
    for n_devices in device_counts:
        if n_devices <= len(devices):
            report["devices_scan"].append(measure(REFERENCE_POLICIES, policy_years, n_devices, False))
    if posterior_policies:
        from . import posterior

        report["posterior_scan"] = posterior.scan(list(posterior_policies), years=posterior_years,
                                                  chunk_size=chunk_size, repeats=repeats, devices=devices,
                                                  reference_years=reference_years,
                                                  reference_max_policies=reference_max_policies, progress=progress)
    if hasattr(os, "getloadavg"):
        report["load_average_after"] = list(os.getloadavg())
    return report


def plot(report: dict, path) -> None:
    """Disputes per second against years, policies and devices, with the NumPy baseline and the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scans = [("years_scan", "years", "simulated years"), ("policies_scan", "policies", "policies"),
             ("devices_scan", "devices", "devices"), ("posterior_scan", "policies", "policies (posterior baseline)")]
    scans = [s for s in scans if report.get(s[0])]
    fig, axes = plt.subplots(1, len(scans), figsize=(4.2 * len(scans), 4), dpi=120, squeeze=False)
    for ax, (scan, x, label) in zip(axes[0], scans):
        rows = report[scan]
        ax.plot([r[x] for r in rows], [r["disputes_per_s"] for r in rows], "o-", color="#0072B2", label="leisim (JAX)")
        with_np = [r for r in rows if "numpy_disputes_per_s" in r]
        if with_np:
            ax.plot([r[x] for r in with_np], [r["numpy_disputes_per_s"] for r in with_np], "s--", color="#E69F00",
                    label="NumPy baseline")
        for name, style in (("uniform", ":"), ("normal", "-.")):
            ax.axhline(report["floor"][f"{name}_per_s"], color="grey", linestyle=style, lw=1,
                       label=f"{name} float32 draws/s")
        with_ref = [r for r in rows if "reference_disputes_per_s" in r]
        if with_ref:
            ax.plot([r[x] for r in with_ref], [r["reference_disputes_per_s"] for r in with_ref], "s--",
                    color="#D55E00", label="NumPy reference model")
        if x == "devices":
            ax.set_xticks([r[x] for r in rows])
        else:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("disputes per second")
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[0]:
        ax.legend(frameon=False, fontsize=7)
    best = max(r["disputes_per_s"] for s in scans for r in report[s[0]])
    fig.suptitle(f"{report['device']} x{report['devices']}: up to {best:.2g} disputes/s "
                 f"({best / report['floor']['normal_per_s']:.0%} of the normal-draw floor)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def command(out_file, *, devices_scan: bool, command: str, **options) -> dict:
    """`leisim bench`: every scan on this machine's devices, then the JSON and its plot beside it."""
    import datetime as dt
    import json

    from ..files import atomic_write

    n_devices = jax.local_device_count()
    counts = sorted({min(2**k, n_devices) for k in range(n_devices.bit_length() + 1)}) if devices_scan else []
    report = run(device_counts=counts, **options)
    report["command"] = command
    report["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    atomic_write(out_file, json.dumps(report, indent=2) + "\n")
    atomic_write(out_file.with_suffix(".png"), lambda path: plot(report, path))
    return report
