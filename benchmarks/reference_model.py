"""Independent reference implementation of leisim's posterior-driven model, in plain NumPy.

Written from the documentation alone (``docs/MODEL.md``, "The simulation model, as documented"),
reading only the files a run reads (``posterior.nc`` group ``posterior``, ``policies.csv``,
``exposures.csv``, the scenario TOML) and the constant tables of ``models/truth.py`` and
``countries.py`` (copied below, with their source). It shares no code with the JAX engine and
does not import ``leisim``: the engine is tested against it (``tests/test_reference.py``), in
distribution, not year by year.

What it implements, per simulated year ``y`` with posterior sample ``d = y mod D`` (samples
stacked chain-major and thinned to at most 1,000 by ``round(linspace(0, n - 1, 1000))``):

1. the common log-normal year effect ``level = exp(eps)``, ``eps ~ N(0, sigma_year^2)``;
2. one mean-1 log-normal FX factor per currency of the portfolio's forums;
3. NB1 counts per (policy, country, dispute type) with the sector effect (negative binomial of
   concentration ``lambda / delta``, drawn directly cell by cell with ``Generator.negative_binomial``);
4. Schedule A / ITC 337 campaigns: Poisson count on the target exposure, ``1 + NB(m, k)``
   sellers per campaign drawn with replacement by exposure share, single-stage log-normal cost;
5. stage draw and log-normal cost of ordinary disputes, FX, fee shifting for disputes decided at
   trial or appeal in loser-pays forums;
6. deductible, coinsurance, per-dispute limit, per-policy annual aggregate limit with pro-rata
   attribution of a capped policy's payment to its disputes (gross by country);
7. the scenario's ``[[reinsurance]]`` program in its listed (inuring) order: ``quota_share``,
   ``per_dispute_xl`` (annual cap ``(1 + reinstatements) x limit``, cut pro rata when it binds;
   ``reinstatements`` an integer or ``"unlimited"``, the default), ``stop_loss`` on the annual
   retained total (absolute or as loss ratios of the portfolio premium);

and the ``[shocks]`` keys ``frequency`` (by country or ``"*"``), ``severity`` (by country or
``"*"``) and ``fx`` (by currency). Anything else the documentation describes but this file does
not implement (other shock keys, reinsurer default, countries the posterior lacks, other
contract types, ``[model] parameters`` other than ``"posterior"``) raises NotImplementedError.

It is deliberately plain: vectorised over blocks of years with NumPy, one process, no JIT, no
alias tables or thinning tricks. It is the baseline the engine's speed is measured against, and it
is slow on purpose: clarity over speed (100,000 baseline years take on the order of a minute).

Usage::

    python benchmarks/reference_model.py --years 100000 --seed 1 [--scenario PATH]
        [--posterior PATH] [--portfolio DIR] [--json OUT]

API::

    inputs = load_inputs(posterior_path=..., portfolio_dir=..., scenario=tomllib.load(...))
    out = simulate(inputs, years=100_000, seed=1)       # dict of NumPy arrays, one row a year
    expected_disputes(inputs)                           # closed-form E[disputes per year]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "library" / "baseline.toml"
DEFAULT_POSTERIOR = ROOT / "data" / "default" / "posterior.nc"
DEFAULT_PORTFOLIO = ROOT / "data" / "default"

# --- Constant tables, copied (values only) -------------------------------------------------------

# models/truth.py: DISPUTE_TYPES, REFERENCE_SECTOR, CAMPAIGN_TARGETS (kind -> (country, type,
# targeted sectors; None: every sector)).
DISPUTE_TYPES = ("patent", "trademark", "trade_secret")
STAGES = ("early", "discovery", "trial", "appeal")
DECIDED_STAGES = (2, 3)  # trial, appeal: "decided on the merits"
REFERENCE_SECTOR = "machinery"
CAMPAIGN_TARGETS = {
    "schedule_a": ("US", "trademark", ("e_commerce",)),
    "itc_337": ("US", "patent", None),
}

# models/truth.py: FX_VOLATILITY, annual log-volatility against CNY.
FX_VOLATILITY = {
    "USD": 0.04, "EUR": 0.075, "GBP": 0.08, "JPY": 0.09, "KRW": 0.07, "INR": 0.05, "BRL": 0.13,
    "CAD": 0.06, "MXN": 0.12, "SEK": 0.09, "CHF": 0.08, "PLN": 0.09, "RUB": 0.2, "TRY": 0.2,
    "SGD": 0.05, "AUD": 0.09, "VND": 0.05, "THB": 0.07, "MYR": 0.06, "IDR": 0.07,
    "AED": 0.04, "SAR": 0.04, "ZAR": 0.13, "CNY": 0.0,
}

# models/truth.py: FEE_SHIFTING[country] = (share of own costs recovered on a win, adverse costs
# as a multiple of own costs on a loss). Unlisted countries: (0, 0), the American rule.
FEE_SHIFTING = {
    "DE": (0.4, 0.45), "GB": (0.65, 0.65), "FR": (0.25, 0.25), "NL": (0.5, 0.5), "IT": (0.25, 0.25),
    "ES": (0.25, 0.25), "BE": (0.25, 0.25), "SE": (0.4, 0.4), "CH": (0.3, 0.3), "JP": (0.1, 0.1),
    "KR": (0.2, 0.2), "BR": (0.3, 0.3), "AU": (0.5, 0.5), "CA": (0.3, 0.3),
}

# countries.py: COUNTRIES[country].currency (the forum's litigation currency).
COUNTRY_CURRENCY = {
    "US": "USD", "CA": "CAD", "MX": "MXN", "BR": "BRL", "DE": "EUR", "FR": "EUR", "NL": "EUR",
    "IT": "EUR", "ES": "EUR", "BE": "EUR", "SE": "SEK", "CH": "CHF", "PL": "PLN", "GB": "GBP",
    "RU": "RUB", "TR": "TRY", "JP": "JPY", "KR": "KRW", "IN": "INR", "SG": "SGD", "AU": "AUD",
    "VN": "VND", "TH": "THB", "MY": "MYR", "ID": "IDR", "AE": "AED", "SA": "SAR", "ZA": "ZAR",
    "CN": "CNY",
}

MAX_SAMPLES = 1000
SUPPORTED_SHOCKS = ("frequency", "severity", "fx")


# --- Inputs --------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """Everything a simulation needs, parsed once (float64 throughout)."""

    countries: tuple[str, ...]          # portfolio countries, sorted
    currencies: tuple[str, ...]         # currencies of those forums, sorted
    country_currency: np.ndarray        # [C] index into currencies
    fx_vol: np.ndarray                  # [V]
    fee_recovered: np.ndarray           # [C]
    fee_adverse: np.ndarray             # [C]
    freq_mult: np.ndarray               # [C] frequency shock
    sev_mult: np.ndarray                # [C] severity x fx shock on X

    policy_ids: tuple[str, ...]
    sectors: tuple[str, ...]            # [P]
    premium: np.ndarray                 # [P]
    deductible: np.ndarray
    coinsurance: np.ndarray
    limit_per_dispute: np.ndarray
    aggregate_limit: np.ndarray

    entry_policy: np.ndarray            # [E] (policy, country) pairs with e > 0
    entry_country: np.ndarray           # [E]
    exposure: np.ndarray                # [E] CNY million

    # posterior, thinned: leading axis d = 0..D-1
    D: int
    base_rate: np.ndarray               # [D, E, T] exp(log_rate + sector_effect) * e * freq shock
    dispersion: np.ndarray              # [D, T]
    sigma_year: np.ndarray              # [D]
    stage_cum: np.ndarray               # [D, C, T, S] cumulative stage probabilities (normalised)
    stage_prob: np.ndarray              # [D, C, T, S]
    log_median: np.ndarray              # [D, C, T, S]
    sigma: np.ndarray                   # [D, S]
    win_probability: np.ndarray         # [D, C]

    # campaigns, one entry per kind with non-zero target exposure
    campaigns: list = field(default_factory=list)

    reinsurance: list = field(default_factory=list)
    premium_total: float = 0.0


def _stack_thin(da: xr.DataArray, rest: tuple[str, ...]) -> np.ndarray:
    """(chain, draw, *rest) -> [sample, *rest], chain-major, thinned to <= MAX_SAMPLES, float64."""
    arr = np.asarray(da.transpose("chain", "draw", *rest).values, dtype=np.float64)
    n = arr.shape[0] * arr.shape[1]
    arr = arr.reshape((n,) + arr.shape[2:])
    if n > MAX_SAMPLES:
        keep = np.round(np.linspace(0, n - 1, MAX_SAMPLES)).astype(np.int64)
        arr = arr[keep]
    return arr


def _float(cell: str) -> float:
    cell = cell.strip()
    return math.inf if cell == "" else float(cell)


def _read_portfolio(portfolio_dir: Path):
    with open(portfolio_dir / "policies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    policy_ids = tuple(r["policy_id"] for r in rows)
    index = {pid: i for i, pid in enumerate(policy_ids)}
    if len(index) != len(policy_ids):
        raise ValueError("duplicate policy_id in policies.csv")
    sectors = tuple(r["sector"] for r in rows)
    col = lambda name: np.array([_float(r[name]) for r in rows], dtype=np.float64)  # noqa: E731
    pol = dict(
        policy_ids=policy_ids, sectors=sectors, premium=col("premium_cny"),
        deductible=col("deductible_cny"), coinsurance=col("coinsurance"),
        limit_per_dispute=col("limit_per_dispute_cny"), aggregate_limit=col("aggregate_limit_cny"),
    )
    expo: dict[tuple[int, str], float] = {}
    with open(portfolio_dir / "exposures.csv", newline="") as f:
        for r in csv.DictReader(f):
            key = (index[r["policy_id"]], r["country"])
            expo[key] = expo.get(key, 0.0) + float(r["exposure"])
    expo = {k: v for k, v in expo.items() if v > 0}
    return pol, expo


def _by_key(table: dict, key: str, what: str) -> float:
    """Country-specific value if present, else the "*" value, else 1."""
    if not isinstance(table, dict):
        raise NotImplementedError(f"[shocks] {what} must be a table of numbers by key")
    for k, v in table.items():
        if not isinstance(v, (int, float)):
            raise NotImplementedError(f"[shocks] {what}.{k} = {v!r}: only numbers are supported")
    return float(table.get(key, table.get("*", 1.0)))


def load_inputs(*, posterior_path, portfolio_dir, scenario: dict) -> Inputs:
    model = scenario.get("model", {})
    if model.get("parameters", "posterior") != "posterior":
        raise NotImplementedError("only [model] parameters = \"posterior\" is implemented")

    pol, expo = _read_portfolio(Path(portfolio_dir))
    countries = tuple(sorted({c for (_, c) in expo}))
    cidx = {c: i for i, c in enumerate(countries)}
    keys = sorted(expo, key=lambda k: (k[0], cidx[k[1]]))
    entry_policy = np.array([k[0] for k in keys], dtype=np.int64)
    entry_country = np.array([cidx[k[1]] for k in keys], dtype=np.int64)
    exposure = np.array([expo[k] for k in keys], dtype=np.float64)

    for c in countries:
        if c not in COUNTRY_CURRENCY:
            raise ValueError(f"unknown country {c}")
    currencies = tuple(sorted({COUNTRY_CURRENCY[c] for c in countries}))
    vidx = {v: i for i, v in enumerate(currencies)}
    country_currency = np.array([vidx[COUNTRY_CURRENCY[c]] for c in countries], dtype=np.int64)
    fx_vol = np.array([FX_VOLATILITY[v] for v in currencies], dtype=np.float64)
    fee_recovered = np.array([FEE_SHIFTING.get(c, (0.0, 0.0))[0] for c in countries])
    fee_adverse = np.array([FEE_SHIFTING.get(c, (0.0, 0.0))[1] for c in countries])

    # shocks
    shocks = scenario.get("shocks", {}) or {}
    for k in shocks:
        if k not in SUPPORTED_SHOCKS:
            raise NotImplementedError(f"[shocks] {k} is not implemented in the reference model")
    freq = shocks.get("frequency", {})
    sev = shocks.get("severity", {})
    fxs = shocks.get("fx", {})
    freq_mult = np.array([_by_key(freq, c, "frequency") for c in countries])
    sev_mult = np.array([_by_key(sev, c, "severity") for c in countries])
    if not isinstance(fxs, dict):
        raise NotImplementedError("[shocks] fx must be a table of numbers by currency")
    for k, v in fxs.items():
        if not isinstance(v, (int, float)):
            raise NotImplementedError(f"[shocks] fx.{k} = {v!r}: only numbers are supported")
    fx_mult = np.array([float(fxs.get(COUNTRY_CURRENCY[c], 1.0)) for c in countries])
    sev_mult = sev_mult * fx_mult

    # posterior
    ds = xr.open_dataset(posterior_path, group="posterior", engine="h5netcdf")
    try:
        post_countries = [str(c) for c in ds["country"].values]
        missing = [c for c in countries if c not in post_countries]
        if missing:
            raise NotImplementedError(
                f"countries {missing} are not in the posterior (hyper-distribution draws not implemented)")
        types = [str(t) for t in ds["dispute_type"].values]
        stages = [str(s) for s in ds["stage"].values]
        kinds = [str(k) for k in ds["campaign_kind"].values]
        free_sectors = [str(s) for s in ds["free_sector"].values]
        sel = dict(country=list(countries), dispute_type=list(DISPUTE_TYPES), stage=list(STAGES))
        if set(types) != set(DISPUTE_TYPES) or set(stages) != set(STAGES):
            raise ValueError("unexpected dispute types or stages in the posterior")

        def get(name, *rest):
            da = ds[name]
            da = da.sel({k: v for k, v in sel.items() if k in da.dims})
            return _stack_thin(da, rest)

        log_rate = get("log_rate", "country", "dispute_type")                    # [D, C, T]
        sector_effect = get("sector_effect", "free_sector", "dispute_type")      # [D, F, T]
        dispersion = get("dispersion", "dispute_type")                           # [D, T]
        sigma_year = get("sigma_year")                                           # [D]
        stage_lp = get("stage_log_probability", "country", "dispute_type", "stage")
        log_median = get("log_median", "country", "dispute_type", "stage")
        sigma = get("sigma", "stage")                                            # [D, S]
        win = get("win_probability", "country")                                  # [D, C]
        camp = {n: get(n, "campaign_kind") for n in (
            "campaign_log_rate", "campaign_mean_extra", "campaign_concentration",
            "campaign_log_median", "campaign_sigma")}
    finally:
        ds.close()
    D = sigma_year.shape[0]

    # sector effect per entry: 0 for the reference sector and any sector not in free_sector
    fidx = {s: i for i, s in enumerate(free_sectors)}
    sector_of_entry = [pol["sectors"][p] for p in entry_policy]
    se_entry = np.zeros((D, len(keys), len(DISPUTE_TYPES)))
    for j, s in enumerate(sector_of_entry):
        if s in fidx:
            se_entry[:, j, :] = sector_effect[:, fidx[s], :]
    base_rate = (np.exp(log_rate[:, entry_country, :] + se_entry)
                 * (exposure * freq_mult[entry_country])[None, :, None])

    stage_prob = np.exp(stage_lp)
    stage_prob = stage_prob / stage_prob.sum(axis=-1, keepdims=True)
    stage_cum = np.cumsum(stage_prob, axis=-1)
    stage_cum[..., -1] = 1.0

    campaigns = []
    for kind, (c_k, t_k, sectors_k) in CAMPAIGN_TARGETS.items():
        if kind not in kinds:
            raise ValueError(f"campaign kind {kind} missing from the posterior")
        if c_k not in cidx:
            continue
        target = np.flatnonzero((entry_country == cidx[c_k]) & np.array(
            [sectors_k is None or s in sectors_k for s in sector_of_entry], dtype=bool))
        W = float(exposure[target].sum())
        if W <= 0:
            continue
        ki = kinds.index(kind)
        cum = np.cumsum(exposure[target]) / W
        cum[-1] = 1.0
        campaigns.append(dict(
            kind=kind, country=cidx[c_k], type=DISPUTE_TYPES.index(t_k), W=W,
            target_entries=target, target_cum=cum,
            log_rate=camp["campaign_log_rate"][:, ki], mean_extra=camp["campaign_mean_extra"][:, ki],
            concentration=camp["campaign_concentration"][:, ki],
            log_median=camp["campaign_log_median"][:, ki], sigma=camp["campaign_sigma"][:, ki],
        ))

    reinsurance = []
    premium_total = float(pol["premium"].sum())
    for con in scenario.get("reinsurance", []) or []:
        if float(con.get("default_probability", 0.0) or 0.0) > 0:
            raise NotImplementedError("reinsurer default (default_probability > 0) is not implemented")
        typ = con["type"]
        if typ == "quota_share":
            reinsurance.append(dict(type=typ, cession=float(con["cession"])))
        elif typ == "per_dispute_xl":
            n = con.get("reinstatements", "unlimited")
            l = float(con["limit_cny"])
            cap = math.inf if n == "unlimited" else (1 + int(n)) * l
            reinsurance.append(dict(type=typ, retention=float(con["retention_cny"]), limit=l, cap=cap))
        elif typ == "stop_loss":
            if "attachment_cny" in con:
                a = float(con["attachment_cny"])
            else:
                a = float(con["attachment_loss_ratio"]) * premium_total
            if "limit_cny" in con:
                l = float(con["limit_cny"])
            elif "limit_loss_ratio" in con:
                l = float(con["limit_loss_ratio"]) * premium_total
            else:
                l = math.inf
            reinsurance.append(dict(type=typ, attachment=a, limit=l))
        else:
            raise NotImplementedError(f"reinsurance type {typ!r} is not implemented")

    return Inputs(
        countries=countries, currencies=currencies, country_currency=country_currency,
        fx_vol=fx_vol, fee_recovered=fee_recovered, fee_adverse=fee_adverse,
        freq_mult=freq_mult, sev_mult=sev_mult,
        policy_ids=pol["policy_ids"], sectors=pol["sectors"], premium=pol["premium"],
        deductible=pol["deductible"], coinsurance=pol["coinsurance"],
        limit_per_dispute=pol["limit_per_dispute"], aggregate_limit=pol["aggregate_limit"],
        entry_policy=entry_policy, entry_country=entry_country, exposure=exposure,
        D=D, base_rate=base_rate, dispersion=dispersion, sigma_year=sigma_year,
        stage_cum=stage_cum, stage_prob=stage_prob, log_median=log_median, sigma=sigma,
        win_probability=win, campaigns=campaigns, reinsurance=reinsurance,
        premium_total=premium_total,
    )


# --- Simulation ----------------------------------------------------------------------------------

def _nb1(rng, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """NB1 counts of mean lam, variance lam (1 + delta) (delta broadcast to lam); Poisson at 0."""
    delta = np.broadcast_to(delta, lam.shape)
    out = np.zeros(lam.shape, dtype=np.int64)
    pos = lam > 0
    nb = pos & (delta > 0)
    if nb.all():
        return rng.negative_binomial(lam / delta, 1.0 / (1.0 + delta))
    if nb.any():
        out[nb] = rng.negative_binomial(lam[nb] / delta[nb], 1.0 / (1.0 + delta[nb]))
    po = pos & ~(delta > 0)
    if po.any():
        out[po] = rng.poisson(lam[po])
    return out


def _simulate_block(inp: Inputs, rng, d: np.ndarray) -> dict:
    B = d.shape[0]
    T = len(DISPUTE_TYPES)

    # 1. year effect, 2. FX
    level = np.exp(inp.sigma_year[d] * rng.standard_normal(B))
    s = inp.fx_vol
    fx = np.exp(s * rng.standard_normal((B, s.shape[0])) - 0.5 * s * s)            # [B, V]

    # 3. ordinary disputes: one NB1 count per (year, entry, type)
    yb, ye, yt = [], [], []
    for t in range(T):
        lam = inp.base_rate[d, :, t] * level[:, None]                               # [B, E]
        n = _nb1(rng, lam, inp.dispersion[d, t][:, None])
        nz = np.flatnonzero(n)
        idx = np.repeat(nz, n.flat[nz])
        b, e = np.divmod(idx, lam.shape[1])
        yb.append(b)
        ye.append(e)
        yt.append(np.full(b.shape, t, dtype=np.int64))
    b = np.concatenate(yb)
    e = np.concatenate(ye)
    t = np.concatenate(yt)
    dd = d[b]
    c = inp.entry_country[e]
    p = inp.entry_policy[e]

    # 5. stage and cost of ordinary disputes
    u = rng.random(b.shape[0])
    cum = inp.stage_cum[dd, c, t, :]                                               # [n, S]
    stage = (cum[:, :-1] < u[:, None]).sum(axis=1)
    z = rng.standard_normal(b.shape[0])
    X = np.exp(inp.log_median[dd, c, t, stage] + inp.sigma[dd, stage] * z)
    X *= fx[b, inp.country_currency[c]] * inp.sev_mult[c]
    decided = np.isin(stage, DECIDED_STAGES)
    wins = rng.random(b.shape[0]) < inp.win_probability[dd, c]
    shift = np.where(wins, 1.0 - inp.fee_recovered[c], 1.0 + inp.fee_adverse[c])
    X = np.where(decided, X * shift, X)

    # 4. campaigns: Poisson count, 1 + NB(m, k) sellers with replacement by exposure share
    cb, cp, cc, cX = [b], [p], [c], [X]
    for k in inp.campaigns:
        rate = np.exp(k["log_rate"][d]) * k["W"] * level * inp.freq_mult[k["country"]]
        ncamp = rng.poisson(rate)                                                   # [B]
        camp_year = np.repeat(np.arange(B), ncamp)
        cd = d[camp_year]
        conc = k["concentration"][cd]
        mix = rng.gamma(conc, 1.0 / conc)                                           # mean 1
        H = 1 + rng.poisson(k["mean_extra"][cd] * mix)
        sb = np.repeat(camp_year, H)
        sd = d[sb]
        pick = np.searchsorted(k["target_cum"], rng.random(sb.shape[0]), side="right")
        pick = np.minimum(pick, k["target_cum"].shape[0] - 1)
        se = k["target_entries"][pick]
        sX = np.exp(k["log_median"][sd] + k["sigma"][sd] * rng.standard_normal(sb.shape[0]))
        ck = k["country"]
        sX *= fx[sb, inp.country_currency[ck]] * inp.sev_mult[ck]
        cb.append(sb)
        cp.append(inp.entry_policy[se])
        cc.append(np.full(sb.shape, ck, dtype=np.int64))
        cX.append(sX)
    b = np.concatenate(cb)
    p = np.concatenate(cp)
    c = np.concatenate(cc)
    X = np.concatenate(cX)

    return _terms_and_reinsurance(inp, b, p, c, X, B)


def _terms_and_reinsurance(inp: Inputs, b, p, c, X, B: int) -> dict:
    """Steps 6-7 for a block's disputes: year b, policy p, country c, cost X (after FX, fees)."""
    C, P = len(inp.countries), len(inp.policy_ids)

    # 6. policy terms, aggregate limit, pro-rata attribution
    pay = np.minimum((1.0 - inp.coinsurance[p]) * np.maximum(X - inp.deductible[p], 0.0),
                     inp.limit_per_dispute[p])
    key = b * P + p
    tot = np.bincount(key, weights=pay, minlength=B * P)
    paid = np.minimum(tot, np.tile(inp.aggregate_limit, B))
    factor = np.divide(paid, tot, out=np.zeros_like(tot), where=tot > 0)
    x = pay * factor[key]

    gross = np.bincount(b, weights=x, minlength=B)
    ground_up = np.bincount(b, weights=X, minlength=B)
    disputes = np.bincount(b, minlength=B)
    kc = b * C + c
    gross_by_country = np.bincount(kc, weights=x, minlength=B * C).reshape(B, C)
    disputes_by_country = np.bincount(kc, minlength=B * C).reshape(B, C)

    # 7. reinsurance, inuring in the listed order, on each dispute's attributed payment
    retained = x.copy()
    ceded = np.zeros(B)
    for con in inp.reinsurance:
        if con["type"] == "quota_share":
            cd_ = con["cession"] * retained
            retained = retained - cd_
            ceded += np.bincount(b, weights=cd_, minlength=B)
        elif con["type"] == "per_dispute_xl":
            cd_ = np.minimum(np.maximum(retained - con["retention"], 0.0), con["limit"])
            annual = np.bincount(b, weights=cd_, minlength=B)
            scale = np.where(annual > con["cap"], con["cap"] / np.where(annual > 0, annual, 1.0), 1.0)
            cd_ = cd_ * scale[b]
            retained = retained - cd_
            ceded += np.bincount(b, weights=cd_, minlength=B)
        elif con["type"] == "stop_loss":
            R = np.bincount(b, weights=retained, minlength=B)
            cy = np.minimum(np.maximum(R - con["attachment"], 0.0), con["limit"])
            keep = np.divide(R - cy, R, out=np.ones_like(R), where=R > 0)
            retained = retained * keep[b]      # retained after the stop loss, pro rata per dispute
            ceded += cy
    net = gross - ceded

    return dict(gross=gross, net=net, ground_up=ground_up, disputes=disputes,
                gross_by_country=gross_by_country, disputes_by_country=disputes_by_country,
                pay_before_aggregate=np.bincount(b, weights=pay, minlength=B))


