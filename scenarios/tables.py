"""The two sources of a model on a portfolio, in one intermediate form (:class:`ModelTables`):

- ``parameters = "fixed"``: the scenario's ``[[model.cells]]`` (:func:`fixed_tables`: one draw, one
  severity stage);
- ``parameters = "posterior"``: the fitted model's posterior draws (:func:`posterior_tables`).

:func:`leisim.scenarios.compose.assemble` turns either into engine arrays. Host side, NumPy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..countries import COUNTRIES, DURATION_SIGMA, duration_median_years
from ..formats.portfolio import Portfolio
from ..models.posterior import MAX_DRAWS, UNSEEN_SEED, _country_table, _point, _thin, _values, load_posterior
from ..models.truth import (
    CAMPAIGN_DURATION,
    CAMPAIGN_KINDS,
    CAMPAIGN_TARGETS,
    DISPUTE_TYPES,
    FX_VOLATILITY,
    REFERENCE_SECTOR,
    fee_shifting,
)
from ..simulator.engine import FAMILIES
from ..vocabulary import STAGES
from . import shocks as shock_rules
from .schema import Scenario


@dataclasses.dataclass(frozen=True)
class ModelTables:
    """A model on a portfolio, before it becomes engine arrays. Amounts in CNY.

    Strata: ``stratum_cell[s]`` and its entries ``stratum_policies[s]`` with fixed weights
    ``stratum_weights[s]``; the expected disputes of entry ``i`` of stratum ``s`` in draw ``d``
    are ``stratum_scale[d, s] * stratum_weights[s][i]`` before the year effect.
    """

    cell_country: tuple[str, ...]
    cell_dispute_type: tuple[str, ...]
    cell_family: np.ndarray  # [cell] index into FAMILIES
    cell_currency: tuple[str, ...]  # [cell]
    stratum_cell: np.ndarray  # [stratum]
    stratum_policies: tuple[np.ndarray, ...]
    stratum_weights: tuple[np.ndarray, ...]
    stratum_scale: np.ndarray  # [draw, stratum]
    cell_concentration: np.ndarray  # [draw, cell] NB2 k, 0 = not NB2
    cell_stage_probability: np.ndarray  # [draw, cell, stage]
    cell_severity: np.ndarray  # [draw, cell, stage, 3]
    cell_fee: np.ndarray  # [draw, cell, 3]
    year_sigma: np.ndarray  # [draw]
    fx_sigma: dict[str, float]  # currency -> annual log-volatility
    cell_dispersion: np.ndarray | None = None  # [draw, cell] NB1 delta, 0 = not NB1 (None: all 0)
    campaign_cell: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, int))  # [kind]
    campaign_policies: tuple[np.ndarray, ...] = ()  # per kind: target policies
    campaign_weights: tuple[np.ndarray, ...] = ()  # per kind: their weights
    campaign_rate: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0)))  # [draw, kind]
    campaign_size: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 0, 2)))  # [draw, kind, 2]
    cell_duration: np.ndarray | None = None  # [draw, cell, stage, 2] (log median years, log sd); None: by country

    @property
    def n_draws(self) -> int:
        return self.stratum_scale.shape[0]

    def with_draws_of(self, other: ModelTables) -> ModelTables:
        """These draws followed by ``other``'s: the same cells, strata and campaigns (the same
        scenario on the same portfolio), more rows along the draw axis."""
        for name in PER_DRAW:
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None) or (mine is not None and mine.shape[1:] != theirs.shape[1:]):
                raise ValueError(f"tables of different models: {name} {getattr(mine, 'shape', None)} vs "
                                 f"{getattr(theirs, 'shape', None)}")
        if (self.cell_country, self.cell_dispute_type) != (other.cell_country, other.cell_dispute_type) or \
                not np.array_equal(self.stratum_cell, other.stratum_cell):
            raise ValueError("tables of different models: cells or strata differ")
        stacked: dict[str, Any] = {name: np.concatenate([getattr(self, name), getattr(other, name)])
                                   for name in PER_DRAW if getattr(self, name) is not None}
        return dataclasses.replace(self, **stacked)


# The fields of ModelTables with a leading draw axis.
PER_DRAW = ("stratum_scale", "cell_concentration", "cell_stage_probability", "cell_severity", "cell_fee",
            "year_sigma", "cell_dispersion", "campaign_rate", "campaign_size", "cell_duration")


def _severity_params(sev: dict, multiplier: float) -> tuple[int, tuple[float, float, float]]:
    """Engine parameters of a severity, scaled by ``multiplier`` (cost inflation times FX)."""
    family = FAMILIES.index(sev["distribution"])
    if sev["distribution"] == "lognormal":
        return family, (math.log(sev["median_cny"] * multiplier), float(sev["sigma"]), 0.0)
    if sev["distribution"] == "gamma":
        scale = sev["scale_cny"] if "scale_cny" in sev else sev["mean_cny"] / sev["shape"]
        return family, (float(sev["shape"]), scale * multiplier, 0.0)
    return family, (float(sev["alpha"]), sev["scale_cny"] * multiplier, sev.get("threshold_cny", 0.0) * multiplier)


def fixed_tables(scenario: Scenario, portfolio: Portfolio) -> tuple[ModelTables, np.ndarray]:
    """The scenario's ``[[model.cells]]`` on the portfolio: one draw, one stratum, one stage.

    The expected count for policy ``p`` in cell ``g`` is
    ``rate_g * frequency shock(country) * sector_relativity_g(sector_p) * exposure[p, country]``.
    Returns the tables and each entry's cell.
    """
    shocks = scenario.shocks_spec
    column = {country: c for c, country in enumerate(portfolio.countries)}
    sector = np.asarray(portfolio.sector)
    uncovered = [c for c in portfolio.countries if c not in {cell["country"] for cell in scenario.cells}
                 and portfolio.exposure[:, column[c]].sum() > 0]
    if uncovered:
        warnings.warn(
            f"{scenario.source}: the portfolio has exposure to {', '.join(uncovered)} but the scenario has no "
            "[[model.cells]] for it: no disputes are simulated there. Add cells for these countries.",
            stacklevel=3,
        )
    cells = []
    for spec in scenario.cells:
        country = spec["country"]
        if country not in column:
            continue  # the portfolio has no exposure there
        rel = spec.get("sector_relativity", {})
        relativity = np.array([float(rel.get(s, 1.0)) for s in sector])
        shocked = np.array([shocks.frequency_multiplier(country, spec["dispute_type"], s) for s in sector])
        lam = spec["frequency"]["rate"] * shocked * relativity * portfolio.exposure[:, column[country]]
        policies = np.flatnonzero(lam > 0)
        if policies.size == 0:
            continue
        currency = spec.get("currency", COUNTRIES[country].currency)
        multiplier = shocks.cost_multiplier(country, currency)
        k = float(spec["frequency"]["concentration"]) if spec["frequency"]["distribution"] == "negative_binomial" else 0.0
        duration = spec.get("duration", {})
        cells.append(dict(country=country, dispute_type=spec["dispute_type"], policies=policies, lam=lam[policies],
                          k=k, currency=currency, severity=_severity_params(spec["severity"], multiplier),
                          duration=(math.log(float(duration.get("median_years", duration_median_years(country)))),
                                    float(duration.get("sigma", DURATION_SIGMA)))))
    if not cells:
        # Nothing can happen: keep one empty cell so that the kernel's shapes stay valid.
        cells.append(dict(country=portfolio.countries[0] if portfolio.countries else "US", dispute_type="patent",
                          policies=np.zeros(1, int), lam=np.zeros(1), k=0.0, currency="CNY",
                          severity=(0, (0.0, 1.0, 0.0)), duration=(0.0, DURATION_SIGMA)))
    n_cells = len(cells)
    fx_vol = scenario.fx_volatility
    return ModelTables(
        cell_country=tuple(c["country"] for c in cells),
        cell_dispute_type=tuple(c["dispute_type"] for c in cells),
        cell_family=np.array([c["severity"][0] for c in cells]),
        cell_currency=tuple(c["currency"] for c in cells),
        # One stratum holding every entry with its full rate (the scale is 1).
        stratum_cell=np.zeros(1, int),
        stratum_policies=(np.concatenate([c["policies"] for c in cells]),),
        stratum_weights=(np.concatenate([c["lam"] for c in cells]),),
        stratum_scale=np.ones((1, 1)),
        cell_concentration=np.array([[c["k"] for c in cells]]),
        cell_stage_probability=np.ones((1, n_cells, 1)),
        cell_severity=np.array([[[c["severity"][1]] for c in cells]]),
        cell_fee=np.zeros((1, n_cells, 3)),
        year_sigma=np.array([scenario.model.year_effect_sd
                             * shocks.year_factor]),
        fx_sigma={str(k): float(v) for k, v in fx_vol.items()},
        cell_duration=np.array([[[c["duration"]] for c in cells]]),
    ), np.concatenate([np.full(len(c["policies"]), i) for i, c in enumerate(cells)])


@dataclasses.dataclass
class _Cells:
    """ModelTables' columns, appended cell by cell (then stratum by stratum, campaign kind by kind)."""

    country: list[str] = dataclasses.field(default_factory=list)
    dispute_type: list[str] = dataclasses.field(default_factory=list)
    currency: list[str] = dataclasses.field(default_factory=list)
    stage_p: list[np.ndarray] = dataclasses.field(default_factory=list)  # per cell [draw, stage]
    severity: list[np.ndarray] = dataclasses.field(default_factory=list)  # [draw, stage, 3]
    fee: list[np.ndarray] = dataclasses.field(default_factory=list)  # [draw, 3]
    dispersion: list[np.ndarray] = dataclasses.field(default_factory=list)  # [draw]
    duration: list[np.ndarray] = dataclasses.field(default_factory=list)  # [draw, stage, 2]
    stratum_cell: list[int] = dataclasses.field(default_factory=list)
    stratum_policies: list[np.ndarray] = dataclasses.field(default_factory=list)
    stratum_weights: list[np.ndarray] = dataclasses.field(default_factory=list)
    stratum_scale: list[np.ndarray] = dataclasses.field(default_factory=list)  # per stratum [draw]
    campaign_cell: list[int] = dataclasses.field(default_factory=list)
    campaign_policies: list[np.ndarray] = dataclasses.field(default_factory=list)
    campaign_weights: list[np.ndarray] = dataclasses.field(default_factory=list)
    campaign_rate: list[np.ndarray] = dataclasses.field(default_factory=list)  # per kind [draw]
    campaign_size: list[np.ndarray] = dataclasses.field(default_factory=list)  # per kind [draw, 2]

    def add(self, country: str, dispute_type: str, currency: str, *, stage_p, severity, fee, dispersion,
            duration) -> int:
        """One more cell; its index."""
        self.country.append(country)
        self.dispute_type.append(dispute_type)
        self.currency.append(currency)
        self.stage_p.append(stage_p)
        self.severity.append(severity)
        self.fee.append(fee)
        self.dispersion.append(dispersion)
        self.duration.append(duration)
        return len(self.country) - 1


