"""The fitted posterior as simulator input: reading, writing, and the per-draw tables.

``posterior_tables`` turns posterior draws into :class:`~leisim.scenarios.compose.ModelTables`
for a portfolio: one row of parameters per draw, so that simulated year ``y`` uses draw
``y mod n_draws`` and carries parameter uncertainty with process uncertainty.

Pooling pays here: a portfolio country that the history never saw gets, per draw, a rate,
stage probabilities and cost level drawn from its region's (or the world's) fitted
distribution, not a guess.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..countries import COUNTRIES
from ..errors import InputError
from ..files import atomic_write
from ..scenarios import shocks as shock_rules
from ..scenarios.portfolio import Portfolio
from ..vocabulary import STAGES
from .truth import (
    CAMPAIGN_DURATION, CAMPAIGN_KINDS, CAMPAIGN_TARGETS, DISPUTE_TYPES, FX_VOLATILITY, REFERENCE_SECTOR, fee_shifting,
)

MAX_DRAWS = 1000  # posterior draws carried into a simulation (evenly thinned beyond that)
REQUIRED = ("log_rate", "mu_type", "tau_region", "tau_country", "z_region", "sector_effect", "sigma_year",
            "dispersion", "stage_log_probability", "stage_logit", "tau_stage", "log_median", "kappa", "tau_cost",
            "sigma", "win_probability", "win_logit_mean", "tau_win", "campaign_log_rate", "campaign_mean_extra",
            "campaign_concentration", "campaign_log_median", "campaign_sigma", "duration_log_median",
            "duration_sigma")
UNSEEN_SEED = 20221  # fixed: draws for countries the history never saw are part of the posterior's meaning


def default_posterior_path() -> Path:
    """The posterior fitted to the synthetic default history, shipped with leisim."""
    return Path(__file__).resolve().parent.parent / "data" / "default" / "posterior.nc"


def write_tree(tree: xr.DataTree, path: str | Path) -> None:
    """Write atomically (files.atomic_write: a temporary file beside ``path``, renamed at the end)."""
    atomic_write(path, lambda staging: tree.to_netcdf(staging, engine="h5netcdf"))


def load_posterior(path: str | Path | None = None) -> xr.Dataset:
    """The ``posterior`` group of a fit file, draws stacked into one ``sample`` axis."""
    path = Path(path) if path is not None else default_posterior_path()
    if not path.is_file():
        raise InputError("posterior file not found; run `leisim fit --out PATH` or leave [model] posterior unset "
                         "to use the shipped one", file=str(path))
    try:
        posterior = xr.open_dataset(path, group="posterior", engine="h5netcdf").load()
    except (OSError, ValueError) as err:
        raise InputError(f"not a posterior written by `leisim fit` ({err})", file=str(path)) from None
    missing = [name for name in REQUIRED if name not in posterior]
    if missing:
        raise InputError(f"the posterior lacks {', '.join(missing)}; refit it with this version of `leisim fit`",
                         file=str(path))
    validate_posterior(posterior, str(path))
    return posterior.stack(sample=("chain", "draw")).transpose("sample", ...)


# Each variable's dimensions after (chain, draw), in order, and the range of its values: the same
# bounds as fixed scenarios (schema.SEVERITY_HIGH: log-sd <= 5, medians <= 1e12 CNY; rates <= 100
# per CNY million), so that a posterior cannot run what a scenario file could not.
_LOG_1E12, _LOG_100 = float(np.log(1e12)), float(np.log(100.0))
POSTERIOR_SPEC = {
    "log_rate": (("country", "dispute_type"), -np.inf, _LOG_100),
    "mu_type": (("dispute_type",), -np.inf, _LOG_100),
    "tau_region": ((), 0.0, np.inf), "tau_country": ((), 0.0, np.inf),
    "z_region": (("region", "dispute_type"), -np.inf, np.inf),
    "sector_effect": (("free_sector", "dispute_type"), -np.inf, 20.0),  # a relativity: e^20 at most
    "sigma_year": ((), 0.0, 5.0),
    "dispersion": (("dispute_type",), 0.0, 1e6),
    "stage_log_probability": (("country", "dispute_type", "stage"), -np.inf, 0.0),
    "stage_logit": (("dispute_type", "later_stage"), -np.inf, np.inf),
    "tau_stage": ((), 0.0, np.inf),
    "log_median": (("country", "dispute_type", "stage"), -np.inf, _LOG_1E12),
    "kappa": (("dispute_type", "stage"), -np.inf, _LOG_1E12),
    "tau_cost": ((), 0.0, np.inf),
    "sigma": (("stage",), 0.0, 5.0),
    "win_probability": (("country",), 0.0, 1.0),
    "win_logit_mean": ((), -np.inf, np.inf), "tau_win": ((), 0.0, np.inf),
    "campaign_log_rate": (("campaign_kind",), -np.inf, _LOG_100),
    "campaign_mean_extra": (("campaign_kind",), 0.0, 1e6),
    "campaign_concentration": (("campaign_kind",), 0.0, 1e6),
    "campaign_log_median": (("campaign_kind",), -np.inf, _LOG_1E12),
    "campaign_sigma": (("campaign_kind",), 0.0, 5.0),
    "duration_log_median": (("stage",), -np.inf, float(np.log(100.0))),
    "duration_sigma": ((), 0.0, 5.0),
}
OPEN_BELOW = {"sigma", "campaign_sigma", "duration_sigma", "dispersion", "campaign_concentration"}  # > 0


def validate_posterior(posterior: xr.Dataset, path: str) -> None:
    """Refuse a posterior whose variables have the wrong dimensions, non-finite or out-of-range values,
    or stage probabilities that do not sum to 1, naming the variable and the first bad (chain, draw)."""
    for name, (dims, low, high) in POSTERIOR_SPEC.items():
        var = posterior[name]
        if tuple(var.dims) != ("chain", "draw") + dims:
            raise InputError(f"variable {name} has dimensions {tuple(var.dims)}, expected {('chain', 'draw') + dims}; "
                             "refit it with this version of `leisim fit`", file=path, field=name)
        values = np.asarray(var.values, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < low) | (values > high) | ((values == low) & (name in OPEN_BELOW))
        if bad.any():
            where = np.argwhere(bad)[0]
            value = float(values[tuple(where)])
            rule = f"> {low:g}" if name in OPEN_BELOW else f">= {low:g}"
            rule = "finite" if not np.isfinite(value) else (rule if value <= low else f"<= {high:g}")
            raise InputError(f"variable {name} must be {rule} but is {value!r} at chain {int(where[0])}, draw "
                             f"{int(where[1])} ({int(bad.sum())} bad values in all); the file is damaged or not a leisim "
                             "fit: refit it with `leisim fit`", file=path, field=name, value=value)
    stages = np.exp(np.asarray(posterior["stage_log_probability"].values, dtype=np.float64)).sum(axis=-1)
    off = np.abs(stages - 1.0) > 1e-3
    if off.any():
        where = np.argwhere(off)[0]
        raise InputError(f"stage probabilities of stage_log_probability sum to {float(stages[tuple(where)]):.6g}, not 1, "
                         f"at chain {int(where[0])}, draw {int(where[1])}; refit it with `leisim fit`", file=path,
                         field="stage_log_probability")
    if posterior.sizes.get("stage") != len(STAGES) or posterior.sizes.get("dispute_type") != len(DISPUTE_TYPES):
        raise InputError(f"the posterior has {posterior.sizes.get('stage')} stages and {posterior.sizes.get('dispute_type')} "
                         f"dispute types; leisim's models have {len(STAGES)} and {len(DISPUTE_TYPES)}", file=path)


def _thin(posterior: xr.Dataset, max_draws: int) -> xr.Dataset:
    n = posterior.sizes["sample"]
    if n <= max_draws:
        return posterior
    return posterior.isel(sample=np.linspace(0, n - 1, max_draws).round().astype(int))


def _point(posterior: xr.Dataset) -> xr.Dataset:
    """Posterior means, as a one-draw posterior (parameters on the scale they were fitted)."""
    mean = posterior.mean("sample")
    probabilities = np.exp(posterior["stage_log_probability"]).mean("sample")
    mean["stage_log_probability"] = np.log(probabilities / probabilities.sum("stage"))
    return mean.expand_dims(sample=[0])


def _values(posterior: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(posterior[name].values, dtype=np.float64)


def _country_table(posterior: xr.Dataset, countries: list[str], fitted: list[str], rng: np.random.Generator):
    """Per draw, for each country: log rate [draw, type], stage log-probabilities [draw, type, stage],
    log medians [draw, type, stage], P(win) [draw]. Unseen countries from the pooled hyper-priors."""
    n = posterior.sizes["sample"]
    log_rate = _values(posterior, "log_rate")  # [draw, country, type]
    stage_lp = _values(posterior, "stage_log_probability")
    log_median = _values(posterior, "log_median")
    p_win = _values(posterior, "win_probability")
    regions = list(posterior["z_region"].coords["region"].values) if "region" in posterior["z_region"].coords else []
    out = {}
    for country in countries:
        if country in fitted:
            c = fitted.index(country)
            out[country] = (log_rate[:, c], stage_lp[:, c], log_median[:, c], p_win[:, c])
            continue
        region = COUNTRIES[country].region
        z_region = (_values(posterior, "z_region")[:, regions.index(region)] if region in regions
                    else rng.standard_normal((n, len(DISPUTE_TYPES))))
        rate = (_values(posterior, "mu_type") + _values(posterior, "tau_region")[:, None] * z_region
                + _values(posterior, "tau_country")[:, None] * rng.standard_normal((n, len(DISPUTE_TYPES))))
        later = (_values(posterior, "stage_logit")
                 + _values(posterior, "tau_stage")[:, None, None] * rng.standard_normal((n, 1, len(STAGES) - 1)))
        logits = np.concatenate([np.zeros(later.shape[:2] + (1,)), later], axis=2)
        lp = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
        median = _values(posterior, "kappa") + (_values(posterior, "tau_cost") * rng.standard_normal(n))[:, None, None]
        logit = _values(posterior, "win_logit_mean") + _values(posterior, "tau_win") * rng.standard_normal(n)
        out[country] = (rate, lp, median, 1.0 / (1.0 + np.exp(-logit)))
        warnings.warn(f"{country} is not in the fitted history: its rates, stages and costs are drawn from the "
                      f"pooled {region if region in regions else 'worldwide'} distribution", stacklevel=4)
    return out


def posterior_tables(scenario, portfolio: Portfolio, posterior: xr.Dataset | None = None):
    """ModelTables from posterior draws for ``portfolio`` under ``scenario``'s shocks."""
    from ..scenarios.compose import ModelTables

    model = scenario.raw.get("model", {})
    if posterior is None:
        posterior = load_posterior(model.get("posterior"))
    posterior = _point(posterior) if model.get("point_estimate", False) else _thin(posterior, MAX_DRAWS)
    n_draws = posterior.sizes["sample"]
    rng = np.random.default_rng(UNSEEN_SEED)
    shocks = scenario.shocks
    stage_shift = np.log(shock_rules.stage_multipliers(shocks, len(STAGES)))  # [stage]

    fitted = [str(c) for c in posterior["log_rate"].coords["country"].values]
    free_sectors = [str(s) for s in posterior["sector_effect"].coords["free_sector"].values]
    sector_effect = _values(posterior, "sector_effect")  # [draw, free sector, type]
    sectors = np.asarray(portfolio.sector)
    unknown = sorted({s for s in sectors if s != REFERENCE_SECTOR and s not in free_sectors})
    if unknown:
        warnings.warn(f"sectors {', '.join(unknown)} are not in the fitted history: treated as the reference "
                      f"sector ({REFERENCE_SECTOR})", stacklevel=3)
    active = [c for c in portfolio.countries if portfolio.exposure[:, portfolio.countries.index(c)].sum() > 0]
    per_country = _country_table(posterior, active, fitted, rng)

    cell_country, cell_type, cell_currency = [], [], []
    stratum_cell, stratum_policies, stratum_weights, stratum_scale = [], [], [], []
    stage_p, severity, fee, dispersion, duration = [], [], [], [], []
    duration_stage = np.stack([_values(posterior, "duration_log_median"),
                               np.repeat(_values(posterior, "duration_sigma").reshape(n_draws, 1), len(STAGES), 1)],
                              axis=-1)  # [draw, stage, 2]
    sigma = _values(posterior, "sigma")  # [draw, stage]
    delta = _values(posterior, "dispersion")  # [draw, type]
    for country in active:
        column = portfolio.exposure[:, portfolio.countries.index(country)]
        rate, lp, median, p_win = per_country[country]
        currency = COUNTRIES[country].currency
        cost_shift = np.log(shock_rules.cost_multiplier(shocks, country, currency)) + stage_shift  # [stage]
        recovered, adverse = fee_shifting(country)
        for t, dispute_type in enumerate(DISPUTE_TYPES):
            cell = len(cell_country)
            cell_country.append(country)
            cell_type.append(dispute_type)
            cell_currency.append(currency)
            stage_p.append(np.exp(lp[:, t]))
            severity.append(np.stack([median[:, t] + cost_shift, sigma, np.zeros_like(sigma)], axis=-1))
            loser_pays = recovered > 0 or adverse > 0
            fee.append(np.stack([p_win if loser_pays else np.zeros(n_draws), np.full(n_draws, recovered),
                                 np.full(n_draws, adverse)], axis=-1))
            dispersion.append(delta[:, t])
            duration.append(duration_stage)
            for sector in sorted(set(sectors[column > 0])):
                members = np.flatnonzero((column > 0) & (sectors == sector))
                beta = sector_effect[:, free_sectors.index(sector), t] if sector in free_sectors else np.zeros(n_draws)
                stratum_cell.append(cell)
                stratum_policies.append(members)
                stratum_weights.append(column[members])
                stratum_scale.append(np.exp(rate[:, t] + beta)
                                     * shock_rules.frequency_multiplier(shocks, country, dispute_type, sector))

    # Campaign cells: single-stage costs (defence of one named seller), fitted per kind.
    campaign_cell, campaign_policies, campaign_weights, campaign_rate, campaign_size = [], [], [], [], []
    n_stages = len(STAGES)
    for k, kind in enumerate(CAMPAIGN_KINDS):
        country, dispute_type, target_sectors = CAMPAIGN_TARGETS[kind]
        if country not in active:
            continue
        column = portfolio.exposure[:, portfolio.countries.index(country)]
        weights = column * (np.isin(sectors, target_sectors) if target_sectors is not None else 1.0)
        members = np.flatnonzero(weights > 0)
        if members.size == 0:
            continue
        cell = len(cell_country)
        cell_country.append(country)
        cell_type.append(dispute_type)
        cell_currency.append(COUNTRIES[country].currency)
        only_first = np.zeros((n_draws, n_stages))
        only_first[:, 0] = 1.0
        stage_p.append(only_first)
        cost_shift = np.log(shock_rules.cost_multiplier(shocks, country, COUNTRIES[country].currency)) + stage_shift[0]
        mu = _values(posterior, "campaign_log_median")[:, k] + cost_shift
        s = _values(posterior, "campaign_sigma")[:, k]
        severity.append(np.stack([np.repeat(mu[:, None], n_stages, 1), np.repeat(s[:, None], n_stages, 1),
                                  np.zeros((n_draws, n_stages))], axis=-1))
        fee.append(np.zeros((n_draws, 3)))
        dispersion.append(np.zeros(n_draws))
        median_years, log_sd = CAMPAIGN_DURATION[kind]
        duration.append(np.broadcast_to([np.log(median_years), log_sd], (n_draws, n_stages, 2)))
        campaign_cell.append(cell)
        campaign_policies.append(members)
        campaign_weights.append(weights[members])
        rate_shock, size_shock = shock_rules.campaign_multipliers(shocks, kind)
        # A campaign is a (country, type) event: the country and type frequency shocks move it too.
        campaign_rate.append(np.exp(_values(posterior, "campaign_log_rate")[:, k]) * weights.sum() * rate_shock
                             * shock_rules.frequency_multiplier({k2: v for k2, v in shocks.items()
                                                                 if k2 in ("frequency", "frequency_by_type", "frequency_by_country_and_type")},
                                                                country, dispute_type, ""))
        campaign_size.append(np.stack([_values(posterior, "campaign_mean_extra")[:, k] * size_shock,
                                       _values(posterior, "campaign_concentration")[:, k]], axis=-1))

    fx_sigma = dict(FX_VOLATILITY) | {str(k): float(v) for k, v in scenario.raw.get("fx", {}).get("volatility", {}).items()}
    n_cells = len(cell_country)
    return ModelTables(
        cell_country=tuple(cell_country), cell_dispute_type=tuple(cell_type),
        cell_family=np.zeros(n_cells, int), cell_currency=tuple(cell_currency),
        stratum_cell=np.asarray(stratum_cell), stratum_policies=tuple(stratum_policies),
        stratum_weights=tuple(stratum_weights), stratum_scale=np.stack(stratum_scale, axis=1),
        cell_concentration=np.zeros((n_draws, n_cells)),
        cell_stage_probability=np.stack(stage_p, axis=1),
        cell_severity=np.stack(severity, axis=1),
        cell_fee=np.stack(fee, axis=1),
        year_sigma=_values(posterior, "sigma_year").reshape(n_draws) * float(shocks.get("year_factor", 1.0)),
        fx_sigma=fx_sigma,
        cell_dispersion=np.stack(dispersion, axis=1),
        cell_duration=np.stack(duration, axis=1),
        campaign_cell=np.asarray(campaign_cell, int),
        campaign_policies=tuple(campaign_policies), campaign_weights=tuple(campaign_weights),
        campaign_rate=np.stack(campaign_rate, axis=1) if campaign_rate else np.zeros((n_draws, 0)),
        campaign_size=np.stack(campaign_size, axis=1) if campaign_size else np.zeros((n_draws, 0, 2)),
    )
