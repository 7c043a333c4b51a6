"""Fit the frequency and severity models with NUTS; the posterior as an ArviZ-style tree.

The two models share no parameter and their likelihoods factorise (counts and costs are
separate data), so their joint posterior is the product of the two: they are sampled
separately and draw ``i`` of one is paired with draw ``i`` of the other.

Besides the draws, a fit keeps what ArviZ's model checks read: the pointwise log-likelihood of
every observation (``arviz.loo``), replicated observations under the posterior and the prior
(``arviz.plot_ppc``) and the samplers' energies (``arviz.bfmi``, ``arviz.plot_energy``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import sys
from pathlib import Path

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr
from numpyro.handlers import substitute, trace
from numpyro.infer import MCMC, NUTS, Predictive, log_likelihood

from ..vocabulary import STAGES
from . import diagnostics
from .frequency import FrequencyData, frequency_model, poisson_frequency_model
from .history import History
from .settings import FitSettings
from .severity import SeverityData, replicate, severity_model
from .truth import CAMPAIGN_KINDS, DISPUTE_TYPES, REFERENCE_SECTOR


@dataclasses.dataclass(frozen=True)
class FitResult:
    posterior: dict[str, np.ndarray]  # name -> [chain, draw, ...]
    sample_stats: dict[str, np.ndarray]  # name -> [chain, draw]
    summary: list[dict]  # one row per scalar parameter
    warnings: list[str]
    divergences: int
    settings: FitSettings
    # name -> [chain, draw, observation...], named as in observed_data (FREQUENCY_OBSERVED, SEVERITY_OBSERVED)
    log_likelihood: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    posterior_predictive: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    prior_predictive: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # chain 1


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
    """NUTS on ``model(data)``; returns samples and extra fields grouped by chain.

    ``progress`` shows NumPyro's progress bars only where stderr is a terminal: in a log file their
    escape codes are noise.
    """
    mcmc = _sampler(model, settings, progress and sys.stderr.isatty())
    mcmc.run(key, data, extra_fields=("diverging", "num_steps", "accept_prob", "potential_energy", "energy"))
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
    """Sample both models' posteriors, diagnose them, and add the pointwise log-likelihood and the
    posterior and prior predictive replicates (:func:`model_checks`)."""
    key_frequency, key_severity = jax.random.split(jax.random.key(settings.seed))
    frequency_data = frequency_data or FrequencyData.from_history(history)
    severity_data = severity_data or SeverityData.from_history(history)
    model = poisson_frequency_model if settings.frequency_family == "poisson" else frequency_model
    freq, freq_extra = run_nuts(model, frequency_data, key=key_frequency, settings=settings,
                                progress=progress)
    sev, sev_extra = run_nuts(severity_model, severity_data, key=key_severity, settings=settings, progress=progress)
    posterior = freq | sev
    divergences = int(freq_extra["diverging"].sum() + sev_extra["diverging"].sum())
    summary = diagnostics.summarize({k: posterior[k] for k in REPORTED if k in posterior})
    # Sampled non-centred coordinates are diagnosed too: a stuck z is a stuck chain.
    summary += diagnostics.summarize({k: v for k, v in posterior.items() if k.startswith("z_")})
    warns = diagnostics.problems(summary, divergences=divergences, chains=settings.chains)
    checks = model_checks(posterior, frequency_data, severity_data, seed=settings.seed, frequency=model)
    return FitResult(posterior=posterior, sample_stats=sampler_stats(freq_extra, sev_extra), summary=summary,
                     warnings=warns, divergences=divergences, settings=settings, **checks)


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    """NUTS tree depth from the leapfrog steps, as ArviZ's NumPyro converter computes it."""
    return np.log2(num_steps).astype(int) + 1


