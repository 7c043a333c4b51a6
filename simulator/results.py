"""Turn per-year arrays into the file contracts: summary.json's dict and results.nc's Dataset.

The only place where the simulator meets xarray (STYLE.md rule 5).
"""

from __future__ import annotations

import datetime as dt
import math
import platform

import jax
import numpy as np
import xarray as xr

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
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or "",
    }


def by_label(values: np.ndarray, group_label: tuple[str, ...], labels: tuple[str, ...]) -> np.ndarray:
    """Sum per-group columns [year, group] into per-label columns [year, label]."""
    out = np.zeros((values.shape[0], len(labels)))
    for g, label in enumerate(group_label):
        out[:, labels.index(label)] += values[:, g]
    return out


def by_country(table: YearTable, group_country: tuple[str, ...], countries: tuple[str, ...]) -> np.ndarray:
    """Sum the per-group totals into per-country totals: [year, country]."""
    return by_label(table.gross_by_group, group_country, countries)


def program_outcome(table: YearTable, contracts: tuple[Contract, ...], index: int, premium_cny: float) -> dict:
    """One reinsurance program's per-year results and prices (program ``index`` of the run).

    ``ceded`` is what the reinsurers pay (after default) and ``net = gross - ceded``;
    ``net_cost`` adds the reinstatement premiums the year triggers (the random part of the
    reinsurance cost). ``fixed_cost``: premiums minus ceding commissions (the same every year).
    """
    gross = table.gross
    if not contracts:
        zero = np.zeros_like(gross)
        return {"contracts": (), "net": gross.copy(), "ceded": zero, "net_cost": gross.copy(), "due": np.zeros((gross.size, 0)),
                "recovered": np.zeros((gross.size, 0)), "prices": [], "reinstatement_premiums": np.zeros((gross.size, 0)),
                "fixed_cost": 0.0, "margin": 0.0, "net_premium": premium_cny}
    n = len(contracts)
    due, recovered = table.ceded_due[:, index, :n], table.recovered[:, index, :n]
    net = table.net[:, index]
    prices = [reinsurance.price(c, due[:, i]) for i, c in enumerate(contracts)]
    rip = np.stack([p["reinstatement_premiums"] for p in prices], axis=1)
    fixed = sum(p["premium"] - p["ceding_commission"] for p in prices)
    margin = fixed + float(rip.sum(axis=1).mean()) - float(recovered.sum(axis=1).mean())
    return {"contracts": contracts, "net": net, "ceded": gross - net, "net_cost": net + rip.sum(axis=1), "due": due,
            "recovered": recovered, "prices": prices, "reinstatement_premiums": rip, "fixed_cost": fixed,
            "margin": margin, "net_premium": premium_cny - fixed}


def _contract_report(contract: Contract, due: np.ndarray, recovered: np.ndarray, price: dict, rip: np.ndarray) -> dict:
    n = due.size
    cover = contract.cover
    reinstatements = (np.minimum(due, contract.reinstatements * contract.limit) / contract.limit
                      if contract.kind == "per_dispute_xl" and contract.reinstatements > 0 else np.zeros_like(due))
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
        "expected_due": float(due.mean()),
        "expected_recovered": float(recovered.mean()),
        "expected_recovered_se": float(recovered.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "expected_default_loss": float((due - recovered).mean()),
        "expected_reinstatement_premium": float(rip.mean()),
        "expected_reinstatements_used": float(reinstatements.mean()),
        "margin": price["premium"] - price["ceding_commission"] + float(rip.mean()) - float(recovered.mean()),
        "probability_of_loss": float(np.mean(due > 0)),
        "probability_exhausted": None if math.isinf(cover) else float(np.mean(due >= cover * (1 - 1e-12))),
        "default_probability": contract.default_probability,
        "recovery_rate": contract.recovery_rate,
    }