def _country_cells(cells: _Cells, posterior: xr.Dataset, portfolio: Portfolio, shocks: shock_rules.Shocks, active: list[str],
                   per_country: dict, stage_shift: np.ndarray) -> None:
    """One cell per (country, dispute type) with exposure; one stratum per sector in it."""
    n_draws = posterior.sizes["sample"]
    free_sectors = [str(s) for s in posterior["sector_effect"].coords["free_sector"].values]
    sector_effect = _values(posterior, "sector_effect")  # [draw, free sector, type]
    sectors = np.asarray(portfolio.sector)
    duration_stage = np.stack([_values(posterior, "duration_log_median"),
                               np.repeat(_values(posterior, "duration_sigma").reshape(n_draws, 1), len(STAGES), 1)],
                              axis=-1)  # [draw, stage, 2]
    sigma = _values(posterior, "sigma")  # [draw, stage]
    delta = _values(posterior, "dispersion")  # [draw, type]
    for country in active:
        column = portfolio.exposure[:, portfolio.countries.index(country)]
        rate, lp, median, p_win = per_country[country]
        currency = COUNTRIES[country].currency
        cost_shift = np.log(shocks.cost_multiplier(country, currency)) + stage_shift  # [stage]
        recovered, adverse = fee_shifting(country)
        loser_pays = recovered > 0 or adverse > 0
        for t, dispute_type in enumerate(DISPUTE_TYPES):
            cell = cells.add(
                country, dispute_type, currency, stage_p=np.exp(lp[:, t]),
                severity=np.stack([median[:, t] + cost_shift, sigma, np.zeros_like(sigma)], axis=-1),
                fee=np.stack([p_win if loser_pays else np.zeros(n_draws), np.full(n_draws, recovered),
                              np.full(n_draws, adverse)], axis=-1),
                dispersion=delta[:, t], duration=duration_stage)
            for sector in sorted(set(sectors[column > 0])):
                members = np.flatnonzero((column > 0) & (sectors == sector))
                beta = sector_effect[:, free_sectors.index(sector), t] if sector in free_sectors else np.zeros(n_draws)
                cells.stratum_cell.append(cell)
                cells.stratum_policies.append(members)
                cells.stratum_weights.append(column[members])
                cells.stratum_scale.append(np.exp(rate[:, t] + beta)
                                           * shocks.frequency_multiplier(country, dispute_type, sector))


