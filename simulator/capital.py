"""Capital adequacy on the host (NumPy, float64): required capital, solvency ratios, allocation.

Required capital is the solvency capital requirement of the one-year view (Solvency II Art. 101(3):
the 99.5% VaR of the basic own funds over one year; C-ROSS II minimum capital for insurance risk
is calibrated the same way, docs/CALIBRATION.md "Solvency"). Own funds move by the year's
**underwriting result**

    result = premium earned (the portfolio's premiums, subsidy included)
             + ceding commissions - expenses (expense ratio x premium)
             - net claims - reinsurance premiums - reinstatement premiums,

so the SCR is the 99.5% VaR of the loss ``-result``. An expected loss that the premium does not
cover (an under-priced book, or a stress that raises claims while premiums and reinsurance
prices stay fixed) needs capital, and a stress that makes claims worse makes the ratio worse.
Everything but the net claims and reinstatement premiums (the *net cost*) is fixed within a
year, so ``SCR = VaR_99.5(net cost) - fixed income`` exactly, floored at 0.

The older figure, ``VaR_99.5(net cost) - mean(net cost)`` ("the expected cost is carried by the
premium"), is kept as ``var_minus_mean``: it equals the SCR only when the premium net of
expenses and reinsurance exactly covers the expected cost, and under a stress it would subtract
the stressed mean that the unchanged premium does not carry.

Allocation (Euler principle, Tasche 1999): the TVaR of the total is homogeneous of degree one in
the parts' weights, so its derivative contributions ``E[X_g | X in its worst (1 - a) tail]`` add
up exactly to the total's TVaR. On the empirical distribution the tail is the worst ``n (1 - a)``
years, the straddling year counted by its fraction, the same weights as :func:`metrics.tvar`; the
contributions then add up to the empirical TVaR to rounding. Each part's share of
``TVaR_a - mean`` scales the insurance-risk capital, so the allocations add up to it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import metrics

CAPITAL_LEVEL = 0.995  # Solvency II / C-ROSS one-year VaR
ALLOCATION_LEVEL = 0.99  # TVaR level of the Euler allocation (close to the 99.5% VaR in the tail)
# C-ROSS thresholds (docs/CALIBRATION.md "Solvency"): comprehensive >= 100%, core >= 50%.
COMPREHENSIVE_THRESHOLD = 1.0
CORE_THRESHOLD = 0.5
# Default expense ratio (acquisition, administration and claims handling, share of premium) [J]:
# PICC P&C's 2023 combined ratio was 97.8% [S, docs/CALIBRATION.md "Products and results"]; a
# specialty line sold through a government pilot carries ~30% of premium in expenses, the
# middle of the 25-35% that Chinese P&C insurers report. `[capital] expense_ratio` overrides it.
EXPENSE_RATIO = 0.30
DEFINITION = ("SCR = 99.5% VaR of the one-year loss of own funds, where the year's underwriting result = premium "
              "earned (subsidy included) + ceding commissions - expenses (expense ratio x premium) - net claims - "
              "reinsurance premiums - reinstatement premiums (Solvency II Art. 101(3), C-ROSS II one-year 99.5% "
              "calibration); floored at 0")


# The simple factor charge that model drift is monitored against (PRA SS15/16's "simpler measures"): the
# Solvency II standard formula for non-life premium and reserve risk, legal-expenses line of business
# (Delegated Regulation 2015/35, Annex II: sigma 8.3% premium risk, 5.5% reserve risk; Art 117: charge = 3 x
# sigma x volume, premium and reserve risk correlated 0.5; docs/CALIBRATION.md "Solvency"). [capital]
# factor_premium_sd / factor_reserve_sd / factor_multiplier override them.
FACTOR_PREMIUM_SD = 0.083
FACTOR_RESERVE_SD = 0.055
FACTOR_MULTIPLIER = 3.0
FACTOR_CORRELATION = 0.5


def factor_charge(premium_volume: float, reserve_volume: float, *, premium_sd: float = FACTOR_PREMIUM_SD,
                  reserve_sd: float = FACTOR_RESERVE_SD, multiplier: float = FACTOR_MULTIPLIER,
                  correlation: float = FACTOR_CORRELATION) -> dict:
    """The standard-formula-style charge: ``k sigma_p V_p``, ``k sigma_r V_r`` and their combination
    ``k sqrt((sigma_p V_p)^2 + 2 rho sigma_p V_p sigma_r V_r + (sigma_r V_r)^2)``."""
    p, r = premium_sd * premium_volume, reserve_sd * reserve_volume
    return {"premium": multiplier * p, "reserve": multiplier * r,
            "combined": multiplier * math.sqrt(p * p + 2.0 * correlation * p * r + r * r),
            "premium_volume": premium_volume, "reserve_volume": reserve_volume,
            "premium_sd": premium_sd, "reserve_sd": reserve_sd, "multiplier": multiplier, "correlation": correlation}


def drift(internal_premium: float, internal_reserve: float, *, premium_volume: float, reserve_volume: float,
          internal_premium_se: float | None = None, spec: CapitalSpec | None = None) -> dict:
    """summary.json's ``drift``: the internal model's capital beside the factor charge, and their ratios, so
    that a sequence of runs shows whether the model drifts away from the simpler measure."""
    spec = spec or CapitalSpec()
    factor = factor_charge(premium_volume, reserve_volume, premium_sd=spec.factor_premium_sd,
                           reserve_sd=spec.factor_reserve_sd, multiplier=spec.factor_multiplier)
    rho = factor["correlation"]
    combined = math.sqrt(internal_premium ** 2 + 2.0 * rho * internal_premium * internal_reserve + internal_reserve ** 2)

    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    return {
        "internal": {"premium": internal_premium, "reserve": internal_reserve, "combined": combined},
        "factor": factor,
        "ratio": {"premium": ratio(internal_premium, factor["premium"]),
                  "reserve": ratio(internal_reserve, factor["reserve"]),
                  "combined": ratio(combined, factor["combined"])},
        "ratio_se": {"premium": None if internal_premium_se is None or factor["premium"] <= 0
                     else internal_premium_se / factor["premium"]},
        "definition": "internal: the SCR of the underwriting year (capital.required) and the one-year reserve-risk "
                      "capital (reserves.one_year_reserve_risk.capital, gross, x net/gross expected loss), combined with "
                      "the factor's correlation; "
                      "factor: multiplier x sd x volume (Solvency II standard formula, legal expenses, Delegated "
                      "Regulation 2015/35 Annex II), premium volume = premium net of reinsurance premiums (after "
                      "commissions), reserve volume = expected outstanding x net/gross expected loss; ratio = "
                      "internal / factor",
    }


@dataclasses.dataclass(frozen=True)
class CapitalSpec:
    """A validated ``[capital]`` table (a scenario's, or a reinsurance program's), with its defaults."""

    available_cny: float | None = None  # own funds (comprehensive capital); None: no ratios
    core_cny: float | None = None  # core capital (None: the available capital)
    counterparty_charge: bool = False  # add the C-ROSS charge on expected recoverables
    expense_ratio: float = EXPENSE_RATIO  # expenses as a share of the premium
    factor_premium_sd: float = FACTOR_PREMIUM_SD  # the drift monitor's factor charge (factor_charge)
    factor_reserve_sd: float = FACTOR_RESERVE_SD
    factor_multiplier: float = FACTOR_MULTIPLIER

    @classmethod
    def of(cls, spec: CapitalSpec | Mapping | None, *, expense_ratio: float | None = None) -> CapitalSpec:
        """``spec`` itself, or the spec of a validated table; ``expense_ratio``: the default for a table
        that does not give one (a program's capital takes the scenario's underwriting expenses)."""
        if isinstance(spec, CapitalSpec):
            return spec
        table = dict(spec or {})
        available, core = table.get("available_cny"), table.get("core_cny")
        ratio = table.get("expense_ratio", EXPENSE_RATIO if expense_ratio is None else expense_ratio)
        return cls(available_cny=None if available is None else float(available),
                   core_cny=core,  # as given: summary.json reports it as written
                   counterparty_charge=bool(table.get("counterparty_charge", False)), expense_ratio=float(ratio),
                   factor_premium_sd=float(table.get("factor_premium_sd", FACTOR_PREMIUM_SD)),
                   factor_reserve_sd=float(table.get("factor_reserve_sd", FACTOR_RESERVE_SD)),
                   factor_multiplier=float(table.get("factor_multiplier", FACTOR_MULTIPLIER)))


def tail_rule(total: np.ndarray, level: float, *, presorted: bool = False) -> tuple[float, float, float]:
    """``(v, w_above, w_at)``: a year's TVaR weight is ``w_above`` if its total exceeds the VaR ``v``,
    ``w_at`` if it equals it, else 0, and ``sum(w * total) == TVaR_level(total)``.

    Every year tied at the VaR gets the same weight (the weight of the order statistics they
    occupy, straddle included), so the weights do not depend on the order of the years.
    """
    n = total.size
    rank = max(1, math.ceil(n * level - 1e-9))
    if presorted:
        v = float(total[rank - 1])
        above = n - int(np.searchsorted(total, v, side="right"))
        at = n - above - int(np.searchsorted(total, v, side="left"))
    else:
        v = float(np.partition(total, rank - 1)[rank - 1])
        above, at = int(np.count_nonzero(total > v)), int(np.count_nonzero(total == v))
    w_above = 1.0 / (n * (1.0 - level))
    w_at = ((n - rank - above) * w_above + (rank / n - level) / (1.0 - level)) / at
    return v, w_above, w_at


def tail_weights(total: np.ndarray, level: float) -> np.ndarray:
    """Per-year weights ``w`` with ``sum(w * total) == TVaR_level(total)`` on the empirical distribution."""
    v, w_above, w_at = tail_rule(total, level)
    return np.where(total > v, w_above, np.where(total == v, w_at, 0.0))


def euler_allocation(total: np.ndarray, parts, level: float = ALLOCATION_LEVEL, *, rule=None) -> dict:
    """TVaR Euler contributions of ``parts`` (summing to ``total`` year by year).

    ``parts`` is an array [year, part], or a function returning an iterable of such arrays for
    consecutive runs of years (it is called twice; memory then does not grow with the years).
    Returns the contributions to ``TVaR - mean`` and their Monte Carlo standard errors, from the
    influence function of each contribution, ``psi_i = 1{tail} (x_gi - c_g) / (1 - a) - (x_gi - mu_g)``
    (SE = sd(psi) / sqrt(n); the VaR threshold's own noise is second order for a smooth
    conditional mean). ``rule``: :func:`tail_rule` of ``total`` when the caller has it.
    """
    total = np.asarray(total, dtype=np.float64)
    pieces = parts if callable(parts) else (lambda: [parts])
    n = total.size
    v, w_above, w_at = rule if rule is not None else tail_rule(total, level)

    def runs():
        start = 0
        for piece in pieces():
            piece = np.asarray(piece, dtype=np.float64)
            t = total[start:start + piece.shape[0]]
            start += piece.shape[0]
            yield piece, np.where(t > v, w_above, np.where(t == v, w_at, 0.0))
        if start != n:
            raise ValueError(f"parts cover {start} years, the total {n}")

    tail_mean = mean = 0.0
    tvar = 0.0
    start = 0
    for piece, w in runs():
        tail_mean = tail_mean + w @ piece  # E[X_g | tail]
        mean = mean + piece.sum(axis=0) / n
        tvar += float(w @ total[start:start + piece.shape[0]])
        start += piece.shape[0]
    psi_sum = psi_square = 0.0
    for piece, w in runs():
        psi = (w > 0)[:, None] * (piece - tail_mean) / (1.0 - level) - (piece - mean)
        psi_sum, psi_square = psi_sum + psi.sum(axis=0), psi_square + (psi**2).sum(axis=0)
    psi_var = np.maximum(psi_square / n - (psi_sum / n) ** 2, 0.0)
    return {
        "contribution": tail_mean - mean,
        "tvar_contribution": tail_mean,
        "se": np.sqrt(psi_var) / math.sqrt(n),
        "tvar": tvar,
        "mean": float(total.mean()),
    }


def counterparty_charge(contracts, expected_recoverable: np.ndarray) -> float:
    """C-ROSS counterparty default charge: sum of factor x expected annual recoverables (no diversification)."""
    return float(sum(c.counterparty_factor * r for c, r in zip(contracts, expected_recoverable)))


def assess(net_cost: np.ndarray, *, available: float | None, income: float, core: float | None = None,
           charge: float = 0.0, presorted: bool = False) -> dict:
    """SCR, solvency ratios and the probability of exhausting the available capital.

    Args:
        net_cost: per simulated year, net claims + reinstatement premiums (CNY).
        available: own funds (comprehensive capital); None: no ratios.
        income: the year's fixed part of the result: premium earned + ceding commissions -
            expenses - reinsurance premiums, so that ``result = income - net_cost``.
        core: core capital (default: ``available``).
        charge: C-ROSS counterparty default charge, added to the SCR.

    Every figure is a function of the sorted years; ``presorted`` saves the sorted copy.
    """
    ordered = np.asarray(net_cost, dtype=np.float64)
    ordered = ordered if presorted else np.sort(ordered)
    n = ordered.size
    value_at_risk = metrics.var(ordered, CAPITAL_LEVEL)
    mean = float(ordered.mean())
    loss_var = value_at_risk - income  # 99.5% VaR of -result
    insurance = max(loss_var, 0.0)
    required = insurance + charge
    # income is fixed: the SCR's Monte Carlo error is the VaR's (zero where the floor binds).
    required_se = metrics.var_se(ordered, CAPITAL_LEVEL) if loss_var > 0 else 0.0
    var_minus_mean = value_at_risk - mean + charge
    core = available if core is None else core

    def ratio(capital: float | None, requirement: float) -> float | None:
        return capital / requirement if capital is not None and requirement > 0 else None

    out: dict[str, Any] = {
        "required": required,
        "available": available,
        "solvency_ratio": ratio(available, required),
        "core": core,
        "core_ratio": ratio(core, required),
        "insurance_risk": insurance,
        "counterparty_charge": charge,
        "var_0.995": value_at_risk,
        "mean": mean,
        "income": income,
        "expected_result": income - mean,
        "result_var_0.995": -loss_var,  # the 1-in-200 year's result (a loss when negative)
        "var_minus_mean": {
            "required": var_minus_mean,
            "solvency_ratio": ratio(available, var_minus_mean),
            "definition": "99.5% VaR of the net cost minus its mean (+ counterparty charge): assumes the premium "
                          "carries the expected cost, which a stress with fixed premiums breaks; shown for "
                          "comparison only",
        },
    }
    solvency, core_ratio = out["solvency_ratio"], out["core_ratio"]

    def meets(capital: float | None, value: float | None, threshold: float) -> bool | None:
        if capital is None:
            return None
        if required <= 0:  # even the 1-in-200 year is a profit: no capital needed, any own funds meet it
            return True
        return None if value is None else bool(value >= threshold)

    out["meets"] = {
        "comprehensive_100pct": meets(available, solvency, COMPREHENSIVE_THRESHOLD),
        "core_50pct": meets(core, core_ratio, CORE_THRESHOLD),
    }
    if available is not None:
        # Own funds exhausted: the year's loss (-result) exceeds them.
        exhausted = float(n - np.searchsorted(ordered, income + available, side="right")) / n
        out["exhaustion_probability"] = exhausted
        exhaustion_se = math.sqrt(max(exhausted * (1.0 - exhausted), 1.0 / n) / n)
    else:
        out["exhaustion_probability"], exhaustion_se = None, None
    out["se"] = {
        "required": required_se,
        "solvency_ratio": solvency * required_se / required if solvency is not None else None,
        "core_ratio": core_ratio * required_se / required if core_ratio is not None else None,
        "exhaustion_probability": exhaustion_se,
        "expected_result": metrics.sd(ordered) / math.sqrt(n),
    }
    return out


def passes(meets: dict) -> bool | None:
    """The C-ROSS verdict of ``assess(...)["meets"]``: comprehensive >= 100% and core >= 50% (None: no capital)."""
    if meets.get("comprehensive_100pct") is None:
        return None
    return bool(meets["comprehensive_100pct"] and meets.get("core_50pct") is not False)


def allocate(net_cost: np.ndarray, parts, labels: list[str], required: float,
             level: float = ALLOCATION_LEVEL, *, rule=None) -> dict:
    """Allocate ``required`` to the labelled parts in proportion to their Euler TVaR contributions."""
    euler = euler_allocation(net_cost, parts, level, rule=rule)
    total_contribution = float(euler["contribution"].sum())
    scale = required / total_contribution if total_contribution > 0 else 0.0
    return {
        label: {
            "capital": float(euler["contribution"][g] * scale),
            "se": float(abs(euler["se"][g] * scale)),
            "share": float(euler["contribution"][g] / total_contribution) if total_contribution > 0 else 0.0,
            f"tvar_{level:g}_contribution": float(euler["tvar_contribution"][g]),
        }
        for g, label in enumerate(labels)
    }
