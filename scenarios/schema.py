"""Scenario TOML: loading, ``extends`` inheritance, validation (DESIGN.md contract).

Validation is strict: unknown keys are errors with a "did you mean" suggestion, and every
message names the file, the key path, the value and the valid choices.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..countries import COUNTRIES, CURRENCIES
from ..errors import InputError
from ..simulator.capital import CapitalSpec
from ..simulator.reinsurance import LAYERS, ContractSpec, contract_specs
from ..vocabulary import DISPUTE_TYPES
from . import shocks as shock_rules
from .shocks import Shocks

LIBRARY = "library"
MAX_EXTENDS_DEPTH = 32


def library_names() -> list[str]:
    """Names of the scenarios shipped with leisim."""
    folder = resources.files(__package__) / LIBRARY
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def library_path(name: str) -> Path:
    return Path(str(resources.files(__package__) / LIBRARY / f"{name}.toml"))


# ---------------------------------------------------------------------------------------------
# Schema: for each table, its keys and a checker. A checker returns the clean value or raises.


MAX_YEARS = 10**10  # simulated years: beyond this a run would take months
MAX_SEED = 2**63 - 1  # jax.random.key takes a signed 64-bit seed

# A scenario's name is the default output folder (results/<name>) and a key of stress.json: no path
# separators or traversal, nothing a file system or the report's key paths (a|b|c) would misread.
SAFE_NAME = re.compile(r"(?!\.)(?!.*\.\.)[^/\\|:*?\"<>\x00-\x1f\x7f]{1,100}")


class _Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str, value: object = None, choices=None):
        raise InputError(message, file=self.file, field=path, value=value, choices=choices)

    def table(self, value: Any, path: str, allowed: dict[str, str], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(path, "must be a table", value)
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else key, "unknown key", key, choices=sorted(allowed))
        for key in required:
            if key not in value:
                self.fail(f"{path}.{key}" if path else key, f"missing required key ({allowed[key]})")
        return value

    def number(self, value: Any, path: str, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, "must be a number", value)
        value = float(value)
        if not math.isfinite(value):
            self.fail(path, "must be finite", value)
        if value < low or (low_open and value == low) or value > high:
            lo = f"> {low:g}" if low_open else f">= {low:g}"
            rule = lo if math.isinf(high) else f"{lo} and <= {high:g}"
            self.fail(path, f"must be {rule}", value)
        return value

    def integer(self, value: Any, path: str, *, low: int = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer", value)
        if value < low or (high is not None and value > high):
            self.fail(path, f"must be >= {low}" + (f" and <= {high}" if high is not None else ""), value)
        return value

    def string(self, value: Any, path: str, choices=None) -> str:
        if not isinstance(value, str):
            self.fail(path, "must be a string", value, choices)
        if choices is not None and value not in choices:
            self.fail(path, "not a valid choice", value, choices=sorted(choices))
        return value

    def multipliers(self, value: Any, path: str, keys, what: str, high: float = shock_rules.MAX_MULTIPLIER) -> dict[str, float]:
        self.table(value, path, {k: what for k in keys})
        return {k: self.number(v, f"{path}.{k}", low=0.0, high=high) for k, v in value.items()}


FREQUENCY_KEYS = {
    "distribution": "poisson | negative_binomial",
    "rate": "disputes per policy-year per unit exposure (CNY million)",
    "concentration": "negative binomial k: variance = mean + mean^2 / k",
}
SEVERITY_KEYS = {
    "distribution": "lognormal | gamma | pareto",
    "median_cny": "lognormal median",
    "sigma": "lognormal log-sd",
    "shape": "gamma shape",
    "mean_cny": "gamma mean",
    "scale_cny": "gamma or Pareto II scale",
    "alpha": "Pareto II tail index",
    "threshold_cny": "Pareto II location (Pareto I: threshold = scale)",
}
CELL_KEYS = {
    "country": "ISO 3166 alpha-2 code",
    "dispute_type": "|".join(DISPUTE_TYPES),
    "frequency": "table",
    "severity": "table",
    "currency": "the currency costs are paid in (default: the country's)",
    "sector_relativity": "frequency multiplier by policy sector",
    "duration": "table: { median_years = 1.3, sigma = 0.6 } dispute duration for the payment pattern "
                "(default: by country, docs/CALIBRATION.md)",
    "note": "free text: where the numbers come from",
}
REINSURANCE_KEYS: dict[str, dict[str, str]] = {
    "quota_share": {"cession": "share ceded, 0-1", "ceding_commission": "share of ceded premium, 0-1"},
    "per_dispute_xl": {
        "retention_cny": ">= 0",
        "limit_cny": "> 0",
        "reinstatements": 'integer >= 0, or "unlimited" (the default)',
        "reinstatement_premium": "share of the layer premium per full reinstatement, pro rata to the amount "
                                 "reinstated (0: free)",
        "premium_cny": "layer premium",
        "rate_on_line": "layer premium as a share of limit",
        "loading": "without premium_cny or rate_on_line: premium = expected loss x (1 + loading)",
    },
    "stop_loss": {
        "attachment_cny": ">= 0",
        "limit_cny": "> 0",
        "attachment_loss_ratio": "attachment as a share of the portfolio's premium",
        "limit_loss_ratio": "limit as a share of the portfolio's premium",
        "premium_cny": "contract premium",
        "rate_on_line": "premium as a share of limit",
        "loading": "without premium_cny or rate_on_line: premium = expected loss x (1 + loading)",
    },
}
REINSURANCE_COMMON = {
    "type": "|".join(REINSURANCE_KEYS),
    "name": "label",
    "reinsurer": "reinsurer's name: contracts with the same reinsurer default together",
    "default_probability": "reinsurer's probability of default in a year, 0-1",
    "recovery_rate": "share of what is due still paid on default, 0-1 (default 0)",
    "counterparty_factor": "C-ROSS counterparty default risk factor on recoverables, 0-1 "
                           "(docs/CALIBRATION.md: onshore 0.5%-4.7%, offshore 8.7%-86.7%)",
    "note": "free text",
}
# One loss event: a campaign (all the disputes one Schedule A complaint or ITC 337 investigation brings
# into the year), else a single dispute; the layer applies to the event's retained total. Its keys are
# the per-dispute layer's.
REINSURANCE_KEYS["per_event_xl"] = REINSURANCE_KEYS["per_dispute_xl"] | {"retention_cny": ">= 0, per event",
                                                                        "limit_cny": "> 0, per event"}
CAPITAL_KEYS = {
    "available_cny": "capital available (comprehensive / actual capital), CNY",
    "core_cny": "core capital, CNY (default: available_cny)",
    "counterparty_charge": "true: add the C-ROSS counterparty charge on reinsurance recoverables",
    "expense_ratio": "expenses (acquisition, administration, claims handling) as a share of the premium, 0-1 "
                     "(default 0.30)",
    "factor_premium_sd": "drift monitor: premium-risk sd of the factor charge, 0-1 (default 0.083, Solvency II "
                         "legal expenses)",
    "factor_reserve_sd": "drift monitor: reserve-risk sd of the factor charge, 0-1 (default 0.055)",
    "factor_multiplier": "drift monitor: charge = multiplier x sd x volume, > 0 and <= 10 (default 3)",
}
RESERVES_KEYS = {
    "held_cny": "reserve held for an underwriting year's run-off, CNY (default: the best estimate)",
    "risk_adjustment_confidence": "IFRS 17 risk adjustment's confidence level, 0.5-0.9999 (default 0.75)",
    "cost_of_capital_rate": "cost-of-capital rate of the IFRS 17 risk adjustment, 0-1 (default 0.06)",
    "discount_rate": "annual rate the cost-of-capital risk adjustment is discounted at, 0-1 (default 0)",
}
TOP_KEYS = {
    "name": "string",
    "description": "string",
    "extends": "another scenario's name or a .toml path",
    "years": "simulated years, integer >= 1",
    "seed": "integer >= 0",
    "model": "table",
    "shocks": "table",
    "reinsurance": "array of tables",
    "capital": "table",
    "reserves": "table",
    "fx": "table: volatility = { USD = 0.04, ... } (annual log-volatility against CNY)",
}


def _check_cell(ck: _Checker, cell: Any, path: str) -> dict:
    ck.table(cell, path, CELL_KEYS, required=("country", "dispute_type", "frequency", "severity"))
    ck.string(cell["country"], f"{path}.country", COUNTRIES)
    ck.string(cell["dispute_type"], f"{path}.dispute_type", DISPUTE_TYPES)
    if "currency" in cell:
        ck.string(cell["currency"], f"{path}.currency", CURRENCIES)
    if "sector_relativity" in cell:
        rel = cell["sector_relativity"]
        if not isinstance(rel, dict):
            ck.fail(f"{path}.sector_relativity", "must be a table of sector = multiplier", rel)
        for sector, value in rel.items():
            ck.number(value, f"{path}.sector_relativity.{sector}", low=0.0)
    if "note" in cell:
        ck.string(cell["note"], f"{path}.note")
    if "duration" in cell:
        duration = ck.table(cell["duration"], f"{path}.duration",
                            {"median_years": "median duration, years, > 0", "sigma": "log-sd, >= 0"})
        if "median_years" in duration:
            ck.number(duration["median_years"], f"{path}.duration.median_years", low=0.0, high=100.0, low_open=True)
        if "sigma" in duration:
            ck.number(duration["sigma"], f"{path}.duration.sigma", low=0.0, high=5.0)

    fpath, freq = f"{path}.frequency", cell["frequency"]
    ck.table(freq, fpath, FREQUENCY_KEYS, required=("distribution", "rate"))
    dist = ck.string(freq["distribution"], f"{fpath}.distribution", ("poisson", "negative_binomial"))
    ck.number(freq["rate"], f"{fpath}.rate", low=0.0, high=100.0)  # per CNY million of exports: ~0.004 typical
    if dist == "negative_binomial":
        if "concentration" not in freq:
            ck.fail(f"{fpath}.concentration", "missing: negative_binomial needs concentration k > 0 "
                    "(variance = mean + mean^2 / k)")
        ck.number(freq["concentration"], f"{fpath}.concentration", low=0.0, low_open=True)
    elif "concentration" in freq:
        ck.fail(f"{fpath}.concentration", "only for negative_binomial", freq["concentration"])

    spath, sev = f"{path}.severity", cell["severity"]
    if not isinstance(sev, dict):
        ck.fail(spath, "must be a table", sev)
    if "distribution" not in sev:
        ck.fail(f"{spath}.distribution", "missing required key (lognormal | gamma | pareto)")
    dist = ck.string(sev["distribution"], f"{spath}.distribution", ("lognormal", "gamma", "pareto"))
    needs = {
        "lognormal": (("median_cny", "sigma"), ()),
        "gamma": (("shape",), ("mean_cny", "scale_cny")),
        "pareto": (("alpha", "scale_cny"), ()),
    }[dist]
    allowed = {"lognormal": {"median_cny", "sigma"}, "gamma": {"shape", "mean_cny", "scale_cny"},
               "pareto": {"alpha", "scale_cny", "threshold_cny"}}[dist] | {"distribution"}
    for key in sev:
        if key not in allowed:
            what = "not a parameter of" if key in SEVERITY_KEYS else "unknown key for"
            ck.fail(f"{spath}.{key}", f"{what} {dist}", key, choices=sorted(allowed))
    for key in needs[0]:
        if key not in sev:
            ck.fail(f"{spath}.{key}", f"missing: {dist} needs {', '.join(needs[0])}")
    if needs[1] and sum(k in sev for k in needs[1]) != 1:
        ck.fail(spath, f"{dist} needs exactly one of {', '.join(needs[1])}")
    for key in sev:
        if key == "distribution":
            continue
        low_open = key in ("median_cny", "shape", "mean_cny", "scale_cny", "alpha")
        ck.number(sev[key], f"{spath}.{key}", low=SEVERITY_LOW.get(key, 0.0), high=SEVERITY_HIGH.get(key, math.inf),
                  low_open=low_open)
    return cell


# Severity parameters whose draws stay finite in float32 sampling (max 3.4e38): a lognormal with
# sigma <= 5 and median <= 1e12 CNY reaches ~1e23 at the most extreme normal float32 can draw; a
# Pareto with alpha >= 0.5 reaches scale x 2^48 (tail index 0.8, infinite mean, is legal).
SEVERITY_LOW = {"alpha": 0.5}
SEVERITY_HIGH = {"sigma": 5.0, "median_cny": 1e12, "mean_cny": 1e12, "scale_cny": 1e12, "threshold_cny": 1e12,
                 "shape": 1e6}


def _check_reinsurance(ck: _Checker, contract: Any, path: str) -> dict:
    if not isinstance(contract, dict):
        ck.fail(path, "must be a table", contract)
    kind = ck.string(contract.get("type"), f"{path}.type", REINSURANCE_KEYS)
    ck.table(contract, path, REINSURANCE_COMMON | REINSURANCE_KEYS[kind])
    for key, value in contract.items():
        where = f"{path}.{key}"
        if key in ("type", "name", "note", "reinsurer"):
            ck.string(value, where)
        elif key == "reinstatements":
            if value != "unlimited":
                if isinstance(value, str):
                    ck.fail(where, 'must be an integer >= 0 or "unlimited"', value)
                ck.integer(value, where, low=0)
        elif key in ("cession", "ceding_commission", "default_probability", "recovery_rate", "counterparty_factor"):
            ck.number(value, where, low=0.0, high=1.0)
        elif key == "limit_cny" or key == "limit_loss_ratio":
            ck.number(value, where, low=0.0, low_open=True, high=_high(key))
        else:
            ck.number(value, where, low=0.0, high=_high(key))
    if kind == "quota_share" and "cession" not in contract:
        ck.fail(f"{path}.cession", "missing: a quota share needs its cession (0-1)")
    if kind in LAYERS:
        for key in ("retention_cny", "limit_cny"):
            if key not in contract:
                per = "per-dispute" if kind == "per_dispute_xl" else "per-event"
                ck.fail(f"{path}.{key}", f"missing: a {per} excess-of-loss layer needs retention_cny and limit_cny")
    if kind == "stop_loss":
        for a, b in (("attachment_cny", "attachment_loss_ratio"), ("limit_cny", "limit_loss_ratio")):
            if (a in contract) == (b in contract):
                ck.fail(path, f"a stop loss needs exactly one of {a} or {b}")
    if "premium_cny" in contract and "rate_on_line" in contract:
        ck.fail(path, "give the premium once: premium_cny or rate_on_line, not both")
    if "loading" in contract and ("premium_cny" in contract or "rate_on_line" in contract):
        ck.fail(f"{path}.loading", "only for a premium priced at the expected loss (no premium_cny or rate_on_line)")
    return contract


def validate(raw: dict, file: str) -> dict:
    """Check a fully resolved scenario table; returns it unchanged or raises InputError."""
    ck = _Checker(file)
    ck.table(raw, "", TOP_KEYS, required=("name",))
    ck.string(raw["name"], "name")
    if not SAFE_NAME.fullmatch(raw["name"]):
        ck.fail("name", "must be 1-100 characters without / \\ | : * ? \" < >, control characters, a leading dot "
                "or '..' (the name becomes the default output folder, results/<name>)", raw["name"])
    if "description" in raw:
        ck.string(raw["description"], "description")
    if "years" in raw:
        ck.integer(raw["years"], "years", low=1, high=MAX_YEARS)
    if "seed" in raw:
        ck.integer(raw["seed"], "seed", low=0, high=MAX_SEED)

    model = ck.table(raw.get("model", {}), "model", {
        "parameters": "posterior | fixed",
        "cells": "array of tables",
        "posterior": "path to a posterior .nc written by `leisim fit` (default: the shipped one)",
        "year_effect_sd": "sd of the log year effect for fixed cells (the common shock), >= 0",
        "point_estimate": "true: every year at the posterior mean parameters (no parameter uncertainty)",
    })
    if "posterior" in model:
        ck.string(model["posterior"], "model.posterior")
        if not Path(model["posterior"]).is_file():
            ck.fail("model.posterior", "file not found (a relative path is taken from the scenario file's folder); "
                    "give the path of a posterior written by `leisim fit`, or remove the key for the shipped one",
                    model["posterior"])
    if "year_effect_sd" in model:
        ck.number(model["year_effect_sd"], "model.year_effect_sd", low=0.0, high=5.0)
    if "point_estimate" in model and not isinstance(model["point_estimate"], bool):
        ck.fail("model.point_estimate", "must be true or false", model["point_estimate"])
    parameters = ck.string(model.get("parameters", "posterior"), "model.parameters", ("posterior", "fixed"))
    cells = model.get("cells", [])
    if not isinstance(cells, list):
        ck.fail("model.cells", "must be an array of tables ([[model.cells]])", cells)
    seen = set()
    for i, cell in enumerate(cells):
        _check_cell(ck, cell, f"model.cells[{i}]")
        key = (cell["country"], cell["dispute_type"])
        if key in seen:
            ck.fail(f"model.cells[{i}]", "duplicate (country, dispute_type) cell", "/".join(key))
        seen.add(key)
    if parameters == "fixed" and not cells:
        ck.fail("model.cells", 'parameters = "fixed" needs at least one [[model.cells]] table')

    shock_rules.validate(ck, raw.get("shocks", {}))

    reinsurance = raw.get("reinsurance", [])
    if not isinstance(reinsurance, list):
        ck.fail("reinsurance", "must be an array of tables ([[reinsurance]])", reinsurance)
    for i, contract in enumerate(reinsurance):
        _check_reinsurance(ck, contract, f"reinsurance[{i}]")

    fx_table = ck.table(raw.get("fx", {}), "fx", {"volatility": "by currency: annual log-volatility, 0-1"})
    if "volatility" in fx_table:
        vols = ck.multipliers(fx_table["volatility"], "fx.volatility", CURRENCIES, "annual log-volatility")
        for currency, value in vols.items():
            if value > 1.0:
                ck.fail(f"fx.volatility.{currency}", "must be <= 1 (an annual log-volatility, e.g. 0.04 for 4%)", value)

    capital = ck.table(raw.get("capital", {}), "capital", CAPITAL_KEYS)
    for name in ("available_cny", "core_cny"):
        if name in capital:
            ck.number(capital[name], f"capital.{name}", low=0.0, high=MAX_AMOUNT_CNY)
    if "expense_ratio" in capital:
        ck.number(capital["expense_ratio"], "capital.expense_ratio", low=0.0, high=1.0)
    for name in ("factor_premium_sd", "factor_reserve_sd"):
        if name in capital:
            ck.number(capital[name], f"capital.{name}", low=0.0, high=1.0)
    if "factor_multiplier" in capital:
        ck.number(capital["factor_multiplier"], "capital.factor_multiplier", low=0.0, high=10.0, low_open=True)
    if "counterparty_charge" in capital and not isinstance(capital["counterparty_charge"], bool):
        ck.fail("capital.counterparty_charge", "must be true or false", capital["counterparty_charge"])
    reserves = ck.table(raw.get("reserves", {}), "reserves", RESERVES_KEYS)
    if "held_cny" in reserves:
        ck.number(reserves["held_cny"], "reserves.held_cny", low=0.0, high=MAX_AMOUNT_CNY)
    if "risk_adjustment_confidence" in reserves:
        ck.number(reserves["risk_adjustment_confidence"], "reserves.risk_adjustment_confidence", low=0.5, high=0.9999)
    for rate in ("cost_of_capital_rate", "discount_rate"):
        if rate in reserves:
            ck.number(reserves[rate], f"reserves.{rate}", low=0.0, high=1.0)
    return raw


# ---------------------------------------------------------------------------------------------
# Loading and inheritance


def _merge(base: dict, child: dict) -> dict:
    """Tables merge key by key; arrays (cells, reinsurance) and scalars are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Scenario amounts have the portfolio's bound (formats/portfolio.py): above 1e15 CNY is a typo
