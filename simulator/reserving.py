"""Reserves on the host (NumPy, float64): payment pattern, outstanding, reserve risk, adequacy.

The kernel returns, for each simulated underwriting year, the gross payments in each
development year (year 0 is the underwriting year itself; disputes start uniformly in it and
their cost is paid evenly over their duration, by stage) and the number of disputes still open
at each year-end.

- Outstanding at the end of development year ``k``: ``O_k = sum_{j > k} P_j``.
- Best estimate at that year-end, from the disputes still open and where they are: each open
  dispute carries a case-reserve weight, its forum's mean cost (country and dispute type), and
  ``BE_k = W_k * E[O_k] / E[W_k]`` with ``W_k`` the open disputes' weights summed (the
  average-cost-per-open-claim method, weighted by forum). It is unbiased: ``E[BE_k] = E[O_k]``.
- One-year reserve risk (the Solvency II one-year view): the claims development result of the
  first run-off year, ``P_1 + BE_1 - BE_0``: what the year pays plus the re-estimated
  outstanding, minus the opening estimate. Its 99.5% VaR minus its mean is the reserve-risk capital.
- Adequacy of a reserve ``R`` held at the end of the underwriting year against the run-off
  ``O_0``: ``P(O_0 <= R)`` and the expected shortfall ``E[(O_0 - R)+]``.
- IFRS 17 risk adjustment for non-financial risk (para 37, B86-B92; para 119 asks for the confidence
  level it corresponds to), on the simulated run-off ``O_0`` (gross, undiscounted unless a discount
  rate is given):
  - at a confidence level ``a`` (default 75%): ``RA_a = VaR_a(O_0) - E[O_0]``, with SE the quadrature sum
    of the VaR's order-statistic SE and the mean's (an upper bound: the two estimates are positively
    correlated);
  - by cost of capital: ``RA_CoC = c * sum_k C_k / (1 + r)^(k+1)``, ``C_k = VaR_99.5(O_k) - E[O_k]`` the
    capital held at the end of development year ``k`` against the outstanding then (ultimate view), ``c``
    the cost-of-capital rate (default 6%, the Solvency II risk margin's, Delegated Regulation 2015/35 Art
    39), ``r`` the discount rate (default 0); its equivalent confidence level is ``F_n(E[O_0] + RA_CoC)``,
    with the binomial SE of that share.
"""

from __future__ import annotations

import math

import numpy as np

from . import metrics

ADEQUACY_LEVELS = (0.75, 0.9, 0.995)
RA_CONFIDENCE = 0.75  # a common IFRS 17 disclosure level (para 119 asks for the level, not this one)
COST_OF_CAPITAL = 0.06  # Solvency II risk margin rate (Delegated Regulation 2015/35, Art 39)


def risk_adjustment(run_off: np.ndarray, capital_by_year_end: np.ndarray, *, confidence: float = RA_CONFIDENCE,
                    cost_of_capital: float = COST_OF_CAPITAL, discount_rate: float = 0.0,
                    presorted: bool = False) -> dict:
    """IFRS 17 risk adjustment of the run-off ``O_0`` at ``confidence`` and by cost of capital (module
    docstring). ``capital_by_year_end[k]``: ``VaR_99.5(O_k) - E[O_k]``; with its SEs as column 1 if 2-D."""
    ordered = run_off if presorted else np.sort(run_off)
    n = ordered.size
    mean = float(ordered.mean())
    se_mean = metrics.sd(ordered) / math.sqrt(n)
    quantile = metrics.var(ordered, confidence)
    capital = np.atleast_2d(np.asarray(capital_by_year_end, np.float64).T).T
    factors = (1.0 + discount_rate) ** -(np.arange(capital.shape[0]) + 1.0)
    coc = float(cost_of_capital * (capital[:, 0] * factors).sum())
    coc_se = float(cost_of_capital * math.sqrt(((capital[:, 1] * factors) ** 2).sum())) if capital.shape[1] > 1 else None
    level = float(np.searchsorted(ordered, mean + coc, side="right")) / n
    return {
        "confidence_level": confidence,
        "at_confidence": quantile - mean,
        "at_confidence_se": math.sqrt(metrics.var_se(ordered, confidence) ** 2 + se_mean ** 2),
        "cost_of_capital": {
            "rate": cost_of_capital,
            "discount_rate": discount_rate,
            "risk_adjustment": coc,
            "risk_adjustment_se": coc_se,
            "capital_by_year_end": capital[:, 0].tolist(),
            "equivalent_confidence_level": level,
            "equivalent_confidence_level_se": math.sqrt(max(level * (1.0 - level), 1.0 / n) / n),
        },
        "basis": "IFRS 17 risk adjustment for non-financial risk on the simulated run-off of one underwriting "
                 "year's reserve (gross of reinsurance, CNY" + (", undiscounted)" if discount_rate == 0 else
                                                               f", discounted at {discount_rate:g})"),
    }


