"""Stress testing on common random numbers: scenario sets, reverse stress tests, sensitivities.

Every scenario is simulated with the same key and the same year indices, and year ``y`` draws
only from ``fold_in(key, y)``: a scenario that changes nothing reproduces the baseline year by
year, and a difference between two scenarios is the scenarios' own effect. Its Monte Carlo SE is
sd(IF_b - IF_a) / sqrt(n) on the paired years (influence functions, metrics.influence), far below
the SE of either scenario alone, which is reported beside it.

Host-side orchestration (NumPy and the driver); no file I/O: cli.py writes the results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..errors import InputError
from ..formats.portfolio import Portfolio
from ..simulator import capital, metrics
from ..simulator.driver import YearTable, run_years
from ..simulator.results import capital_block, fixed_income, program_outcome
from ..vocabulary import REVERSE_TARGETS
from .compose import DEV_YEARS, Composition, compose
from .schema import Scenario

METRICS = ("gross_mean", "net_mean", "net_var_0.995", "net_tvar_0.99", "net_loss_ratio", "required_capital",
           "solvency_ratio", "exhaustion_probability", "reserve_adequacy", "expected_result", "core_ratio")
SHOCK_KINDS = ("frequency", "severity", "fx", "frequency_by_type", "frequency_by_sector", "exposure_by_sector",
               "campaigns")


@dataclasses.dataclass
class Run:
    """One scenario's simulated years and the per-year series its metrics are computed from."""

    name: str
    scenario: Scenario
    composition: Composition
    table: YearTable
    series: dict  # gross, net, net_cost, run_off [year]


BUFFERS = ("event_buffer", "dispute_buffer", "campaign_buffer", "campaign_dispute_buffer")
SHARE_WITHIN = 1.25  # share one compiled kernel when buffers differ by at most this factor


def unify_shapes(compositions: list[Composition], within: float = math.inf) -> list[Composition]:
    """Give compositions that differ only in buffer sizes the largest of each, so they share one kernel.

    Draws are prefix-stable, so a larger buffer never changes a year's result; but every slot
    costs time, so only buffers within a factor ``within`` of each other are merged (an ITC-cluster
    scenario needs 4x the campaign slots: padding every scenario to it would cost more than a
    second compilation).
    """
    def structure(comp):
        return comp.shape._replace(**{b: 0 for b in BUFFERS})

    def size(comp):
        return sum(getattr(comp.shape, b) for b in BUFFERS)

    out = list(compositions)
    groups: dict = {}
    for i, comp in enumerate(compositions):
        groups.setdefault(structure(comp), []).append(i)
    for members in groups.values():
        members = sorted(members, key=lambda i: size(compositions[i]))
        clusters, current = [], [members[0]]
        for i in members[1:]:
            if size(compositions[i]) <= within * size(compositions[current[0]]):
                current.append(i)
            else:
                clusters.append(current)
                current = [i]
        clusters.append(current)
        for cluster in clusters:
            biggest = {b: max(getattr(compositions[i].shape, b) for i in cluster) for b in BUFFERS}
            for i in cluster:
                out[i] = dataclasses.replace(compositions[i], shape=compositions[i].shape._replace(**biggest))
    return out


def _series(comp: Composition, table: YearTable) -> dict:
    outcome = program_outcome(table, comp.programs[0] if comp.programs else (), 0, comp.premium_cny)
    run_off = table.payments[:, 1:].sum(axis=1) if comp.dev_years > 1 else np.zeros_like(table.gross)
    return {"gross": table.gross, "net": outcome["net"], "net_cost": outcome["net_cost"], "run_off": run_off,
            "net_premium": outcome["net_premium"]}


