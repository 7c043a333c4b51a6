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

from . import metrics
from .driver import YearTable


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


def by_country(table: YearTable, group_country: tuple[str, ...], countries: tuple[str, ...]) -> np.ndarray:
    """Sum the per-group totals into per-country totals: [year, country]."""
    out = np.zeros((table.gross.size, len(countries)))
    for g, country in enumerate(group_country):
        out[:, countries.index(country)] += table.gross_by_group[:, g]
    return out


def summarize(
    table: YearTable,
    *,
    countries: tuple[str, ...],
    gross_by_country: np.ndarray,
    premium_cny: float,
    capital_available_cny: float | None,
    expected_disputes: float,
    n_reinsurance_contracts: int,
    provenance_attrs: dict,
    n_draws: int = 1,
    first_year: int = 0,
    point_estimate: dict | None = None,
) -> dict:
    """The summary.json document (DESIGN.md keys, plus extensions).

    Args:
        n_draws: parameter draws cycled through (year ``y`` uses draw ``y mod n_draws``).
        point_estimate: risk measures of the same run at the posterior mean parameters (same seed,
            same years: common random numbers), for the parameter-uncertainty report.
    """
    gross = table.gross
    ceded = np.zeros_like(gross)  # reinsurance is not applied yet: nothing is ceded
    net = gross - ceded
    out = {
        "scenario": provenance_attrs["scenario"],
        "seed": provenance_attrs["seed"],
        "years": int(gross.size),
        "currency": "CNY",
        "premium": premium_cny,
        "gross": metrics.risk_measures(gross),
        "ceded": metrics.risk_measures(ceded),
        "net": metrics.risk_measures(net),
    }
    required = out["net"]["var"]["0.995"] - out["net"]["mean"]
    # The two estimates are positively correlated, so adding variances overstates the SE a little.
    required_se = math.hypot(out["net"]["se"]["var"]["0.995"], out["net"]["se"]["mean"])
    ratio = capital_available_cny / required if capital_available_cny is not None and required > 0 else None
    out["capital"] = {
        "required": required,
        "available": capital_available_cny,
        "solvency_ratio": ratio,
        "se": {
            "required": required_se,
            "solvency_ratio": ratio * required_se / required if ratio is not None else None,
        },
        "definition": "required = 99.5% VaR of the net annual loss minus its mean; ratio = available / required",
    }
    out["reserves"] = {
        "expected_outstanding": None,
        "adequacy": None,
        "status": "not modelled yet: payment patterns arrive with the reserving capability",
    }
    out["reinsurance"] = {
        "contracts_in_scenario": n_reinsurance_contracts,
        "applied": False,
        "status": "not applied yet: ceded is zero and net equals gross",
    }
    out["loss_ratio"] = {
        "gross": out["gross"]["mean"] / premium_cny if premium_cny > 0 else None,
        "net": out["net"]["mean"] / premium_cny if premium_cny > 0 else None,
    }
    out["exceedance"] = {
        "aep": metrics.exceedance_curve(gross),
        "oep": metrics.exceedance_curve(table.max_dispute),
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
        "expected_per_year": expected_disputes,
        "mean_per_year": float(table.disputes.mean()),
        "max_per_year": int(table.disputes.max()),
        "years_recomputed_for_buffer_overflow": int(table.recomputed_years.size),
    }
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


def to_dataset(table: YearTable, *, countries: tuple[str, ...], gross_by_country: np.ndarray,
               provenance_attrs: dict) -> xr.Dataset:
    """results.nc: one value per simulated year (CNY), with provenance in the attributes."""
    year = np.arange(table.gross.size, dtype=np.int32)
    ceded = np.zeros_like(table.gross)
    ds = xr.Dataset(
        {
            "gross": ("year", table.gross, {"units": "CNY", "long_name": "insurer's gross payments"}),
            "ceded": ("year", ceded, {"units": "CNY", "long_name": "ceded to reinsurers"}),
            "net": ("year", table.gross - ceded, {"units": "CNY", "long_name": "net of reinsurance"}),
            "ground_up": ("year", table.ground_up, {"units": "CNY", "long_name": "legal costs before policy terms"}),
            "max_dispute": ("year", table.max_dispute, {"units": "CNY", "long_name": "largest single-dispute payment"}),
            "disputes": ("year", table.disputes.astype(np.int32), {"long_name": "number of disputes"}),
            "gross_by_country": (("year", "country"), gross_by_country, {"units": "CNY"}),
        },
        coords={"year": year, "country": np.array(countries, dtype=str)},
    )
    ds.attrs.update({k: ("" if v is None else v) for k, v in provenance_attrs.items()})
    return ds
