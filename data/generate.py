"""Generate the embedded synthetic Beijing pilot portfolio from a seed.

SYNTHETIC: no real insured's data is used or implied. The Beijing pilot's insured count, limits,
deductibles, coinsurance and rates are not public (docs/CALIBRATION.md, "Not found"). Every number
below is judgment within the published ranges, cited where a figure exists:

- per-dispute limits RMB 0.5-10 million, subsidy 50-80% of premium (docs/CALIBRATION.md,
  Products: XPeng limit > RMB 10M; suggested pilot terms);
- premiums: the technical premium, each policy's expected annual cost under the documented
  true parameters (models/pricing.py) at a 60% expected loss ratio, with a minimum rate on line
  of 2-3% of the aggregate limit (Wuxi 2022 ~2.4% [S]). Before issue 15 every premium was the
  2-3% minimum: under the model that book had a 129% expected gross loss ratio (a 2-3% rate on
  line suits Wuxi's small domestic covers, not US patent exposure), at most 30% rate on line;
- premium subsidy up to 80%, capped at RMB 800k per firm (Beijing 2023, PICC Beijing);
- sectors: manufacturer-exporters and cross-border e-commerce sellers. Trademark (Schedule A)
  suits concentrate on e-commerce sellers (docs/CALIBRATION.md, Frequency: 514 of 559 US
  e-commerce suits in 2022 were trademark suits).
"""

from __future__ import annotations

import csv
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
# The highest rate on line written [J]: a large US exporter with a small limit expects to use most
# of it; the technical premium (before the aggregate limit, an upper bound) is capped there.
MAX_RATE_ON_LINE = 0.30


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
        minimum = aggregate * rng.uniform(0.02, 0.03)  # minimum premium: rate on line 2-3%
        policy_id = f"BJ{2024}-{i + 1:04d}"
        policies.append({
            "policy_id": policy_id,
            "sector": sector,
            "premium_cny": minimum,  # priced below
            "deductible_cny": f"{rng.choice(DEDUCTIBLES_CNY):.0f}",
            "coinsurance": f"{rng.choice([0.1, 0.2]):.2f}",
            "limit_per_dispute_cny": f"{limit:.0f}",
            "aggregate_limit_cny": f"{aggregate:.0f}",
        })
        for c, share in zip(markets, mix):
            exposures.append({"policy_id": policy_id, "country": countries[c],
                              "exposure": f"{revenue * share:.3f}"})
    technical = _technical_premiums(policies, exposures)
    for row, cost in zip(policies, technical):
        aggregate = float(row["aggregate_limit_cny"])
        premium = round(min(max(row["premium_cny"], cost), MAX_RATE_ON_LINE * aggregate), -2)
        row["premium_cny"] = f"{premium:.0f}"
        row["subsidy_share"] = f"{min(0.8, SUBSIDY_CAP_CNY / premium):.2f}"
    return policies, exposures


def _technical_premiums(policies: list[dict], exposures: list[dict]) -> np.ndarray:
    """Expected annual cost / TARGET_LOSS_RATIO per policy, under the documented truth (models/pricing.py)."""
    from ..formats.portfolio import Portfolio
    from ..models.pricing import TARGET_LOSS_RATIO, expected_cost_by_policy

    ids = [row["policy_id"] for row in policies]
    countries = tuple(sorted({row["country"] for row in exposures}))
    exposure = np.zeros((len(ids), len(countries)))
    index = {policy_id: i for i, policy_id in enumerate(ids)}
    for row in exposures:
        exposure[index[row["policy_id"]], countries.index(row["country"])] += float(row["exposure"])

    def column(name):
        return np.array([float(row[name]) for row in policies])

    portfolio = Portfolio(policy_id=tuple(ids), sector=tuple(row["sector"] for row in policies),
                          premium_cny=column("premium_cny"), deductible_cny=column("deductible_cny"),
                          coinsurance=column("coinsurance"), limit_per_dispute_cny=column("limit_per_dispute_cny"),
                          aggregate_limit_cny=column("aggregate_limit_cny"), subsidy_share=np.zeros(len(ids)),
                          countries=countries, exposure=exposure)
    return expected_cost_by_policy(portfolio) / TARGET_LOSS_RATIO


def _write_csv_atomic(path: Path, rows: list[dict]) -> None:
    from ..files import atomic_write

    def write(staging: Path) -> None:
        with open(staging, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


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
