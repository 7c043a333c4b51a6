"""Stress scenarios against the baseline on common random numbers (run: python examples/stress.py)."""

import os

import leisim

YEARS = int(os.environ.get("LEISIM_EXAMPLE_YEARS", 20_000))

stressed = leisim.stress(["us_patent_surge", "cny_depreciation"], years=YEARS, seed=1)
print(stressed.table[["net_var_0.995", "required_capital", "solvency_ratio"]])
for name in stressed.names[1:]:
    change = stressed.document[name]["change_from_baseline"]["net_var_0.995"]
    print(f"{name}: net VaR 99.5% {change['difference'] / 1e6:+.2f} ± {change['se'] / 1e6:.2f} M CNY")

reverse = leisim.reverse_stress("solvency_ratio=1.0", shocks=["frequency:US"], years=YEARS, seed=1)
print(reverse["results"])