def reinsurance_report(outcome: dict) -> dict:
    """summary.json's ``reinsurance`` block for one program."""
    contracts = outcome["contracts"]
    return {
        "applied": True,
        "contracts": [_contract_report(c, outcome["due"][:, i], outcome["recovered"][:, i], outcome["prices"][i],
                                       outcome["reinstatement_premiums"][:, i]) for i, c in enumerate(contracts)],
        "fixed_cost": outcome["fixed_cost"],
        "margin": outcome["margin"],
        "net_premium": outcome["net_premium"],
        "order": "inuring: each contract applies to what the ones before it leave retained (recoveries deemed "
                 "recoverable); default is applied to each contract's due amount",
        "margin_definition": "premiums - ceding commissions + expected reinstatement premiums - expected recoveries",
    }


def capital_report(outcome: dict, table: YearTable, composition, capital_spec: dict) -> dict:
    """summary.json's ``capital`` block: requirement, ratios, exhaustion and Euler allocation."""
    contracts = outcome["contracts"]
    charge = 0.0
    if capital_spec.get("counterparty_charge", False) and contracts:
        charge = capital.counterparty_charge(contracts, outcome["recovered"].mean(axis=0))
    available = capital_spec.get("available_cny")
    out = capital.assess(outcome["net_cost"], available=None if available is None else float(available),
                         core=capital_spec.get("core_cny"), charge=charge)
    out["definition"] = ("required = 99.5% VaR of the net annual cost (net loss + reinstatement premiums) minus "
                         "its mean" + (" + C-ROSS counterparty charge (factor x expected recoverables)" if charge else "")
                         + "; solvency ratio = available / required; exhaustion: net cost above its mean by more "
                           "than the available capital")
    net_groups = table.net_by_group if contracts else table.gross_by_group
    rip = outcome["reinstatement_premiums"].sum(axis=1)
    allocation = {}
    for key, labels, group_label in (("by_country", composition.countries, composition.group_country),
                                     ("by_dispute_type", tuple(sorted(set(composition.group_dispute_type))),
                                      composition.group_dispute_type)):
        parts = by_label(net_groups, group_label, labels)
        names = list(labels)
        if np.any(rip > 0):
            parts, names = np.concatenate([parts, rip[:, None]], axis=1), names + ["reinstatement_premiums"]
        allocation[key] = capital.allocate(parts.sum(axis=1), parts, names, out["insurance_risk"])
    allocation["method"] = (f"Euler allocation of TVaR {capital.ALLOCATION_LEVEL:g} (contributions to TVaR - mean), "
                            "scaled to the insurance-risk capital; shares add up to 1")
    out["allocation"] = allocation
    return out


