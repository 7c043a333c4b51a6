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
from ..vocabulary import STAGES
from .truth import (
    DISPUTE_TYPES,
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
