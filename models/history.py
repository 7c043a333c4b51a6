"""The dispute history the models fit: its CSV contract, loader, and the synthetic generator.

A history is a folder of three CSV files:

- ``exposures.csv``: one row per policy-year-country-dispute-type exposure cell:
  ``policy_id, year, sector, country, dispute_type, exposure, disputes``; ``exposure`` in CNY
  million of export revenue, ``disputes`` the individual disputes notified (campaign disputes
  are counted in ``campaigns.csv``). Every suit is notified, so counts are complete.
- ``disputes.csv``: one row per dispute with a claim payment (closed or open):
  ``dispute_id, policy_id, year, country, dispute_type, campaign_id, status, stage,
  duration_years, outcome, currency, cost_local, cost_cny, deductible_cny, coinsurance,
  limit_cny, at_limit``. ``duration_years``: from filing to closing, or for an open dispute the
  time open so far (a lower bound). A dispute whose own legal costs stayed under the deductible was never
  paid and is absent (truncation). ``at_limit = true``: the payment hit the per-dispute limit,
  so ``cost_cny`` is a lower bound (censoring). Open disputes: ``stage`` is the stage reached so
  far and ``cost_cny`` the cost to date (a lower bound on the final cost).
- ``campaigns.csv``: one row per mass-defendant campaign that named insured sellers:
  ``campaign_id, year, kind, insured_hit``.

The default history shipped with leisim is SYNTHETIC, drawn from ``models.truth.TRUTH`` on the
embedded portfolio by :func:`generate_history` (seed 0).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from ..countries import COUNTRIES
from ..errors import InputError
from ..files import atomic_write
from ..formats.portfolio import (
    EXPOSURE_UNIT,
    MAX_AMOUNT_CNY,
    MAX_EXPOSURE,
    Portfolio,
    country_hint,
    read_number,
    read_rows,
)
from ..vocabulary import STAGES
from .truth import (
    BASE_FX_CNY,
    CAMPAIGN_KINDS,
    CAMPAIGN_TARGETS,
    DISPUTE_TYPES,
    REFERENCE_SECTOR,
    TRUTH,
    fee_shifting,
)

EXPOSURE_COLUMNS = ("policy_id", "year", "sector", "country", "dispute_type", "exposure", "disputes")
DISPUTE_COLUMNS = ("dispute_id", "policy_id", "year", "country", "dispute_type", "campaign_id", "status", "stage",
                   "duration_years", "outcome", "currency", "cost_local", "cost_cny", "deductible_cny",
                   "coinsurance", "limit_cny", "at_limit")
CAMPAIGN_COLUMNS = ("campaign_id", "year", "kind", "insured_hit")
OUTCOMES = ("won", "lost", "settled", "dismissed", "open")
HISTORY_YEARS = tuple(range(2019, 2026))  # the synthetic history's years
END_OF_HISTORY = 2026.0  # valuation date: 1 Jan 2026


@dataclasses.dataclass(frozen=True)
class History:
    """A validated history as arrays (indices into ``countries``, ``sectors``, ``years``)."""

    countries: tuple[str, ...]
    sectors: tuple[str, ...]
    years: tuple[int, ...]
    # exposure cells
    cell_year: np.ndarray
    cell_country: np.ndarray
    cell_type: np.ndarray
    cell_sector: np.ndarray
    cell_exposure: np.ndarray
    cell_disputes: np.ndarray
    # individual disputes with a payment
    dispute_country: np.ndarray
    dispute_type: np.ndarray
    dispute_closed: np.ndarray  # bool
    dispute_stage: np.ndarray  # final stage if closed, stage reached if open
    dispute_duration: np.ndarray  # years: to closing, or open so far (a lower bound)
    dispute_decided_won: np.ndarray  # 1 won, 0 lost, -1 not decided on the merits
    dispute_cost: np.ndarray  # CNY: exact, or a lower bound (at limit, or open)
    dispute_deductible: np.ndarray  # CNY: the truncation point
    dispute_censored: np.ndarray  # bool: cost is a lower bound
    # campaign disputes with a payment
    campaign_dispute_kind: np.ndarray
    campaign_dispute_cost: np.ndarray
    campaign_dispute_deductible: np.ndarray
    campaign_dispute_censored: np.ndarray
    # campaigns per (year, kind), and the exposure they target
    campaign_count: np.ndarray  # [year, kind]
    campaign_hits: np.ndarray  # [campaign] insured sellers hit
    campaign_hit_kind: np.ndarray  # [campaign]
    campaign_target_exposure: np.ndarray  # [year, kind] CNY million
    source: str = "<memory>"

    @property
    def n_disputes(self) -> int:
        return int(self.dispute_cost.size + self.campaign_dispute_cost.size)


def _censor_point(deductible: np.ndarray, coinsurance: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Own cost at which the payment reaches the per-dispute limit."""
    return deductible + limit / np.maximum(1.0 - coinsurance, 1e-12)


