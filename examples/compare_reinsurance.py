"""Compare reinsurance programs on the same simulated years (run: python examples/compare_reinsurance.py)."""

import os
import tempfile
from pathlib import Path

import leisim

YEARS = int(os.environ.get("LEISIM_EXAMPLE_YEARS", 20_000))

folder = Path(tempfile.mkdtemp())
(folder / "qs40.toml").write_text('name = "QS 40%"\n[[reinsurance]]\ntype = "quota_share"\ncession = 0.4\n')
(folder / "xl.toml").write_text('name = "XL 4M xs 1M"\n[[reinsurance]]\ntype = "per_dispute_xl"\n'
                                'retention_cny = 1_000_000\nlimit_cny = 4_000_000\n')

run = leisim.simulate("baseline", years=YEARS, seed=1, compare=["none", folder / "qs40.toml", folder / "xl.toml"],
                      compare_point_estimate=False)
for row in run.summary["reinsurance_comparison"]["programs"]:
    ratio = row["solvency_ratio"]
    print(f"{row['program']:28} net VaR 99.5% {row['net_var_0.995'] / 1e6:8.2f} M CNY   margin "
          f"{row['margin'] / 1e6:6.2f}   solvency {'-' if ratio is None else f'{ratio:.0%}'}")
