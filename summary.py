"""The summary of a run, typed: exactly summary.json's document (a ``dict``) with typed views of the
figures people read most (the loss measures and the capital block).

``Summary`` is the document itself (``summary["net"]["var"]["0.995"]`` and ``json.dumps(summary)``
work as on the dict ``summary.json`` holds, and a Summary equals the dict it was made of), so
every reader of the file contract keeps working; the views are read from it, never stored beside
it, so they cannot drift::

    s = run.summary
    s.net.var[0.995], s.net.tvar[0.99], s.net.se_mean
    s.capital.solvency_ratio, s.capital.required, s.capital.meets_comprehensive
    s.to_dict()                                     # a plain, independent copy (json-ready)
    Summary.load("results/baseline/summary.json")   # the same object from the file
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["Measures", "CapitalFigures", "Summary"]

BASES = ("gross", "ceded", "net", "net_cost")


def _levels(table: dict[str, Any]) -> dict[float, float]:
    return {float(level): float(value) for level, value in table.items()}


@dataclasses.dataclass(frozen=True)
class Measures:
    """The annual loss measures of one basis (gross, ceded, net, or net cost), CNY.

    ``var`` and ``tvar`` are keyed by the level as a float (0.995, not "0.995"); ``se_var`` and
    ``se_tvar`` are their Monte Carlo standard errors by the same keys."""

    mean: float
    std: float
    var: dict[float, float]
    tvar: dict[float, float]
    se_mean: float
    se_var: dict[float, float]
    se_tvar: dict[float, float]

    @classmethod
    def of(cls, block: dict[str, Any]) -> Measures:
        se = block.get("se", {})
        return cls(mean=float(block["mean"]), std=float(block["std"]), var=_levels(block["var"]),
                   tvar=_levels(block["tvar"]), se_mean=float(se.get("mean", float("nan"))),
                   se_var=_levels(se.get("var", {})), se_tvar=_levels(se.get("tvar", {})))


@dataclasses.dataclass(frozen=True)
class CapitalFigures:
    """The capital block: the SCR (99.5% VaR of the one-year loss of own funds), own funds, the
    C-ROSS comprehensive and core solvency ratios, and their standard errors (CNY)."""

    required: float
    available: float | None
    solvency_ratio: float | None
    core: float | None
    core_ratio: float | None
    expected_result: float
    exhaustion_probability: float | None  # None without available capital
    meets_comprehensive: bool | None
    meets_core: bool | None
    se_required: float
    se_solvency_ratio: float | None
    definition: str

    @classmethod
    def of(cls, block: dict[str, Any]) -> CapitalFigures:
        def number(value: Any) -> float | None:
            return None if value is None else float(value)

        meets, se = block.get("meets") or {}, block.get("se", {})
        return cls(required=float(block["required"]), available=number(block.get("available")),
                   solvency_ratio=number(block.get("solvency_ratio")), core=number(block.get("core")),
                   core_ratio=number(block.get("core_ratio")), expected_result=float(block["expected_result"]),
                   exhaustion_probability=number(block.get("exhaustion_probability")),
                   meets_comprehensive=meets.get("comprehensive_100pct"), meets_core=meets.get("core_50pct"),
                   se_required=float(se.get("required", float("nan"))),
                   se_solvency_ratio=number(se.get("solvency_ratio")), definition=str(block.get("definition", "")))


class Summary(dict):
    """summary.json's document with typed views; see the module docstring."""

    @classmethod
    def load(cls, path: str | Path) -> Summary:
        """Read a summary.json (an InputError naming the file if it is not one)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read a run summary: {err}", file=str(path)) from None
        if not isinstance(doc, dict) or not all(key in doc for key in ("scenario", "years", "gross", "capital")):
            raise InputError("not a leisim summary.json (it needs scenario, years, gross and capital)", file=str(path))
        return cls(doc)

    def to_dict(self) -> dict:
        """A plain dict, independent of this object: what summary.json holds."""
        return copy.deepcopy(dict(self))

    @property
    def scenario(self) -> str:
        return str(self["scenario"])

    @property
    def years(self) -> int:
        return int(self["years"])

    @property
    def seed(self) -> int:
        return int(self["seed"])

    @property
    def premium(self) -> float:
        return float(self["premium"])

    def measures(self, basis: str) -> Measures:
        """The loss measures of ``basis`` (gross, ceded, net, net_cost)."""
        if basis not in BASES:
            raise InputError("unknown basis", field="basis", value=basis, choices=BASES)
        return Measures.of(self[basis])

    @property
    def gross(self) -> Measures:
        return self.measures("gross")

    @property
    def ceded(self) -> Measures:
        return self.measures("ceded")

    @property
    def net(self) -> Measures:
        return self.measures("net")

    @property
    def net_cost(self) -> Measures:
        return self.measures("net_cost")

    @property
    def capital(self) -> CapitalFigures:
        return CapitalFigures.of(self["capital"])

    def __repr__(self) -> str:
        return f"Summary({dict.__repr__(self)})"
