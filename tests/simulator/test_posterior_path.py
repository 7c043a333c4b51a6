"""The posterior-driven path, draw by draw, against what the composed tables intend.

The invariance tests (chunks, devices, buffers) cannot catch a kernel that is consistently wrong;
these compare it with probabilities and means computed another way, from
:class:`~leisim.scenarios.compose.ModelTables` (the posterior draws mapped onto the portfolio),
never from the engine's alias tables:

- every draw's picks of stratum, entry and cell against ``stratum_scale[d, s] * weight_e``
  (chi-square goodness of fit);
- every draw's expected disputes and expected gross of every cell against exact expectations
  in float64: NB1 and campaign counts times E[exp(year effect)], and per entry the stage mixture
  of lognormal costs times the lognormal FX factor times the fee-shifting outcome, through the
  deductible, coinsurance and per-dispute limit (the limited expected value of a lognormal, in
  closed form).

A third, slower check (tests/test_reference.py) sets whole runs against an independent NumPy
implementation of the documented model (benchmarks/reference_model.py).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from leisim.data.generate import default_portfolio_dir
from leisim.scenarios.compose import compose
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import load_scenario
from leisim.scenarios.tables import posterior_tables
from leisim.simulator import engine
from leisim.simulator.driver import run_year_ids

# Draws 0 and 1 alone passed with the alias table of commit a0bab03 (local alias indices read as
# global ones): the others must be checked too.
DRAWS = (0, 1, 2, 3, 517, 999)
PICKS = 400_000  # event slots per draw
# A correct engine fails one chi-square check with probability P_FLOOR (fixed keys: the outcome
# is deterministic; 18 checks give a family-wise false-alarm rate below 0.2%).
P_FLOOR = 1e-4


@pytest.fixture(scope="module")
def portfolio():
    return load_portfolio(default_portfolio_dir())


@pytest.fixture(scope="module")
def tables(portfolio):
    return posterior_tables(load_scenario("baseline"), portfolio)


def _chi_square_p(observed: np.ndarray, probability: np.ndarray) -> float:
    """Pearson's chi-square p-value, categories expected below 5 pooled into one."""
    expected = probability * observed.sum()
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert observed[probability == 0].sum() == 0, "a category with probability 0 was picked"
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def test_every_draw_picks_strata_entries_and_cells_with_the_intended_probabilities(baseline, tables):
    params, shape = baseline.params, baseline.shape
    assert shape.stratified and tables.n_draws == 1000
    n_strata = tables.stratum_scale.shape[1]
    counts = np.array([len(p) for p in tables.stratum_policies])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    weights = np.concatenate(tables.stratum_weights)
    entry_stratum = np.repeat(np.arange(n_strata), counts)
    entry_cell = tables.stratum_cell[entry_stratum]
    n_cells = len(tables.cell_country)
    pick = jax.jit(lambda w, sw, d, p: engine.pick_entries(w, sw, d, p, shape))
    key = jax.random.key(7)
    failures = []
    for d in DRAWS:
        k_word, k_stratum = jax.random.split(jax.random.fold_in(key, d))
        word = jax.random.bits(k_word, (PICKS,), dtype=jnp.uint64)
        stratum_word = jax.random.bits(k_stratum, (PICKS,), dtype=jnp.uint64)
        stratum, entry = (np.asarray(x) for x in pick(word, stratum_word, jnp.int32(d), params))
        outside = (stratum < 0) | (stratum >= n_strata)
        if outside.any():
            failures.append(f"draw {d}: {outside.mean():.1%} of the stratum picks are not strata")
            continue
        # Each entry lies in its stratum's block.
        assert np.all((entry >= offsets[stratum]) & (entry < offsets[stratum] + counts[stratum])), d
        entry_p = tables.stratum_scale[d, entry_stratum] * weights
        entry_p /= entry_p.sum()
        stratum_p = np.bincount(entry_stratum, entry_p, n_strata)
        cell_p = np.bincount(entry_cell, entry_p, n_cells)
        for name, observed, p in (("stratum", np.bincount(stratum, minlength=n_strata), stratum_p),
                                  ("entry", np.bincount(entry, minlength=entry_p.size), entry_p),
                                  ("cell", np.bincount(entry_cell[entry], minlength=n_cells), cell_p)):
            p_value = _chi_square_p(observed, p)
            if p_value < P_FLOOR:
                tv = 0.5 * np.abs(observed / observed.sum() - p).sum()
                failures.append(f"draw {d} {name}: chi-square p = {p_value:.2g}, total variation {tv:.3f}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Expected disputes and gross per (draw, cell), exactly.

YEARS_PER_DRAW = 12_000
EXACT_DRAWS = (0, 2, 517, 999)
# Per (draw, cell) z-scores: 4 draws x ~33 cells x 2 quantities; |z| < 4.5 fails a correct engine
# with probability ~7e-6 each (family-wise < 0.2%). The z-scores are not independent (a cell's
# count drives its gross; every cell shares the year effect), so they are not pooled into a
# chi-square; biases shared by many cells show in the portfolio totals, tested the same way
# (the total count with its exact variance, the total gross with its sample SE).
Z_MAX = 4.5
MIN_DISPUTES = 200


def _lognormal_lev(mu: np.ndarray, sigma: np.ndarray, u: np.ndarray) -> np.ndarray:
    """E[min(Y, u)] for Y ~ lognormal(mu, sigma), float64 (u may be 0 or inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_u = np.log(u)
        below = np.exp(mu + 0.5 * sigma**2) * ndtr((log_u - mu - sigma**2) / sigma)
        above = np.where(np.isfinite(u), u * (1.0 - ndtr((log_u - mu) / sigma)), 0.0)
    return np.where(u > 0, below + np.nan_to_num(above), 0.0)


def _expected_payment(mu, sigma, fx_sigma, deductible, coinsurance, limit):
    """E[min((1 - c) max(Y - d, 0), L)] with Y = lognormal(mu, sigma) x FX factor (lognormal, mean 1)."""
    s2 = sigma**2 + fx_sigma**2
    mu_y, s_y = mu - 0.5 * fx_sigma**2, np.sqrt(s2)
    share = 1.0 - coinsurance
    top = deductible + np.where(share > 0, limit / np.where(share > 0, share, 1.0), 0.0)
    return share * (_lognormal_lev(mu_y, s_y, top) - _lognormal_lev(mu_y, s_y, deductible))


def exact_cell_means(tables, portfolio, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected disputes, their variance, and expected gross (no aggregate limit) per cell under draw ``d``.

    Variance of a year's count: E[Var(N | eps)] + Var(E[N | eps]) with level = exp(eps): NB1
    entries give lam (1 + delta) per unit level (delta the cell's dispersion), campaigns
    rate E[H^2] with H = 1 + NB(m, k) sellers named; E[level^2] = exp(2 sigma^2).
    """
    n_cells = len(tables.cell_country)
    sigma2 = float(tables.year_sigma[d]) ** 2
    lift = math.exp(0.5 * sigma2)  # E[exp(eps)], eps ~ N(0, sigma_year^2)
    level_var = math.exp(2 * sigma2) - lift**2
    disputes, variance, gross = np.zeros(n_cells), np.zeros(n_cells), np.zeros(n_cells)
    rate = np.zeros(n_cells)  # expected count per unit level
    delta = tables.cell_dispersion[d] if tables.cell_dispersion is not None else np.zeros(n_cells)

    def per_dispute(cell: int, policies: np.ndarray) -> np.ndarray:
        """Expected payment of one dispute of ``cell`` for each policy."""
        currency = tables.cell_currency[cell]
        fx_sigma = tables.fx_sigma.get(currency, 0.0)
        p_win, recovered, adverse = tables.cell_fee[d, cell]
        out = np.zeros(policies.size)
        for stage, p_stage in enumerate(tables.cell_stage_probability[d, cell]):
            if p_stage == 0:
                continue
            mu, sigma, _ = tables.cell_severity[d, cell, stage]
            outcomes = [(1.0, 1.0)]
            if stage >= engine.TRIAL and (p_win > 0 or adverse > 0):
                outcomes = [(p_win, 1.0 - recovered), (1.0 - p_win, 1.0 + adverse)]
            for p_outcome, factor in outcomes:
                out += p_stage * p_outcome * _expected_payment(
                    mu + math.log(factor), sigma, fx_sigma, portfolio.deductible_cny[policies],
                    portfolio.coinsurance[policies], portfolio.limit_per_dispute_cny[policies])
        return out

    for s, cell in enumerate(tables.stratum_cell):
        lam = tables.stratum_scale[d, s] * tables.stratum_weights[s]
        rate[cell] += lam.sum()
        variance[cell] += lam.sum() * (1.0 + delta[cell]) * lift
        gross[cell] += lift * (lam @ per_dispute(cell, tables.stratum_policies[s]))
    for k, cell in enumerate(tables.campaign_cell):
        m, concentration = tables.campaign_size[d, k]
        r = tables.campaign_rate[d, k]
        rate[cell] += r * (1.0 + m)
        variance[cell] += r * lift * (m + m * m / concentration + (1.0 + m) ** 2)
        share = tables.campaign_weights[k] / tables.campaign_weights[k].sum()
        gross[cell] += lift * r * (1.0 + m) * (share @ per_dispute(cell, tables.campaign_policies[k]))
    disputes = rate * lift
    variance += rate**2 * level_var
    return disputes, variance, gross


@pytest.mark.slow
def test_every_draw_gives_each_cell_its_expected_disputes_and_gross(portfolio, tables):
    # Without aggregate limits a cell's annual gross is a compound sum whose mean is exact.
    unlimited = dataclasses.replace(portfolio, aggregate_limit_cny=np.full(portfolio.n_policies, 1e30))
    comp = compose(load_scenario("baseline"), unlimited, dev_years=0)
    key = jax.random.key(11)
    failures = []
    for d in EXACT_DRAWS:
        ids = d + tables.n_draws * np.arange(YEARS_PER_DRAW)
        table = run_year_ids(key, ids, comp.params, comp.shape, chunk_size=YEARS_PER_DRAW)
        want_n, var_n, want_x = exact_cell_means(tables, unlimited, d)
        # Counts: exact SEs. Gross: the sample SE, reliable where a cell expects >= MIN_DISPUTES
        # disputes in these years; the rarer cells are tested together as one pooled cell.
        got_n, got_x = table.disputes_by_group, table.gross_by_group
        common = want_n * YEARS_PER_DRAW >= MIN_DISPUTES
        z_n = (got_n.mean(axis=0) - want_n) / np.sqrt(var_n / YEARS_PER_DRAW)
        pooled_x = np.column_stack([got_x[:, common], got_x[:, ~common].sum(axis=1)])
        pooled_want = np.append(want_x[common], want_x[~common].sum())
        labels = [f"{tables.cell_country[c]}/{tables.cell_dispute_type[c]}" for c in np.flatnonzero(common)]
        labels.append(f"{np.count_nonzero(~common)} rare cells pooled")
        z_x = (pooled_x.mean(axis=0) - pooled_want) / (pooled_x.std(axis=0) / math.sqrt(YEARS_PER_DRAW))
        for cell in np.flatnonzero(np.abs(z_n) > Z_MAX):
            failures.append(f"draw {d} cell {tables.cell_country[cell]}/{tables.cell_dispute_type[cell]} disputes: "
                            f"engine {got_n[:, cell].mean():.6g}, exact {want_n[cell]:.6g}, z = {z_n[cell]:+.1f}")
        for i in np.flatnonzero(np.abs(z_x) > Z_MAX):
            failures.append(f"draw {d} cell {labels[i]} gross: engine {pooled_x[:, i].mean():.6g}, "
                            f"exact {pooled_want[i]:.6g}, z = {z_x[i]:+.1f}")
        # The total count: Var = sum of the cells' own terms + (sum of rates)^2 Var(level).
        total_n = got_n.sum(axis=1)
        total_var = var_n.sum() + (want_n.sum() ** 2 - (want_n**2).sum()) * (math.exp(tables.year_sigma[d] ** 2) - 1.0)
        z_total = (total_n.mean() - want_n.sum()) / math.sqrt(total_var / YEARS_PER_DRAW)
        if abs(z_total) > Z_MAX:
            failures.append(f"draw {d} total disputes: engine {total_n.mean():.6g}, exact {want_n.sum():.6g}, "
                            f"z = {z_total:+.1f}")
        # And the portfolio total.
        total_se = table.gross.std() / math.sqrt(YEARS_PER_DRAW)
        if abs(table.gross.mean() - want_x.sum()) > Z_MAX * total_se:
            failures.append(f"draw {d} total gross: engine {table.gross.mean():.6g}, exact {want_x.sum():.6g}")
    assert not failures, "\n".join(failures)
