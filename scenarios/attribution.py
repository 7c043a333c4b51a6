"""Analysis of change (P&L attribution) between two scenarios on common random numbers.

The change of each metric from scenario A to scenario B is split into steps applied one at a time in a
stated order (:data:`STEPS`): step k's scenario is A with the keys of steps 1..k taken from B, so the last
step is B itself (its resolved table; name and description aside) and the steps add up to the total change
exactly (a telescoping sum). Every step runs on the same simulated years (the same key, `stress.simulate`),
so its contribution's standard error is the paired one: the SD of the difference of the two scenarios'
per-year influence functions over sqrt(years) (`stress._influences`, as the stress table's paired SEs). The
order matters for non-linear metrics (a severity change is worth more after a frequency rise): it is stated
in the output and can be changed (``order``).

Premiums and reinsurance prices stay at A's (as in a stress test): contracts that are priced at their
expected loss keep the premium A priced them at, matched by name (`stress.with_prices_of`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import jax

from ..errors import InputError
from ..formats.portfolio import Portfolio
from . import stress
from .schema import Scenario, validate

# (step, the key paths of the resolved scenario table it takes from B), in the default order.
STEPS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("exposure", (("shocks", "exposure_by_sector"), ("shocks", "subsidy_withdrawal"))),
    ("frequency", (("shocks", "frequency"), ("shocks", "frequency_by_type"), ("shocks", "frequency_by_sector"),
                   ("shocks", "frequency_by_country_and_type"), ("shocks", "campaigns"), ("shocks", "year_factor"))),
    ("severity", (("shocks", "severity"), ("shocks", "severity_by_stage"))),
    ("fx", (("shocks", "fx"), ("fx",))),
    ("reinsurance", (("reinsurance",),)),
    ("default", (("shocks", "reinsurer_default"),)),
    ("parameters", (("model",),)),
)
OTHER = "other"  # every key no step names (capital, reserves, ...): last
IGNORED = {"name", "description", "extends", "years", "seed"}  # run settings and labels, not the model
METRIC_CHOICES = ("required_capital", "expected_result", "solvency_ratio", "net_mean", "net_var_0.995",
                  "net_tvar_0.99", "gross_mean", "core_ratio", "exhaustion_probability")
DEFAULT_METRICS = ("required_capital", "expected_result", "solvency_ratio", "net_mean", "net_var_0.995")


def _get(table: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(table, dict) or key not in table:
            return None
        table = table[key]
    return table


def _set(table: dict, path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    for key in parents:
        table = table.setdefault(key, {})
    if value is None:
        table.pop(last, None)
    else:
        table[last] = copy.deepcopy(value)


def _other_paths(a: dict, b: dict, named: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED:
            continue
        if key == "shocks":
            inner = set(a.get("shocks", {})) | set(b.get("shocks", {}))
            paths += [("shocks", k) for k in sorted(inner) if ("shocks", k) not in named]
        elif (key,) not in named:
            paths.append((key,))
    return paths


def steps(a: Scenario, b: Scenario, order: tuple[str, ...] | None = None) -> list[tuple[str, Scenario | None]]:
    """``[(step, scenario after it)]`` in ``order`` (default :data:`STEPS`, then ``other``); a step that
    changes nothing has None."""
    table = dict(STEPS)
    names = tuple(order) if order is not None else tuple(name for name, _ in STEPS) + (OTHER,)
    unknown = [n for n in names if n not in table and n != OTHER]
    if unknown or len(set(names)) != len(names):
        raise InputError("each step once, in the order to apply them", field="--order", value=",".join(names),
                         choices=[name for name, _ in STEPS] + [OTHER])
    named = {path for paths in table.values() for path in paths}
    other = tuple(_other_paths(a.raw, b.raw, named))
    missing = [n for n in [name for name, _ in STEPS] + [OTHER] if n not in names]
    if missing:  # a step left out would leave its keys at A's: the steps would not add up to B
        raise InputError("the order must name every step", field="--order", value=",".join(names), choices=missing)
    raw = copy.deepcopy(a.raw)
    out: list[tuple[str, Scenario | None]] = []
    for name in names:
        paths = other if name == OTHER else table[name]
        before = copy.deepcopy(raw)
        for path in paths:
            _set(raw, path, _get(b.raw, path))
        if raw.get("shocks") == {}:
            raw.pop("shocks")
        if raw == before:
            out.append((name, None))
            continue
        validate(raw, f"{a.source} -> {b.source} (step {name})")
        out.append((name, Scenario(name=f"{a.name} + {name}", raw=copy.deepcopy(raw), source=a.source)))
    return out


def attribute(a: Scenario, b: Scenario, portfolio: Portfolio, *, key: jax.Array, years: int, chunk_size: int = 10_000,
              metrics: tuple[str, ...] = DEFAULT_METRICS, order: tuple[str, ...] | None = None,
              progress=None) -> dict:
    """The attribution document (attribution.json): per metric, A's and B's values, the total change and
    each step's contribution with its paired SE; the contributions add up to the total."""
    bad = [m for m in metrics if m not in METRIC_CHOICES]
    if bad:
        raise InputError("unknown metric", field="--metric", value=",".join(bad), choices=METRIC_CHOICES)
    plan = steps(a, b, order)
    scenarios = [a] + [s for _, s in plan if s is not None]
    # One compiled kernel for every step (buffers of the largest): a step is a few scenarios, not a library.
    runs = stress.simulate(scenarios, portfolio, key=key, years=years, chunk_size=chunk_size, progress=progress,
                           share_within=math.inf)
    evaluated = [stress.evaluate(r, held_reserve=None) for r in runs]
    influences = [stress._influences(r, None) for r in runs]
    n = runs[0].series["gross"].size
    out: dict[str, Any] = {"from": a.name, "to": b.name, "from_sha256": a.sha256, "to_sha256": b.sha256,
                           "years": int(n), "order": [name for name, _ in plan], "metrics": {}}
    for metric in metrics:
        given = [e.get(metric) for e in evaluated]
        if any(v is None for v in given):
            out["metrics"][metric] = None  # e.g. a solvency ratio without [capital] available_cny
            continue
        values = [float(v) for v in given if v is not None]
        rows: list[dict[str, Any]] = []
        k = 0
        for name, scenario in plan:
            if scenario is None:
                rows.append({"step": name, "contribution": 0.0, "se": 0.0, "changed": False})
                continue
            k += 1
            diff = influences[k][metric] - influences[k - 1][metric]
            rows.append({"step": name, "contribution": float(values[k] - values[k - 1]),
                         "se": float(diff.std() / math.sqrt(n)), "changed": True})
        total_if = influences[-1][metric] - influences[0][metric]
        out["metrics"][metric] = {
            "from": float(values[0]), "to": float(values[-1]), "total": float(values[-1] - values[0]),
            "total_se": float(total_if.std() / math.sqrt(n)), "steps": rows,
            "residual": values[-1] - values[0] - math.fsum(float(r["contribution"]) for r in rows),
        }
    out["method"] = ("steps applied one at a time in the stated order (each takes its keys from the second "
                     "scenario), all on the same simulated years; contribution = metric after the step - before; "
                     "SE = sd of the difference of per-year influence functions / sqrt(years); premiums and "
                     "reinsurance prices stay at the first scenario's")
    return out


def waterfall_rows(document: dict, metric: str) -> list[tuple[str, float, float]]:
    """``(label, start, end)`` bars of a waterfall chart of ``metric``: A, each step, B."""
    block = document["metrics"][metric]
    rows = [(document["from"], 0.0, block["from"])]
    level = block["from"]
    for row in block["steps"]:
        rows.append((row["step"], level, level + row["contribution"]))
        level += row["contribution"]
    rows.append((document["to"], 0.0, block["to"]))
    return rows