def sampler_stats(freq_extra: dict, sev_extra: dict) -> dict[str, np.ndarray]:
    """sample_stats [chain, draw] under ArviZ's names, for the joint draw and per model.

    The joint draw pairs one draw of each sampler, so its Hamiltonian is the sum of the two
    (``energy``: BFMI and ``plot_energy`` read it), its log density ``lp`` the sum, its leapfrog
    steps ``n_steps`` the sum; ``tree_depth`` is the deeper of the two trees, ``acceptance_rate``
    the mean of the two samplers', ``diverging`` either's.
    """
    stats = {
        "diverging": freq_extra["diverging"] | sev_extra["diverging"],
        "frequency_diverging": freq_extra["diverging"], "severity_diverging": sev_extra["diverging"],
        "lp": -(freq_extra["potential_energy"] + sev_extra["potential_energy"]),
        "frequency_n_steps": freq_extra["num_steps"], "severity_n_steps": sev_extra["num_steps"],
        "frequency_acceptance_rate": freq_extra["accept_prob"], "severity_acceptance_rate": sev_extra["accept_prob"],
    }
    stats |= {
        "energy": freq_extra["energy"] + sev_extra["energy"],
        "frequency_energy": freq_extra["energy"], "severity_energy": sev_extra["energy"],
        "n_steps": freq_extra["num_steps"] + sev_extra["num_steps"],
        "tree_depth": np.maximum(_tree_depth(freq_extra["num_steps"]), _tree_depth(sev_extra["num_steps"])),
        "frequency_tree_depth": _tree_depth(freq_extra["num_steps"]),
        "severity_tree_depth": _tree_depth(sev_extra["num_steps"]),
        "acceptance_rate": (freq_extra["accept_prob"] + sev_extra["accept_prob"]) / 2,
    }
    return stats


# The models' observed sites under the names of their data in observed_data (the severity model's
# factors are named for their terms, and "disputes" is the frequency model's count already).
FREQUENCY_OBSERVED = {"disputes": "disputes", "campaigns": "campaigns", "campaign_extra": "campaign_extra"}
SEVERITY_OBSERVED = {"disputes": "cost_cny", "durations": "duration_years", "outcomes": "won",
                     "campaign_disputes": "campaign_cost_cny"}
PRIOR_DRAWS = 200  # prior predictive draws: enough for a predictive band, small on disk


def _decided_only(values: dict, data: SeverityData) -> dict:
    """``won`` on the decided disputes alone (elsewhere it is no observation)."""
    return values | ({"won": values["won"][..., np.asarray(data.decided)]} if "won" in values else {})


def _named(values: dict, names: dict[str, str]) -> dict:
    return {names[site]: value for site, value in values.items() if site in names}


def _law_parameters(law: dist.Distribution) -> dict:
    """A count law's parameters: (concentration, rate) of a gamma-Poisson (NB2), or rate of a Poisson."""
    while isinstance(law, (dist.MaskedDistribution, dist.Independent)):
        law = law.base_dist
    if isinstance(law, dist.GammaPoisson):
        return {"concentration": law.concentration, "rate": law.rate}
    return {"rate": law.rate}


def _frequency_laws(draws: dict, data: FrequencyData, model) -> dict:
    """The frequency model's observation laws' parameters per draw [chain, draw, ...], read off its
    trace with the draw's values."""
    def laws(draw: dict) -> dict:
        sites = trace(substitute(model, draw)).get_trace(data, pointwise=True)
        return {name: _law_parameters(site["fn"]) for name, site in sites.items()
                if site["type"] == "sample" and site["is_observed"] and name in FREQUENCY_OBSERVED}

    return _named(jax.vmap(jax.vmap(laws))(draws), FREQUENCY_OBSERVED)


@functools.partial(jax.jit, static_argnames=("frequency",))
def _pointwise(posterior: dict, frequency_data: FrequencyData, severity_data: SeverityData,
               frequency) -> tuple[dict, dict]:
    """Per draw [chain, draw, ...]: each observation's log-likelihood, named as in observed_data
    (``won`` for every dispute), and the frequency model's observation laws.

    The models share no site name, so each reads its own sites of the whole posterior; the stored
    deterministic sites (log_rate, log_median, ...) are used, as the simulator uses them.
    """
    loglik = _named(log_likelihood(frequency, posterior, frequency_data, pointwise=True, batch_ndims=2,
                                   parallel=True), FREQUENCY_OBSERVED)
    loglik |= _named(log_likelihood(severity_model, posterior, severity_data, pointwise=True, batch_ndims=2,
                                    parallel=True), SEVERITY_OBSERVED)
    return loglik, _frequency_laws(posterior, frequency_data, frequency)


@functools.partial(jax.jit, static_argnames=("draws", "frequency"))
def _prior(key: jax.Array, frequency_data: FrequencyData, severity_data: SeverityData, draws: int,
           frequency) -> tuple[dict, dict]:
    """``draws`` draws [1, draw, ...] of both models' parameters from their priors, and the frequency
    model's observation laws under them."""
    key_frequency, key_severity = jax.random.split(key)
    values = (Predictive(frequency, num_samples=draws)(key_frequency, frequency_data)
              | Predictive(severity_model, num_samples=draws)(key_severity, severity_data))
    observed = set(FREQUENCY_OBSERVED) | set(SEVERITY_OBSERVED)
    values = {k: v[None] for k, v in values.items() if k not in observed}
    return values, _frequency_laws(values, frequency_data, frequency)


