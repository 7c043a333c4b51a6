"""Peak memory of reading and validating a large portfolio (issue 16, item 14).

Writes a book of ``--policies`` policies, each exposed to ``--countries`` countries (the default:
100,000 x 10 = 1,000,000 exposure rows), then loads it with ``leisim.formats.portfolio.
load_portfolio`` in a fresh process and reports the time and the peak resident memory above the
interpreter's own (``ru_maxrss`` before and after). Before item 14, every row was a dict kept in
a list: 886 MB for 1,000,000 rows.

    python benchmarks/large_portfolio.py [--policies 100000] [--countries 10] [--repeats 3]
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_book(Path(folder), args.policies, args.countries)
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, folder], check=True, capture_output=True,
                                          text=True).stdout) for _ in range(args.repeats)]
    peaks, times = [r["peak_mb_above_start"] for r in runs], [r["seconds"] for r in runs]
    print(json.dumps({"rows": args.policies * args.countries, "policies": runs[0]["policies"],
                      "peak_mb": [round(x, 1) for x in peaks], "seconds": [round(x, 2) for x in times]}))


if __name__ == "__main__":
    main()
