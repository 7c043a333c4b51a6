"""Generate the embedded synthetic Beijing pilot portfolio from a seed.

SYNTHETIC: no real insured's data is used or implied. The Beijing pilot's insured count, limits,
deductibles, coinsurance and rates are not public (CALIBRATION.md, "Not found"). Every number
below is judgment within the published ranges, cited where a figure exists:

- per-dispute limits RMB 0.5-10 million, rate on line ~2-3%, subsidy 50-80% of premium
  (CALIBRATION.md, Products: Wuxi 2022 ~2.4% rate on line; XPeng limit > RMB 10M; suggested
  pilot terms);
- premium subsidy up to 80%, capped at RMB 800k per firm (Beijing 2023, PICC Beijing);
- sectors: manufacturer-exporters and cross-border e-commerce sellers. Trademark (Schedule A)
  suits concentrate on e-commerce sellers (CALIBRATION.md, Frequency: 514 of 559 US
  e-commerce suits in 2022 were trademark suits).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

# sector: (share of policies, median export revenue CNY million, log-sd)  [judgment]
SECTORS = {
    "electronics": (0.22, 80.0, 1.1),
    "machinery": (0.18, 60.0, 1.0),
    "medical_devices": (0.10, 40.0, 1.0),
    "software_telecom": (0.14, 50.0, 1.2),
    "new_energy": (0.12, 120.0, 1.1),
    "e_commerce": (0.24, 15.0, 0.9),
}
# country: relative weight in export mixes (judgment; the US is the main destination and forum)
DESTINATIONS = {"US": 3.0, "DE": 1.4, "GB": 0.8, "FR": 0.7, "NL": 0.6, "IT": 0.5,
                "JP": 1.0, "KR": 0.7, "IN": 0.6, "BR": 0.5}
LIMITS_CNY = np.array([0.5e6, 1e6, 2e6, 3e6, 5e6, 10e6])
LIMIT_WEIGHTS = np.array([0.10, 0.25, 0.25, 0.18, 0.14, 0.08])
DEDUCTIBLES_CNY = np.array([0.0, 20e3, 50e3, 100e3])
SUBSIDY_CAP_CNY = 800e3  # Beijing 2023: up to 80% subsidy, cap RMB 800k per firm


def generate_portfolio(seed: int = 0, n_policies: int = 300) -> tuple[list[dict], list[dict]]:
    """Rows of policies.csv and exposures.csv for a synthetic pilot portfolio."""
    if n_policies < 1:
        raise ValueError(f"n_policies must be >= 1, got {n_policies}")
    rng = np.random.default_rng(seed)
    names = list(SECTORS)
    shares = np.array([SECTORS[s][0] for s in names])
    countries = list(DESTINATIONS)
    weights = np.array([DESTINATIONS[c] for c in countries])

    policies, exposures = [], []
    for i in range(n_policies):
        sector = names[rng.choice(len(names), p=shares / shares.sum())]
        _, median, sd = SECTORS[sector]
        revenue = median * np.exp(sd * rng.standard_normal())
        n_markets = int(rng.integers(2, 8))
        markets = list(rng.choice(len(countries), size=n_markets, replace=False, p=weights / weights.sum()))
        if 0 not in markets and rng.random() < 0.85:  # most exporters sell to the US
            markets[0] = 0
        mix = rng.dirichlet(weights[markets])
        limit = float(rng.choice(LIMITS_CNY, p=LIMIT_WEIGHTS))
        aggregate = limit * float(rng.choice([1.0, 1.5, 2.0]))
        premium = round(aggregate * rng.uniform(0.02, 0.03), -2)  # rate on line 2-3%
        subsidy = min(0.8, SUBSIDY_CAP_CNY / premium)
        policy_id = f"BJ{2024}-{i + 1:04d}"
        policies.append({
            "policy_id": policy_id,
            "sector": sector,
            "premium_cny": f"{premium:.0f}",
            "deductible_cny": f"{rng.choice(DEDUCTIBLES_CNY):.0f}",
            "coinsurance": f"{rng.choice([0.1, 0.2]):.2f}",
            "limit_per_dispute_cny": f"{limit:.0f}",
            "aggregate_limit_cny": f"{aggregate:.0f}",
            "subsidy_share": f"{subsidy:.2f}",
        })
        for c, share in zip(markets, mix):
            exposures.append({"policy_id": policy_id, "country": countries[c],
                              "exposure": f"{revenue * share:.3f}"})
    return policies, exposures


def _write_csv_atomic(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_portfolio(directory: str | Path, *, seed: int = 0, n_policies: int = 300) -> Path:
    """Write policies.csv and exposures.csv under ``directory`` (each file atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policies, exposures = generate_portfolio(seed, n_policies)
    _write_csv_atomic(directory / "policies.csv", policies)
    _write_csv_atomic(directory / "exposures.csv", exposures)
    return directory


def default_portfolio_dir() -> Path:
    """The embedded default portfolio shipped with leisim (seed 0, 300 policies)."""
    return Path(__file__).parent / "default"
