"""Risk measures with Monte Carlo standard errors, computed on the host in float64.

Definitions (n simulated years, order statistics x_(1) <= ... <= x_(n)):

- VaR_a: the lower empirical quantile, x_(ceil(n a)), i.e. inf{x : F_n(x) >= a}.
- TVaR_a (expected shortfall): (1 / (1 - a)) * integral_a^1 F_n^{-1}(u) du, which is exact for the
  empirical distribution: the mean of the worst (1 - a) share of years, counting the order
  statistic that straddles a by its fraction (Acerbi & Tasche 2002).

Standard errors (stated per estimator, all from the same simulated years):

- mean: sd / sqrt(n).
- VaR: the distribution-free order-statistic method. The number of years below the true
  quantile is Binomial(n, a), so [x_(l), x_(u)] with l, u = n a -/+ z sqrt(n a (1 - a)) is a
  level-95% interval (z = 1.96). The SE is its width / (2 z) (Serfling 1980, 2.6).
- TVaR: the influence-function (delta-method) estimator. The influence function of ES_a is
  (x - VaR_a)+ / (1 - a) + VaR_a - ES_a, so SE = sd((X - VaR_a)+) / ((1 - a) sqrt(n))
  (Manistre & Hancock 2005).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LEVELS = (0.9, 0.99, 0.995, 0.999)
RETURN_PERIODS = (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)
_Z95 = 1.959963984540054


def gather(pieces, n: int) -> np.ndarray:
    """Consecutive 1-D pieces (an iterable) into one float64 array of ``n`` values, without a
    second copy of them all."""
    out = np.empty(n)
    start = 0
    for piece in pieces:
        out[start:start + len(piece)] = piece
        start += len(piece)
    if start != n:
        raise ValueError(f"pieces hold {start} values, expected {n}")
    return out


def sd(values: np.ndarray, ddof: int = 1, block: int = 1 << 20) -> float:
    """Standard deviation in blocks (two-pass: the mean, then squares about it), so that a
    column of 1e7 years needs no second 1e7-long temporary."""
    n = values.size
    if n <= ddof:
        return 0.0
    mean = float(values.sum()) / n
    square = sum(float(np.square(values[i:i + block] - mean).sum()) for i in range(0, n, block))
    return math.sqrt(square / (n - ddof))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"risk level must lie strictly between 0 and 1, got {level}")


def var(sorted_losses: np.ndarray, level: float) -> float:
    """Lower empirical quantile of already sorted losses."""
    _check_level(level)
    n = sorted_losses.size
    rank = max(1, math.ceil(n * level - 1e-9))  # tolerance: n * level is often an integer
    return float(sorted_losses[rank - 1])


def tvar(sorted_losses: np.ndarray, level: float) -> float:
    """Expected shortfall of the empirical distribution (exact integral of its quantile)."""
    _check_level(level)
    n = sorted_losses.size
    rank = max(1, math.ceil(n * level - 1e-9))
    tail = sorted_losses[rank:].sum(dtype=np.float64) / n
    straddle = (rank / n - level) * sorted_losses[rank - 1]
    return float((tail + straddle) / (1.0 - level))


def var_se(sorted_losses: np.ndarray, level: float) -> float:
    n = sorted_losses.size
    half = _Z95 * math.sqrt(n * level * (1.0 - level))
    lo = min(n, max(1, math.floor(n * level - half)))
    hi = min(n, max(1, math.ceil(n * level + half)))
    return float((sorted_losses[hi - 1] - sorted_losses[lo - 1]) / (2.0 * _Z95))


def tvar_se(losses: np.ndarray, level: float, value_at_risk: float, *, presorted: bool = False) -> float:
    """sd((X - VaR)+) / ((1 - a) sqrt(n)); with ``presorted`` losses, from the tail alone."""
    n = losses.size
    tail = losses[np.searchsorted(losses, value_at_risk, side="right"):] if presorted else losses
    excess = np.maximum(tail - value_at_risk, 0.0)
    mean = excess.sum() / n
    variance = max(float((excess - mean) @ (excess - mean) + (n - excess.size) * mean * mean) / n, 0.0)
    return math.sqrt(variance) / ((1.0 - level) * math.sqrt(n))


def risk_measures(losses: np.ndarray, levels=LEVELS, *, presorted: bool = False) -> dict:
    """Mean, std, VaR and TVaR at ``levels``, each with its Monte Carlo standard error.

    Keys follow summary.json: ``{"mean", "std", "var": {level: ...}, "tvar": {...}, "se": {...}}``.
    ``presorted``: ``losses`` are already in ascending order (saves a sorted copy). Every figure
    is computed from the sorted years, so it does not depend on their order.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0:
        raise ValueError("no simulated years")
    ordered = losses if presorted else np.sort(losses)
    losses = ordered
    n = losses.size
    mean, std = float(losses.mean()), sd(losses)
    out: dict[str, Any] = {"mean": mean, "std": std, "var": {}, "tvar": {},
                           "se": {"mean": std / math.sqrt(n), "var": {}, "tvar": {}}}
    for level in levels:
        label = f"{level:g}"
        v = var(ordered, level)
        out["var"][label] = v
        out["tvar"][label] = tvar(ordered, level)
        out["se"]["var"][label] = var_se(ordered, level)
        out["se"]["tvar"][label] = tvar_se(ordered, level, v, presorted=True)
    return out