# (an exponent too many); loss ratios and rates on line above 1,000 likewise.
MAX_AMOUNT_CNY = 1e15
MAX_RATIO = 1000.0


def _high(key: str) -> float:
    if key.endswith("_cny"):
        return MAX_AMOUNT_CNY
    if key.endswith("_loss_ratio") or key in ("rate_on_line", "loading", "reinstatement_premium"):
        return MAX_RATIO
    return math.inf


MAX_TOML_DEPTH = 32  # tables and arrays nested deeper than this are refused (no scenario needs 5)


def _depth(value, limit: int) -> int:
    """Nesting depth of tables and arrays, counted without recursion (hostile files nest thousands deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _read_toml(path: Path, referrer: str | None) -> dict:
    try:
        is_file = path.is_file()
    except OSError as err:  # a symbolic-link loop, a name too long ...
        raise InputError(f"cannot open the scenario file ({err.strerror or err})", file=str(path)) from None
    if not is_file:
        raise InputError(
            "scenario file not found; give a library name or a path to a .toml file",
            file=referrer,
            field="extends" if referrer else None,
            value=str(path),
            choices=library_names(),
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", file=str(path)) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason})", file=str(path)) from None
    except RecursionError:
        raise InputError(f"tables or arrays nested too deep to read (a scenario needs at most {MAX_TOML_DEPTH} "
                         "levels)", file=str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read the scenario file ({err.strerror or err})", file=str(path)) from None
    if _depth(raw, MAX_TOML_DEPTH) > MAX_TOML_DEPTH:
        raise InputError(f"tables or arrays nested deeper than {MAX_TOML_DEPTH} levels; a scenario needs at most a few",
                         file=str(path))
    return raw


def resolve_reference(reference: str, *, relative_to: Path | None = None, referrer: str | None = None) -> Path:
    """A library name (``baseline``) or a path to a ``.toml`` file."""
    looks_like_path = reference.endswith(".toml") or "/" in reference or "\\" in reference
    if not looks_like_path:
        if reference in library_names():
            return library_path(reference)
        raise InputError(
            "unknown scenario name; use a library name or a path to a .toml file",
            file=referrer, field="extends" if referrer else "scenario", value=reference, choices=library_names(),
        )
    if not reference.endswith(".toml"):
        raise InputError("a scenario path must end in .toml", file=referrer,
                         field="extends" if referrer else "scenario", value=reference)
    path = Path(reference)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return path


def _load_chain(path: Path, referrer: str | None, chain: tuple[Path, ...]) -> dict:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symbolic-link loop (Python < 3.13)
        raise InputError(f"cannot resolve the scenario path ({err})", file=str(path),
                         field="extends" if referrer else None) from None
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in chain + (resolved,))
        raise InputError(f"extends cycle: {cycle}; remove one of the extends", file=str(path), field="extends")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise InputError(f"extends chain deeper than {MAX_EXTENDS_DEPTH}", file=str(path), field="extends")
    raw = _read_toml(path, referrer)
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("posterior"), str) and model["posterior"]:
        # A relative posterior path means the file beside the scenario that names it (as extends
        # does), not whatever the working folder happens to be.
        posterior = Path(model["posterior"]).expanduser()
        if not posterior.is_absolute():
            model["posterior"] = str((path.parent / posterior).resolve())
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise InputError("must be a string: a scenario name or a .toml path", file=str(path), field="extends", value=parent)
    parent_path = resolve_reference(parent, relative_to=path.parent, referrer=str(path))
    base = _load_chain(parent_path, str(path), chain + (resolved,))
    base.pop("name", None)  # a child always names itself
    base.pop("description", None)
    return _merge(base, raw)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A validated ``[model]`` table with its defaults."""

    parameters: str = "posterior"  # "posterior" (the fitted model's draws) or "fixed" ([[model.cells]])
    posterior: str | None = None  # a posterior file; None: the shipped one
    point_estimate: bool = False  # every year at the posterior mean parameters
    year_effect_sd: float = 0.0  # fixed scenarios: sd of the common log year effect
    cells: tuple[dict, ...] = ()  # fixed scenarios: one table per (country, dispute type)

    @classmethod
    def of(cls, table: dict) -> ModelSpec:
        return cls(parameters=str(table.get("parameters", "posterior")), posterior=table.get("posterior"),
                   point_estimate=bool(table.get("point_estimate", False)),
                   year_effect_sd=float(table.get("year_effect_sd", 0.0)), cells=tuple(table.get("cells", ())))


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated, fully resolved scenario."""

    name: str
    raw: dict  # the resolved TOML table (extends applied)
    source: str

    @property
    def description(self) -> str:
        return self.raw.get("description", "")

    @property
    def years(self) -> int:
        return int(self.raw.get("years", 100_000))

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed", 0))

    @property
    def parameters(self) -> str:
        return self.model.parameters

    @property
    def cells(self) -> list[dict]:
        return list(self.model.cells)

    @property
    def shocks(self) -> dict:
        return self.raw.get("shocks", {})

    @property
    def reinsurance(self) -> list[dict]:
        return self.raw.get("reinsurance", [])

    @property
    def shocks_spec(self) -> Shocks:
        """``[shocks]`` typed, with its defaults (scenarios/shocks.Shocks)."""
        return Shocks.of(self.shocks)

    @property
    def contracts(self) -> tuple[ContractSpec, ...]:
        """``[[reinsurance]]`` typed (simulator/reinsurance.ContractSpec), in inuring order."""
        return contract_specs(self.reinsurance)

    @property
    def capital(self) -> dict:
        return self.raw.get("capital", {})

    @property
    def reserves(self) -> dict:
        return self.raw.get("reserves", {})

    @property
    def capital_spec(self) -> CapitalSpec:
        """``[capital]`` typed, with its defaults (simulator/capital.CapitalSpec)."""
        return CapitalSpec.of(self.capital)

    @property
    def model(self) -> ModelSpec:
        """``[model]`` typed, with its defaults."""
        return ModelSpec.of(self.raw.get("model", {}))

    @property
    def fx_volatility(self) -> dict[str, float]:
        """``[fx] volatility``: annual log-volatility by currency (those the scenario sets)."""
        return {str(k): float(v) for k, v in self.raw.get("fx", {}).get("volatility", {}).items()}

    @property
    def capital_available_cny(self) -> float | None:
        return self.capital_spec.available_cny

    @property
    def expense_ratio(self) -> float:
        """Expenses as a share of the premium ([capital] expense_ratio; default capital.EXPENSE_RATIO)."""
        return self.capital_spec.expense_ratio

    @property
    def posterior_path(self) -> Path | None:
        """The posterior file a posterior-driven scenario reads ([model] posterior, else the shipped
        one); None for a fixed-parameter scenario."""
        if self.parameters != "posterior":
            return None
        from ..models.posterior import default_posterior_path

        return Path(self.model.posterior or default_posterior_path())

    def updated(self, changes: dict, *, name: str | None = None) -> Scenario:
        """A variant: ``changes`` merged into the resolved table as ``extends`` merges a child (tables
        key by key, arrays and scalars replaced whole), then validated again (an InputError naming
        this scenario's file if the variant is invalid). The scenario itself is left as it is."""
        raw = _merge(self.raw, changes)
        validate(raw, self.source)
        return Scenario(name=name or self.name, raw=raw, source=self.source)

    @property
    def sha256(self) -> str:
        """Hash of the resolved scenario: equal hashes mean equal inputs."""
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_scenario(reference: str | Path) -> Scenario:
    """Load a scenario by library name or path, resolve ``extends``, and validate it."""
    path = reference if isinstance(reference, Path) else resolve_reference(str(reference))
    raw = _load_chain(path, None, ())
    validate(raw, str(path))
    return Scenario(name=raw["name"], raw=raw, source=str(path))


PROGRAM_KEYS = {
    "name": "string",
    "description": "string",
    "reinsurance": "array of tables",
    "capital": "table",
}


@dataclasses.dataclass(frozen=True)
class Program:
    """A reinsurance program to compare: its contracts (validated tables) and optional capital."""

    name: str
    reinsurance: list[dict]
    capital: dict | None
    source: str

    @property
    def contracts(self) -> tuple[ContractSpec, ...]:
        """The program's contracts typed (simulator/reinsurance.ContractSpec), in inuring order."""
        return contract_specs(self.reinsurance)


def load_program(reference: str | Path) -> Program:
    """Load a reinsurance program file: ``name``, ``description``, ``[[reinsurance]]``, ``[capital]``.

    ``"none"`` is the program without reinsurance. A program file holds no model or shocks: those
    belong to the scenario, so that every program is compared on the same gross losses.
    """
    if str(reference) == "none":
        return Program(name="none", reinsurance=[], capital=None, source="none")
    path = Path(reference)
    if not path.is_file():
        raise InputError("reinsurance program file not found (give a .toml path, or none for no reinsurance)",
                         file=str(path))
    raw = _read_toml(path, None)
    ck = _Checker(str(path))
    for key in raw:
        if key not in PROGRAM_KEYS:
            ck.fail(key, "a reinsurance program file holds only name, description, [[reinsurance]] and [capital]; "
                         "models and shocks belong to the --scenario", key, choices=sorted(PROGRAM_KEYS))
    validate({"name": raw.get("name", path.stem)} | {k: v for k, v in raw.items() if k != "name"}, str(path))
    return Program(name=str(raw.get("name", path.stem)), reinsurance=raw.get("reinsurance", []),
                   capital=raw.get("capital"), source=str(path))
