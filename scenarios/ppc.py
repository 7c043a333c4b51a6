"""Posterior predictive checks: replicate the history under a posterior and set it against what was seen.

``leisim check POSTERIOR --history DIR`` and ``leisim fit --checks``. Counts are replicated by
the simulation engine itself (the kernel every run uses), on the history's own exposures, year
by year: so a check fails if either the fitted model or the engine that carries it into the
simulation is wrong (a mis-built alias table that sends disputes to the wrong countries fails
the country x type check at once). Costs are checked against the posterior's own laws.

For each history year ``y`` the book is the history's exposure by (country, dispute type,
sector) that year (one pseudo-policy per sector, type-specific weights), with no policy terms,
and campaigns target the year's exposure; each replicated year draws its own year effect and its
own posterior draw. Checks (observed against the replicates):

- disputes by country x type (over the history's years) and by year: 50% and 90% predictive
  intervals, randomised PIT values;
- campaigns per year (all kinds), and the sellers each campaign named (PIT under the posterior's
  1 + NB(m, k), randomised);
- legal costs by stage: PIT of each closed dispute under the posterior lognormal for its
  country, type and stage, truncated at its deductible (what makes a cost appear in the
  history), averaged over draws (a dispute paid at its limit, a right-censored cost, gets a PIT
  drawn uniformly above its value's); and observed cost quartiles by stage against the 90% band of
  the same quartiles in replicated sets of costs (truncated the same way; censored disputes
  censored at their recorded value).

A count check passes when the number of observations inside their 50% and 90% intervals is not
below the 0.1% quantile of Binomial(n, level) (applied from 20 observations: below that the
floor fails nothing, e.g. 0 of 7 years inside 50% would pass), and the posterior predictive p-value of the
chi-square discrepancy sum (x - E x)^2 / Var x (Gelman, Meng & Stern 1996) is at least 0.001: a
calibrated model fails each with probability ~0.1%; the discrepancy fails a model that puts a
few cells far off (a country's disputes simulated in another country) even when the coverage of
the others looks fine. Over-coverage is reported, not failed: the replicated years draw fresh
year effects, which makes the count intervals wider than the fitted years' own. PIT values of costs
pass when a Kolmogorov-Smirnov test against the uniform law gives p >= 0.001.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import xarray as xr
from scipy import stats

from ..formats.portfolio import Portfolio
from ..models.history import History
from ..models.posterior import _thin
from ..models.truth import CAMPAIGN_KINDS, CAMPAIGN_TARGETS, DISPUTE_TYPES
from ..simulator.driver import run_years
from ..vocabulary import STAGES
from .compose import assemble
from .schema import Scenario
from .tables import posterior_tables

LEVELS = (0.5, 0.9)
COVERAGE_FLOOR = 0.001  # a calibrated model fails a coverage check with this probability
KS_FLOOR = 0.001
DISCREPANCY_FLOOR = 0.001  # p resolution is 1 / replicates: with 2,000 (the default), at least 2 as discrepant
MIN_COVERAGE_N = 20  # observations below which the coverage rule is reported but not applied
TINY = 1e-12  # exposure kept in a cell absent from a year, so that every year has the same cells


def _coverage(observed: np.ndarray, replicates: np.ndarray, rng: np.random.Generator) -> dict:
    """Intervals, randomised PIT and coverage of ``observed[i]`` by ``replicates[:, i]``."""
    observed = np.asarray(observed, dtype=np.float64)
    below = (replicates < observed[None, :]).mean(axis=0)
    equal = (replicates == observed[None, :]).mean(axis=0)
    pit = below + rng.random(observed.size) * equal
    out = {"pit": pit.tolist(), "n": int(observed.size)}
    intervals = {}
    for level in LEVELS:
        lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2], axis=0)
        inside = (observed >= lo) & (observed <= hi)
        floor = int(stats.binom.ppf(COVERAGE_FLOOR, observed.size, level)) if observed.size else 0
        # Below MIN_COVERAGE_N observations the binomial floor is too low to fail anything (7
        # years: 0 of 7 inside 50% would pass); the discrepancy p-value carries such checks.
        applied = observed.size >= MIN_COVERAGE_N
        intervals[f"{level:g}"] = {"lower": lo.tolist(), "upper": hi.tolist(), "inside": inside.tolist(),
                                   "coverage": float(inside.mean()) if observed.size else None,
                                   "covered": int(inside.sum()), "minimum_covered": floor,
                                   "pass": bool(inside.sum() >= floor) if applied else None}
    out["intervals"] = intervals
    mean, variance = replicates.mean(axis=0), replicates.var(axis=0)
    out["mean"] = mean.tolist()
    # Gelman, Meng & Stern (1996): the posterior predictive p-value of a chi-square discrepancy,
    # T(x) = sum_i (x_i - E x_i)^2 / Var x_i, P(T(replicate) >= T(observed)). A few values far off
    # (a country's disputes simulated in another country) make it ~0 while coverage looks fine.
    def discrepancy(x):
        return (((x - mean) ** 2) / np.maximum(variance, 1e-6)).sum(axis=-1)

    observed_t, replicated_t = float(discrepancy(observed)), discrepancy(replicates)
    p_value = float((replicated_t >= observed_t).mean())
    out["discrepancy"] = {"statistic": observed_t, "p_value": p_value, "pass": bool(p_value >= DISCREPANCY_FLOOR),
                          "replicates": int(replicates.shape[0])}
    out["pass"] = all(v["pass"] is not False for v in intervals.values()) and out["discrepancy"]["pass"]
    return out


def _year_book(history: History, y: int, sectors: tuple[str, ...]) -> np.ndarray:
    """Exposure [sector, country, type] of history year index ``y``."""
    book = np.zeros((len(sectors), len(history.countries), len(DISPUTE_TYPES)))
    rows = history.cell_year == y
    np.add.at(book, (history.cell_sector[rows], history.cell_country[rows], history.cell_type[rows]),
              history.cell_exposure[rows])
    return book


def _replicate_counts(history: History, posterior: xr.Dataset, *, key: jax.Array, years: int) -> dict:
    """Engine replicates per history year: ordinary disputes [rep, country, type] and campaigns [rep]."""
    sectors = history.sectors
    books = [_year_book(history, y, sectors) for y in range(len(history.years))]
    base = np.maximum.reduce(books).max(axis=2)  # [sector, country]: every cell any year has
    portfolio = Portfolio(policy_id=tuple(f"sector:{s}" for s in sectors), sector=sectors,
                          premium_cny=np.ones(len(sectors)), deductible_cny=np.zeros(len(sectors)),
                          coinsurance=np.zeros(len(sectors)), limit_per_dispute_cny=np.full(len(sectors), 1e30),
                          aggregate_limit_cny=np.full(len(sectors), 1e30), subsidy_share=np.zeros(len(sectors)),
                          countries=history.countries, exposure=np.where(base > 0, base, 0.0), source=history.source)
    scenario = Scenario(name="checks", raw={"name": "checks", "model": {"parameters": "posterior"}}, source="checks")
    base_tables = posterior_tables(scenario, portfolio, posterior)
    country_index = {c: i for i, c in enumerate(history.countries)}
    ordinary = [i for i in range(len(base_tables.cell_country)) if i not in set(base_tables.campaign_cell.tolist())]
    compositions = []
    for y, book in enumerate(books):
        weights = []
        for cell, members in zip(base_tables.stratum_cell, base_tables.stratum_policies):
            c = country_index[base_tables.cell_country[cell]]
            t = DISPUTE_TYPES.index(base_tables.cell_dispute_type[cell])
            weights.append(np.maximum(book[members, c, t], TINY))
        campaign_rate = base_tables.campaign_rate.copy()
        for k, kind_weights in enumerate(base_tables.campaign_weights):
            kind = CAMPAIGN_KINDS.index(_campaign_kind(base_tables, k))
            target = history.campaign_target_exposure[y, kind]
            campaign_rate[:, k] *= max(target, TINY) / kind_weights.sum()
        tables = dataclasses.replace(base_tables, stratum_weights=tuple(weights), campaign_rate=campaign_rate)
        compositions.append(assemble(tables, portfolio))
    buffers = ("event_buffer", "dispute_buffer", "campaign_buffer", "campaign_dispute_buffer")
    widest = {b: max(getattr(shape, b) for _, shape, _ in compositions) for b in buffers}
    counts = np.zeros((len(books), years, len(history.countries), len(DISPUTE_TYPES)))
    campaigns = np.zeros((len(books), years))
    campaign_disputes = np.zeros((len(books), years))
    for y, (params, shape, _) in enumerate(compositions):
        table = run_years(jax.random.fold_in(key, y), params, shape._replace(**widest), years=years,
                          chunk_size=min(years, 5000))
        for cell in ordinary:
            c = country_index[base_tables.cell_country[cell]]
            t = DISPUTE_TYPES.index(base_tables.cell_dispute_type[cell])
            counts[y, :, c, t] += table.disputes_by_group[:, cell]
        campaigns[y] = table.campaigns
        campaign_disputes[y] = table.campaign_disputes
    return {"counts": counts, "campaigns": campaigns, "campaign_disputes": campaign_disputes}


def _campaign_kind(tables, k: int) -> str:
    """The kind of the ``k``-th campaign table: its cell's (country, type) names it (CAMPAIGN_TARGETS)."""
    cell = int(tables.campaign_cell[k])
    pair = (tables.cell_country[cell], tables.cell_dispute_type[cell])
    return next(kind for kind in CAMPAIGN_KINDS if CAMPAIGN_TARGETS[kind][:2] == pair)