def simulate(scenarios: list[Scenario], portfolio: Portfolio, *, key: jax.Array, years: int, chunk_size: int = 10_000,
             posterior=None, progress: Callable[[int], None] | None = None, dev_years: int | None = None,
             share_within: float = SHARE_WITHIN) -> list[Run]:
    """Simulate each scenario on the same key and years (common random numbers).

    ``share_within``: scenarios whose buffers differ by at most this factor share one compiled
    kernel (:func:`unify_shapes`); ``math.inf`` compiles one kernel for all (best for few years).
    """
    development = DEV_YEARS if dev_years is None else dev_years
    comps = unify_shapes([compose(s, portfolio, posterior=posterior, dev_years=development) for s in scenarios],
                         share_within)
    runs: list[Run] = []
    for scenario, comp in zip(scenarios, comps):
        table = run_years(key, comp.params, comp.shape, years=years, chunk_size=chunk_size, progress=progress)
        if runs:
            comp = with_prices_of(comp, runs[0])
        runs.append(Run(scenario.name, scenario, comp, table, _series(comp, table)))
    return runs


def with_prices_of(comp: Composition, base: Run) -> Composition:
    """The stressed scenario's contracts at the first run's premiums: reinsurance already bought is not repriced.

    Contracts priced at the expected loss (no premium given) take the premium that the first
    (baseline) run priced them at, matched by name; quota-share premiums stay proportional to the
    scenario's own portfolio premium.
    """
    if not comp.programs or not base.composition.programs:
        return comp
    base_outcome = program_outcome(base.table, base.composition.programs[0], 0, base.composition.premium_cny)
    prices = {c.name: p["premium"] for c, p in zip(base.composition.programs[0], base_outcome["prices"])
              if c.kind != "quota_share"}
    first = tuple(c._replace(premium=prices[c.name]) if c.premium is None and c.name in prices else c
                  for c in comp.programs[0])
    return dataclasses.replace(comp, programs=(first,) + comp.programs[1:])


def _income(run: Run) -> float:
    """The fixed part of the year's result (capital.py): premium - expenses - reinsurance premiums
    net of commissions, at the scenario's own premium and the baseline's reinsurance prices."""
    return fixed_income(run.composition.premium_cny, run.series["net_premium"], run.scenario.capital_spec)["income"]


def _contracts(run: Run) -> tuple:
    return run.composition.programs[0] if run.composition.programs else ()


def _expected_recovered(run: Run) -> np.ndarray:
    """Mean recovery per contract of the first program (none without reinsurance)."""
    contracts = _contracts(run)
    if not contracts:
        return np.zeros(0)
    return run.table.recovered[:, 0, :len(contracts)].mean(axis=0)


def _counterparty_charge(run: Run) -> float:
    """The C-ROSS counterparty charge, as summary.json computes it, when ``[capital] counterparty_charge``."""
    contracts = _contracts(run)
    if not run.scenario.capital_spec.counterparty_charge or not contracts:
        return 0.0
    return capital.counterparty_charge(contracts, _expected_recovered(run))


def evaluate(run: Run, *, held_reserve: float | None) -> dict:
    """The stress table's metrics for one scenario: levels, PASS/FAIL against C-ROSS, SEs.

    Capital is the SCR of the one-year result (capital.assess): premiums and reinsurance prices
    stay at the baseline's, so a stress that raises claims lowers the result and the ratio."""
    s = run.series
    net = metrics.risk_measures(s["net"], levels=(0.99, 0.995))
    # The capital block summary.json reports (results.capital_block), on this scenario's years.
    cap = capital_block(s["net_cost"], contracts=_contracts(run), expected_recovered=_expected_recovered(run),
                        premium_cny=run.composition.premium_cny, net_premium_cny=s["net_premium"],
                        capital_spec=run.scenario.capital_spec)
    out = {
        "gross_mean": float(s["gross"].mean()),
        "net_mean": net["mean"],
        "net_var_0.995": net["var"]["0.995"],
        "net_tvar_0.99": net["tvar"]["0.99"],
        "net_loss_ratio": net["mean"] / s["net_premium"] if s["net_premium"] > 0 else None,
        "required_capital": cap["required"],
        "solvency_ratio": cap["solvency_ratio"],
        "core_ratio": cap["core_ratio"],
        "own_funds": cap["available"],
        "core_capital": cap["core"],
        "expected_result": cap["expected_result"],
        "required_capital_var_minus_mean": cap["var_minus_mean"]["required"],
        "meets": cap["meets"],
        "exhaustion_probability": cap["exhaustion_probability"],
        "reserve_adequacy": float(np.mean(s["run_off"] <= held_reserve)) if held_reserve is not None else None,
        "premium": run.composition.premium_cny,
        "years": int(s["gross"].size),
        "se": {"net_mean": net["se"]["mean"], "net_var_0.995": net["se"]["var"]["0.995"],
               "net_loss_ratio": net["se"]["mean"] / s["net_premium"] if s["net_premium"] > 0 else None,
               "net_tvar_0.99": net["se"]["tvar"]["0.99"], "required_capital": cap["se"]["required"],
               "solvency_ratio": cap["se"]["solvency_ratio"], "core_ratio": cap["se"]["core_ratio"],
               "expected_result": cap["se"]["expected_result"]},
    }
    return out