def summarize(
    table: YearTable,
    composition,
    *,
    provenance_attrs: dict,
    capital_spec: dict | None = None,
    reserves_spec: dict | None = None,
    first_year: int = 0,
    point_estimate: dict | None = None,
) -> dict:
    """The summary.json document (DESIGN.md keys, plus extensions).

    Args:
        composition: the run's :class:`leisim.scenarios.compose.Composition`; its first program
            is the one reported as ``ceded`` and ``net``.
        capital_spec, reserves_spec: the scenario's ``[capital]`` and ``[reserves]`` tables.
        point_estimate: risk measures of the same run at the posterior mean parameters (same seed,
            same years: common random numbers), for the parameter-uncertainty report.
    """
    capital_spec, reserves_spec = capital_spec or {}, reserves_spec or {}
    countries = composition.countries
    gross = table.gross
    gross_by_country = by_country(table, composition.group_country, countries)
    premium_cny = composition.premium_cny
    program = composition.programs[0] if composition.programs else ()
    outcome = program_outcome(table, program, 0, premium_cny)
    out = {
        "scenario": provenance_attrs["scenario"],
        "seed": provenance_attrs["seed"],
        "years": int(gross.size),
        "currency": "CNY",
        "premium": premium_cny,
        "gross": metrics.risk_measures(gross),
        "ceded": metrics.risk_measures(outcome["ceded"]),
        "net": metrics.risk_measures(outcome["net"]),
        "net_cost": metrics.risk_measures(outcome["net_cost"]),
    }
    out["capital"] = capital_report(outcome, table, composition, capital_spec)
    if composition.dev_years > 0:
        out["reserves"] = reserving.summarize(table.payments, table.open_disputes, table.open_weight, held=reserves_spec.get("held_cny"))
    else:
        out["reserves"] = {"expected_outstanding": None, "adequacy": None, "status": "payment pattern not tracked"}
    out["reinsurance"] = reinsurance_report(outcome) if program else {"applied": False, "contracts": [],
                                                                       "status": "no reinsurance: net equals gross"}
    out["loss_ratio"] = {
        "gross": out["gross"]["mean"] / premium_cny if premium_cny > 0 else None,
        "net": out["net"]["mean"] / outcome["net_premium"] if outcome["net_premium"] > 0 else None,
    }
    out["exceedance"] = {
        "aep": metrics.exceedance_curve(gross),
        "oep": metrics.exceedance_curve(table.max_dispute),
        "aep_net": metrics.exceedance_curve(outcome["net"]),
    }
    tail = metrics.tail_contributions(gross, gross_by_country, 0.99)
    means = gross_by_country.mean(axis=0)
    out["by_country"] = {
        country: {
            "mean": float(means[c]),
            "share_of_mean": float(means[c] / gross.mean()) if gross.mean() > 0 else 0.0,
            "tvar_0.99_contribution": float(tail[c]),
        }
        for c, country in enumerate(countries)
    }
    out["ground_up"] = {"mean": float(table.ground_up.mean())}
    out["disputes"] = {
        "expected_per_year": composition.expected_disputes,
        "mean_per_year": float(table.disputes.mean()),
        "max_per_year": int(table.disputes.max()),
        "years_recomputed_for_buffer_overflow": int(table.recomputed_years.size),
    }
    n_draws = composition.n_draws
    if n_draws > 1:
        draw = (np.arange(gross.size) + first_year) % n_draws
        split = metrics.parameter_variance_share(gross, draw)
        entry = {
            "draws": n_draws,
            "variance_total": float(gross.var(ddof=1)),
            "variance_from_parameters": split["parameter_variance"],
            "variance_from_process": split["process_variance"],
            "parameter_share_of_variance": split["parameter_share"],
            "method": "one-way random-effects ANOVA over the posterior draw of each year: "
                      "Var_d(E[X|d]) = (MSB - MSW) / n0, process = MSW",
        }
        if point_estimate is not None:
            posterior_var, point_var = out["gross"]["var"]["0.995"], point_estimate["var"]["0.995"]
            entry["point_estimate"] = {
                "description": "same seed and years at the posterior mean parameters (no parameter uncertainty)",
                "gross": point_estimate,
            }
            entry["var_0.995_posterior"] = posterior_var
            entry["var_0.995_point_estimate"] = point_var
            entry["var_0.995_widening"] = posterior_var / point_var - 1.0 if point_var > 0 else None
            entry["var_0.995_widening_se"] = (math.hypot(out["gross"]["se"]["var"]["0.995"] / point_var,
                                                         posterior_var * point_estimate["se"]["var"]["0.995"] / point_var**2)
                                              if point_var > 0 else None)
        out["parameter_uncertainty"] = entry
    out["estimators"] = {
        "var": "lower empirical quantile; SE by the order-statistic (binomial) method",
        "tvar": "empirical expected shortfall; SE by the influence-function (delta) method",
        "mean": "sample mean; SE = sd / sqrt(years)",
    }
    out["provenance"] = provenance_attrs
    return out


