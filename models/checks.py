"""Prior and posterior predictive checks of the frequency model, plotted (at the edge).

For each history year and each country, the observed number of disputes against the 90%
interval of the counts the model predicts before seeing the data (prior predictive) and after
(posterior predictive). A country or year outside its posterior band is where the model misfits.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from numpyro.infer import Predictive

from ..files import atomic_write
from .fit import FitResult
from .frequency import FrequencyData, frequency_model
from .history import History


def predictive_counts(history: History, result: FitResult, *, seed: int = 0, n_prior: int = 500) -> dict:
    """Observed and predicted disputes by year and by country: {"year"|"country": {...}}."""
    data = FrequencyData.from_history(history)
    key_prior, key_post = jax.random.split(jax.random.key(seed))
    prior = Predictive(frequency_model, num_samples=n_prior)(key_prior, data, observed=False)["disputes"]
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in result.posterior.items()}
    posterior = Predictive(frequency_model, posterior_samples=flat)(key_post, data, observed=False)["disputes"]
    out = {}
    for axis, index, labels in (("year", data.year, history.years), ("country", data.country, history.countries)):
        def by(counts, index=index, n=len(labels)):  # noqa: B008  (binds this axis's size)
            counts = np.asarray(counts)
            return np.stack([counts[:, index == i].sum(axis=1) for i in range(n)], axis=1)

        out[axis] = {"labels": [str(x) for x in labels], "observed": by(data.count[None, :])[0],
                     "prior": by(prior), "posterior": by(posterior)}
    return out


def predictive_checks(history: History, result: FitResult, directory: Path, *, seed: int = 0) -> list[Path]:
    """Write checks_frequency.png beside the posterior; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = predictive_counts(history, result, seed=seed)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    for ax, axis in zip(axes, ("year", "country")):
        c = counts[axis]
        x = np.arange(len(c["labels"]))
        for name, colour, width in (("prior", "#56B4E9", 0.6), ("posterior", "#0072B2", 0.3)):
            lo, hi = np.quantile(c[name], [0.05, 0.95], axis=0)
            ax.bar(x, hi - lo, bottom=lo, width=width, color=colour, alpha=0.6, label=f"{name} predictive 90%")
        ax.scatter(x, c["observed"], color="#D55E00", zorder=3, label="observed")
        ax.set_xticks(x, c["labels"], rotation=45 if axis == "year" else 0)
        ax.set_yscale("symlog")
        ax.set_title(f"Disputes by {axis}: observed against predicted", loc="left", fontsize=11)
        ax.grid(True, alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "checks_frequency.png"
    try:
        atomic_write(path, lambda staging: fig.savefig(staging))
    finally:
        plt.close(fig)
    return [path]
