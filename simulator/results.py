"""Turn simulated years into the file contracts: summary.json's dict and results.nc.

Years arrive as *records*: one dict of NumPy arrays per chunk of consecutive years (see
:func:`record`), from memory (:class:`MemoryYears`) or from a run's checkpoint on disk
(:class:`leisim.formats.checkpoint.ChunkStore`). Every figure is computed in passes over the records,
holding at most a couple of per-year columns at once, so a run of 1e7 years fits in constant
memory; in-memory and on-disk years give identical numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import platform

import jax
import numpy as np

from ..formats.checkpoint import MemoryYears
from . import capital, metrics, reinsurance, reserving
from .driver import YearTable
from .reinsurance import Contract


def provenance(*, scenario_name: str, scenario_sha256: str, seed: int, years: int, command: str | None) -> dict:
    """What is needed to reproduce a run: versions, device, seed, scenario hash, command line."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    device = jax.devices()[0]
    return {
        "scenario": scenario_name,
        "scenario_sha256": scenario_sha256,
        "seed": seed,
        "years": years,
        "leisim_version": ver("leisim"),
        "jax_version": jax.__version__,
        "numpyro_version": ver("numpyro"),
        "python_version": platform.python_version(),
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "processes": jax.process_count(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or "",
    }


def by_label(values: np.ndarray, group_label: tuple[str, ...], labels: tuple[str, ...]) -> np.ndarray:
    """Sum per-group columns [year, group] into per-label columns [year, label]."""
    out = np.zeros((values.shape[0], len(labels)))
    for g, label in enumerate(group_label):
        out[:, labels.index(label)] += values[:, g]
    return out


def dispute_types(composition) -> tuple[str, ...]:
    return tuple(sorted(set(composition.group_dispute_type)))


def record(table: YearTable, composition) -> dict[str, np.ndarray]:
    """What the outputs need from a chunk of years (per-cell columns summed by country and type).

    Keys: ``gross, ground_up, max_dispute, disputes, campaign_disputes`` [year];
    ``gross_by_country, net_by_country`` [year, country]; ``net_by_dispute_type`` [year, type]
    (the first program's net; gross without reinsurance); ``ceded_due, recovered``
    [year, program, contract]; ``net`` [year, program]; ``payments, open_disputes, open_weight``
    [year, development year]; ``recomputed_years`` (year indices).
    """
    net_groups = table.net_by_group if composition.programs else table.gross_by_group
    return {
        "gross": table.gross, "ground_up": table.ground_up, "max_dispute": table.max_dispute,
        "disputes": table.disputes, "campaign_disputes": table.campaign_disputes,
        "gross_by_country": by_label(table.gross_by_group, composition.group_country, composition.countries),
        "disputes_by_country": by_label(table.disputes_by_group, composition.group_country, composition.countries),
        "net_by_country": by_label(net_groups, composition.group_country, composition.countries),
        "net_by_dispute_type": by_label(net_groups, composition.group_dispute_type, dispute_types(composition)),
        "ceded_due": table.ceded_due, "recovered": table.recovered, "net": table.net,
        "payments": table.payments, "open_disputes": table.open_disputes, "open_weight": table.open_weight,
        "recomputed_years": table.recomputed_years,
    }


def _column(years, fn) -> np.ndarray:
    """``fn(record)`` for every record, concatenated over the years (float64)."""
    return metrics.gather((fn(r) for r in years.records()), years.years)


def _sums(years, fn) -> np.ndarray:
    """Sum over the years of ``fn(record)`` (float64; pairwise within records, then across them)."""
    return np.sum(np.stack([np.asarray(fn(r), dtype=np.float64).sum(axis=0) for r in years.records()]), axis=0)


def sorted_column(years, name: str) -> np.ndarray:
    """One per-year field of the records, sorted (one array, sorted in place)."""
    return _sorted(_column(years, lambda r: r[name]))


def program_prices(years, contracts: tuple[Contract, ...], index: int) -> list[dict]:
    """Each contract of program ``index`` priced on the run's years (one pass)."""
    if not contracts:
        return []

    def moments(r):
        due = r["ceded_due"][:, index]
        return np.stack([np.stack([due[:, i], reinsurance.reinstatement_share(c, due[:, i])], axis=1)
                         for i, c in enumerate(contracts)], axis=2)  # [year, (due, share), contract]

    means = _sums(years, moments) / years.years
    return [reinsurance.price_from_means(c, float(means[0, i]), float(means[1, i])) for i, c in enumerate(contracts)]


def program_chunk(r: dict, contracts: tuple[Contract, ...], index: int, prices: list[dict]) -> dict:
    """Program ``index``'s per-year results on one record: ``net, ceded, net_cost`` [year],
    ``due, recovered, reinstatement_premiums`` [year, contract].

    ``ceded`` is what the reinsurers pay (after default) and ``net = gross - ceded``; ``net_cost``
    adds the reinstatement premiums the year triggers (the random part of the reinsurance cost).
    """
    gross = r["gross"]
    n = len(contracts)
    if not n:
        empty = np.zeros((gross.size, 0))
        return {"net": gross, "ceded": np.zeros_like(gross), "net_cost": gross, "due": empty, "recovered": empty,
                "reinstatement_premiums": empty}
    due, recovered, net = r["ceded_due"][:, index, :n], r["recovered"][:, index, :n], r["net"][:, index]
    rip = np.stack([c.reinstatement_premium * p["premium"] * reinsurance.reinstatement_share(c, due[:, i])
                    for i, (c, p) in enumerate(zip(contracts, prices))], axis=1)
    return {"net": net, "ceded": gross - net, "net_cost": net + rip.sum(axis=1), "due": due, "recovered": recovered,
            "reinstatement_premiums": rip}


def _fixed_cost(prices: list[dict]) -> float:
    """Premiums minus ceding commissions (the same every year)."""
    return sum(p["premium"] - p["ceding_commission"] for p in prices)


def program_outcome(table: YearTable, contracts: tuple[Contract, ...], index: int, premium_cny: float) -> dict:
    """One reinsurance program's per-year results and prices (program ``index`` of an in-memory run).

    ``fixed_cost``: premiums minus ceding commissions; ``margin``: that plus the expected
    reinstatement premiums minus the expected recoveries.
    """
    r = {"gross": table.gross, "ceded_due": table.ceded_due, "recovered": table.recovered, "net": table.net}
    prices = program_prices(MemoryYears([r]), contracts, index)
    out = program_chunk(r, contracts, index, prices)
    fixed = _fixed_cost(prices)
    out |= {"contracts": contracts, "prices": prices, "fixed_cost": fixed, "net_premium": premium_cny - fixed,
            "margin": (fixed + float(out["reinstatement_premiums"].sum(axis=1).mean())
                       - float(out["recovered"].sum(axis=1).mean())) if contracts else 0.0}
    return out


class _Program:
    """A program's prices and per-contract sums over the years (two passes over the records)."""

    def __init__(self, years, contracts: tuple[Contract, ...], index: int, premium_cny: float):
        self.years, self.contracts, self.index = years, contracts, index
        self.premium_cny = premium_cny
        self.prices = program_prices(years, contracts, index)
        self.fixed_cost = _fixed_cost(self.prices)
        self.net_premium = premium_cny - self.fixed_cost
        # [statistic, contract] means over the years (all zero without contracts)
        self.stats = self._contract_sums() / years.years if contracts else np.zeros((8, 0))

    def chunks(self):
        for r in self.years.records():
            yield r, program_chunk(r, self.contracts, self.index, self.prices)

    def column(self, name: str) -> np.ndarray:
        return metrics.gather((c[name] for _, c in self.chunks()), self.years.years)

    def _contract_sums(self) -> np.ndarray:
        total = np.zeros((8, len(self.contracts)))
        for _, c in self.chunks():
            due, recovered, rip = c["due"], c["recovered"], c["reinstatement_premiums"]
            used = np.stack([reinsurance.reinstatement_share(k, due[:, i]) if k.kind in reinsurance.LAYERS
                             else np.zeros(due.shape[0]) for i, k in enumerate(self.contracts)], axis=1)
            covers = np.array([k.cover for k in self.contracts])
            exhausted = np.where(np.isinf(covers), False, due >= np.where(np.isinf(covers), 0.0, covers) * (1 - 1e-12))
            rows = np.stack([due, recovered, recovered**2, due - recovered, rip, used, due > 0, exhausted])
            total = total + rows.sum(axis=1)  # [statistic, contract]
        return total

    @property
    def margin(self) -> float:
        if not self.contracts:
            return 0.0
        return self.fixed_cost + float(self.stats[4].sum()) - float(self.stats[1].sum())

    def expected_recovered(self) -> np.ndarray:
        return self.stats[1] if self.contracts else np.zeros(0)


def _contract_report(contract: Contract, stats: np.ndarray, price: dict, n: int) -> dict:
    """One contract's block from its mean statistics (see ``_Program._contract_sums``)."""
    due, recovered, recovered_sq, default_loss, rip, used, hit, exhausted = stats
    cover = contract.cover
    recovered_var = max(recovered_sq - recovered**2, 0.0) * n / (n - 1) if n > 1 else 0.0
    return {
        "name": contract.name,
        "type": contract.kind,
        "reinsurer": contract.reinsurer,
        "lower": contract.lower,
        "limit": None if math.isinf(contract.limit) else contract.limit,
        "aggregate_cover": None if math.isinf(cover) else cover,
        "reinstatements": None if math.isinf(contract.reinstatements) else contract.reinstatements,
        "premium": price["premium"],
        "premium_priced_at_expected_loss": price["priced"],
        "ceding_commission": price["ceding_commission"],
        "expected_due": float(due),
        "expected_recovered": float(recovered),
        "expected_recovered_se": math.sqrt(recovered_var / n),
        "expected_default_loss": float(default_loss),
        "expected_reinstatement_premium": float(rip),
        "expected_reinstatements_used": float(used),
        "margin": price["premium"] - price["ceding_commission"] + float(rip) - float(recovered),
        "probability_of_loss": float(hit),
        "probability_exhausted": None if math.isinf(cover) else float(exhausted),
        "default_probability": contract.default_probability,
        "recovery_rate": contract.recovery_rate,
    }


def reinsurance_report(program: _Program) -> dict:
    """summary.json's ``reinsurance`` block for one program."""
    n = program.years.years
    return {
        "applied": True,
        "contracts": [_contract_report(c, program.stats[:, i], program.prices[i], n)
                      for i, c in enumerate(program.contracts)],
        "fixed_cost": program.fixed_cost,
        "margin": program.margin,
        "net_premium": program.net_premium,
        "order": "inuring: each contract applies to what the ones before it leave retained (recoveries deemed "
                 "recoverable); default is applied to each contract's due amount",
        "margin_definition": "premiums - ceding commissions + expected reinstatement premiums - expected recoveries",
    }


def fixed_income(premium_cny: float, net_premium_cny: float, capital_spec) -> dict:
    """The fixed part of a year's underwriting result: premium earned - expenses - (reinsurance
    premiums - ceding commissions) = ``net_premium - expense_ratio x premium`` (capital.py)."""
    expense_ratio = capital.CapitalSpec.of(capital_spec).expense_ratio
    expenses = expense_ratio * premium_cny
    return {"premium_earned": premium_cny, "expense_ratio": expense_ratio, "expenses": expenses,
            "reinsurance_premiums_net_of_commissions": premium_cny - net_premium_cny,
            "income": net_premium_cny - expenses}


def capital_block(net_cost: np.ndarray, *, contracts: tuple[Contract, ...], expected_recovered: np.ndarray,
                  premium_cny: float, net_premium_cny: float, capital_spec, presorted: bool = False) -> dict:
    """SCR, ratios, exhaustion and the one-year result of a net cost per year under ``capital_spec``:
    the one definition `leisim simulate`, `reinsurance compare` and `leisim stress` all report."""
    spec = capital.CapitalSpec.of(capital_spec)
    charge = capital.counterparty_charge(contracts, expected_recovered) if spec.counterparty_charge and contracts \
        else 0.0
    income = fixed_income(premium_cny, net_premium_cny, spec)
    out = capital.assess(net_cost, available=spec.available_cny, income=income["income"], core=spec.core_cny,
                         charge=charge, presorted=presorted)
    out["result"] = income | {"expected_net_cost": out["mean"], "expected": out["expected_result"]}
    return out


def _assess(program: _Program, net_cost: np.ndarray, capital_spec) -> dict:
    """SCR and solvency of a program's net cost (sorted) under ``capital_spec`` (the one-year result)."""
    return capital_block(net_cost, contracts=program.contracts, expected_recovered=program.expected_recovered(),
                         premium_cny=program.premium_cny, net_premium_cny=program.net_premium,
                         capital_spec=capital_spec, presorted=True)


def capital_report(program: _Program, composition, capital_spec, *, ordered: np.ndarray | None = None) -> dict:
    """summary.json's ``capital`` block: requirement, ratios, exhaustion and Euler allocation.

    ``ordered``: the program's net cost, sorted, when the caller has it already."""
    ordered = _sorted(program.column("net_cost")) if ordered is None else ordered
    out = _assess(program, ordered, capital_spec)
    rule = capital.tail_rule(ordered, capital.ALLOCATION_LEVEL, presorted=True)
    del ordered
    net_cost = program.column("net_cost")  # in year order, for the allocation
    out["definition"] = (capital.DEFINITION + (" + C-ROSS counterparty charge (factor x expected recoverables)"
                                                if out["counterparty_charge"] else "")
                         + "; solvency ratio = available / required; exhaustion: a year whose loss of own funds "
                           "(-result) exceeds the available capital")
    with_rip = bool(program.contracts) and float(program.stats[4].sum()) > 0
    allocation: dict = {}
    for key, labels, field in (("by_country", composition.countries, "net_by_country"),
                               ("by_dispute_type", dispute_types(composition), "net_by_dispute_type")):
        names = list(labels) + (["reinstatement_premiums"] if with_rip else [])

        def parts(field=field):
            for r, c in program.chunks():
                yield (np.concatenate([r[field], c["reinstatement_premiums"].sum(axis=1)[:, None]], axis=1)
                       if with_rip else r[field])

        allocation[key] = capital.allocate(net_cost, parts, names, out["insurance_risk"], rule=rule)
    allocation["method"] = (f"Euler allocation of TVaR {capital.ALLOCATION_LEVEL:g} (contributions to TVaR - mean), "
                            "scaled to the insurance-risk capital; shares add up to 1")
    out["allocation"] = allocation
    return out


def _sorted(values: np.ndarray) -> np.ndarray:
    values.sort()
    return values


def _se_from_moments(mean: float, square: float, n: int) -> float:
    """sd / sqrt(n) from the first two moments over ``n`` years."""
    return float(math.sqrt(max(square - mean * mean, 0.0) * n / max(n - 1, 1) / n))


def _by_country(years, countries: tuple[str, ...], threshold: float, gross_mean: float) -> tuple[dict, np.ndarray]:
    """Each country's mean, its SE and share, and its mean over the years in which the total is at or
    above its 99% VaR (Euler allocation of TVaR, Tasche 1999); also the disputes' moments by country."""
    n = years.years
    sums = _sums(years, lambda r: np.stack([r["gross_by_country"], r["gross_by_country"] * (r["gross"] >= threshold)[:, None]], axis=1))
    tail_years = int(_sums(years, lambda r: r["gross"] >= threshold))
    means, tail = sums[0] / n, sums[1] / max(tail_years, 1)
    moments = _sums(years, lambda r: np.stack([r["gross_by_country"] ** 2, r["disputes_by_country"],
                                               r["disputes_by_country"] ** 2], axis=1)) / n
    table = {
        country: {
            "mean": float(means[c]),
            "se_mean": _se_from_moments(means[c], moments[0, c], n),
            "share_of_mean": float(means[c] / gross_mean) if gross_mean > 0 else 0.0,
            "tvar_0.99_contribution": float(tail[c]),
        }
        for c, country in enumerate(countries)
    }
    return table, moments[1:]


def _counts(years, composition, dispute_moments: np.ndarray) -> dict:
    """``ground_up`` and ``disputes``: mean ground-up cost, disputes per year (expected, simulated, by country)."""
    n = years.years
    counts = _sums(years, lambda r: np.stack([r["ground_up"], r["disputes"]], axis=1)) / n
    return {"ground_up": {"mean": float(counts[0])}, "disputes": {
        "expected_per_year": composition.expected_disputes,
        "mean_per_year": float(counts[1]),
        "max_per_year": int(max(int(r["disputes"].max()) for r in years.records())),
        "years_recomputed_for_buffer_overflow": int(sum(r["recomputed_years"].size for r in years.records())),
        "by_country": {country: {"mean_per_year": float(dispute_moments[0, c]),
                                 "se": _se_from_moments(dispute_moments[0, c], dispute_moments[1, c], n)}
                       for c, country in enumerate(composition.countries)},
    }}


def _parameter_uncertainty(gross: dict, split: dict, n_draws: int, point_estimate: dict | None) -> dict:
    """How much of the variance of annual gross payouts is parameter uncertainty, and how much it
    widens the 99.5% VaR against the same years at the posterior mean."""
    entry = {
        "draws": n_draws,
        "variance_total": gross["std"] ** 2,
        "variance_from_parameters": split["parameter_variance"],
        "variance_from_process": split["process_variance"],
        "parameter_share_of_variance": split["parameter_share"],
        "method": "one-way random-effects ANOVA over the posterior draw of each year: "
                  "Var_d(E[X|d]) = (MSB - MSW) / n0, process = MSW",
    }
    if point_estimate is not None:
        posterior_var, point_var = gross["var"]["0.995"], point_estimate["var"]["0.995"]
        entry["point_estimate"] = {
            "description": "same seed and years at the posterior mean parameters (no parameter uncertainty)",
            "gross": point_estimate,
        }
        entry["var_0.995_posterior"] = posterior_var
        entry["var_0.995_point_estimate"] = point_var
        entry["var_0.995_widening"] = posterior_var / point_var - 1.0 if point_var > 0 else None
        entry["var_0.995_widening_se"] = (math.hypot(gross["se"]["var"]["0.995"] / point_var,
                                                     posterior_var * point_estimate["se"]["var"]["0.995"] / point_var**2)
                                          if point_var > 0 else None)
    return entry


def _variance_split(years, n_draws: int, first_year: int):
    """Gross years grouped by posterior draw (year y uses draw y mod n_draws): the parameter share of the
    variance."""
    def by_draw():
        start = first_year
        for r in years.records():
            size = r["gross"].shape[0]
            yield r["gross"], (np.arange(start, start + size, dtype=np.int64) % n_draws)
            start += size

    return metrics.parameter_variance_share_runs(by_draw)


def _drift(summary: dict, capital_spec) -> dict:
    """The internal model's capital against the factor charge (capital.drift), from the summary's blocks."""
    result = summary["capital"]["result"]
    premium_volume = result["premium_earned"] - result["reinsurance_premiums_net_of_commissions"]
    reserves = summary["reserves"]
    gross_mean, net_mean = summary["gross"]["mean"], summary["net"]["mean"]
    outstanding = reserves.get("expected_outstanding") or 0.0
    reserve_volume = outstanding * (net_mean / gross_mean if gross_mean > 0 else 0.0)
    reserve_capital = (reserves.get("one_year_reserve_risk") or {}).get("capital", 0.0) * (
        net_mean / gross_mean if gross_mean > 0 else 0.0)  # the gross run-off's risk, scaled to net
    return capital.drift(summary["capital"]["required"], reserve_capital, premium_volume=premium_volume,
                         reserve_volume=reserve_volume, internal_premium_se=summary["capital"]["se"]["required"],
                         spec=capital.CapitalSpec.of(capital_spec))


def _reserves(years, composition, reserves_spec: dict) -> dict:
    if composition.dev_years == 0:
        return {"expected_outstanding": None, "adequacy": None, "status": "payment pattern not tracked"}
    spec = {key: reserves_spec[name] for name, key in (("risk_adjustment_confidence", "confidence"),
                                                        ("cost_of_capital_rate", "cost_of_capital"),
                                                        ("discount_rate", "discount_rate")) if name in reserves_spec}
    return reserving.summarize_runs(
        lambda: ((r["payments"], r["open_disputes"], r["open_weight"]) for r in years.records()),
        held=reserves_spec.get("held_cny"), risk_adjustment_spec=spec)


def summarize(
    years,
    composition,
    *,
    provenance_attrs: dict,
    capital_spec=None,
    reserves_spec: dict | None = None,
    first_year: int = 0,
    point_estimate: dict | None = None,
) -> dict:
    """The summary.json document (DESIGN.md keys, plus extensions).

    Args:
        years: the run's records (:class:`MemoryYears`, a :class:`~leisim.formats.checkpoint.ChunkStore`),
            or an in-memory :class:`YearTable`.
        composition: the run's :class:`leisim.scenarios.compose.Composition`; its first program
            is the one reported as ``ceded`` and ``net``.
        capital_spec, reserves_spec: the scenario's ``[capital]`` and ``[reserves]`` tables.
        point_estimate: risk measures of the same run at the posterior mean parameters (same seed,
            same years: common random numbers), for the parameter-uncertainty report.
    """
    if isinstance(years, YearTable):
        years = MemoryYears([record(years, composition)])
    capital_spec, reserves_spec = capital_spec or {}, reserves_spec or {}
    countries = composition.countries
    n = years.years
    premium_cny = composition.premium_cny
    program = _Program(years, composition.programs[0] if composition.programs else (), 0, premium_cny)
    out = {"scenario": provenance_attrs["scenario"], "seed": provenance_attrs["seed"], "years": n,
           "currency": "CNY", "premium": premium_cny}

    n_draws = composition.n_draws
    if n_draws > 1:
        split = _variance_split(years, n_draws, first_year)
    gross = sorted_column(years, "gross")
    out["gross"] = metrics.risk_measures(gross, presorted=True)
    aep = metrics.exceedance_curve(gross, presorted=True)
    threshold = metrics.var(gross, 0.99)
    del gross
    out["ceded"] = metrics.risk_measures(_sorted(program.column("ceded")), presorted=True)
    ordered = _sorted(program.column("net"))
    out["net"] = metrics.risk_measures(ordered, presorted=True)
    aep_net = metrics.exceedance_curve(ordered, presorted=True)
    ordered = _sorted(program.column("net_cost"))
    out["net_cost"] = metrics.risk_measures(ordered, presorted=True)
    out["capital"] = capital_report(program, composition, capital_spec, ordered=ordered)
    del ordered
    out["reserves"] = _reserves(years, composition, reserves_spec)
    out["drift"] = _drift(out, capital_spec)
    out["reinsurance"] = reinsurance_report(program) if program.contracts else {
        "applied": False, "contracts": [], "status": "no reinsurance: net equals gross"}
    out["loss_ratio"] = {
        "gross": out["gross"]["mean"] / premium_cny if premium_cny > 0 else None,
        "net": out["net"]["mean"] / program.net_premium if program.net_premium > 0 else None,
    }
    out["exceedance"] = {
        "aep": aep,
        "oep": metrics.exceedance_curve(sorted_column(years, "max_dispute"), presorted=True),
        "aep_net": aep_net,
    }
    out["by_country"], dispute_moments = _by_country(years, countries, threshold, out["gross"]["mean"])
    out |= _counts(years, composition, dispute_moments)
    if n_draws > 1:
        out["parameter_uncertainty"] = _parameter_uncertainty(out["gross"], split, n_draws, point_estimate)
    out["estimators"] = {
        "var": "lower empirical quantile; SE by the order-statistic (binomial) method",
        "tvar": "empirical expected shortfall; SE by the influence-function (delta) method",
        "mean": "sample mean; SE = sd / sqrt(years)",
        "sums": "float64, pairwise within each chunk of years, then across chunks",
    }
    out["provenance"] = provenance_attrs
    return out


def compare_programs(years, composition, names: list[str], capital_specs: list) -> list[dict]:
    """Each program's key figures on the same simulated years (common random numbers)."""
    if isinstance(years, YearTable):
        years = MemoryYears([record(years, composition)])
    rows = []
    for p, (name, contracts, spec) in enumerate(zip(names, composition.programs, capital_specs)):
        program = _Program(years, contracts, p, composition.premium_cny)
        net = metrics.risk_measures(_sorted(program.column("net")), levels=(0.99, 0.995), presorted=True)
        cap = _assess(program, _sorted(program.column("net_cost")), spec)
        rows.append({
            "program": name,
            "contracts": [c.name for c in contracts],
            "ceded_mean": float(program.stats[1].sum()) if contracts else 0.0,
            "reinsurance_cost_fixed": program.fixed_cost,
            "expected_reinstatement_premiums": float(program.stats[4].sum()) if contracts else 0.0,
            "margin": program.margin,
            "net_mean": net["mean"],
            "net_var_0.995": net["var"]["0.995"],
            "net_tvar_0.99": net["tvar"]["0.99"],
            "net_tvar_0.995": net["tvar"]["0.995"],
            "required_capital": cap["required"],
            "required_capital_se": cap["se"]["required"],
            "expected_result": cap["expected_result"],
            "required_capital_var_minus_mean": cap["var_minus_mean"]["required"],
            "available_capital": cap["available"],
            "solvency_ratio": cap["solvency_ratio"],
            "exhaustion_probability": cap["exhaustion_probability"],
            "se": {"net_var_0.995": net["se"]["var"]["0.995"], "net_mean": net["se"]["mean"]},
        })
    return rows


def _layout(years, composition):
    """What results.nc holds: its dimensions, coordinates and per-year variables.

    Returns ``(program, dims, coords, per_year)``; ``coords`` maps a dimension to ``(dtype, values)``,
    ``per_year`` a variable to ``(dims, dtype, attrs, value of (record, program chunk))``.
    """
    n = years.years
    programs = composition.programs
    program = _Program(years, programs[0] if programs else (), 0, composition.premium_cny)
    # CF attributes: every variable and coordinate has units and a long_name. Currency is not a UDUNITS
    # unit; "CNY" is kept as results.nc has always written it (readers use it), with the ISO 4217 code again
    # under `currency`. Counts are dimensionless ("1").
    money = {"units": "CNY", "currency": "CNY"}
    count = {"units": "1"}
    per_year = {
        "gross": (("year",), "f8", money | {"long_name": "insurer's gross payments"}, lambda r, c: r["gross"]),
        "ceded": (("year",), "f8", money | {"long_name": "recovered from reinsurers (after default)"}, lambda r, c: c["ceded"]),
        "net": (("year",), "f8", money | {"long_name": "net of reinsurance"}, lambda r, c: c["net"]),
        "net_cost": (("year",), "f8", money | {"long_name": "net plus reinstatement premiums"}, lambda r, c: c["net_cost"]),
        "ground_up": (("year",), "f8", money | {"long_name": "legal costs before policy terms"}, lambda r, c: r["ground_up"]),
        "max_dispute": (("year",), "f8", money | {"long_name": "largest single-dispute payment"}, lambda r, c: r["max_dispute"]),
        "disputes": (("year",), "i4", count | {"long_name": "number of disputes"}, lambda r, c: r["disputes"]),
        "gross_by_country": (("year", "country"), "f8", money | {"long_name": "insurer's gross payments, by country"},
                             lambda r, c: r["gross_by_country"]),
        "net_by_country": (("year", "country"), "f8", money | {"long_name": "net of reinsurance, by country"},
                           lambda r, c: r["net_by_country"]),
        "disputes_by_country": (("year", "country"), "i4", count | {"long_name": "number of disputes, by country"},
                                lambda r, c: r["disputes_by_country"]),
        "net_by_dispute_type": (("year", "dispute_type"), "f8", money | {"long_name": "net, by dispute type"},
                                lambda r, c: r["net_by_dispute_type"]),
    }
    text = object  # variable-length strings
    coords = {"year": ("i4", np.arange(n, dtype=np.int32)),
              "country": (text, np.array(composition.countries, dtype=object)),
              "dispute_type": (text, np.array(dispute_types(composition), dtype=object))}
    if program.contracts:
        coords["contract"] = (text, np.array([c.name for c in program.contracts], dtype=object))
        per_year |= {
            "ceded_by_contract": (("year", "contract"), "f8", money | {"long_name": "recovered, by contract"},
                                  lambda r, c: c["recovered"]),
            "ceded_due_by_contract": (("year", "contract"), "f8", money | {"long_name": "due before default"},
                                      lambda r, c: c["due"]),
            "reinstatement_premium": (("year", "contract"), "f8", money | {"long_name": "reinstatement premiums, "
                                      "by contract"}, lambda r, c: c["reinstatement_premiums"]),
        }
    if len(programs) > 1:
        coords["program"] = ("i4", np.arange(len(programs), dtype=np.int32))
        per_year["net_by_program"] = (("year", "program"), "f8", money | {"long_name": "net, by program"},
                                      lambda r, c: r["net"])
    if composition.dev_years > 0:
        coords["development_year"] = ("i4", np.arange(composition.dev_years, dtype=np.int32))
        per_year["payments"] = (("year", "development_year"), "f8",
                                money | {"long_name": "gross payments by development year of the underwriting year"},
                                lambda r, c: r["payments"])
        per_year["open_disputes"] = (("year", "development_year"), "i4",
                                     count | {"long_name": "disputes open at the end of the development year"},
                                     lambda r, c: r["open_disputes"])
    dims = {name: len(values) for name, (_, values) in coords.items()}
    return program, dims, coords, per_year


COORDINATE_ATTRS = {
    # `year` is a Monte Carlo sample index, not a calendar year: each is one independent simulated
    # underwriting year of the same book (year y draws from fold_in(key, y) alone).
    "year": {"long_name": "simulated year (Monte Carlo sample index, not a calendar year)", "units": "1",
             "comment": "each index is one independent simulation of the scenario's underwriting year"},
    "country": {"long_name": "country where the dispute is brought (ISO 3166-1 alpha-2)", "units": "1"},
    "dispute_type": {"long_name": "dispute type (patent, trademark, ...)", "units": "1"},
    "contract": {"long_name": "reinsurance contract of the scenario's program, in inuring order", "units": "1"},
    "program": {"long_name": "reinsurance program compared on the same years (0: the scenario's own)", "units": "1"},
    "development_year": {"long_name": "development year after the underwriting year (0: the underwriting year)",
                         "units": "year"},
}


def _as_years(years, composition):
    return MemoryYears([record(years, composition)]) if isinstance(years, YearTable) else years


def write_netcdf(path, years, composition, *, provenance_attrs: dict) -> None:
    """results.nc: one value per simulated year (CNY), with provenance in the attributes.

    Written record by record (formats/netcdf.write_sliced: chunked by the records, compressed), so
    the file may be far larger than memory. ``ceded`` and ``net`` are the first program's; with
    several programs, ``net_by_program`` holds each program's net on the same years.
    """
    from ..formats.netcdf import write_sliced

    years = _as_years(years, composition)
    program, dims, coords, per_year = _layout(years, composition)
    write_sliced(path, dims=dims, coords=coords, coord_attrs=COORDINATE_ATTRS,
                 variables={name: (var_dims, dtype, attrs) for name, (var_dims, dtype, attrs, _) in per_year.items()},
                 slices=({name: value(r, c) for name, (_, _, _, value) in per_year.items()} for r, c in program.chunks()),
                 attrs=netcdf_attrs(provenance_attrs))


def netcdf_attrs(provenance_attrs: dict) -> dict:
    """results.nc's global attributes: the CF ones, then the provenance (a missing value as an empty string;
    a flag as 0/1, which every NetCDF reader stores)."""
    cf = {"Conventions": "CF-1.10", "title": "leisim simulated annual payouts of a legal-expenses insurance book",
          "institution": "leisim", "source": f"leisim {provenance_attrs.get('leisim_version', '')}".strip(),
          "references": "docs/MODEL.md (the model a simulated year follows); docs/ARCHITECTURE.md (this file)",
          "comment": "one row per simulated year; amounts in CNY"}

    def value(v):
        return "" if v is None else int(v) if isinstance(v, bool) else v
    return cf | {k: value(v) for k, v in provenance_attrs.items()}


def dataset(years, composition, *, provenance_attrs: dict):
    """What results.nc holds, as an in-memory xarray Dataset (the same variables, values and attributes)."""
    import xarray as xr

    years = _as_years(years, composition)
    program, dims, coords, per_year = _layout(years, composition)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in per_year}
    for r, c in program.chunks():
        for name, (_, dtype, _, value) in per_year.items():
            parts[name].append(np.asarray(value(r, c)).astype(dtype))
    variables = {}
    for name, (var_dims, dtype, attrs, _) in per_year.items():
        empty = np.zeros((0,) + tuple(dims[d] for d in var_dims[1:]), dtype=dtype)
        variables[name] = xr.Variable(var_dims, np.concatenate(parts[name]) if parts[name] else empty, attrs)
    # Text coordinates as xarray reads them back from results.nc (fixed-width unicode).
    coordinates = {name: (name, values.astype(str) if dtype is object else values, COORDINATE_ATTRS.get(name, {}))
                   for name, (dtype, values) in coords.items()}
    return xr.Dataset(variables, coords=coordinates, attrs=netcdf_attrs(provenance_attrs))