def _campaign_cells(cells: _Cells, posterior: xr.Dataset, portfolio: Portfolio, shocks: shock_rules.Shocks, active: list[str],
                    stage_shift: np.ndarray) -> None:
    """Campaign cells: single-stage costs (defence of one named seller), fitted per kind."""
    n_draws, n_stages = posterior.sizes["sample"], len(STAGES)
    sectors = np.asarray(portfolio.sector)
    # A campaign is a (country, type) event: the country and type frequency shocks move it too.
    frequency_shocks = shock_rules.Shocks(frequency=shocks.frequency, frequency_by_type=shocks.frequency_by_type,
                                          frequency_by_country_and_type=shocks.frequency_by_country_and_type)
    for k, kind in enumerate(CAMPAIGN_KINDS):
        country, dispute_type, target_sectors = CAMPAIGN_TARGETS[kind]
        if country not in active:
            continue
        column = portfolio.exposure[:, portfolio.countries.index(country)]
        weights = column * (np.isin(sectors, target_sectors) if target_sectors is not None else 1.0)
        members = np.flatnonzero(weights > 0)
        if members.size == 0:
            continue
        only_first = np.zeros((n_draws, n_stages))
        only_first[:, 0] = 1.0
        cost_shift = np.log(shocks.cost_multiplier(country, COUNTRIES[country].currency)) + stage_shift[0]
        mu = _values(posterior, "campaign_log_median")[:, k] + cost_shift
        s = _values(posterior, "campaign_sigma")[:, k]
        median_years, log_sd = CAMPAIGN_DURATION[kind]
        cell = cells.add(
            country, dispute_type, COUNTRIES[country].currency, stage_p=only_first,
            severity=np.stack([np.repeat(mu[:, None], n_stages, 1), np.repeat(s[:, None], n_stages, 1),
                               np.zeros((n_draws, n_stages))], axis=-1),
            fee=np.zeros((n_draws, 3)), dispersion=np.zeros(n_draws),
            duration=np.broadcast_to([np.log(median_years), log_sd], (n_draws, n_stages, 2)))
        cells.campaign_cell.append(cell)
        cells.campaign_policies.append(members)
        cells.campaign_weights.append(weights[members])
        rate_shock, size_shock = shocks.campaign_multipliers(kind)
        cells.campaign_rate.append(np.exp(_values(posterior, "campaign_log_rate")[:, k]) * weights.sum() * rate_shock
                                   * frequency_shocks.frequency_multiplier(country, dispute_type, ""))
        cells.campaign_size.append(np.stack([_values(posterior, "campaign_mean_extra")[:, k] * size_shock,
                                             _values(posterior, "campaign_concentration")[:, k]], axis=-1))