def _lognormal_cdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return stats.norm.cdf((np.log(x) - mu) / sigma)


def _cost_checks(history: History, posterior: xr.Dataset, rng: np.random.Generator, replicates: int) -> dict:
    """PIT of each closed, uncensored cost under its truncated posterior lognormal; quartiles by stage."""
    post_countries = [str(c) for c in posterior["log_median"].coords["country"].values]
    known = np.array([history.countries[c] in post_countries for c in history.dispute_country], bool)
    index = np.array([post_countries.index(history.countries[c]) if k else 0
                      for c, k in zip(history.dispute_country, known)], int)
    log_median = np.asarray(posterior["log_median"].values, np.float64)  # [draw, country, type, stage]
    sigma = np.asarray(posterior["sigma"].values, np.float64)  # [draw, stage]
    stage, dtype = history.dispute_stage, history.dispute_type
    mu = log_median[:, index, dtype, stage]  # [draw, dispute]
    s = sigma[:, stage]
    cost, deductible = history.dispute_cost, history.dispute_deductible
    f_d = _lognormal_cdf(np.maximum(deductible, 1e-300)[None, :], mu, s)
    f_x = _lognormal_cdf(cost[None, :], mu, s)
    pit_all = ((f_x - f_d) / np.maximum(1.0 - f_d, 1e-300)).mean(axis=0)
    # A closed dispute paid at its limit says only "cost >= x": its PIT is uniform on [F(x), 1]
    # (randomised); leaving such disputes out would keep the cheaper ones only and bias the PIT
    # low. Open disputes are left out: their final stage is not known yet (their selection is by
    # duration, independent of the cost given the stage).
    closed = history.dispute_closed & known
    pit_all = np.where(history.dispute_censored, pit_all + rng.random(cost.size) * (1.0 - pit_all), pit_all)
    exact = closed
    pit = pit_all[exact]
    ks = stats.kstest(pit, "uniform") if pit.size else None
    # Replicated cost sets: per dispute a random draw, a cost above its deductible (inverse CDF of
    # the truncated law), censored where the observed one is.
    n_draws = mu.shape[0]
    pick = rng.integers(0, n_draws, (replicates, cost.size))
    u = rng.random((replicates, cost.size))
    column = np.arange(cost.size)[None, :]
    lower = f_d[pick, column]
    z = stats.norm.ppf(np.minimum(lower + u * (1.0 - lower), 1.0 - 1e-16))
    draws = np.exp(mu[pick, column] + s[pick, column] * z)
    draws = np.where(history.dispute_censored[None, :], np.minimum(draws, cost[None, :]), draws)
    rows = []
    for j, name in enumerate(STAGES):
        members = (stage == j) & known & history.dispute_closed  # an open dispute's stage is only the one reached
        if members.sum() < 2:
            rows.append({"stage": name, "n": int(members.sum())})
            continue
        quantiles = (0.25, 0.5, 0.75)
        observed = np.quantile(cost[members], quantiles)
        replicated = np.quantile(draws[:, members], quantiles, axis=1)  # [quantile, replicate]
        lo, hi = np.quantile(replicated, [0.05, 0.95], axis=1)
        rows.append({"stage": name, "n": int(members.sum()), "quantiles": list(quantiles),
                     "observed": observed.tolist(), "lower_90": lo.tolist(), "upper_90": hi.tolist(),
                     "inside_90": ((observed >= lo) & (observed <= hi)).tolist()})
    return {"pit": pit.tolist(), "n": int(pit.size), "ks_pvalue": None if ks is None else float(ks.pvalue),
            "pass": None if ks is None else bool(ks.pvalue >= KS_FLOOR), "by_stage": rows,
            "censored_at_limit": int((closed & history.dispute_censored).sum()),
            "excluded": {"open": int((~history.dispute_closed & known).sum()),
                         "country_not_in_posterior": int((~known).sum())},
            "rule": f"KS test of the PIT values (closed disputes; at-limit ones randomised on [F(x), 1]) against "
                    f"U(0, 1): p >= {KS_FLOOR:g}"}