def exceedance_curve(losses: np.ndarray, return_periods=RETURN_PERIODS, *, presorted: bool = False) -> dict:
    """Loss exceeded once in T years on average, for T up to a tenth of the simulated years.

    For annual totals this is the AEP curve; for the largest dispute of each year, the OEP curve.
    """
    ordered = np.asarray(losses, dtype=np.float64)
    ordered = ordered if presorted else np.sort(ordered)
    periods = [t for t in return_periods if t * 10 <= ordered.size]
    return {
        "return_period": periods,
        "probability": [1.0 / t for t in periods],
        "loss": [var(ordered, 1.0 - 1.0 / t) for t in periods],
        "se": [var_se(ordered, 1.0 - 1.0 / t) for t in periods],
    }


def tail_contributions(total: np.ndarray, parts: np.ndarray, level: float) -> np.ndarray:
    """Each part's mean over the years in which the total is at or above its VaR.

    With ``parts`` summing to ``total`` year by year, the contributions add up to the total's
    TVaR up to the straddling year (Euler allocation of TVaR, Tasche 1999).
    """
    threshold = var(np.sort(total), level)
    tail = total >= threshold
    return parts[tail].mean(axis=0)



def parameter_variance_share(losses: np.ndarray, draw: np.ndarray) -> dict:
    """How much of the variance of annual losses comes from parameter uncertainty.

    Years are grouped by the posterior draw that drove them. With ``V`` the total variance,
    ``Var_d(E[X | d])`` is estimated by the one-way random-effects ANOVA estimator
    ``(MSB - MSW) / n0`` (unbiased for unequal group sizes; Searle, Casella & McCulloch,
    *Variance Components*, 3.6), so the within-draw (process) noise in each draw's sample mean is
    not counted as parameter uncertainty. Returns the between-draw (parameter) and within-draw
    (process) variances and the parameter share of their sum (clipped to [0, 1]).
    """
    _, index = np.unique(np.asarray(draw), return_inverse=True)
    return parameter_variance_share_runs(lambda: [(losses, index)])


