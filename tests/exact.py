"""Independent exact references for the tests: compound distributions by Panjer recursion.

The per-dispute payment ``Y = min((1 - c) * max(X - d, 0), L)`` is discretised on a grid of
step h twice: rounded down (Y_lo <= Y) and rounded up (Y_hi >= Y). The compound sums of these
bracket the true compound sum in the usual stochastic order. So their VaR and TVaR bracket the
true VaR and TVaR rigorously, with no discretisation error left to guess (Klugman, Panjer &
Willmot, *Loss Models*, 9.6).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def payment_cdf(dist, y, *, deductible=0.0, coinsurance=0.0, limit=np.inf):
    """P(Y <= y) for the payment Y after per-dispute terms; ``dist`` is a frozen SciPy law."""
    y = np.asarray(y, dtype=float)
    cost = deductible + y / (1.0 - coinsurance)
    cdf = dist.cdf(cost)
    return np.where(y < 0, 0.0, np.where(y >= limit, 1.0, cdf))


def discretise(cdf, h: float, n: int, direction: str) -> np.ndarray:
    """pmf on 0, h, 2h, ... (n points) rounding the payment down or up."""
    grid = np.arange(n + 1) * h
    c = cdf(grid)
    if direction == "down":  # mass of [jh, (j+1)h) at jh
        pmf = np.diff(c)
        pmf[0] += c[0]  # the point mass at zero (cost below the deductible)
        pmf[-1] += 1.0 - c[-1]
    else:  # mass of ((j-1)h, jh] at jh
        pmf = np.concatenate([[c[0]], np.diff(c)])[:n]
        pmf[-1] += 1.0 - c[n - 1]
    return pmf


def panjer(severity_pmf: np.ndarray, n_total: int, *, a: float, b: float, p0: float) -> np.ndarray:
    """Compound pmf for an (a, b, 0) count law with P(N=0) = p0 and the given severity pmf."""
    f = severity_pmf
    g = np.zeros(n_total)
    f0 = f[0]
    # P(S = 0) = P_N(f0), the count pgf at f0.
    if b == 0.0 and a == 0.0:
        g[0] = p0
    elif a == 0.0:  # Poisson: pgf exp(lam (z - 1)), lam = b
        g[0] = math.exp(b * (f0 - 1.0))
    else:  # negative binomial: pgf (1 - beta (z - 1))^-r, a = beta / (1 + beta), b = (r - 1) a
        beta = a / (1.0 - a)
        r = b / a + 1.0
        g[0] = (1.0 - beta * (f0 - 1.0)) ** (-r)
    m = len(f)
    j = np.arange(1, m)
    for s in range(1, n_total):
        jj = j[: min(s, m - 1)]
        g[s] = np.dot((a + b * jj / s) * f[jj], g[s - jj]) / (1.0 - a * f0)
    return g


def poisson_ab(lam: float) -> dict:
    return dict(a=0.0, b=lam, p0=math.exp(-lam))


def negbin_ab(mean: float, concentration: float) -> dict:
    beta = mean / concentration
    a = beta / (1.0 + beta)
    return dict(a=a, b=(concentration - 1.0) * a, p0=(1.0 + beta) ** (-concentration))


def var_tvar_from_pmf(pmf: np.ndarray, h: float, level: float) -> tuple[float, float]:
    """Lower quantile and expected shortfall of a distribution on 0, h, 2h, ..."""
    if abs(pmf.sum() - 1.0) > 1e-9:
        raise ValueError(f"the grid holds {pmf.sum():.12f} of the mass: widen it")
    x = np.arange(len(pmf)) * h
    cdf = np.cumsum(pmf)
    k = int(np.searchsorted(cdf, level - 1e-15))
    var = x[k]
    tail = (pmf[k + 1:] * x[k + 1:]).sum() + (cdf[k] - level) * var
    return float(var), float(tail / (1.0 - level))


def lognormal(median: float, sigma: float):
    return stats.lognorm(s=sigma, scale=median)