def _campaign_size_check(history: History, posterior: xr.Dataset, rng: np.random.Generator) -> dict:
    """Randomised PIT of each campaign's extra sellers under 1 + NB(m, k), mixed over draws."""
    if history.campaign_hits.size == 0:
        return {"n": 0, "pit": [], "pass": None, "reason": "no campaigns in the history"}
    kinds = [str(k) for k in posterior["campaign_mean_extra"].coords["campaign_kind"].values]
    missing = sorted({CAMPAIGN_KINDS[i] for i in history.campaign_hit_kind} - set(kinds))
    if missing:
        return {"n": 0, "pit": [], "pass": None, "reason": f"the posterior has no {', '.join(missing)} campaigns"}
    m = np.asarray(posterior["campaign_mean_extra"].values, np.float64)  # [draw, kind]
    k = np.asarray(posterior["campaign_concentration"].values, np.float64)
    kind = np.array([kinds.index(CAMPAIGN_KINDS[i]) for i in history.campaign_hit_kind])
    extra = history.campaign_hits - 1
    mk, kk = m[:, kind], k[:, kind]
    p = kk / (kk + mk)
    below = stats.nbinom.cdf(extra - 1, kk, p).mean(axis=0)
    at = stats.nbinom.pmf(extra, kk, p).mean(axis=0)
    pit = below + rng.random(extra.size) * at
    ks = stats.kstest(pit, "uniform")
    return {"n": int(extra.size), "pit": pit.tolist(), "ks_pvalue": float(ks.pvalue), "pass": bool(ks.pvalue >= KS_FLOOR),
            "observed_mean_sellers": float(history.campaign_hits.mean()),
            "predicted_mean_sellers": float((1.0 + mk).mean()),
            "rule": f"KS test of the randomised PIT values against U(0, 1): p >= {KS_FLOOR:g}"}


