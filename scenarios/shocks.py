"""Scenario shocks: what-if multipliers on the portfolio, the model parameters and reinsurance.

Every shock is a multiplier (1 = no change) so that shocks compose by multiplication and a
scenario that sets them all to 1 reproduces its parent exactly (common random numbers). The
``[shocks]`` table:

- ``frequency`` by country ("*" for all), ``frequency_by_type`` by dispute type,
  ``frequency_by_sector`` by policy sector, ``frequency_by_country_and_type`` (``{ US = { patent
  = 2.0 } }``): multiply dispute rates (posterior or fixed cells).
- ``severity`` by country ("*" for all): cost inflation; ``severity_by_stage`` by litigation
  stage (early, discovery, trial, appeal; posterior-driven scenarios).
- ``fx`` by currency: CNY per unit of the currency, relative to baseline.
- ``year_factor``: multiplies the sd of the common log year effect (how strongly bad years
  cluster across countries).
- ``campaigns``: per kind (``schedule_a``, ``itc_337``) a ``rate`` and a ``size`` multiplier
  (campaigns per year; extra insured sellers named per campaign).
- ``exposure_by_sector``: portfolio growth or shrinkage: each policy's exposures and premium.
- ``subsidy_withdrawal = { lapse_elasticity, adverse_selection }``: without the premium subsidy a
  policy stays with probability ``1 - lapse_elasticity x subsidy_share`` (its exposures and premium
  are scaled by that expectation) and the policies that stay are riskier (``adverse_selection``
  multiplies their dispute rates). Judgment, documented per scenario.
- ``reinsurer_default = { probability, recovery_rate, reinsurers = [...] }``: sets the annual
  default probability and recovery rate of every contract (or those of the named reinsurers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from ..countries import COUNTRIES, CURRENCIES
from ..formats.portfolio import Portfolio
from ..vocabulary import CAMPAIGN_KINDS, DISPUTE_TYPES, STAGES

# The largest shock multiplier: beyond it costs overflow float32 sampling and counts the buffers
# (the reverse stress test searches up to 256).
MAX_MULTIPLIER = 1000.0


SHOCK_KEYS = {
    "frequency": "by country or *: dispute-rate multiplier",
    "frequency_by_type": "by dispute type: dispute-rate multiplier",
    "frequency_by_sector": "by policy sector: dispute-rate multiplier",
    "frequency_by_country_and_type": "by country, then dispute type: { US = { patent = 2.0 } }",
    "severity": "by country or *: cost multiplier (inflation)",
    "severity_by_stage": "by litigation stage (early, discovery, trial, appeal): cost multiplier",
    "fx": "by currency: CNY per unit, relative to baseline",
    "year_factor": "multiplier of the sd of the common year effect, >= 0",
    "campaigns": "by campaign kind: { rate = m, size = m }",
    "exposure_by_sector": "by policy sector (or *): exposure and premium multiplier",
    "subsidy_withdrawal": "{ lapse_elasticity = 0-1, adverse_selection = multiplier }",
    "reinsurer_default": "{ probability = 0-1, recovery_rate = 0-1, reinsurers = [names] }",
}


def validate(ck, shocks: dict, path: str = "shocks") -> dict:
    """Check a ``[shocks]`` table with the scenario checker ``ck`` (schema._Checker)."""
    ck.table(shocks, path, SHOCK_KEYS)
    regions = set(COUNTRIES) | {"*"}
    for key in ("frequency", "severity"):
        if key in shocks:
            ck.multipliers(shocks[key], f"{path}.{key}", regions, "multiplier >= 0")
    if "frequency_by_country_and_type" in shocks:
        key = "frequency_by_country_and_type"
        outer = ck.table(shocks[key], f"{path}.{key}", {c: "table by dispute type" for c in regions})
        for country, inner in outer.items():
            ck.multipliers(inner, f"{path}.{key}.{country}", DISPUTE_TYPES, "multiplier >= 0")
    if "frequency_by_type" in shocks:
        ck.multipliers(shocks["frequency_by_type"], f"{path}.frequency_by_type", DISPUTE_TYPES, "multiplier >= 0")
    for key in ("frequency_by_sector", "exposure_by_sector"):
        if key in shocks:
            table = shocks[key]
            if not isinstance(table, dict):
                ck.fail(f"{path}.{key}", "must be a table of sector = multiplier", table)
            for sector, value in table.items():
                ck.number(value, f"{path}.{key}.{sector}", low=0.0, high=MAX_MULTIPLIER)
    if "severity_by_stage" in shocks:
        ck.multipliers(shocks["severity_by_stage"], f"{path}.severity_by_stage", STAGES, "multiplier >= 0")
    if "fx" in shocks:
        fx = ck.multipliers(shocks["fx"], f"{path}.fx", CURRENCIES, "multiplier > 0")
        for currency, value in fx.items():
            if value <= 0:
                ck.fail(f"{path}.fx.{currency}", "must be > 0 (CNY per unit of currency, relative to baseline)", value)
    if "year_factor" in shocks:
        ck.number(shocks["year_factor"], f"{path}.year_factor", low=0.0, high=10.0)
    if "campaigns" in shocks:
        campaigns = ck.table(shocks["campaigns"], f"{path}.campaigns", {k: "{ rate, size }" for k in CAMPAIGN_KINDS})
        for kind, spec in campaigns.items():
            spec = ck.table(spec, f"{path}.campaigns.{kind}", {"rate": "multiplier >= 0", "size": "multiplier >= 0"})
            for key, value in spec.items():
                ck.number(value, f"{path}.campaigns.{kind}.{key}", low=0.0, high=MAX_MULTIPLIER)
    if "subsidy_withdrawal" in shocks:
        spec = ck.table(shocks["subsidy_withdrawal"], f"{path}.subsidy_withdrawal",
                        {"lapse_elasticity": "0-1: lapse probability per unit of subsidy share",
                         "adverse_selection": "dispute-rate multiplier for the policies that stay, >= 0"})
        if "lapse_elasticity" in spec:
            ck.number(spec["lapse_elasticity"], f"{path}.subsidy_withdrawal.lapse_elasticity", low=0.0, high=1.0)
        if "adverse_selection" in spec:
            ck.number(spec["adverse_selection"], f"{path}.subsidy_withdrawal.adverse_selection", low=0.0)
    if "reinsurer_default" in shocks:
        spec = ck.table(shocks["reinsurer_default"], f"{path}.reinsurer_default",
                        {"probability": "0-1", "recovery_rate": "0-1", "reinsurers": "list of reinsurer names"})
        for key in ("probability", "recovery_rate"):
            if key in spec:
                ck.number(spec[key], f"{path}.reinsurer_default.{key}", low=0.0, high=1.0)
        if "reinsurers" in spec and not (isinstance(spec["reinsurers"], list)
                                         and all(isinstance(r, str) for r in spec["reinsurers"])):
            ck.fail(f"{path}.reinsurer_default.reinsurers", "must be a list of reinsurer names", spec["reinsurers"])
    return shocks


def _by(table: Mapping[str, float], key: str) -> float:
    return float(table.get(key, table.get("*", 1.0)))


def _empty() -> Mapping:
    return MappingProxyType({})


def _floats(table: Any) -> Mapping[str, float]:
    return MappingProxyType({str(k): float(v) for k, v in (table or {}).items()})


@dataclasses.dataclass(frozen=True)
class ReinsurerDefault:
    """``[shocks] reinsurer_default``: the default probability and recovery rate it sets (None: the
    contract's own), on the named reinsurers or contracts (None: every contract)."""

    probability: float | None = None
    recovery_rate: float | None = None
    reinsurers: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Shocks:
    """A validated ``[shocks]`` table, typed, with its defaults (1: no change); read-only mappings.

    A variant is a new scenario (``Scenario.updated``), validated again; a Shocks is never edited."""

    frequency: Mapping[str, float] = dataclasses.field(default_factory=_empty)  # by country or "*"
    frequency_by_type: Mapping[str, float] = dataclasses.field(default_factory=_empty)
    frequency_by_sector: Mapping[str, float] = dataclasses.field(default_factory=_empty)
    frequency_by_country_and_type: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=_empty)
    severity: Mapping[str, float] = dataclasses.field(default_factory=_empty)  # by country or "*"
    severity_by_stage: Mapping[str, float] = dataclasses.field(default_factory=_empty)
    fx: Mapping[str, float] = dataclasses.field(default_factory=_empty)  # by currency
    year_factor: float = 1.0
    campaigns: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=_empty)  # kind -> (rate, size) multipliers
    exposure_by_sector: Mapping[str, float] = dataclasses.field(default_factory=_empty)  # by sector or "*"
    lapse_elasticity: float = 0.0  # subsidy withdrawal
    adverse_selection: float = 1.0  # subsidy withdrawal
    reinsurer_default: ReinsurerDefault | None = None

    @classmethod
    def of(cls, table: Mapping[str, Any] | Shocks | None) -> Shocks:
        """From a table :func:`validate` accepted (a Shocks is returned as it is)."""
        if isinstance(table, Shocks):
            return table
        table = table or {}
        withdrawal = table.get("subsidy_withdrawal", {})
        default = table.get("reinsurer_default")
        return cls(
            frequency=_floats(table.get("frequency")), frequency_by_type=_floats(table.get("frequency_by_type")),
            frequency_by_sector=_floats(table.get("frequency_by_sector")),
            frequency_by_country_and_type=MappingProxyType(
                {str(c): _floats(t) for c, t in table.get("frequency_by_country_and_type", {}).items()}),
            severity=_floats(table.get("severity")), severity_by_stage=_floats(table.get("severity_by_stage")),
            fx=_floats(table.get("fx")), year_factor=float(table.get("year_factor", 1.0)),
            campaigns=MappingProxyType({str(k): (float(v.get("rate", 1.0)), float(v.get("size", 1.0)))
                                        for k, v in table.get("campaigns", {}).items()}),
            exposure_by_sector=_floats(table.get("exposure_by_sector")),
            lapse_elasticity=float(withdrawal.get("lapse_elasticity", 0.0)),
            adverse_selection=float(withdrawal.get("adverse_selection", 1.0)),
            reinsurer_default=None if not default else ReinsurerDefault(
                probability=None if "probability" not in default else float(default["probability"]),
                recovery_rate=None if "recovery_rate" not in default else float(default["recovery_rate"]),
                reinsurers=None if "reinsurers" not in default else tuple(default["reinsurers"])),
        )

    def frequency_multiplier(self, country: str, dispute_type: str, sector: str) -> float:
        """Dispute-rate multiplier for a (country, type, sector), adverse selection included."""
        m = _by(self.frequency, country) * _by(self.frequency_by_type, dispute_type)
        m *= _by(self.frequency_by_sector, sector)
        by_cell = self.frequency_by_country_and_type
        m *= float(by_cell.get(country, by_cell.get("*", {})).get(dispute_type, 1.0))
        return m * self.adverse_selection

    def cost_multiplier(self, country: str, currency: str) -> float:
        """Cost multiplier for a forum: inflation by country times the FX shock of its currency."""
        return _by(self.severity, country) * float(self.fx.get(currency, 1.0))

    def stage_multipliers(self, n_stages: int) -> np.ndarray:
        """Per-stage cost multipliers (a single-stage model takes none)."""
        if n_stages == 1:
            return np.ones(1)
        return np.array([float(self.severity_by_stage.get(name, 1.0)) for name in STAGES[:n_stages]])

    def campaign_multipliers(self, kind: str) -> tuple[float, float]:
        """(rate, size) multipliers of a campaign kind."""
        return self.campaigns.get(kind, (1.0, 1.0))

    def apply_to_portfolio(self, portfolio: Portfolio) -> Portfolio:
        """Portfolio growth or shrinkage by sector and the subsidy-withdrawal lapse (exposures and premium)."""
        if not self.exposure_by_sector and self.lapse_elasticity == 0.0:
            return portfolio
        keep = (np.array([_by(self.exposure_by_sector, s) for s in portfolio.sector])
                * (1.0 - self.lapse_elasticity * portfolio.subsidy_share))
        return dataclasses.replace(portfolio, exposure=portfolio.exposure * keep[:, None],
                                   premium_cny=portfolio.premium_cny * keep)

    def unknown_sectors(self, portfolio: Portfolio) -> list[str]:
        """Sectors named by the shocks that the portfolio does not have (a warning, not an error)."""
        named = set(self.frequency_by_sector) | set(self.exposure_by_sector)
        return sorted(named - set(portfolio.sector) - {"*"})

    def apply_to_contracts(self, contracts: list) -> list:
        """Reinsurer default shock: override default probability and recovery rate."""
        spec = self.reinsurer_default
        if spec is None:
            return contracts
        out = []
        for c in contracts:
            if spec.reinsurers is None or c.reinsurer in spec.reinsurers or c.name in spec.reinsurers:
                c = c._replace(
                    default_probability=c.default_probability if spec.probability is None else spec.probability,
                    recovery_rate=c.recovery_rate if spec.recovery_rate is None else spec.recovery_rate)
            out.append(c)
        return out
