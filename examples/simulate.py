"""Simulate the pilot book under the baseline scenario and look at the tail (run: python examples/simulate.py).

LEISIM_EXAMPLE_YEARS sets the number of simulated years (the tests run every example with few).
"""

import os

import leisim

YEARS = int(os.environ.get("LEISIM_EXAMPLE_YEARS", 20_000))

run = leisim.simulate("baseline", years=YEARS, seed=1, progress=True)
print(run)

summary = run.summary
for level in ("0.99", "0.995"):
    print(f"net VaR {level}: {summary['net']['var'][level] / 1e6:8.2f} M CNY "
          f"(± {summary['net']['se']['var'][level] / 1e6:.2f})")
capital = summary["capital"]
print(f"SCR {capital['required'] / 1e6:.2f} M CNY, solvency ratio {capital['solvency_ratio']}")

# The per-year values are an xarray Dataset (what results.nc holds).
years = run.dataset
worst = years["net"].argmax().item()
print("worst simulated year:", worst, "net", round(float(years["net"][worst]) / 1e6, 2), "M CNY")
print((years["gross_by_country"].mean("year") / 1e6).round(2).to_series().sort_values(ascending=False).head())

run.save("results/example-baseline", overwrite=True, plots=False)