def predictive_checks(history: History, posterior: xr.Dataset, *, seed: int = 0, years: int = 2000,
                      max_draws: int = 1000, replicates: int = 400) -> dict:
    """The checks document (checks.json): every check with its values, intervals, PIT and verdict.

    Args:
        history: the dispute history the posterior is set against.
        posterior: ``load_posterior(path)`` (draws stacked on ``sample``).
        years: replicated years per history year (each uses its own posterior draw, cycling).
        replicates: replicated cost sets for the quartiles by stage.
    """
    posterior = _thin(posterior, max_draws)
    key = jax.random.key(seed)
    rng = np.random.default_rng(seed)
    rep = _replicate_counts(history, posterior, key=key, years=years)
    counts = rep["counts"]  # [history year, replicate, country, type]
    observed = np.zeros((len(history.years), len(history.countries), len(DISPUTE_TYPES)))
    np.add.at(observed, (history.cell_year, history.cell_country, history.cell_type), history.cell_disputes)
    has_exposure = np.zeros_like(observed, bool)
    np.logical_or.at(has_exposure, (history.cell_year, history.cell_country, history.cell_type),
                     history.cell_exposure > 0)
    cells = [(c, t) for c in range(len(history.countries)) for t in range(len(DISPUTE_TYPES))
             if has_exposure[:, c, t].any()]
    by_cell = _coverage(np.array([observed[:, c, t].sum() for c, t in cells]),
                        np.stack([counts[:, :, c, t].sum(axis=0) for c, t in cells], axis=1), rng)
    by_cell["labels"] = [f"{history.countries[c]}/{DISPUTE_TYPES[t]}" for c, t in cells]
    by_cell["observed"] = [float(observed[:, c, t].sum()) for c, t in cells]
    by_year = _coverage(observed.sum(axis=(1, 2)), counts.sum(axis=(2, 3)).T, rng)
    by_year["labels"] = [str(y) for y in history.years]
    by_year["observed"] = observed.sum(axis=(1, 2)).tolist()
    campaigns = _coverage(history.campaign_count.sum(axis=1), rep["campaigns"].T, rng)
    campaigns["labels"] = [str(y) for y in history.years]
    campaigns["observed"] = history.campaign_count.sum(axis=1).tolist()
    for check in (by_cell, by_year, campaigns):
        check["rule"] = (f"observations inside their 50% and 90% predictive intervals >= the {COVERAGE_FLOOR:g} "
                         f"quantile of Binomial(n, level); chi-square discrepancy predictive p >= {DISCREPANCY_FLOOR:g}")
    checks = {
        "disputes_by_country_and_type": by_cell,
        "disputes_by_year": by_year,
        "campaigns_by_year": campaigns,
        "campaign_sizes": _campaign_size_check(history, posterior, rng),
        "costs": _cost_checks(history, posterior, rng, replicates),
    }
    verdicts = [c["pass"] for c in checks.values() if c.get("pass") is not None]
    return {"checks": checks, "pass": all(verdicts), "draws": int(posterior.sizes["sample"]),
            "replicated_years_per_history_year": years, "seed": seed, "history": history.source,
            "method": "counts replicated by the simulation engine on the history's exposures (fresh year effects); "
                      "costs under the posterior lognormal by stage, truncated at the deductible"}


