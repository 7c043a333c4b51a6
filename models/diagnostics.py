"""MCMC diagnostics: rank-normalised split R-hat, bulk and tail ESS (Vehtari et al. 2021).

Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", *Bayesian Analysis* 16(2).
The autocorrelation-based ESS itself is NumPyro's (Geyer's initial monotone sequence).
"""

from __future__ import annotations

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from scipy import stats

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100  # Vehtari et al. recommend bulk and tail ESS > 100 per chain


def _rank_normal(x: np.ndarray) -> np.ndarray:
    """Rank-normalise draws [chain, draw] pooled over chains (fractional offset 3/8)."""
    flat = x.reshape(-1)
    ranks = stats.rankdata(flat, method="average")
    return stats.norm.ppf((ranks - 0.375) / (flat.size + 0.25)).reshape(x.shape)


def _split(x: np.ndarray) -> np.ndarray:
    n = x.shape[1] // 2
    return np.concatenate([x[:, :n], x[:, x.shape[1] - n:]], axis=0)


def _ess(x: np.ndarray) -> float:
    if np.ptp(x) == 0:
        return float("nan")
    return float(effective_sample_size(_split(x)))


def scalar_diagnostics(x: np.ndarray) -> dict[str, float]:
    """R-hat (max of bulk and folded), bulk ESS and tail ESS of one scalar's draws [chain, draw]."""
    x = np.asarray(x, dtype=np.float64)
    if np.ptp(x) == 0:
        return {"r_hat": 1.0, "ess_bulk": float(x.size), "ess_tail": float(x.size)}
    z = _rank_normal(x)
    folded = _rank_normal(np.abs(x - np.median(x)))
    r_hat = max(float(split_gelman_rubin(z)), float(split_gelman_rubin(folded))) if x.shape[1] >= 4 else float("nan")
    q05, q95 = np.quantile(x, [0.05, 0.95])
    tails = [_ess((x <= q05).astype(float)), _ess((x >= q95).astype(float))]
    return {"r_hat": r_hat, "ess_bulk": _ess(z), "ess_tail": float(np.nanmin(tails)) if not np.all(np.isnan(tails)) else float("nan")}


def summarize(draws: dict[str, np.ndarray]) -> list[dict]:
    """One row per scalar parameter: name, mean, sd, 5% and 95% quantiles, R-hat, bulk and tail ESS."""
    rows = []
    for name, value in draws.items():
        value = np.asarray(value)
        flat = value.reshape(value.shape[0], value.shape[1], -1)
        for i in range(flat.shape[2]):
            index = np.unravel_index(i, value.shape[2:]) if value.ndim > 2 else ()
            x = flat[:, :, i]
            label = name + (f"[{','.join(map(str, index))}]" if index else "")
            q05, q95 = np.quantile(x, [0.05, 0.95])
            rows.append({"name": label, "mean": float(x.mean()), "sd": float(x.std()), "q05": float(q05),
                         "q95": float(q95)} | scalar_diagnostics(x))
    return rows


def problems(rows: list[dict], *, divergences: int, chains: int) -> list[str]:
    """Plain-language warnings, each with what to do about it."""
    out = []
    if divergences:
        out.append(f"{divergences} divergent transitions: the posterior may be biased; rerun with more "
                   "--warmup or a higher --target-accept (e.g. 0.95)")
    worst = max(rows, key=lambda r: r["r_hat"] if np.isfinite(r["r_hat"]) else -1)
    if np.isfinite(worst["r_hat"]) and worst["r_hat"] > RHAT_MAX:
        out.append(f"R-hat {worst['r_hat']:.3f} > {RHAT_MAX} for {worst['name']}: the chains disagree; "
                   "rerun with more --warmup and --samples")
    floor = ESS_MIN_PER_CHAIN * chains
    for key in ("ess_bulk", "ess_tail"):
        finite = [r for r in rows if np.isfinite(r[key])]
        if finite:
            low = min(finite, key=lambda r: r[key])
            if low[key] < floor:
                out.append(f"{key.replace('_', ' ')} {low[key]:.0f} < {floor} for {low['name']}: too few "
                           "effective draws; rerun with more --samples")
    return out