# --------------------------------------------------------------------------------------------
# Synthetic generation


def true_stage_probability(country: str, dispute_type: str) -> np.ndarray:
    base = np.log(np.asarray(TRUTH["stage_probability"][dispute_type]))
    logits = base - base[0]
    logits[1:] += np.asarray(TRUTH["stage_offset"].get(country, (0.0, 0.0, 0.0)))
    p = np.exp(logits - logits.max())
    return p / p.sum()


def true_log_median(country: str, dispute_type: str) -> np.ndarray:
    """log CNY median cost by stage."""
    return (np.log(TRUTH["us_patent_stage_median_cny"]) + TRUTH["type_cost"][dispute_type]
            + TRUTH["country_cost"][country])


def true_win_probability(country: str) -> float:
    logit = np.log(TRUTH["win_probability"] / (1 - TRUTH["win_probability"])) + TRUTH["win_offset"].get(country, 0.0)
    return float(1.0 / (1.0 + np.exp(-logit)))


def generate_history(portfolio: Portfolio, *, seed: int = 0, years: tuple[int, ...] = HISTORY_YEARS,
                     truth: dict | None = None) -> dict[str, list[dict]]:
    """Rows of exposures.csv, disputes.csv and campaigns.csv drawn from ``truth`` (default TRUTH).

    The book: the portfolio's policies in every year, exposures growing 6% a year to the last
    year, with 10% lognormal noise [J]. Only countries with a true rate get disputes.
    """
    truth = truth or TRUTH
    rng = np.random.default_rng(seed)
    sectors = np.asarray(portfolio.sector)
    exposures, disputes, campaigns = [], [], []
    next_id = 1
    year_effect = rng.normal(0.0, truth["year_sigma"], size=len(years))

    def add_dispute(policy: int, year: int, country: str, dispute_type: str, campaign_id: str,
                    stages: np.ndarray | None, log_median: np.ndarray, sigma: np.ndarray) -> None:
        nonlocal next_id
        stage = int(rng.choice(len(STAGES), p=stages)) if stages is not None else 0
        cost = float(np.exp(log_median[stage] + sigma[stage] * rng.standard_normal()))
        duration = float(np.exp(np.log(truth["duration_median"][stage]) + truth["duration_sigma"] * rng.standard_normal()))
        opened = year + rng.random()
        elapsed = END_OF_HISTORY - opened
        closed = elapsed >= duration
        recovered, adverse = fee_shifting(country)
        outcome = "settled" if stage < 2 else "dismissed"
        if closed and stage >= 2 and (recovered > 0 or adverse > 0):
            outcome = "won" if rng.random() < true_win_probability(country) else "lost"
        if not closed:
            outcome = "open"
            stage = int(np.floor(elapsed / duration * (stage + 1)))  # stages reached so far
            cost *= elapsed / duration
        deductible = portfolio.deductible_cny[policy]
        if cost <= deductible:
            return  # never paid: truncated
        coinsurance, limit = portfolio.coinsurance[policy], portfolio.limit_per_dispute_cny[policy]
        ceiling = float(_censor_point(deductible, coinsurance, limit))
        at_limit = cost >= ceiling
        recorded = min(cost, ceiling)
        currency = COUNTRIES[country].currency
        disputes.append({
            "dispute_id": f"D{next_id:05d}", "policy_id": portfolio.policy_id[policy], "year": year,
            "country": country, "dispute_type": dispute_type, "campaign_id": campaign_id,
            "status": "closed" if closed else "open", "stage": STAGES[stage],
            "duration_years": f"{duration if closed else elapsed:.3f}", "outcome": outcome, "currency": currency,
            "cost_local": f"{recorded / BASE_FX_CNY[currency]:.2f}", "cost_cny": f"{recorded:.2f}",
            "deductible_cny": f"{deductible:.0f}", "coinsurance": f"{coinsurance:.2f}",
            "limit_cny": f"{limit:.0f}", "at_limit": "true" if at_limit else "false",
        })
        next_id += 1

    sigma = np.asarray(truth["stage_sigma"])
    for y, year in enumerate(years):
        growth = 1.06 ** (year - years[-1])
        noise = np.exp(0.1 * rng.standard_normal(portfolio.exposure.shape) - 0.005)
        exposure = portfolio.exposure * growth * noise
        for c, country in enumerate(portfolio.countries):
            for dispute_type in DISPUTE_TYPES:
                table = truth["rate"][dispute_type]
                for p in np.flatnonzero(portfolio.exposure[:, c] > 0):
                    e = float(exposure[p, c])
                    count = 0
                    if country in table:
                        sector_effect = truth["sector"][dispute_type].get(sectors[p], 0.0)
                        mean = table[country] * np.exp(sector_effect + year_effect[y]) * e
                        # NB1: concentration mean / delta, so Var = mean (1 + delta)
                        k = mean / truth["dispersion"][dispute_type]
                        count = int(rng.poisson(mean * rng.gamma(k, 1.0 / k)))
                    exposures.append({"policy_id": portfolio.policy_id[p], "year": year, "sector": sectors[p],
                                      "country": country, "dispute_type": dispute_type,
                                      "exposure": f"{e:.4f}", "disputes": count})
                    if count:
                        stages = true_stage_probability(country, dispute_type)
                        log_median = true_log_median(country, dispute_type)
                        for _ in range(count):
                            add_dispute(p, year, country, dispute_type, "", stages, log_median, sigma)
        for kind in CAMPAIGN_KINDS:
            country, dispute_type, target_sectors = CAMPAIGN_TARGETS[kind]
            if country not in portfolio.countries:
                continue
            weights = exposure[:, portfolio.countries.index(country)].copy()
            if target_sectors is not None:
                weights[~np.isin(sectors, target_sectors)] = 0.0
            mean = truth["campaign_rate"][kind] * weights.sum() * np.exp(year_effect[y])
            m, k = truth["campaign_size"][kind]
            median, spread = truth["campaign_cost"][kind]
            for i in range(int(rng.poisson(mean))):
                hits = 1 + int(rng.poisson(m * rng.gamma(k, 1.0 / k)))
                campaign_id = f"{kind.upper()}-{year}-{i + 1:02d}"
                campaigns.append({"campaign_id": campaign_id, "year": year, "kind": kind, "insured_hit": hits})
                for p in rng.choice(len(weights), size=hits, p=weights / weights.sum()):
                    add_dispute(int(p), year, country, dispute_type, campaign_id, None,
                                np.array([np.log(median)]), np.array([spread]))
    return {"exposures": exposures, "disputes": disputes, "campaigns": campaigns}


