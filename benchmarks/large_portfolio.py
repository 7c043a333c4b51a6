"""Peak memory of a large portfolio: reading it (issue 16, item 14), and running the posterior
baseline on it (issue 18, item 4).

Writes a book of ``--policies`` policies, each exposed to ``--countries`` countries (the default:
100,000 x 10 = 1,000,000 exposure rows), then, in a fresh process each time:

- loads it with ``leisim.formats.portfolio.load_portfolio`` and reports the time and the peak
  resident memory above the interpreter's own (``ru_maxrss`` before and after). Before item 14,
  every row was a dict kept in a list: 886 MB for 1,000,000 rows;
- with ``--baseline-years N``: composes the posterior-driven baseline on it (with the
  posterior-mean row, as `leisim simulate` does) and simulates N years after a warm-up chunk,
  reporting the compose time, years/s, disputes/s and the process's peak resident memory. Before
  item 4, composing built [draws x entries] float64 arrays: ~24 GB each for 100,000 x 10.

    python benchmarks/large_portfolio.py [--policies 100000] [--countries 10] [--repeats 3]
                                         [--baseline-years 20000]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

COUNTRIES = ("US", "DE", "GB", "FR", "JP", "KR", "IN", "BR", "IT", "NL", "ES", "CA", "AU", "MX", "TR")

CHILD = """
import json, resource, sys, time
from leisim.formats.portfolio import load_portfolio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
book = load_portfolio(sys.argv[1])
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb_above_start": (after - before) / 1024,
                  "policies": book.n_policies, "cells": int((book.exposure > 0).sum())}))
"""

BASELINE_CHILD = """
import json, resource, sys, time, warnings
start = time.perf_counter()
from leisim.runtime import setup_jax
setup_jax()
import jax
from leisim.formats.portfolio import load_portfolio
from leisim.scenarios.compose import compose
from leisim.scenarios.schema import load_scenario
from leisim.simulator.driver import run_years
warnings.simplefilter("ignore")
book, years = load_portfolio(sys.argv[1]), int(sys.argv[2])
t = time.perf_counter()
comp = compose(load_scenario("baseline"), book, point_estimate_row=True)
compose_s = time.perf_counter() - t
chunk = min(years, 10_000)
run_years(jax.random.key(0), comp.params, comp.shape, years=chunk, chunk_size=chunk)  # compile
t = time.perf_counter()
out = run_years(jax.random.key(1), comp.params, comp.shape, years=years, chunk_size=chunk)
seconds = time.perf_counter() - t
print(json.dumps({"compose_s": compose_s, "years_per_s": years / seconds,
                  "disputes_per_s": float(out.disputes.sum()) / seconds, "entries": int(comp.params.entry_row.shape[0]),
                  "recomputed": int(out.recomputed_years.size), "total_s": time.perf_counter() - start,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def write_book(folder: Path, policies: int, countries: int) -> None:
    with open(folder / "policies.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["policy_id", "sector", "premium_cny", "deductible_cny", "coinsurance", "limit_per_dispute_cny",
                      "aggregate_limit_cny"])
        for p in range(policies):
            out.writerow([f"P{p:07d}", ("electronics", "machinery", "textiles")[p % 3], 20000, 10000, 0.1, 5e5, 1e6])
    with open(folder / "exposures.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["policy_id", "country", "exposure"])
        for p in range(policies):
            for c in range(countries):
                out.writerow([f"P{p:07d}", COUNTRIES[c], 1.0 + (p * 7 + c) % 13])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=100_000)
    parser.add_argument("--countries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-years", type=int, default=0,
                        help="also run the posterior baseline on the book for this many years (0: do not)")
    args = parser.parse_args()
    baseline = []
    with tempfile.TemporaryDirectory() as folder:
        write_book(Path(folder), args.policies, args.countries)

        def child(code: str, *argv: str) -> dict:
            return json.loads(subprocess.run([sys.executable, "-c", code, folder, *argv], check=True,
                                             capture_output=True, text=True).stdout.strip().splitlines()[-1])

        runs = [child(CHILD) for _ in range(args.repeats)]
        if args.baseline_years:
            baseline = [child(BASELINE_CHILD, str(args.baseline_years)) for _ in range(args.repeats)]
    peaks, times = [r["peak_mb_above_start"] for r in runs], [r["seconds"] for r in runs]
    report = {"rows": args.policies * args.countries, "policies": runs[0]["policies"],
              "peak_mb": [round(x, 1) for x in peaks], "seconds": [round(x, 2) for x in times]}
    if baseline:
        report["baseline"] = {key: [round(r[key], 3) for r in baseline] for key in baseline[0]}
        report["baseline_years"] = args.baseline_years
    print(json.dumps(report))


if __name__ == "__main__":
    main()