def outstanding(payments: np.ndarray) -> np.ndarray:
    """``O[:, k]``: payments after the end of development year ``k`` (last column: 0)."""
    after = np.cumsum(payments[:, ::-1], axis=1)[:, ::-1]  # sum_{j >= k}
    return np.concatenate([after[:, 1:], np.zeros((payments.shape[0], 1))], axis=1)


def best_estimate(open_weight: np.ndarray, outstanding_: np.ndarray) -> np.ndarray:
    """``BE[:, k] = W_k * E[O_k] / E[W_k]`` (0 where no dispute is ever open)."""
    mean_open = open_weight.mean(axis=0)
    per_open = np.where(mean_open > 0, outstanding_.mean(axis=0) / np.where(mean_open > 0, mean_open, 1.0), 0.0)
    return open_weight * per_open[None, :]


def adequacy(run_off: np.ndarray, reserve: float, *, presorted: bool = False) -> dict:
    """Probability that ``reserve`` covers the run-off and the expected shortfall beyond it."""
    n = run_off.size
    ordered = run_off if presorted else np.sort(run_off)
    excess = ordered[np.searchsorted(ordered, reserve, side="right"):] - reserve  # the years short
    covered = 1.0 - excess.size / n
    mean = float(excess.sum()) / n
    variance = (float((excess - mean) @ (excess - mean)) + (n - excess.size) * mean * mean) / (n - 1) if n > 1 else 0.0
    return {
        "reserve": float(reserve),
        "probability": covered,
        "probability_se": math.sqrt(max(covered * (1.0 - covered), 1.0 / n) / n),
        "expected_shortfall": mean,
        "expected_shortfall_se": math.sqrt(max(variance, 0.0) / n),
        "mean_shortfall_when_short": float(excess.mean()) if excess.size else 0.0,
    }


def summarize(payments: np.ndarray, open_disputes: np.ndarray, open_weight: np.ndarray | None = None, *,
              held: float | None = None) -> dict:
    """The ``reserves`` block of summary.json (``open_weight`` defaults to the open counts)."""
    open_weight = open_disputes if open_weight is None else open_weight
    return summarize_runs(lambda: [(payments, open_disputes, open_weight)], held=held)