def _write_csv_atomic(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    def write(staging: Path) -> None:
        with open(staging, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def write_history(directory: str | Path, rows: dict[str, list[dict]]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_csv_atomic(directory / "exposures.csv", EXPOSURE_COLUMNS, rows["exposures"])
    _write_csv_atomic(directory / "disputes.csv", DISPUTE_COLUMNS, rows["disputes"])
    _write_csv_atomic(directory / "campaigns.csv", CAMPAIGN_COLUMNS, rows["campaigns"])
    return directory


def default_history_dir() -> Path:
    """The synthetic default history shipped with leisim (seed 0, the embedded portfolio)."""
    return Path(__file__).resolve().parent.parent / "data" / "default" / "history"


# --------------------------------------------------------------------------------------------
# Loading


def _choice(row: dict, column: str, path: Path, choices) -> str:
    value = row[column]
    if value not in choices:
        folded = {str(c).lower(): c for c in choices}
        hint = country_hint(value) if column == "country" else (
            f" (did you mean {folded[value.lower()]!r}?)" if value.lower() in folded else "")
        raise InputError("not a valid choice" + hint, file=str(path), field=f"row {row['_line']}, column {column}",
                         value=value, choices=sorted(choices))
    return value


def _flag(row: dict, column: str, path: Path) -> bool:
    return _choice(row, column, path, ("true", "false")) == "true"


def load_history(directory: str | Path) -> History:
    """Read and validate a history folder; InputError names the file, row and column."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("history directory not found; pass a folder holding exposures.csv, disputes.csv and "
                         "campaigns.csv (see `leisim data history`)", file=str(directory))
    exp_path, dis_path, camp_path = directory / "exposures.csv", directory / "disputes.csv", directory / "campaigns.csv"
    exposure_rows = read_rows(exp_path, EXPOSURE_COLUMNS)
    dispute_rows = read_rows(dis_path, DISPUTE_COLUMNS, allow_empty=True)
    campaign_rows = read_rows(camp_path, CAMPAIGN_COLUMNS, allow_empty=True)

    def year_of(row: dict, path: Path) -> int:
        value = read_number(row, "year", path, low=1900, high=2200)
        if value != int(value):
            raise InputError("must be a whole year", file=str(path), field=f"row {row['_line']}, column year",
                             value=row["year"])
        return int(value)

    policy_sector: dict[str, str] = {}
    parsed = []
    seen: dict[tuple, str] = {}
    for row in exposure_rows:
        key = (row["policy_id"], row["year"], row["country"], row["dispute_type"])
        if key in seen:
            # Counted twice, its exposure and disputes would double the rate the fit sees.
            raise InputError(f"duplicate (policy_id, year, country, dispute_type) row: row {seen[key]} has it already; "
                             "give each policy-year-country-type once", file=str(exp_path),
                             field=f"row {row['_line']}", value=",".join(key))
        seen[key] = row["_line"]
        country = _choice(row, "country", exp_path, COUNTRIES)
        dispute_type = _choice(row, "dispute_type", exp_path, DISPUTE_TYPES)
        if not row["sector"]:
            raise InputError("empty sector", file=str(exp_path), field=f"row {row['_line']}, column sector")
        policy_sector.setdefault(row["policy_id"], row["sector"])
        count = read_number(row, "disputes", exp_path, low=0)
        if count != int(count):
            raise InputError("must be a whole number", file=str(exp_path),
                             field=f"row {row['_line']}, column disputes", value=row["disputes"])
        parsed.append((year_of(row, exp_path), country, dispute_type, row["sector"],
                       read_number(row, "exposure", exp_path, low=0.0, high=MAX_EXPOSURE, hint=EXPOSURE_UNIT), int(count), row["policy_id"]))
    years = tuple(sorted({p[0] for p in parsed}))
    countries = tuple(sorted({p[1] for p in parsed}))
    sectors = tuple(sorted({p[3] for p in parsed} | {REFERENCE_SECTOR}))
    year_index = {y: i for i, y in enumerate(years)}

    cells = np.array([(year_index[y], countries.index(c), DISPUTE_TYPES.index(t), sectors.index(s))
                      for y, c, t, s, _, _, _ in parsed], dtype=np.int64).reshape(-1, 4)

    individual, in_campaign = [], []
    for row in dispute_rows:
        where = f"row {row['_line']}"
        if row["policy_id"] not in policy_sector:
            raise InputError("policy_id has no row in exposures.csv", file=str(dis_path),
                             field=f"{where}, column policy_id", value=row["policy_id"])
        year = year_of(row, dis_path)
        if year not in year_index:
            raise InputError("year outside the exposure years", file=str(dis_path), field=f"{where}, column year",
                             value=year, choices=[str(y) for y in years])
        country = _choice(row, "country", dis_path, COUNTRIES)
        dispute_type = _choice(row, "dispute_type", dis_path, DISPUTE_TYPES)
        status = _choice(row, "status", dis_path, ("closed", "open"))
        stage = STAGES.index(_choice(row, "stage", dis_path, STAGES))
        outcome = _choice(row, "outcome", dis_path, OUTCOMES)
        cost = read_number(row, "cost_cny", dis_path, low=0.0, high=MAX_AMOUNT_CNY)
        deductible = read_number(row, "deductible_cny", dis_path, low=0.0, high=MAX_AMOUNT_CNY)
        read_number(row, "coinsurance", dis_path, low=0.0, high=1.0)
        read_number(row, "limit_cny", dis_path, low=0.0, high=MAX_AMOUNT_CNY)
        at_limit = _flag(row, "at_limit", dis_path)
        if cost <= deductible:
            raise InputError("cost_cny must exceed deductible_cny: disputes under the deductible are not paid and "
                             "are left out of disputes.csv (they still count in exposures.csv)",
                             file=str(dis_path), field=f"{where}, column cost_cny", value=row["cost_cny"])
        closed = status == "closed"
        duration = read_number(row, "duration_years", dis_path, low=0.0)
        won = 1 if outcome == "won" else 0 if outcome == "lost" else -1
        if row["campaign_id"]:
            in_campaign.append((row["campaign_id"], cost, deductible, at_limit or not closed))
        else:
            if country not in countries:
                raise InputError("country has no exposure row", file=str(dis_path),
                                 field=f"{where}, column country", value=country, choices=list(countries))
            individual.append((countries.index(country), DISPUTE_TYPES.index(dispute_type), closed, stage,
                               duration, won, cost, deductible, at_limit or not closed))

    campaign_count = np.zeros((len(years), len(CAMPAIGN_KINDS)), np.int64)
    campaign_kind_of: dict[str, int] = {}
    hits, hit_kind = [], []
    for row in campaign_rows:
        year = year_of(row, camp_path)
        if year not in year_index:
            raise InputError("year outside the exposure years", file=str(camp_path),
                             field=f"row {row['_line']}, column year", value=year, choices=[str(y) for y in years])
        kind = CAMPAIGN_KINDS.index(_choice(row, "kind", camp_path, CAMPAIGN_KINDS))
        n = read_number(row, "insured_hit", camp_path, low=1)
        campaign_count[year_index[year], kind] += 1
        campaign_kind_of[row["campaign_id"]] = kind
        hits.append(int(n))
        hit_kind.append(kind)
    for campaign_id, *_ in in_campaign:
        if campaign_id not in campaign_kind_of:
            raise InputError("campaign_id not found in campaigns.csv", file=str(dis_path), field="campaign_id",
                             value=campaign_id)

    # Exposure each campaign kind targets, per year.
    target = np.zeros((len(years), len(CAMPAIGN_KINDS)))
    seen = set()
    for y, c, _type, s, e, _, policy in parsed:
        if (policy, y, c) in seen:
            continue  # one exposure per (policy, year, country), whatever the dispute type
        seen.add((policy, y, c))
        for k, kind in enumerate(CAMPAIGN_KINDS):
            country, _, target_sectors = CAMPAIGN_TARGETS[kind]
            if c == country and (target_sectors is None or s in target_sectors):
                target[year_index[y], k] += e

    def column(items, i, dtype=float):
        return np.array([item[i] for item in items], dtype=dtype)

    return History(
        countries=countries, sectors=sectors, years=years,
        cell_year=cells[:, 0], cell_country=cells[:, 1], cell_type=cells[:, 2], cell_sector=cells[:, 3],
        cell_exposure=np.array([p[4] for p in parsed]), cell_disputes=np.array([p[5] for p in parsed], np.int64),
        dispute_country=column(individual, 0, np.int64), dispute_type=column(individual, 1, np.int64),
        dispute_closed=column(individual, 2, bool), dispute_stage=column(individual, 3, np.int64),
        dispute_duration=column(individual, 4), dispute_decided_won=column(individual, 5, np.int64),
        dispute_cost=column(individual, 6), dispute_deductible=column(individual, 7),
        dispute_censored=column(individual, 8, bool),
        campaign_dispute_kind=np.array([campaign_kind_of[c[0]] for c in in_campaign], np.int64),
        campaign_dispute_cost=column(in_campaign, 1), campaign_dispute_deductible=column(in_campaign, 2),
        campaign_dispute_censored=column(in_campaign, 3, bool),
        campaign_count=campaign_count, campaign_hits=np.array(hits, np.int64),
        campaign_hit_kind=np.array(hit_kind, np.int64), campaign_target_exposure=target,
        source=str(directory),
    )