MAX_POISSON_MEAN = 1e15  # NumPy's Poisson sampler refuses means near 2**63; only far prior tails reach this


def _sample_counts(rng: np.random.Generator, law: dict[str, np.ndarray]) -> np.ndarray:
    """Counts from a gamma-Poisson or Poisson law's parameters (NumPy: JAX's samplers take ~20 s to
    compile here, for draws that need no accelerator)."""
    rate = np.asarray(law["rate"], np.float64)
    if "concentration" in law:
        rate = rng.gamma(np.asarray(law["concentration"], np.float64), 1.0 / rate)
    return rng.poisson(np.minimum(rate, MAX_POISSON_MEAN))


def _replicates(rng: np.random.Generator, laws: dict, draws: dict, severity_data: SeverityData) -> dict[str, np.ndarray]:
    """Replicated observations [chain, draw, ...] from the frequency model's laws and the severity
    model's parameter draws."""
    batch = np.shape(draws["sigma"])[:2]
    out = {name: _sample_counts(rng, law) for name, law in laws.items()}
    flat = {k: np.reshape(v, (-1,) + np.shape(v)[2:]) for k, v in draws.items()
            if k in ("log_median", "sigma", "win_probability", "campaign_log_median", "campaign_sigma")}
    out |= {k: v.reshape(batch + v.shape[1:]) for k, v in replicate(rng, flat, severity_data).items()}
    return _decided_only(out, severity_data)


def _as_stored(values: dict, *, exact: bool = False) -> dict[str, np.ndarray]:
    """Host arrays: floats at float32 precision (replicated costs need no more), in a float64
    container where ``exact`` (log-likelihoods: ArviZ's PSIS computes in the stored dtype, and in
    float32 returns NaN for observations the parameters barely move; the zeroed low bytes compress
    away), counts as they are."""
    out = {}
    for name, value in values.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32).astype(np.float64 if exact else np.float32)
        out[name] = value
    return out


def model_checks(posterior: dict[str, np.ndarray], frequency_data: FrequencyData, severity_data: SeverityData, *,
                 seed: int, prior_draws: int = PRIOR_DRAWS, frequency=frequency_model) -> dict[str, dict[str, np.ndarray]]:
    """The groups ArviZ's model checks read, from posterior draws [chain, draw, ...]:

    ``log_likelihood`` (:func:`numpyro.infer.log_likelihood` of each model's observed sites, one
    value per observation), ``posterior_predictive`` (replicated observations, one per draw) and
    ``prior_predictive`` (the same from ``prior_draws`` draws of :class:`numpyro.infer.Predictive`
    with the prior, chain 1), each named as in observed_data (FREQUENCY_OBSERVED,
    SEVERITY_OBSERVED). ``frequency``: the frequency model fitted. Deterministic for a seed; works
    as well on the draws read back from a posterior file.
    """
    posterior = {k: np.asarray(v, np.float64) for k, v in posterior.items()}
    loglik, laws = _pointwise(posterior, frequency_data, severity_data, frequency=frequency)
    prior, prior_laws = _prior(jax.random.fold_in(jax.random.key(seed), 1), frequency_data, severity_data,
                               draws=prior_draws, frequency=frequency)
    # Streams of their own from the seed: the samplers' keys stay as they were, and so their draws.
    replicated = _replicates(np.random.default_rng([seed, 1]), laws, posterior, severity_data)
    prior_replicated = _replicates(np.random.default_rng([seed, 2]), prior_laws, prior, severity_data)
    return {"log_likelihood": _as_stored(_decided_only(loglik, severity_data), exact=True),
            "posterior_predictive": _as_stored(replicated), "prior_predictive": _as_stored(prior_replicated)}


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


# Observation dims (after chain, draw) of the log_likelihood, posterior_predictive and
# prior_predictive variables: those of the same names in observed_data.
OBSERVED_DIMS = {"disputes": ("group",), "campaigns": ("history_year", "campaign_kind"), "campaign_extra": ("campaign",),
                 "cost_cny": ("dispute",), "duration_years": ("dispute",), "won": ("decided_dispute",),
                 "campaign_cost_cny": ("campaign_dispute",)}