def summarize_runs(runs, *, held: float | None = None, risk_adjustment_spec: dict | None = None) -> dict:
    """:func:`summarize` over consecutive runs of years: ``runs()`` yields ``(payments,
    open_disputes, open_weight)`` arrays [year, development year] and is called once per pass, so
    memory holds one column of the years at a time, not the whole table."""
    def each():
        for p, o, w in runs():
            yield np.asarray(p, np.float64), np.asarray(o, np.float64), np.asarray(w, np.float64)

    def column(fn) -> np.ndarray:
        return metrics.gather((fn(*r) for r in each()), n)

    n, sums = 0, None
    for p, o, w in each():
        n += p.shape[0]
        s = np.stack([p.sum(axis=0), o.sum(axis=0), w.sum(axis=0), outstanding(p).sum(axis=0)])
        sums = s if sums is None else sums + s
    if sums is None:
        raise ValueError("no simulated years")
    mean_payments, mean_open, mean_weight, mean_outstanding = sums / n
    n_dev = mean_payments.size
    expected_ultimate = float(mean_payments.sum())
    per_open = np.where(mean_weight > 0, mean_outstanding / np.where(mean_weight > 0, mean_weight, 1.0), 0.0)
    covered_by_be = sum(int(np.count_nonzero(outstanding(p)[:, 0] <= w[:, 0] * per_open[0])) for p, o, w in each())
    best_estimate_covers = covered_by_be / n
    development = (column(lambda p, o, w: p[:, 1] + (w[:, 1] * per_open[1] - w[:, 0] * per_open[0]))
                   if n_dev > 1 else np.zeros(n))
    development.sort()
    movement = metrics.risk_measures(development, levels=(0.995,), presorted=True)
    del development
    def two_columns(k: int) -> tuple[np.ndarray, np.ndarray]:
        """Payments in development year ``k`` and the outstanding at its end, in one pass over the years."""
        paid, left, start = np.empty(n), np.empty(n), 0
        for p, _o, _w in each():
            paid[start:start + p.shape[0]] = p[:, k]
            left[start:start + p.shape[0]] = outstanding(p)[:, k]
            start += p.shape[0]
        return paid, left

    rows: list[np.ndarray] = []
    capital: list[tuple[float, float]] = []
    for k in range(n_dev):
        paid, left = two_columns(k)
        rows.append(np.quantile(paid, (0.5, 0.995), overwrite_input=True))
        left.sort()  # capital against the outstanding at year-end k: its 99.5% VaR minus its mean
        value_at_risk = metrics.var(left, 0.995)
        capital.append((value_at_risk - float(left.mean()),
                        math.sqrt(metrics.var_se(left, 0.995) ** 2 + metrics.sd(left) ** 2 / n)))
        del paid, left
    quantiles = np.array(rows)
    run_off = column(lambda p, o, w: outstanding(p)[:, 0])
    run_off.sort()  # every figure below depends on the sorted run-off only
    expected_outstanding = float(run_off.mean())
    held_reserve = expected_outstanding if held is None else float(held)
    out = {
        "expected_outstanding": expected_outstanding,
        "expected_outstanding_se": metrics.sd(run_off) / math.sqrt(n),
        "expected_ultimate": expected_ultimate,
        "development_year": list(range(n_dev)),
        "payment_pattern": {
            "expected_payments": mean_payments.tolist(),
            "incremental_share": (mean_payments / expected_ultimate if expected_ultimate > 0 else mean_payments * 0).tolist(),
            "cumulative_share": (np.cumsum(mean_payments) / expected_ultimate if expected_ultimate > 0
                                 else mean_payments * 0).tolist(),
            "payments_q0.5": quantiles[:, 0].tolist(),
            "payments_q0.995": quantiles[:, 1].tolist(),
        },
        "expected_outstanding_by_year_end": mean_outstanding.tolist(),
        "expected_open_disputes_by_year_end": mean_open.tolist(),
        "one_year_reserve_risk": {
            "mean": movement["mean"],
            "std": movement["std"],
            "var_0.995": movement["var"]["0.995"],
            "capital": movement["var"]["0.995"] - movement["mean"],
            "se": {"var_0.995": movement["se"]["var"]["0.995"], "mean": movement["se"]["mean"]},
            "definition": "claims development result of the first run-off year, P_1 + BE_1 - BE_0, with "
                          "BE_k = open disputes at year-end k, weighted by their forum's mean cost, x expected "
                          "outstanding per unit weight; "
                          "capital = its 99.5% VaR minus its mean",
        },
        "adequacy": adequacy(run_off, held_reserve, presorted=True) | {
            "held": "scenario [reserves] held_cny" if held is not None else "the expected outstanding (best estimate)",
        },
        "best_estimate_adequacy": {
            "probability": best_estimate_covers,
            "description": "probability that the year-end best estimate BE_0 (set from the open disputes "
                           "and their forums) covers the run-off",
        },
        "basis": "gross of reinsurance, CNY, per underwriting year; payments evenly over each dispute's duration",
    }
    out["reserve_for_adequacy"] = {f"{level:g}": metrics.var(run_off, level) for level in ADEQUACY_LEVELS}
    out["risk_adjustment"] = risk_adjustment(run_off, np.array(capital), presorted=True, **(risk_adjustment_spec or {}))
    return out