def to_dataset(table: YearTable, composition, *, provenance_attrs: dict) -> xr.Dataset:
    """results.nc: one value per simulated year (CNY), with provenance in the attributes.

    ``ceded``/``net`` are the first program's; with several programs, ``net_by_program`` holds
    each program's net on the same years.
    """
    year = np.arange(table.gross.size, dtype=np.int32)
    countries = composition.countries
    programs = composition.programs
    outcome = program_outcome(table, programs[0] if programs else (), 0, composition.premium_cny)
    money = {"units": "CNY"}
    variables = {
        "gross": ("year", table.gross, money | {"long_name": "insurer's gross payments"}),
        "ceded": ("year", outcome["ceded"], money | {"long_name": "recovered from reinsurers (after default)"}),
        "net": ("year", outcome["net"], money | {"long_name": "net of reinsurance"}),
        "net_cost": ("year", outcome["net_cost"], money | {"long_name": "net plus reinstatement premiums"}),
        "ground_up": ("year", table.ground_up, money | {"long_name": "legal costs before policy terms"}),
        "max_dispute": ("year", table.max_dispute, money | {"long_name": "largest single-dispute payment"}),
        "disputes": ("year", table.disputes.astype(np.int32), {"long_name": "number of disputes"}),
        "gross_by_country": (("year", "country"), by_country(table, composition.group_country, countries), money),
        "net_by_country": (("year", "country"),
                           by_label(table.net_by_group if programs else table.gross_by_group,
                                    composition.group_country, countries), money),
    }
    coords = {"year": year, "country": np.array(countries, dtype=str)}
    if outcome["contracts"]:
        coords["contract"] = np.array([c.name for c in outcome["contracts"]], dtype=str)
        variables |= {
            "ceded_by_contract": (("year", "contract"), outcome["recovered"], money | {"long_name": "recovered, by contract"}),
            "ceded_due_by_contract": (("year", "contract"), outcome["due"], money | {"long_name": "due before default"}),
            "reinstatement_premium": (("year", "contract"), outcome["reinstatement_premiums"], money),
        }
    if len(programs) > 1:
        coords["program"] = np.arange(len(programs), dtype=np.int32)
        variables["net_by_program"] = (("year", "program"), table.net, money | {"long_name": "net, by program"})
    if composition.dev_years > 0:
        coords["development_year"] = np.arange(composition.dev_years, dtype=np.int32)
        variables["payments"] = (("year", "development_year"), table.payments,
                                 money | {"long_name": "gross payments by development year of the underwriting year"})
        variables["open_disputes"] = (("year", "development_year"), table.open_disputes.astype(np.int32),
                                      {"long_name": "disputes open at the end of the development year"})
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({k: ("" if v is None else v) for k, v in provenance_attrs.items()})
    return ds


def compare_programs(table: YearTable, composition, names: list[str], capital_specs: list[dict]) -> list[dict]:
    """Each program's key figures on the same simulated years (common random numbers)."""
    rows = []
    for p, (name, contracts, spec) in enumerate(zip(names, composition.programs, capital_specs)):
        outcome = program_outcome(table, contracts, p, composition.premium_cny)
        net = metrics.risk_measures(outcome["net"], levels=(0.99, 0.995))
        charge = (capital.counterparty_charge(contracts, outcome["recovered"].mean(axis=0))
                  if spec.get("counterparty_charge", False) and contracts else 0.0)
        available = spec.get("available_cny")
        cap = capital.assess(outcome["net_cost"], available=None if available is None else float(available),
                             core=spec.get("core_cny"), charge=charge)
        rows.append({
            "program": name,
            "contracts": [c.name for c in contracts],
            "ceded_mean": float(outcome["ceded"].mean()),
            "reinsurance_cost_fixed": outcome["fixed_cost"],
            "expected_reinstatement_premiums": float(outcome["reinstatement_premiums"].sum(axis=1).mean()),
            "margin": outcome["margin"],
            "net_mean": net["mean"],
            "net_var_0.995": net["var"]["0.995"],
            "net_tvar_0.99": net["tvar"]["0.99"],
            "net_tvar_0.995": net["tvar"]["0.995"],
            "required_capital": cap["required"],
            "required_capital_se": cap["se"]["required"],
            "available_capital": cap["available"],
            "solvency_ratio": cap["solvency_ratio"],
            "exhaustion_probability": cap["exhaustion_probability"],
            "se": {"net_var_0.995": net["se"]["var"]["0.995"], "net_mean": net["se"]["mean"]},
        })
    return rows