def parameter_variance_share_runs(runs) -> dict:
    """:func:`parameter_variance_share` over runs of years: ``runs()`` yields ``(losses, draw)``
    with draws as indices 0, 1, ...; it is called twice (draw means, then squares about them)."""
    sums = counts = np.zeros(0)
    for losses, draw in runs():
        k = int(draw.max()) + 1 if draw.size else 0
        grow = max(k - sums.size, 0)
        sums, counts = np.pad(sums, (0, grow)), np.pad(counts, (0, grow))
        sums[:k] += np.bincount(draw, weights=np.asarray(losses, np.float64), minlength=k)
        counts[:k] += np.bincount(draw, minlength=k)
    present = counts > 0
    sizes, n, k = counts[present], int(counts.sum()), int(present.sum())
    means = np.where(present, sums / np.where(present, counts, 1.0), 0.0)
    grand = float(sums.sum() / n)
    within = total = 0.0
    for losses, draw in runs():
        losses = np.asarray(losses, np.float64)
        within += float(np.sum((losses - means[draw]) ** 2))
        total += float(np.sum((losses - grand) ** 2))
    if k < 2 or n <= k:
        return {"draws": k, "parameter_variance": 0.0, "process_variance": total / (n - 1) if n > 1 else 0.0,
                "parameter_share": 0.0}
    msb = float(np.sum(sizes * (means[present] - grand) ** 2) / (k - 1))
    msw = within / (n - k)
    n0 = (n - np.sum(sizes**2) / n) / (k - 1)
    between = max((msb - msw) / n0, 0.0)
    return {"draws": k, "parameter_variance": between, "process_variance": msw,
            "parameter_share": between / (between + msw) if between + msw > 0 else 0.0}


def _density_at_quantile(ordered: np.ndarray, level: float) -> float:
    """Density at the ``level`` quantile from order-statistic spacings (k = sqrt(n) / 2 either side)."""
    n = ordered.size
    k = max(5, int(math.sqrt(n) / 2))
    rank = max(1, math.ceil(n * level - 1e-9)) - 1
    lo, hi = max(0, rank - k), min(n - 1, rank + k)
    width = ordered[hi] - ordered[lo]
    return (hi - lo) / n / width if width > 0 else math.inf


def influence(losses: np.ndarray, statistic: str, level: float | None = None) -> np.ndarray:
    """Per-year influence function of ``mean``, ``var`` or ``tvar`` at ``level`` (its mean is 0).

    The SE of the statistic is sd(IF) / sqrt(n); for two statistics on the same simulated years
    (common random numbers) the SE of their difference is sd(IF_a - IF_b) / sqrt(n), which is what
    makes scenario differences precise. VaR: (a - 1{x <= v}) / f(v) with f from order-statistic
    spacings; TVaR: (x - v)+ / (1 - a) + v - ES (Manistre & Hancock 2005).
    """
    losses = np.asarray(losses, dtype=np.float64)
    if statistic == "mean":
        return losses - losses.mean()
    if level is None:
        raise ValueError(f"{statistic}: give the level")
    ordered = np.sort(losses)
    v = var(ordered, level)
    if statistic == "var":
        f = _density_at_quantile(ordered, level)
        return ((level - (losses <= v)) / f) if math.isfinite(f) else np.zeros_like(losses)
    if statistic == "tvar":
        return np.maximum(losses - v, 0.0) / (1.0 - level) + v - tvar(ordered, level)
    raise ValueError(f"unknown statistic {statistic!r}: mean, var or tvar")


def paired_difference(a: np.ndarray, b: np.ndarray, statistic: str, level: float | None = None) -> dict:
    """``stat(b) - stat(a)`` on the same simulated years, with the SE of the difference and of each."""
    n = len(a)
    if statistic != "mean" and level is None:
        raise ValueError(f"{statistic}: give the level")
    at = 0.0 if level is None else level
    value = {"mean": lambda x: float(np.mean(x)), "var": lambda x: var(np.sort(x), at),
             "tvar": lambda x: tvar(np.sort(x), at)}[statistic]
    ia, ib = influence(a, statistic, level), influence(b, statistic, level)
    return {
        "difference": value(b) - value(a),
        "se": float(np.std(ib - ia) / math.sqrt(n)),
        "se_if_independent": float(math.hypot(np.std(ia), np.std(ib)) / math.sqrt(n)),
    }