def simulate(inputs: Inputs, *, years: int, seed: int, block: int = 2000, generator=np.random.default_rng) -> dict:
    """Simulate `years` years; year y uses posterior sample y mod D. Returns per-year arrays.

    `generator` makes each block's random generator from its SeedSequence (a benchmark may wrap it
    to count the variates drawn)."""
    years = int(years)
    starts = list(range(0, years, block))
    children = np.random.SeedSequence(seed).spawn(max(len(starts), 1))
    parts = []
    for s0, ss in zip(starts, children):
        rng = generator(ss)
        ys = np.arange(s0, min(s0 + block, years))
        parts.append(_simulate_block(inputs, rng, ys % inputs.D))
    C = len(inputs.countries)
    if not parts:
        out = dict(gross=np.zeros(0), net=np.zeros(0), ground_up=np.zeros(0),
                   disputes=np.zeros(0, np.int64), pay_before_aggregate=np.zeros(0), gross_by_country=np.zeros((0, C)),
                   disputes_by_country=np.zeros((0, C), np.int64))
    else:
        out = {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
    out["countries"] = inputs.countries
    out["premium"] = inputs.premium_total
    return out


# --- Closed-form checks --------------------------------------------------------------------------

def expected_disputes(inputs: Inputs) -> float:
    """Exact E[disputes per year] over the D samples (a run of a multiple of D years).

    Per sample: E[level] = exp(sigma_year^2 / 2) times (sum over entries and types of the base
    rates + sum over campaign kinds of exp(campaign_log_rate) * W * (1 + m)).
    """
    el = np.exp(0.5 * inputs.sigma_year ** 2)                                       # [D]
    ordinary = inputs.base_rate.sum(axis=(1, 2))
    camp = np.zeros(inputs.D)
    for k in inputs.campaigns:
        camp += np.exp(k["log_rate"]) * k["W"] * inputs.freq_mult[k["country"]] * (1 + k["mean_extra"])
    return float(np.mean(el * (ordinary + camp)))


def expected_disputes_by_country(inputs: Inputs) -> np.ndarray:
    el = np.exp(0.5 * inputs.sigma_year ** 2)
    C = len(inputs.countries)
    per = np.zeros((inputs.D, C))
    rates = inputs.base_rate.sum(axis=2)                                            # [D, E]
    for j in range(C):
        per[:, j] = rates[:, inputs.entry_country == j].sum(axis=1)
    for k in inputs.campaigns:
        per[:, k["country"]] += (np.exp(k["log_rate"]) * k["W"] * inputs.freq_mult[k["country"]]
                                 * (1 + k["mean_extra"]))
    return np.mean(el[:, None] * per, axis=0)


def expected_ground_up(inputs: Inputs) -> float:
    """Exact E[ground-up per year] over the D samples (FX has mean 1 and is independent)."""
    el = np.exp(0.5 * inputs.sigma_year ** 2)
    c = inputs.entry_country
    # E[X | d, c, t] = sum_s p_s exp(log_median + sigma_s^2 / 2) * fee factor(s) * shock
    w = inputs.win_probability[:, :, None]                                          # [D, C, 1]
    fee = w * (1 - inputs.fee_recovered)[None, :, None] + (1 - w) * (1 + inputs.fee_adverse)[None, :, None]
    fee_s = np.ones(inputs.log_median.shape)                                        # [D, C, T, S]
    for s in DECIDED_STAGES:
        fee_s[..., s] = fee
    ex = (inputs.stage_prob * np.exp(inputs.log_median + 0.5 * inputs.sigma[:, None, None, :] ** 2)
          * fee_s).sum(axis=-1) * inputs.sev_mult[None, :, None]                     # [D, C, T]
    ordinary = (inputs.base_rate * ex[:, c, :]).sum(axis=(1, 2))
    camp = np.zeros(inputs.D)
    for k in inputs.campaigns:
        camp += (np.exp(k["log_rate"]) * k["W"] * inputs.freq_mult[k["country"]] * (1 + k["mean_extra"])
                 * np.exp(k["log_median"] + 0.5 * k["sigma"] ** 2) * inputs.sev_mult[k["country"]])
    return float(np.mean(el * (ordinary + camp)))


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz-Stegun 7.1.26 (|error of erf| < 1.5e-7): checks only."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _lognormal_lev(mu, sd, K):
    """E[min(X, K)] for log X ~ N(mu, sd^2); K may be 0 or inf."""
    mu, sd, K = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sd, float), np.asarray(K, float))
    mean = np.exp(mu + 0.5 * sd * sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        lk = np.log(K)
        val = mean * _norm_cdf((lk - mu - sd * sd) / sd) + K * (1.0 - _norm_cdf((lk - mu) / sd))
    val = np.where(np.isinf(K), mean, val)
    return np.where(K <= 0, 0.0, val)


def _expected_pay(mu, sd, ded, co, lim):
    """E[min((1 - co) max(X - ded, 0), lim)] for log X ~ N(mu, sd^2)."""
    with np.errstate(divide="ignore"):
        upper = ded + np.where(co < 1, lim / np.maximum(1.0 - co, 1e-300), np.inf)
    return (1.0 - co) * (_lognormal_lev(mu, sd, upper) - _lognormal_lev(mu, sd, ded))


def expected_pay_before_aggregate(inputs: Inputs) -> float:
    """Exact E[sum over a year's disputes of pay] (terms per dispute, before the aggregate limit).

    Checks the severity chain: stage mix, log-normal cost, FX (X F is log-normal with log-sd
    sqrt(sigma^2 + s_v^2) and log-median shifted by -s_v^2 / 2), fee shifting, shocks, deductible,
    coinsurance and per-dispute limit. The per-dispute payment is bounded, so the Monte Carlo mean
    converges fast (unlike ground-up, whose log-sd reaches ~3.4 in some samples).
    """
    inp = inputs
    el = np.exp(0.5 * inp.sigma_year ** 2)
    c = inp.entry_country
    p = inp.entry_policy
    sv = inp.fx_vol[inp.country_currency]                                           # [C]
    ded = inp.deductible[p][:, None, None]
    co = inp.coinsurance[p][:, None, None]
    lim = inp.limit_per_dispute[p][:, None, None]
    lnsev = np.log(inp.sev_mult)
    rec, adv = inp.fee_recovered[c][:, None, None], inp.fee_adverse[c][:, None, None]
    decided = np.zeros(len(STAGES), dtype=bool)
    decided[list(DECIDED_STAGES)] = True
    total = np.zeros(inp.D)
    for d in range(inp.D):
        mu = (inp.log_median[d][c] - 0.5 * sv[c][:, None, None] ** 2
              + lnsev[c][:, None, None])                                            # [E, T, S]
        sd = np.sqrt(inp.sigma[d][None, None, :] ** 2 + sv[c][:, None, None] ** 2)
        plain = _expected_pay(mu, sd, ded, co, lim)
        w = inp.win_probability[d][c][:, None, None]
        won = _expected_pay(mu + np.log(1.0 - rec), sd, ded, co, lim)
        lost = _expected_pay(mu + np.log(1.0 + adv), sd, ded, co, lim)
        per = np.where(decided[None, None, :], w * won + (1 - w) * lost, plain)
        ex = (inp.stage_prob[d][c] * per).sum(axis=-1)                                # [E, T]
        total[d] = (inp.base_rate[d] * ex).sum()
        for k in inp.campaigns:
            ck = k["country"]
            tp = inp.entry_policy[k["target_entries"]]
            share = np.diff(np.concatenate([[0.0], k["target_cum"]]))
            svk = inp.fx_vol[inp.country_currency[ck]]
            muk = k["log_median"][d] - 0.5 * svk ** 2 + lnsev[ck]
            sdk = math.sqrt(k["sigma"][d] ** 2 + svk ** 2)
            epay = (share * _expected_pay(muk, sdk, inp.deductible[tp], inp.coinsurance[tp],
                                          inp.limit_per_dispute[tp])).sum()
            total[d] += (np.exp(k["log_rate"][d]) * k["W"] * inp.freq_mult[ck]
                         * (1 + k["mean_extra"][d]) * epay)
    return float(np.mean(el * total))


# --- Command line --------------------------------------------------------------------------------

def _var(x: np.ndarray, q: float = 0.995) -> float:
    """Lower empirical quantile: the ceil(n q)-th smallest (1-based order statistic)."""
    xs = np.sort(x)
    return float(xs[max(math.ceil(len(xs) * q), 1) - 1])


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def summarize(out: dict) -> dict:
    res = {}
    for k in ("gross", "net", "ground_up", "disputes", "pay_before_aggregate"):
        if k not in out:
            continue
        m, se = _mean_se(out[k])
        res[k] = {"mean": m, "se": se}
    res["var995_gross"] = _var(out["gross"])
    res["var995_net"] = _var(out["net"])
    res["gross_by_country"] = {}
    res["disputes_by_country"] = {}
    for j, c in enumerate(out["countries"]):
        m, se = _mean_se(out["gross_by_country"][:, j])
        res["gross_by_country"][c] = {"mean": m, "se": se}
        m, se = _mean_se(out["disputes_by_country"][:, j])
        res["disputes_by_country"][c] = {"mean": m, "se": se}
    res["premium"] = out["premium"]
    return res


def parse_command_line(argv, description: str, extend=None):
    """The options both reference models take (``extend(parser)`` adds more); returns the parsed
    options, the scenario (a dict), the years and the seed (the scenario's unless given)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--years", type=int, default=None, help="default: the scenario's `years`")
    ap.add_argument("--seed", type=int, default=None, help="default: the scenario's `seed`")
    ap.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    ap.add_argument("--posterior", type=Path, default=DEFAULT_POSTERIOR)
    ap.add_argument("--portfolio", type=Path, default=DEFAULT_PORTFOLIO)
    ap.add_argument("--block", type=int, default=2000)
    ap.add_argument("--json", type=Path, default=None)
    if extend is not None:
        extend(ap)
    a = ap.parse_args(argv)
    with open(a.scenario, "rb") as f:
        scenario = tomllib.load(f)
    years = a.years if a.years is not None else int(scenario.get("years", 10000))
    seed = a.seed if a.seed is not None else int(scenario.get("seed", 0))
    return a, scenario, years, seed


def write_report(res: dict, out: Path | None) -> None:
    """Print the run's JSON report and write it to ``out`` too."""
    text = json.dumps(res, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def main(argv=None) -> None:
    a, scenario, years, seed = parse_command_line(argv, __doc__.split("\n\n")[0])
    t0 = time.perf_counter()
    inputs = load_inputs(posterior_path=a.posterior, portfolio_dir=a.portfolio, scenario=scenario)
    t1 = time.perf_counter()
    out = simulate(inputs, years=years, seed=seed, block=a.block)
    t2 = time.perf_counter()

    res = summarize(out)
    res.update(
        years=years, seed=seed, scenario=str(a.scenario), posterior=str(a.posterior),
        portfolio=str(a.portfolio), samples=inputs.D,
        expected_disputes=expected_disputes(inputs), expected_ground_up=expected_ground_up(inputs),
        expected_pay_before_aggregate=expected_pay_before_aggregate(inputs),
        expected_disputes_by_country=dict(zip(inputs.countries,
                                              map(float, expected_disputes_by_country(inputs)))),
        load_seconds=t1 - t0, simulate_seconds=t2 - t1, wall_seconds=t2 - t0,
    )
    write_report(res, a.json)


if __name__ == "__main__":
    main()