COMPRESSED = {"zlib": True, "complevel": 4, "shuffle": True}  # the draws of observations are most of the file


def _source_name(source: str) -> str:
    """A history's source without the machine's folders: relative to the working folder when inside
    it, else its own name (``<memory>`` and the like as they are)."""
    if source.startswith("<"):
        return source
    path = Path(source).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def history_sha256(history: History) -> str:
    """SHA-256 of the history as fitted: its arrays and labels in field order (not its files, which
    an in-memory history lacks)."""
    digest = hashlib.sha256()
    for field in dataclasses.fields(History):
        if field.name != "source":
            digest.update(field.name.encode())
            value = getattr(history, field.name)
            digest.update(np.ascontiguousarray(value).tobytes() if isinstance(value, np.ndarray)
                          else json.dumps(value).encode())
    return digest.hexdigest()


def _draws_dataset(values: dict[str, np.ndarray], coords: dict) -> xr.Dataset:
    """Draws of observations [chain, draw, ...] as a compressed dataset with observed_data's dims."""
    first = next(iter(values.values()))
    ds = xr.Dataset({k: (("chain", "draw") + OBSERVED_DIMS[k], v) for k, v in values.items()},
                    coords={"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1])})
    ds = ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})
    for var in ds.data_vars.values():
        var.encoding.update(COMPRESSED)
    return ds


def _coords(history: History, frequency_data: FrequencyData) -> dict[str, list]:
    return {
        "dispute_type": list(DISPUTE_TYPES), "country": list(history.countries), "region": list(frequency_data.regions),
        "free_sector": list(frequency_data.free_sectors) or ["none"], "history_year": list(history.years),
        "campaign_kind": list(CAMPAIGN_KINDS), "stage": list(STAGES), "later_stage": list(STAGES[1:]),
    }


def _observed_data(history: History, frequency_data: FrequencyData, severity_data: SeverityData) -> xr.Dataset:
    sector_names = np.asarray(list(frequency_data.free_sectors) + [REFERENCE_SECTOR])
    return xr.Dataset({
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
        # the other observations the likelihoods read (log_likelihood holds one value per row of each)
        "dispute_country": ("dispute", np.asarray(history.countries)[history.dispute_country]),
        "dispute_dispute_type": ("dispute", np.asarray(DISPUTE_TYPES)[history.dispute_type]),
        "closed": ("dispute", history.dispute_closed), "duration_years": ("dispute", history.dispute_duration),
        "won": ("decided_dispute", history.dispute_decided_won[np.asarray(severity_data.decided)]),
        "campaign_extra": ("campaign", history.campaign_hits - 1),
        "campaign_cost_cny": ("campaign_dispute", history.campaign_dispute_cost),
    }, coords={"history_year": list(history.years), "campaign_kind": list(CAMPAIGN_KINDS)})


def _history_attrs(history: History) -> dict[str, str]:
    # Not "history", which CF reserves for the file's processing log; never a machine path.
    return {"leisim_history": _source_name(history.source), "leisim_history_sha256": history_sha256(history)}


def _check_groups(checks: dict[str, dict[str, np.ndarray]], coords: dict) -> dict[str, xr.Dataset]:
    return {f"/{name}": _draws_dataset(values, coords) for name, values in checks.items() if values}


def to_datatree(result: FitResult, history: History, *, provenance: dict) -> xr.DataTree:
    """ArviZ-compatible groups: posterior, sample_stats, observed_data, log_likelihood,
    posterior_predictive, prior_predictive (plus diagnostics)."""
    frequency_data = FrequencyData.from_history(history)
    severity_data = SeverityData.from_history(history)
    coords = _coords(history, frequency_data)
    variables = {}
    for name, value in result.posterior.items():
        dims = ("chain", "draw") + DIMS.get(name, tuple(f"{name}_dim_{i}" for i in range(value.ndim - 2)))
        variables[name] = (dims, value.astype(np.float32) if value.dtype == np.float64 else value)
    n_chains, n_draws = next(iter(result.posterior.values())).shape[:2]
    chain_draw = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    posterior = xr.Dataset(variables, coords={k: v for k, v in coords.items()} | chain_draw)
    posterior = posterior.drop_vars([c for c in posterior.coords if c not in posterior.dims])
    sample_stats = xr.Dataset({k: (("chain", "draw"), v) for k, v in result.sample_stats.items()}, coords=chain_draw)
    table = xr.Dataset({key: ("parameter", [row[key] for row in result.summary])
                        for key in ("mean", "sd", "q05", "q95", "r_hat", "ess_bulk", "ess_tail")},
                       coords={"parameter": [row["name"] for row in result.summary]})
    attrs = dict(provenance) | {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": json.dumps(dataclasses.asdict(result.settings)),
        "divergences": result.divergences,
        "warnings": json.dumps(result.warnings),
        **_history_attrs(history),
        "inference_library": "numpyro",
        "inference_library_version": numpyro.__version__,
    }
    posterior.attrs.update(attrs)
    checks = {name: getattr(result, name) for name in ("log_likelihood", "posterior_predictive", "prior_predictive")}
    groups = {"/posterior": posterior, "/sample_stats": sample_stats,
              "/observed_data": _observed_data(history, frequency_data, severity_data)}
    return xr.DataTree.from_dict(groups | _check_groups(checks, coords) | {"/diagnostics": table})