def posterior_tables(scenario, portfolio: Portfolio, posterior: xr.Dataset | None = None):
    """ModelTables from posterior draws for ``portfolio`` under ``scenario``'s shocks."""
    model = scenario.model
    if posterior is None:
        posterior = load_posterior(scenario.posterior_path)
    posterior = _point(posterior) if model.point_estimate else _thin(posterior, MAX_DRAWS)
    n_draws = posterior.sizes["sample"]
    rng = np.random.default_rng(UNSEEN_SEED)
    shocks = scenario.shocks_spec
    stage_shift = np.log(shocks.stage_multipliers(len(STAGES)))  # [stage]
    fitted = [str(c) for c in posterior["log_rate"].coords["country"].values]
    free_sectors = [str(s) for s in posterior["sector_effect"].coords["free_sector"].values]
    unknown = sorted({s for s in portfolio.sector if s != REFERENCE_SECTOR and s not in free_sectors})
    if unknown:
        warnings.warn(f"sectors {', '.join(unknown)} are not in the fitted history: treated as the reference "
                      f"sector ({REFERENCE_SECTOR})", stacklevel=3)
    active = [c for c in portfolio.countries if portfolio.exposure[:, portfolio.countries.index(c)].sum() > 0]
    per_country = _country_table(posterior, active, fitted, rng)
    cells = _Cells()
    _country_cells(cells, posterior, portfolio, shocks, active, per_country, stage_shift)
    _campaign_cells(cells, posterior, portfolio, shocks, active, stage_shift)
    fx_sigma = dict(FX_VOLATILITY) | scenario.fx_volatility
    n_cells = len(cells.country)
    return ModelTables(
        cell_country=tuple(cells.country), cell_dispute_type=tuple(cells.dispute_type),
        cell_family=np.zeros(n_cells, int), cell_currency=tuple(cells.currency),
        stratum_cell=np.asarray(cells.stratum_cell), stratum_policies=tuple(cells.stratum_policies),
        stratum_weights=tuple(cells.stratum_weights), stratum_scale=np.stack(cells.stratum_scale, axis=1),
        cell_concentration=np.zeros((n_draws, n_cells)),
        cell_stage_probability=np.stack(cells.stage_p, axis=1),
        cell_severity=np.stack(cells.severity, axis=1),
        cell_fee=np.stack(cells.fee, axis=1),
        year_sigma=_values(posterior, "sigma_year").reshape(n_draws) * shocks.year_factor,
        fx_sigma=fx_sigma,
        cell_dispersion=np.stack(cells.dispersion, axis=1),
        cell_duration=np.stack(cells.duration, axis=1),
        campaign_cell=np.asarray(cells.campaign_cell, int),
        campaign_policies=tuple(cells.campaign_policies), campaign_weights=tuple(cells.campaign_weights),
        campaign_rate=np.stack(cells.campaign_rate, axis=1) if cells.campaign_rate else np.zeros((n_draws, 0)),
        campaign_size=np.stack(cells.campaign_size, axis=1) if cells.campaign_size else np.zeros((n_draws, 0, 2)),
    )
