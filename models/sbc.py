"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018) of the frequency model.

If the sampler and the model's code are right, then for parameters drawn from the prior, data simulated
from them, and a posterior fitted to those data, the rank of the true value among L posterior draws is
uniform on {0, ..., L}. Each replicate: one prior draw theta (numpyro Predictive on the history's own
design: exposures, sectors, years, campaign targets), the counts it simulates (disputes, campaigns,
campaign sizes), a NUTS fit to them (``fit.run_nuts_many``: all replicates vectorised, each with its own
adaptation), the rank of theta among the fit's draws thinned to L (thinning lowers the autocorrelation
that would otherwise make the ranks over-dispersed). Per scalar parameter: the rank histogram in B bins and
a chi-square test of uniformity; a calibrated model fails a parameter's test with probability ``FLOOR``.

The severity model's likelihood is a sum of truncated, censored mixture factors (no sampled observation
sites), so its data cannot be drawn by Predictive: its calibration is checked by parameter recovery
(tests/models/test_recovery.py), not here.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from numpyro.infer import Predictive
from scipy import stats

from .fit import run_nuts_many
from .frequency import FrequencyData, frequency_model
from .settings import FitSettings

FLOOR = 0.001  # p-value below which a parameter's rank histogram fails uniformity
# Scalar parameters ranked: the hyperparameters and one element of each vector (the first dispute type).
PARAMETERS = ("mu_type[0]", "mu_type[1]", "tau_region", "tau_country", "sigma_year", "dispersion[0]",
              "campaign_log_rate[0]", "campaign_mean_extra[0]")


def _scalar(samples: dict, name: str) -> np.ndarray:
    base, _, index = name.partition("[")
    values = np.asarray(samples[base])
    if index:
        values = values[..., int(index.rstrip("]"))]
    return values


def small_design(data: FrequencyData, years: int = 2) -> FrequencyData:
    """The first ``years`` years of a design (its exposure groups and campaign targets): what a calibration
    at a size CI can afford fits (the ranks' uniformity does not depend on how much data there is)."""
    keep = data.year < years
    campaigns = data.campaign_kind.shape[0]
    return dataclasses.replace(
        data, **{f: getattr(data, f)[keep] for f in ("country", "dispute_type", "sector", "year", "log_exposure",
                                                      "count")},
        n_years=years, campaign_count=data.campaign_count[:years], campaign_log_target=data.campaign_log_target[:years],
        campaign_extra=data.campaign_extra[: max(campaigns // 3, 1)], campaign_kind=data.campaign_kind[: max(campaigns // 3, 1)],
        campaign_weight=data.campaign_weight[: max(campaigns // 3, 1)])


def simulated_data(data: FrequencyData, key: jax.Array, replicates: int) -> tuple[dict, list[FrequencyData]]:
    """Prior draws and, for each, the data set it simulates on ``data``'s design."""
    prior = Predictive(frequency_model, num_samples=replicates)(key, data, observed=False)
    prior = {k: np.asarray(v) for k, v in prior.items()}
    sets = []
    for i in range(replicates):
        changes = {"count": prior["disputes"][i].astype(np.int64), "campaign_count": prior["campaigns"][i].astype(np.int64)}
        if "campaign_extra" in prior:
            changes["campaign_extra"] = prior["campaign_extra"][i].astype(np.int64)
        sets.append(dataclasses.replace(data, **changes))
    return prior, sets


def rank_test(ranks: np.ndarray, draws: int, bins: int) -> dict:
    """Chi-square test that ``ranks`` (each in 0..``draws``) are uniform, in ``bins`` bins of the draws + 1
    possible ranks (as equal as the counts allow; the expected counts follow the bins' widths)."""
    edges = np.linspace(0, draws + 1, bins + 1)
    counts = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / (draws + 1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p = float(stats.chi2.sf(chi2, bins - 1))
    return {"histogram": counts.tolist(), "chi2": chi2, "p_value": p, "pass": p >= FLOOR}


def calibrate(data: FrequencyData, *, key: jax.Array, replicates: int = 60, settings: FitSettings | None = None,
              thin: int = 4, bins: int = 6) -> dict:
    """Ranks of the prior draws among their posteriors, per parameter, and the uniformity tests."""
    settings = settings or FitSettings(chains=1, warmup=150, samples=160, max_tree_depth=7)
    key_prior, key_fit = jax.random.split(key)
    prior, sets = simulated_data(data, key_prior, replicates)
    draws = run_nuts_many(frequency_model, sets, key=key_fit, settings=settings)
    kept = draws["mu_type"].shape[1] // thin * thin
    out: dict = {"replicates": replicates, "posterior_draws": kept // thin, "bins": bins, "parameters": {},
                 "divergences": int(np.asarray(draws["diverging"]).sum()), "settings": dataclasses.asdict(settings)}
    ranks_max = kept // thin
    for name in PARAMETERS:
        truth = _scalar(prior, name)  # [replicate]
        posterior = _scalar(draws, name)[:, :kept:thin]  # [replicate, L]
        ranks = (posterior < truth[:, None]).sum(axis=1)  # 0..L
        out["parameters"][name] = {"ranks": ranks.tolist(), **rank_test(ranks, ranks_max, bins)}
    out["pass"] = all(v["pass"] for v in out["parameters"].values())
    out["rule"] = (f"chi-square test of the rank histogram ({bins} bins) against uniform: p >= {FLOOR} per parameter "
                   "(Talts et al. 2018)")
    return out


def plot(doc: dict, path) -> None:
    """Rank histograms with the 99% band of a uniform histogram's bin counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["parameters"])
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), dpi=110, squeeze=False)
    n, bins = doc["replicates"], doc["bins"]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
    for ax, name in zip(axes.flat, names):
        block = doc["parameters"][name]
        ax.bar(np.arange(bins), block["histogram"], color="#0072B2" if block["pass"] else "#D55E00")
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.set_title(f"{name}: p = {block['p_value']:.2g}", fontsize=9, loc="left")
        ax.set_xlabel("rank bin")
        ax.set_ylabel("replicates")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Simulation-based calibration, frequency model: {n} replicates, "
                 f"{'all PASS' if doc['pass'] else 'some FAIL'} (grey: 99% band if uniform)", x=0.01, ha="left",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