def _influences(run: Run, held_reserve: float | None) -> dict:
    """Per-year influence functions of each metric (for paired standard errors)."""
    s = run.series
    out = {"gross_mean": metrics.influence(s["gross"], "mean"), "net_mean": metrics.influence(s["net"], "mean"),
           "net_var_0.995": metrics.influence(s["net"], "var", 0.995),
           "net_tvar_0.99": metrics.influence(s["net"], "tvar", 0.99)}
    income = _income(run)
    # SCR = VaR(net cost) - income (income fixed): the VaR's influence, 0 where the floor binds.
    insurance = metrics.var(np.sort(s["net_cost"]), 0.995) - income
    var_if = metrics.influence(s["net_cost"], "var", 0.995)
    out["required_capital"] = var_if if insurance > 0 else np.zeros_like(s["net"])
    required = max(insurance, 0.0) + _counterparty_charge(run)
    out["expected_result"] = -metrics.influence(s["net_cost"], "mean")
    out["net_loss_ratio"] = out["net_mean"] / s["net_premium"] if s["net_premium"] > 0 else np.zeros_like(s["net"])
    spec = run.scenario.capital_spec
    available = spec.available_cny
    core = available if spec.core_cny is None else spec.core_cny
    for name, amount in (("solvency_ratio", available), ("core_ratio", core)):
        out[name] = (-float(amount) / required**2 * out["required_capital"] if amount is not None and required > 0
                     else np.zeros_like(s["net"]))
    if held_reserve is not None:
        covered = (s["run_off"] <= held_reserve).astype(float)
        out["reserve_adequacy"] = covered - covered.mean()
    if available is not None:
        hit = (s["net_cost"] - income > available).astype(float)  # as capital.assess counts it
        out["exhaustion_probability"] = hit - hit.mean()
    return out


def compare(base: Run, runs: list[Run], *, held_reserve: float | None) -> dict:
    """Metrics per scenario and their change from ``base`` with paired and unpaired SEs."""
    n = base.series["gross"].size
    base_values, base_if = evaluate(base, held_reserve=held_reserve), _influences(base, held_reserve)
    out = {}
    for run in runs:
        values, influences = evaluate(run, held_reserve=held_reserve), _influences(run, held_reserve)
        change: dict[str, dict | None] = {}
        for m in METRICS:
            if values.get(m) is None or base_values.get(m) is None or m not in influences or m not in base_if:
                change[m] = None
                continue
            diff_if = influences[m] - base_if[m]
            change[m] = {
                "difference": values[m] - base_values[m],
                "relative": (values[m] / base_values[m] - 1.0) if base_values[m] else None,
                "se": float(diff_if.std() / math.sqrt(n)),
                "se_if_independent": float(math.hypot(influences[m].std(), base_if[m].std()) / math.sqrt(n)),
            }
        out[run.name] = {"description": run.scenario.description, "scenario_sha256": run.scenario.sha256,
                         "metrics": values, "change_from_baseline": change}
    return out


# ---------------------------------------------------------------------------------------------
# Shocked variants: reverse stress tests and sensitivities.

def parse_shock(text: str) -> tuple[str, str]:
    """``"frequency:US"`` -> ("frequency", "US"); ``severity`` alone means ``severity:*``."""
    kind, _, key = text.partition(":")
    if kind not in SHOCK_KINDS:
        raise InputError("unknown shock kind", field="--shock", value=kind, choices=SHOCK_KINDS)
    if kind == "fx" and not key:
        raise InputError("an FX shock names its currency, e.g. fx:USD", field="--shock", value=text)
    if kind in ("frequency_by_type", "frequency_by_sector", "exposure_by_sector", "campaigns") and not key:
        raise InputError(f"a {kind} shock names its key, e.g. {kind}:patent", field="--shock", value=text)
    return kind, key or "*"


