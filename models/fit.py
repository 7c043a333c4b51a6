"""Fit the frequency and severity models with NUTS; the posterior as an ArviZ-style tree.

The two models share no parameter and their likelihoods factorise (counts and costs are
separate data), so their joint posterior is the product of the two: they are sampled
separately and draw ``i`` of one is paired with draw ``i`` of the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json

import jax
import numpy as np
import xarray as xr
from numpyro.infer import MCMC, NUTS

from ..vocabulary import STAGES
from . import diagnostics
from .frequency import FrequencyData, frequency_model
from .history import History
from .settings import FitSettings
from .severity import SeverityData, severity_model
from .truth import CAMPAIGN_KINDS, DISPUTE_TYPES, REFERENCE_SECTOR


@dataclasses.dataclass(frozen=True)
class FitResult:
    posterior: dict[str, np.ndarray]  # name -> [chain, draw, ...]
    sample_stats: dict[str, np.ndarray]  # name -> [chain, draw]
    summary: list[dict]  # one row per scalar parameter
    warnings: list[str]
    divergences: int
    settings: FitSettings


@functools.lru_cache(maxsize=16)
def _sampler(model, settings: FitSettings, progress: bool) -> MCMC:
    """One MCMC object per (model, settings): with the data as a traced argument, a second data set
    of the same shapes reuses its compiled sampler (the recovery tests fit 20 histories)."""
    parallel = jax.local_device_count() >= settings.chains > 1
    kernel = NUTS(model, target_accept_prob=settings.target_accept, max_tree_depth=settings.max_tree_depth)
    return MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.samples, num_chains=settings.chains,
                chain_method="parallel" if parallel else "sequential", progress_bar=progress,
                jit_model_args=True)


def run_nuts(model, data, *, key: jax.Array, settings: FitSettings, progress: bool = False) -> tuple[dict, dict]:
    """NUTS on ``model(data)``; returns samples and extra fields grouped by chain."""
    mcmc = _sampler(model, settings, progress)
    mcmc.run(key, data, extra_fields=("diverging", "num_steps", "accept_prob", "potential_energy"))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return samples, extra


def run_nuts_many(model, datasets: list, *, key: jax.Array, settings: FitSettings) -> dict:
    """Independent one-chain NUTS fits of ``model`` to several data sets, vectorised with ``vmap``.

    Each data set gets its own initialisation, step-size and mass-matrix adaptation and chain,
    exactly as separate :func:`run_nuts` calls would (numpyro's functional ``hmc`` API), but the
    leapfrog steps of all fits run as one batched computation: on a CPU, 20 small fits cost a few
    single fits (used by the parameter-recovery tests). The data sets must share their shapes
    (pad them). Returns constrained samples and deterministic sites ``[dataset, draw, ...]`` and
    ``num_steps``/``diverging`` ``[dataset, draw]``.
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    keys = jax.random.split(key, len(datasets))
    infos = [initialize_model(k, model, model_args=(d,), dynamic_args=True) for k, d in zip(keys, datasets)]
    stacked = jax.tree_util.tree_map(lambda *x: jax.numpy.stack([jax.numpy.asarray(v) for v in x]), *datasets)
    init = jax.tree_util.tree_map(lambda *z: jax.numpy.stack(z), *[info.param_info.z for info in infos])
    init_kernel, sample_kernel = hmc(potential_fn_gen=infos[0].potential_fn, algo="NUTS")
    postprocess = infos[0].postprocess_fn
    total = settings.warmup + settings.samples

    def one(z0, data, rng):
        state = init_kernel(z0, num_warmup=settings.warmup, target_accept_prob=settings.target_accept,
                            max_tree_depth=settings.max_tree_depth, model_args=(data,), rng_key=rng)

        def step(state, _):
            state = sample_kernel(state, model_args=(data,))
            return state, (state.z, state.num_steps, state.diverging)

        _, (z, num_steps, diverging) = jax.lax.scan(step, state, None, length=total)
        z = jax.tree_util.tree_map(lambda x: x[settings.warmup:], z)
        constrained = jax.vmap(postprocess(data))(z)
        return constrained, num_steps[settings.warmup:], diverging[settings.warmup:]

    rngs = jax.random.split(keys[0], len(datasets))
    # Spread the fits over as many local devices (one per core on a CPU) as divide them evenly.
    devices = jax.local_devices()
    devices = devices[:max(d for d in range(1, len(devices) + 1) if len(datasets) % d == 0)]
    if len(devices) > 1:
        from jax.sharding import Mesh, PartitionSpec

        mapped = jax.shard_map(jax.vmap(one), mesh=Mesh(np.array(devices), ("fit",)), in_specs=PartitionSpec("fit"),
                               out_specs=PartitionSpec("fit"), check_vma=False)
        samples, num_steps, diverging = jax.jit(mapped)(init, stacked, rngs)
    else:
        samples, num_steps, diverging = jax.jit(jax.vmap(one))(init, stacked, rngs)
    out = {k: np.asarray(v) for k, v in samples.items()}
    out["num_steps"], out["diverging"] = np.asarray(num_steps), np.asarray(diverging)
    return out


# Parameters the diagnostics report on: the sampled ones (non-centred z's included) and the
# derived quantities the simulator uses.
REPORTED = ("mu_type", "tau_region", "tau_country", "log_rate", "sector_effect", "sigma_year", "dispersion",
            "campaign_log_rate", "campaign_mean_extra", "campaign_concentration", "stage_logit", "tau_stage",
            "kappa", "tau_cost", "cost_level", "sigma", "log_median", "duration_log_median", "duration_sigma",
            "win_logit_mean", "tau_win", "win_probability", "campaign_log_median", "campaign_sigma")


def fit(history: History, settings: FitSettings = FitSettings(), *, progress: bool = False,  # noqa: B008 (frozen)
        frequency_data: FrequencyData | None = None, severity_data: SeverityData | None = None) -> FitResult:
    """Sample both models' posteriors and diagnose them."""
    key_frequency, key_severity = jax.random.split(jax.random.key(settings.seed))
    frequency_data = frequency_data or FrequencyData.from_history(history)
    severity_data = severity_data or SeverityData.from_history(history)
    freq, freq_extra = run_nuts(frequency_model, frequency_data, key=key_frequency, settings=settings,
                                progress=progress)
    sev, sev_extra = run_nuts(severity_model, severity_data, key=key_severity, settings=settings, progress=progress)
    posterior = freq | sev
    stats = {
        "diverging": freq_extra["diverging"] | sev_extra["diverging"],
        "frequency_diverging": freq_extra["diverging"], "severity_diverging": sev_extra["diverging"],
        "lp": -(freq_extra["potential_energy"] + sev_extra["potential_energy"]),
        "frequency_n_steps": freq_extra["num_steps"], "severity_n_steps": sev_extra["num_steps"],
        "frequency_acceptance_rate": freq_extra["accept_prob"], "severity_acceptance_rate": sev_extra["accept_prob"],
    }
    divergences = int(freq_extra["diverging"].sum() + sev_extra["diverging"].sum())
    summary = diagnostics.summarize({k: posterior[k] for k in REPORTED if k in posterior})
    # Sampled non-centred coordinates are diagnosed too: a stuck z is a stuck chain.
    summary += diagnostics.summarize({k: v for k, v in posterior.items() if k.startswith("z_")})
    warns = diagnostics.problems(summary, divergences=divergences, chains=settings.chains)
    return FitResult(posterior=posterior, sample_stats=stats, summary=summary, warnings=warns,
                     divergences=divergences, settings=settings)


DIMS = {
    "mu_type": ("dispute_type",), "z_region": ("region", "dispute_type"), "z_country": ("country", "dispute_type"),
    "log_rate": ("country", "dispute_type"), "sector_effect": ("free_sector", "dispute_type"),
    "z_year": ("history_year",), "year_effect": ("history_year",), "dispersion": ("dispute_type",),
    "campaign_log_rate": ("campaign_kind",), "campaign_mean_extra": ("campaign_kind",),
    "campaign_concentration": ("campaign_kind",), "stage_logit": ("dispute_type", "later_stage"),
    "z_stage": ("country", "later_stage"), "stage_log_probability": ("country", "dispute_type", "stage"),
    "kappa": ("dispute_type", "stage"), "cost_level": ("country",), "log_median": ("country", "dispute_type", "stage"),
    "sigma": ("stage",), "duration_log_median": ("stage",), "z_win": ("country",), "win_probability": ("country",),
    "campaign_log_median": ("campaign_kind",), "campaign_sigma": ("campaign_kind",),
}


def to_datatree(result: FitResult, history: History, *, provenance: dict) -> xr.DataTree:
    """ArviZ-compatible groups: posterior, sample_stats, observed_data (plus diagnostics)."""
    frequency_data = FrequencyData.from_history(history)
    coords = {
        "dispute_type": list(DISPUTE_TYPES), "country": list(history.countries), "region": list(frequency_data.regions),
        "free_sector": list(frequency_data.free_sectors) or ["none"], "history_year": list(history.years),
        "campaign_kind": list(CAMPAIGN_KINDS), "stage": list(STAGES), "later_stage": list(STAGES[1:]),
    }
    variables = {}
    for name, value in result.posterior.items():
        dims = ("chain", "draw") + DIMS.get(name, tuple(f"{name}_dim_{i}" for i in range(value.ndim - 2)))
        variables[name] = (dims, value.astype(np.float32) if value.dtype == np.float64 else value)
    n_chains, n_draws = next(iter(result.posterior.values())).shape[:2]
    chain_draw = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    posterior = xr.Dataset(variables, coords={k: v for k, v in coords.items()} | chain_draw)
    posterior = posterior.drop_vars([c for c in posterior.coords if c not in posterior.dims])
    sample_stats = xr.Dataset({k: (("chain", "draw"), v) for k, v in result.sample_stats.items()}, coords=chain_draw)
    sector_names = np.asarray(list(frequency_data.free_sectors) + [REFERENCE_SECTOR])
    observed = xr.Dataset({
        # the frequency model's data: policies grouped by (country, type, sector, year), exact under NB1
        "disputes": ("group", frequency_data.count), "exposure": ("group", np.exp(frequency_data.log_exposure)),
        "group_year": ("group", np.asarray(history.years)[frequency_data.year]),
        "group_country": ("group", np.asarray(history.countries)[frequency_data.country]),
        "group_dispute_type": ("group", np.asarray(DISPUTE_TYPES)[frequency_data.dispute_type]),
        "group_sector": ("group", sector_names[np.where(frequency_data.sector < 0, len(sector_names) - 1,
                                                        frequency_data.sector)]),
        "cost_cny": ("dispute", history.dispute_cost), "stage": ("dispute", np.asarray(STAGES)[history.dispute_stage]),
        "censored": ("dispute", history.dispute_censored), "deductible_cny": ("dispute", history.dispute_deductible),
        "campaigns": (("history_year", "campaign_kind"), history.campaign_count),
    }, coords={"history_year": list(history.years), "campaign_kind": list(CAMPAIGN_KINDS)})
    table = xr.Dataset({key: ("parameter", [row[key] for row in result.summary])
                        for key in ("mean", "sd", "q05", "q95", "r_hat", "ess_bulk", "ess_tail")},
                       coords={"parameter": [row["name"] for row in result.summary]})
    attrs = dict(provenance) | {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": json.dumps(dataclasses.asdict(result.settings)),
        "divergences": result.divergences,
        "warnings": json.dumps(result.warnings),
        "history": history.source,
        "inference_library": "numpyro",
    }
    posterior.attrs.update(attrs)
    return xr.DataTree.from_dict({"/posterior": posterior, "/sample_stats": sample_stats,
                                  "/observed_data": observed, "/diagnostics": table})