def complete(tree: xr.DataTree, history: History, *, version: str) -> xr.DataTree:
    """A posterior tree written before fits kept the model-check groups, completed from its own draws.

    Adds log_likelihood, posterior_predictive and prior_predictive (:func:`model_checks` on the
    stored draws, with the fit's seed), observed_data's newer variables, the sample_stats that the
    stored ones determine (n_steps, tree_depth, acceptance_rate; not energy: the samplers' momenta
    were not kept), and replaces a ``history`` attribute by ``leisim_history`` and
    ``leisim_history_sha256``. Groups, variables and draws already there are kept as they are:
    what a simulation reads of the file does not change. ``history`` must be the one fitted
    (its observations are checked against observed_data's); ``version``: leisim's, recorded.
    """
    tree = tree.load()
    frequency_data, severity_data = FrequencyData.from_history(history), SeverityData.from_history(history)
    observed = _observed_data(history, frequency_data, severity_data)
    old = tree["observed_data"].to_dataset()
    for name in old.data_vars:
        same = np.array_equal if old[name].dtype.kind != "f" else functools.partial(np.allclose, rtol=1e-12, atol=0)
        if name in observed and not same(old[name].values, observed[name].values):  # exposure: exp(log) to an ulp
            raise ValueError(f"observed_data variable {name} differs from the history {history.source}: complete "
                             "a posterior with the history it was fitted to")
    posterior = tree["posterior"].to_dataset()
    settings = json.loads(posterior.attrs.get("settings", "{}"))
    seed = int(settings.get("seed", 0))
    model = poisson_frequency_model if settings.get("frequency_family") == "poisson" else frequency_model
    checks = model_checks({k: v.values for k, v in posterior.data_vars.items()}, frequency_data, severity_data,
                          seed=seed, frequency=model)
    stats = tree["sample_stats"].to_dataset()
    freq_steps, sev_steps = stats["frequency_n_steps"].values, stats["severity_n_steps"].values
    derived = {"n_steps": freq_steps + sev_steps,
               "tree_depth": np.maximum(_tree_depth(freq_steps), _tree_depth(sev_steps)),
               "frequency_tree_depth": _tree_depth(freq_steps), "severity_tree_depth": _tree_depth(sev_steps),
               "acceptance_rate": (stats["frequency_acceptance_rate"].values
                                   + stats["severity_acceptance_rate"].values) / 2}
    stats = stats.assign({k: (("chain", "draw"), v) for k, v in derived.items() if k not in stats})
    attrs = {k: v for k, v in posterior.attrs.items() if k != "history"} | _history_attrs(history) | {
        "leisim_completed": f"log_likelihood, posterior_predictive and prior_predictive computed from the stored "
                            f"draws by leisim {version} (models.fit.complete, seed {seed}); sample_stats has no "
                            "energy: the samplers' momenta were not kept"}
    posterior.attrs = attrs
    groups = {f"/{name}": tree[name].to_dataset() for name in tree.children}
    groups |= {"/posterior": posterior, "/sample_stats": stats, "/observed_data": old.merge(observed[
        [name for name in observed.data_vars if name not in old]])}
    groups |= _check_groups(checks, _coords(history, frequency_data))
    order = ["/posterior", "/sample_stats", "/observed_data", "/log_likelihood", "/posterior_predictive",
             "/prior_predictive"]
    return xr.DataTree.from_dict({k: groups[k] for k in order if k in groups}
                                 | {k: v for k, v in groups.items() if k not in order})