def with_multiplier(scenario: Scenario, kind: str, key: str, factor: float) -> Scenario:
    """The scenario with one more multiplier on top of its own shocks (``campaigns:kind`` scales the rate)."""
    shocks = scenario.shocks
    change: dict[str, Any]
    if kind == "campaigns":
        rate = float(shocks.get("campaigns", {}).get(key, {}).get("rate", 1.0))
        change = {"campaigns": {key: {"rate": rate * factor}}}
    else:
        table = shocks.get(kind, {})
        base = table.get(key, table.get("*", 1.0) if kind in ("frequency", "severity", "exposure_by_sector") else 1.0)
        change = {kind: {key: float(base) * factor}}
    return scenario.updated({"shocks": change}, name=f"{scenario.name} [{kind}:{key} x{factor:.4g}]")


class _ShockedMetrics:
    """The metrics of ``scenario`` with one shock scaled by ``m``, on the same simulated years (CRN),
    each multiplier simulated once; reinsurance bought keeps the unshocked scenario's prices."""

    def __init__(self, scenario: Scenario, portfolio: Portfolio, *, kind: str, key: str, target: str,
                 jax_key: jax.Array, years: int, chunk_size: int, posterior, progress):
        self.scenario, self.portfolio, self.kind, self.key, self.target = scenario, portfolio, kind, key, target
        self.jax_key, self.years, self.chunk_size, self.posterior, self.progress = (jax_key, years, chunk_size,
                                                                                   posterior, progress)
        self.cache: dict[float, dict] = {}
        self.comps: dict[float, Composition] = {}
        self.reference: Composition | None = None  # the largest multiplier's composition: its buffers fit all
        self._unshocked: Run | None = None  # the scenario itself (multiplier 1): the reinsurance prices it pays

    def unshocked(self) -> Run:
        if self._unshocked is None:
            comp = compose(self.scenario, self.portfolio, posterior=self.posterior)
            table = run_years(self.jax_key, comp.params, comp.shape, years=self.years, chunk_size=self.chunk_size)
            self._unshocked = Run(self.scenario.name, self.scenario, comp, table, _series(comp, table))
        return self._unshocked

    def _run(self, m: float) -> tuple[Run, Composition]:
        """The run at ``m`` and its composition before repricing (whose buffers later runs share)."""
        if m == 1.0:
            run = self.unshocked()
            return run, run.composition
        shocked = with_multiplier(self.scenario, self.kind, self.key, m)
        comp = compose(shocked, self.portfolio, posterior=self.posterior)
        if self.reference is not None:
            comp = unify_shapes([self.reference, comp])[1]
        table = run_years(self.jax_key, comp.params, comp.shape, years=self.years, chunk_size=self.chunk_size)
        priced = with_prices_of(comp, self.unshocked())
        return Run(shocked.name, shocked, priced, table, _series(priced, table)), comp

    def __call__(self, m: float) -> dict:
        if m not in self.cache:
            run, self.comps[m] = self._run(m)
            evaluated = evaluate(run, held_reserve=None)
            if evaluated[self.target] is None:
                raise InputError(f"the scenario gives no {self.target} (for solvency_ratio: [capital] available_cny)",
                                 field="--target", value=self.target)
            self.cache[m] = evaluated
            if self.progress is not None:
                self.progress(f"{self.kind}:{self.key} x{m:.4g}: {self.target} = {evaluated[self.target]:.6g}")
        return self.cache[m]