def summary_lines(doc: dict) -> list[str]:
    """One line per check, for the terminal and the report."""
    lines = []
    for name, c in doc["checks"].items():
        verdict = "n/a" if c.get("pass") is None else ("PASS" if c["pass"] else "FAIL")
        if "intervals" in c:
            i50, i90 = c["intervals"]["0.5"], c["intervals"]["0.9"]
            floor90 = f">= {i90['minimum_covered']}" if i90["pass"] is not None else "reported only, n < 20"
            floor50 = f">= {i50['minimum_covered']}" if i50["pass"] is not None else "reported only"
            detail = (f"{i90['covered']}/{c['n']} inside 90% ({floor90}), "
                      f"{i50['covered']}/{c['n']} inside 50% ({floor50}), "
                      f"discrepancy p = {c['discrepancy']['p_value']:.3g}")
        else:
            detail = (f"{c['n']} values, KS p = {c.get('ks_pvalue', float('nan')):.3g}" if c["n"]
                      else c.get("reason", "no data"))
        lines.append(f"{name.replace('_', ' '):32} {verdict:5} {detail}")
    return lines


def plot_checks(doc: dict, path: Path) -> Path:
    """checks.png: counts against their intervals, PIT histograms, cost quartiles by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = doc["checks"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), dpi=110)
    for ax, name, title in ((axes[0, 0], "disputes_by_country_and_type", "Disputes by country x type (all years)"),
                            (axes[0, 1], "disputes_by_year", "Disputes by year")):
        c = checks[name]
        x = np.arange(len(c["labels"]))
        for level, colour, width in (("0.9", "#56B4E9", 0.7), ("0.5", "#0072B2", 0.35)):
            lo, hi = np.array(c["intervals"][level]["lower"]), np.array(c["intervals"][level]["upper"])
            ax.bar(x, np.maximum(hi - lo, 0.02), bottom=lo, width=width, color=colour, alpha=0.7,
                   label=f"{float(level):.0%} predictive interval")
        ax.scatter(x, c["observed"], color="#D55E00", zorder=3, s=18, label="observed")
        ax.set_xticks(x, c["labels"], rotation=90 if len(x) > 10 else 0, fontsize=7 if len(x) > 10 else 9)
        ax.set_yscale("symlog")
        ax.set_ylabel("disputes (symmetric log scale)")
        verdict = "PASS" if c["pass"] else "FAIL"
        ax.set_title(f"{title}: {verdict}", loc="left", fontsize=10)
        ax.grid(True, alpha=0.3)
    # The legend above the bars, outside the axes: inside it covers the intervals it explains.
    axes[0, 0].legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.06), ncol=3)
    ax = axes[1, 0]
    bins = np.linspace(0, 1, 11)
    for name, colour, label in (("costs", "#009E73", "costs (closed disputes)"),
                                ("disputes_by_country_and_type", "#0072B2", "counts by country x type"),
                                ("campaign_sizes", "#CC79A7", "campaign sizes")):
        pit = np.asarray(checks[name].get("pit", []))
        if pit.size:
            ax.hist(pit, bins=bins, density=True, histtype="step", lw=2, color=colour, label=f"{label} (n={pit.size})")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_title("PIT values (uniform if calibrated)", loc="left", fontsize=10)
    ax.set_xlabel("probability integral transform")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    ax = axes[1, 1]
    rows = [r for r in checks["costs"]["by_stage"] if "observed" in r]
    for i, r in enumerate(rows):
        for q, (obs, lo, hi) in enumerate(zip(r["observed"], r["lower_90"], r["upper_90"])):
            xpos = i + (q - 1) * 0.22
            ax.plot([xpos, xpos], [lo, hi], color="#0072B2", lw=4, alpha=0.6)
            ax.scatter([xpos], [obs], color="#D55E00", zorder=3, s=14)
    ax.set_xticks(range(len(rows)), [f"{r['stage']}\n(n={r['n']})" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("legal cost (CNY, log scale)")
    ax.set_title("Cost quartiles by stage: observed (dots), 90% predictive band (bars)", loc="left", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.suptitle("Posterior predictive checks: " + ("all PASS" if doc["pass"] else "some FAIL"), x=0.01, ha="left")
    fig.tight_layout()
    try:
        fig.savefig(path)  # the caller stages it (files.atomic_write)
    finally:
        plt.close(fig)
    return Path(path)
