"""Reinsurance: published layer values, exact stop-loss premiums, invariants on random programs.

Tolerances: simulated expectations are compared within 3 Monte Carlo standard errors,
SE = sd / sqrt(years) of the per-year amounts from the same run (fixed keys: a correct simulator
fails a given check with probability ~0.3%). Exact references bracket the truth (rounding the
severity down and up, tests/exact.py), so discretisation adds no slack beyond the bracket.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact import discretise, panjer, payment_cdf
from helpers import cell, make_portfolio, make_scenario
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from leisim.scenarios.compose import compose
from leisim.simulator import reinsurance
from leisim.simulator.driver import run_years
from leisim.simulator.reinsurance import Contract, contracts_from_scenario, program_arrays

SEED = 20261122
PARETO = {"distribution": "pareto", "alpha": 3.0, "scale_cny": 10.0}
LOGNORMAL = {"distribution": "lognormal", "median_cny": 1.0e6, "sigma": 0.8}


def _xl(retention, limit, reinstatements="unlimited", **extra) -> dict:
    return {"type": "per_dispute_xl", "retention_cny": retention, "limit_cny": limit,
            "reinstatements": reinstatements} | extra


def _run(cells, programs, *, years, exposure=1.0):
    portfolio = make_portfolio(exposure=[[exposure]])
    comp = compose(make_scenario(cells), portfolio,
                   programs=[contracts_from_scenario(p, 1.0) for p in programs], dev_years=0)
    return comp, run_years(jax.random.key(SEED), comp.params, comp.shape, years=years, chunk_size=50_000)


def _within(sample: np.ndarray, expected: float, k: float = 3.0) -> bool:
    se = sample.std(ddof=1) / math.sqrt(sample.size)
    return abs(sample.mean() - expected) <= k * se


# Mata (2000), "Pricing excess of loss reinsurance with reinstatements", ASTIN Bulletin 30(2),
# Table 1: Poisson(10) claims, Pareto II(alpha 3, scale 10) severities. Expected annual loss to
# the layer with unlimited free reinstatements and with one free reinstatement.
MATA = [  # (limit, retention, reinstatements, expected annual layer loss)
    (10.0, 10.0, "unlimited", 6.9444), (10.0, 10.0, 1, 6.6128),
    (10.0, 20.0, "unlimited", 2.4305), (10.0, 20.0, 1, 2.4103),
    (20.0, 10.0, "unlimited", 9.3749), (20.0, 10.0, 1, 9.2173),
]


@pytest.fixture(scope="module")
def mata():
    # All six layers on the same simulated years: one kernel pass, common random numbers.
    programs = [[_xl(retention, limit, k)] for limit, retention, k, _ in MATA]
    _, table = _run([cell(frequency={"distribution": "poisson", "rate": 10.0}, severity=PARETO)], programs,
                    years=200_000)
    return table


@pytest.mark.parametrize("index", range(len(MATA)), ids=[f"{l:g}xs{r:g}-{k}" for l, r, k, _ in MATA])
def test_layer_expected_loss_matches_mata_2000(mata, index):
    limit, retention, reinstatements, published = MATA[index]
    ceded = mata.ceded_due[:, index, 0]
    assert _within(ceded, published)
    if reinstatements == "unlimited":
        # And the closed form: lambda * integral of the Pareto II survival over the layer.
        alpha, theta = 3.0, 10.0
        exact = 10.0 * theta**alpha / (alpha - 1) * ((retention + theta) ** (1 - alpha)
                                                     - (retention + limit + theta) ** (1 - alpha))
        assert exact == pytest.approx(published, abs=1e-4)
    else:
        assert ceded.max() <= (1 + reinstatements) * limit * (1 + 1e-12)


def _stop_loss_bracket(lam: float, attachment: float, h: float) -> tuple[float, float]:
    """E[(S - a)+] for compound Poisson(lam) lognormal, bracketed by rounding the severity down/up."""
    dist = stats.lognorm(s=LOGNORMAL["sigma"], scale=LOGNORMAL["median_cny"])
    n = int(attachment / h) + 2
    out = []
    for direction in ("down", "up"):
        pmf = discretise(lambda y: payment_cdf(dist, y), h, 40 * n, direction)
        mean_severity = float(np.dot(np.arange(pmf.size) * h, pmf))
        g = panjer(pmf, n, a=0.0, b=lam, p0=math.exp(-lam))
        s = np.arange(n) * h
        # E[(S - a)+] = E[S] - E[min(S, a)], and E[min(S, a)] needs the pmf below a only.
        below = s < attachment
        e_min = float(np.dot(s[below], g[below]) + attachment * (1.0 - g[below].sum()))
        out.append(lam * mean_severity - e_min)
    return out[0], out[1]


@pytest.mark.parametrize("attachment", [5.0e6, 1.2e7])
def test_stop_loss_matches_exact_compound_distribution(attachment):
    lam = 3.0
    programs = [[{"type": "stop_loss", "attachment_cny": attachment, "limit_cny": 1e15}]]
    _, table = _run([cell(frequency={"distribution": "poisson", "rate": lam}, severity=LOGNORMAL)], programs,
                    years=200_000)
    ceded = table.ceded_due[:, 0, 0]
    lo, hi = _stop_loss_bracket(lam, attachment, h=2.0e3)
    se = ceded.std(ddof=1) / math.sqrt(ceded.size)
    assert lo - 3 * se <= ceded.mean() <= hi + 3 * se, (lo, hi, ceded.mean(), se)
    # The stop loss leaves exactly min(S, a) + (S - a - limit)+ = min(S, a) retained here.
    np.testing.assert_allclose(table.net[:, 0], np.minimum(table.gross, attachment), rtol=1e-12)


@pytest.fixture(scope="module")
def programs_run():
    """One lognormal book, several programs on the same years."""
    programs = [
        [{"type": "quota_share", "cession": 0.3}],
        [],
        [_xl(1.0e6, 2.0e6, 1, default_probability=0.25, recovery_rate=0.4)],
        [_xl(1.0e6, 2.0e6, reinsurer="A", default_probability=0.3),
         {"type": "stop_loss", "attachment_cny": 4.0e6, "limit_cny": 5.0e6, "reinsurer": "A",
          "default_probability": 0.3}],
        [_xl(1.0e6, 2.0e6, reinsurer="A", default_probability=0.3),
         {"type": "stop_loss", "attachment_cny": 4.0e6, "limit_cny": 5.0e6, "reinsurer": "B",
          "default_probability": 0.3}],
    ]
    return _run([cell(frequency={"distribution": "poisson", "rate": 3.0}, severity=LOGNORMAL)], programs,
                years=100_000)


def test_quota_share_scales_net_exactly(programs_run):
    from leisim.simulator import metrics

    _, table = programs_run
    net = metrics.risk_measures(table.net[:, 0])
    gross = metrics.risk_measures(table.gross)
    for level in ("0.9", "0.99", "0.995", "0.999"):
        assert net["var"][level] == pytest.approx(0.7 * gross["var"][level], rel=1e-12)
        assert net["tvar"][level] == pytest.approx(0.7 * gross["tvar"][level], rel=1e-12)
    # An empty program cedes nothing.
    np.testing.assert_array_equal(table.net[:, 1], table.gross)


def test_gross_does_not_depend_on_reinsurance_or_reserves(programs_run):
    comp, table = programs_run
    portfolio = make_portfolio(exposure=[[1.0]])
    plain = compose(make_scenario([cell(frequency={"distribution": "poisson", "rate": 3.0}, severity=LOGNORMAL)]),
                    portfolio, programs=[], dev_years=0)
    again = run_years(jax.random.key(SEED), plain.params, plain.shape, years=2_000, chunk_size=1_000)
    np.testing.assert_array_equal(again.gross, table.gross[:2_000])


def test_reinsurer_default(programs_run):
    _, table = programs_run
    due, recovered = table.ceded_due[:, 2, 0], table.recovered[:, 2, 0]
    hit = due > 0
    defaulted = recovered[hit] < due[hit] * (1 - 1e-12)
    # Binomial(n, 0.25): 3 standard errors.
    assert abs(defaulted.mean() - 0.25) <= 3 * math.sqrt(0.25 * 0.75 / hit.sum())
    np.testing.assert_allclose(recovered[hit][defaulted], 0.4 * due[hit][defaulted], rtol=1e-12)
    np.testing.assert_allclose(table.net[:, 2], table.gross - recovered, rtol=1e-12, atol=1e-6)

    # The same reinsurer defaults on both contracts together; two reinsurers independently.
    both = (table.ceded_due[:, 3] > 0).all(axis=1)
    failed = table.recovered[:, 3] < table.ceded_due[:, 3] * (1 - 1e-12)
    assert np.array_equal(failed[both, 0], failed[both, 1])
    both = (table.ceded_due[:, 4] > 0).all(axis=1)
    failed = table.recovered[:, 4] < table.ceded_due[:, 4] * (1 - 1e-12)
    joint = (failed[both, 0] & failed[both, 1]).mean()
    assert abs(joint - 0.09) <= 3 * math.sqrt(0.09 * 0.91 / both.sum())


# ---------------------------------------------------------------------------------------------
# Invariants on random programs, against a direct per-dispute NumPy reference.

def _reference(amounts: np.ndarray, program: list[Contract]) -> tuple[np.ndarray, float]:
    """Inuring application written out dispute by dispute (no defaults)."""
    retained = amounts.astype(np.float64).copy()
    due = []
    for c in program:
        if c.kind == "quota_share":
            ceded_each = c.lower * retained
        elif c.kind == "per_dispute_xl":
            layer = np.array([min(max(x - c.lower, 0.0), c.limit) for x in retained])
            total = layer.sum()
            ceded_each = layer * (min(total, c.cover) / total if total > 0 else 0.0)
        else:
            total = retained.sum()
            ceded = min(max(total - c.lower, 0.0), c.limit)
            ceded_each = retained * (ceded / total if total > 0 else 0.0)
        due.append(ceded_each.sum())
        retained = retained - ceded_each
    return np.array(due), float(retained.sum())


contract_strategy = st.one_of(
    st.builds(lambda q: {"type": "quota_share", "cession": q}, st.floats(0.0, 1.0)),
    st.builds(lambda r, l, k: _xl(r, l, k), st.floats(0.0, 50.0), st.floats(0.1, 50.0),
              st.one_of(st.integers(0, 3), st.just("unlimited"))),
    st.builds(lambda a, l: {"type": "stop_loss", "attachment_cny": a, "limit_cny": l},
              st.floats(0.0, 300.0), st.floats(0.1, 300.0)),
)


@settings(max_examples=60, deadline=None)
@given(program=st.lists(contract_strategy, min_size=1, max_size=3),
       amounts=st.lists(st.floats(0.0, 100.0), min_size=16, max_size=16))
def test_random_programs_keep_the_invariants(program, amounts):
    contracts = contracts_from_scenario(program, 1.0)
    arrays, kinds, reinsurers = program_arrays([contracts])
    x = jnp.asarray(amounts, jnp.float64)
    gross = x.sum()
    out = jax.jit(reinsurance.cede, static_argnums=4)(jnp.ones(len(reinsurers)), x, gross, arrays, kinds)
    due, net = np.asarray(out.due[0, : len(contracts)]), float(out.net[0])
    gross = float(gross)
    assert 0.0 <= net <= gross
    for c, d in zip(contracts, due):
        assert 0.0 <= d <= c.cover * (1 + 1e-12) + 1e-12
    assert np.all(np.asarray(out.recovered) <= np.asarray(out.due) + 1e-12)
    assert net == pytest.approx(gross - due.sum(), rel=1e-9, abs=1e-9)
    expected_due, expected_net = _reference(np.asarray(amounts), contracts)
    np.testing.assert_allclose(due, expected_due, rtol=1e-9, atol=1e-9)
    assert net == pytest.approx(expected_net, rel=1e-9, abs=1e-9)
    # Recoveries attributed to disputes add up to the recoveries.
    assert float(out.recovered_by_slot.sum()) == pytest.approx(due.sum(), rel=1e-9, abs=1e-9)


def test_reinstatement_premium_pricing():
    # One reinstatement at 100%: P (1 + E[min(L, l)] / l) = E[min(L, 2 l)] (pure premium, Mata 2000).
    contract = contracts_from_scenario([_xl(10.0, 10.0, 1, reinstatement_premium=1.0)], 1.0)[0]
    due = np.array([0.0, 5.0, 10.0, 15.0, 20.0])
    priced = reinsurance.price(contract, due)
    e_due, e_share = due.mean(), np.minimum(due, 10.0).mean() / 10.0
    assert priced["premium"] == pytest.approx(e_due / (1.0 + e_share))
    np.testing.assert_allclose(priced["reinstatement_premiums"], priced["premium"] * np.minimum(due, 10.0) / 10.0)
    # The reinsurer's expected income equals the expected loss.
    assert priced["premium"] + priced["reinstatement_premiums"].mean() == pytest.approx(e_due)