def reverse(scenario: Scenario, portfolio: Portfolio, *, kind: str, key: str, target: str, value: float,
            jax_key: jax.Array, years: int, chunk_size: int = 10_000, low: float = 1.0, high: float = 4.0,
            max_high: float = 256.0, tolerance: float = 0.002, posterior=None,
            progress: Callable[[str], None] | None = None) -> dict:
    """Smallest multiplier of one shock at which ``target`` breaches ``value``, by bisection on CRN.

    The metric is evaluated on the same simulated years at every multiplier, so it moves only
    through the shock. Its uncertainty is the metric's SE at the answer divided by the slope of
    the metric in the multiplier (delta method).
    """
    if target not in REVERSE_TARGETS:
        raise InputError("unknown reverse-stress target", field="--target", value=target, choices=REVERSE_TARGETS)
    worse_when_larger = REVERSE_TARGETS[target]

    def breached(x: float) -> bool:
        return x >= value if worse_when_larger else x <= value

    metric_at = _ShockedMetrics(scenario, portfolio, kind=kind, key=key, target=target, jax_key=jax_key, years=years,
                                chunk_size=chunk_size, posterior=posterior, progress=progress)
    shock = {"target": target, "value": value, "shock": f"{kind}:{key}"}
    start = metric_at(low)
    if breached(start[target]):
        return {"found": True, "multiplier": low, "already_breached": True, "metric": start[target], **shock,
                "evaluations": len(metric_at.cache)}
    # Buffers sized for the largest multiplier tried, so later runs reuse the compiled kernel.
    while True:
        top = metric_at(high)
        metric_at.reference = metric_at.comps[high]
        if breached(top[target]) or high >= max_high:
            break
        low, high = high, high * 2
    if not breached(top[target]):
        return {"found": False, "multiplier": None, "searched_up_to": high, "metric": top[target], **shock,
                "evaluations": len(metric_at.cache)}
    while high - low > tolerance * high:
        mid = 0.5 * (low + high)
        if breached(metric_at(mid)[target]):
            high = mid
        else:
            low = mid
    at_high = metric_at(high)
    # The slope over a 10% span: over the final bracket alone, CRN steps would dominate it.
    span = max(0.9 * high, 1e-9) if high > 0 else low
    slope = (at_high[target] - metric_at(span)[target]) / (high - span) if high > span else math.nan
    se_metric = at_high["se"].get(target)
    if target in ("exhaustion_probability", "reserve_adequacy"):
        p = at_high[target]
        se_metric = math.sqrt(max(p * (1 - p), 1.0 / years) / years)
    se = abs(se_metric / slope) if se_metric is not None and slope and math.isfinite(slope) else None
    return {"found": True, "multiplier": high, "multiplier_se": se, "bracket": [low, high], "metric": at_high[target],
            "metric_se": se_metric, **shock, "evaluations": len(metric_at.cache), "years": years,
            "method": "bisection on common random numbers; SE = metric SE / |d metric / d multiplier|"}


def sensitivities(base: Run, portfolio: Portfolio, *, jax_key: jax.Array, years: int, chunk_size: int = 10_000,
                  step: float = 1.1, posterior=None, progress: Callable[[int], None] | None = None) -> dict:
    """Per country: the change in net VaR 99.5 and TVaR 99 per +10% frequency and per +10% severity.

    Finite differences on common random numbers against the first ``years`` of ``base`` (the
    same years: year ``y`` depends only on ``(key, y)``). Not autodiff: VaR is a step function of
    the simulated years, and the per-dispute policy limits make costs non-smooth.
    """
    countries = [c for c in base.composition.countries
                 if portfolio.exposure[:, portfolio.countries.index(c)].sum() > 0]
    base_net = base.series["net"][:years]
    scenarios = [with_multiplier(base.scenario, kind, c, step) for c in countries for kind in ("frequency", "severity")]
    runs = simulate(scenarios, portfolio, key=jax_key, years=years, chunk_size=chunk_size, posterior=posterior,
                    progress=progress, dev_years=base.composition.dev_years)
    out = {}
    for i, c in enumerate(countries):
        entry = {}
        for j, kind in enumerate(("frequency", "severity")):
            net = runs[2 * i + j].series["net"]
            entry[kind] = {
                "net_var_0.995": metrics.paired_difference(base_net, net, "var", 0.995),
                "net_tvar_0.99": metrics.paired_difference(base_net, net, "tvar", 0.99),
            }
        out[c] = entry
    return {"by_country": out, "step": step - 1.0, "years": years,
            "method": "finite differences (+10%) on common random numbers; not autodiff (VaR is not smooth "
                      "in the simulated years)"}
