"""The per-event excess-of-loss layer (``per_event_xl``): a campaign's disputes are one loss event.

Every check is against an independent NumPy computation of the contract's definition on the same
amounts: ceded = min(sum over events of min(max(E - retention, 0), limit), (1 + reinstatements) x
limit), E = an event's retained total after the contracts before it. No Monte Carlo tolerance: the
two sides differ only by the order of float64 additions (rtol 1e-12), or not at all where the
arithmetic is the same (one-dispute events against the per-dispute layer: bit for bit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import campaign_book
from hypothesis import given, settings
from hypothesis import strategies as st

from leisim.simulator import reinsurance
from leisim.simulator.driver import run_dispute_records, run_years
from leisim.simulator.reinsurance import contracts_from_scenario, program_arrays

SEED = 20261203
QS = {"type": "quota_share", "cession": 0.3}
EVENT_XL = {"type": "per_event_xl", "retention_cny": 1.5e6, "limit_cny": 2.0e6, "reinstatements": 1}
DISPUTE_XL = EVENT_XL | {"type": "per_dispute_xl"}
# One kernel for every run below: the event layer after a quota share, the per-dispute layer after
# one, the event layer alone (on the gross: the inuring order is what tells it from the first).
PROGRAMS = [[QS, EVENT_XL], [QS, DISPUTE_XL], [EVENT_XL]]
YEARS, CHUNK = 2000, 1000

_cede = jax.jit(reinsurance.cede, static_argnames=("kinds", "slot_sum"))


def _ceded(amounts, program: list[dict], event=None):
    contracts = contracts_from_scenario(program, 1.0)
    arrays, kinds, reinsurers = program_arrays([contracts])
    x = jnp.asarray(amounts, jnp.float64)
    out = _cede(jnp.ones(len(reinsurers)), x, x.sum(), arrays, kinds=kinds,
                event=None if event is None else jnp.asarray(event, jnp.int32))
    return contracts, out


def _event_layer(retained: np.ndarray, year: np.ndarray, event: np.ndarray, contract, n_years: int):
    """The layer by the definition: each (year, event)'s retained total E, its layer loss min(max(E - r, 0),
    l), each year's sum over its events and that capped at the cover; what each dispute recovers (its
    event's loss x its share of E x the year's cap ratio). Returns (due [year], uncapped [year], per dispute)."""
    _, event_of = np.unique(year * (1 << 32) + event, return_inverse=True)
    totals = np.bincount(event_of, weights=retained)
    layer = np.clip(totals - contract.lower, 0.0, contract.limit)
    event_year = np.zeros(totals.size, np.int64)
    event_year[event_of] = year
    uncapped = np.bincount(event_year, weights=layer, minlength=n_years)
    due = np.minimum(uncapped, contract.cover)
    scale = np.divide(due, uncapped, out=np.zeros_like(due), where=uncapped > 0)
    share = np.divide(retained, totals[event_of], out=np.zeros_like(retained), where=totals[event_of] > 0)
    return due, uncapped, layer[event_of] * share * scale[year]


@settings(max_examples=40, deadline=None)
@given(amounts=st.lists(st.floats(0.0, 100.0), min_size=12, max_size=12),
       events=st.lists(st.integers(0, 4), min_size=12, max_size=12),
       cession=st.one_of(st.none(), st.floats(0.0, 0.9)),
       retention=st.floats(0.0, 200.0), limit=st.floats(0.1, 150.0),
       reinstatements=st.one_of(st.integers(0, 2), st.just("unlimited")))
def test_cede_matches_numpy_on_hand_built_events(amounts, events, cession, retention, limit, reinstatements):
    # Any grouping of slots into events (not contiguous, some ids unused), after a quota share or not.
    layer = {"type": "per_event_xl", "retention_cny": retention, "limit_cny": limit, "reinstatements": reinstatements}
    program = ([{"type": "quota_share", "cession": cession}] if cession is not None else []) + [layer]
    contracts, out = _ceded(amounts, program, events)
    x = np.asarray(amounts)
    retained = x - x * cession if cession is not None else x
    due, _, per_slot = _event_layer(retained, np.zeros(x.size, np.int64), np.asarray(events), contracts[-1], 1)
    np.testing.assert_allclose(float(out.due[0, -1]), due[0], rtol=1e-12, atol=1e-9)
    assert float(out.due[0, -1]) <= contracts[-1].cover * (1 + 1e-12)
    # The event's recovery is split over its disputes pro rata to their retained amounts.
    qs_part = x * cession if cession is not None else 0.0
    np.testing.assert_allclose(np.asarray(out.recovered_by_slot), qs_part + per_slot, rtol=1e-9, atol=1e-9)
    assert float(out.net[0]) == pytest.approx(x.sum() - float(out.due[0].sum()), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("reinstatements", [0, 2, "unlimited"])
def test_one_dispute_events_cede_what_a_per_dispute_layer_does(reinstatements):
    amounts = np.random.default_rng(SEED).lognormal(np.log(2e6), 1.0, 40) * (np.arange(40) < 33)  # empty slots last
    dispute = DISPUTE_XL | {"reinstatements": reinstatements}
    event = EVENT_XL | {"reinstatements": reinstatements}
    _, per_dispute = _ceded(amounts, [QS, dispute])
    for ids in (None, np.arange(40)[::-1]):  # every slot its own event, in any numbering
        _, per_event = _ceded(amounts, [QS, event], ids)
        for a, b in zip(per_dispute, per_event):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def book():
    params, shape = campaign_book(PROGRAMS)
    return params, shape._replace(flat=())  # (test_flat.py runs the flat layout of this book)


@pytest.fixture(scope="module")
def book_run(book):
    params, shape = book
    key = jax.random.key(SEED)
    table = run_years(key, params, shape, years=YEARS, chunk_size=CHUNK)
    records = run_dispute_records(key, np.arange(YEARS), params, shape, chunk_size=CHUNK)
    return table, records


def test_the_kernel_cedes_each_campaign_as_one_event(book_run):
    # Every year's cessions recomputed from its disputes (the kernel's records): events are
    # (year, event id); the layer sees what the quota share left (program 0) or the gross (program 2).
    table, records = book_run
    contracts = [contracts_from_scenario(p, 1.0) for p in PROGRAMS]
    assert np.array_equal(np.bincount(records.year, minlength=YEARS), table.disputes)
    keys = records.year * (1 << 32) + records.event
    sizes = np.unique(keys[records.campaign], return_counts=True)[1]
    assert sizes.size == table.campaigns.sum() and (sizes > 1).mean() > 0.5  # most campaigns name several
    for p, retained in ((0, records.gross - records.gross * 0.3), (2, records.gross)):
        layer = len(contracts[p]) - 1
        contract = contracts[p][layer]
        due, uncapped, per_slot = _event_layer(retained, records.year, records.event, contract, YEARS)
        np.testing.assert_allclose(table.ceded_due[:, p, layer], due, rtol=1e-12, atol=1e-6)
        # The test has power: campaigns pierce the retention, and the aggregate cover binds in some years.
        assert (due > 0).mean() > 0.3 and (uncapped > contract.cover).mean() > 0.02
        if p == 0:  # the first program's recoveries, dispute by dispute: the quota share's and the layer's
            np.testing.assert_allclose(records.ceded, records.gross * 0.3 + per_slot, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(table.ceded_due[:, 0, 0], 0.3 * table.gross, rtol=1e-12)
    assert not np.allclose(table.ceded_due[:, 0, 1], table.ceded_due[:, 2, 0])  # the inuring order matters


def test_an_events_recovery_is_allocated_pro_rata_to_its_disputes(book_run):
    table, records = book_run
    ceded = np.bincount(records.year, weights=records.ceded, minlength=YEARS)
    np.testing.assert_allclose(ceded, table.gross - table.net[:, 0], rtol=1e-9, atol=1e-6)
    # What the event layer pays a dispute, over what it retained after the quota share: one ratio per event.
    retained = records.gross - records.gross * 0.3
    layer_part = records.ceded - records.gross * 0.3
    held = retained > 1.0
    ratio = layer_part[held] / retained[held]
    keys = (records.year * (1 << 32) + records.event)[held]
    _, event_of = np.unique(keys, return_inverse=True)
    low = np.full(event_of.max() + 1, np.inf)
    high = np.full(event_of.max() + 1, -np.inf)
    np.minimum.at(low, event_of, ratio)
    np.maximum.at(high, event_of, ratio)
    np.testing.assert_allclose(low, high, rtol=1e-9, atol=1e-12)
    assert (high > 0).mean() > 0.1


def test_campaigns_of_one_dispute_make_the_event_layer_the_dispute_layer(book):
    # Every campaign names exactly one seller (NB mean 0): each event is one dispute, and the event layer
    # after the quota share cedes what the per-dispute layer does, year by year and bit for bit.
    params, shape = book
    single, single_shape = campaign_book(PROGRAMS, mean_extra=0.0)
    assert jax.tree_util.tree_map(jnp.shape, single) == jax.tree_util.tree_map(jnp.shape, params)
    assert single_shape.campaign_dispute_buffer <= shape.campaign_dispute_buffer  # the same kernel serves
    table = run_years(jax.random.key(SEED), single, shape, years=YEARS, chunk_size=CHUNK)
    assert table.campaigns.sum() > 0 and np.array_equal(table.campaigns, table.campaign_disputes)
    np.testing.assert_array_equal(table.ceded_due[:, 0], table.ceded_due[:, 1])
    np.testing.assert_array_equal(table.recovered[:, 0], table.recovered[:, 1])
    np.testing.assert_array_equal(table.net[:, 0], table.net[:, 1])


def test_dispute_records_recompute_years_past_their_buffers(book, book_run):
    # Buffers far too small for most years: those years are recomputed with grown buffers, and every
    # dispute comes out as with the book's own buffers.
    params, shape = book
    _, records = book_run
    tight = shape._replace(event_buffer=4, dispute_buffer=4, campaign_buffer=2, campaign_dispute_buffer=4)
    years = np.arange(300)
    again = run_dispute_records(jax.random.key(SEED), years, params, tight, chunk_size=CHUNK)
    own = records.year < years.size
    for name in ("year", "event", "campaign", "policy", "cell", "stage", "ground_up", "gross", "ceded"):
        np.testing.assert_array_equal(getattr(again, name), getattr(records, name)[own], err_msg=name)
    counts = np.bincount(records.year[own], minlength=years.size)
    assert (counts > 8).mean() > 0.3  # a third of these years or more ran past the tight buffers


# ---------------------------------------------------------------------------------------------
# Host side: the same fields, messages, premiums and reinstatements as the per-dispute layer.

BOOK = """name = "x"
[model]
parameters = "fixed"
[[model.cells]]
country = "US"
dispute_type = "patent"
frequency = { distribution = "poisson", rate = 0.01 }
severity = { distribution = "lognormal", median_cny = 1e6, sigma = 1.0 }
"""


@pytest.mark.parametrize("table, fragment", [
    ('type = "per_event_xl"\nlimit_cny = 4e6\n', "reinsurance[0].retention_cny: missing: a per-event excess-of-loss "
                                                   "layer needs retention_cny and limit_cny"),
    ('type = "per_event_xl"\nretention_cny = 1e6\nlimit_cny = 0\n', "must be > 0"),
    ('type = "per_event_xl"\nretention_cny = 1e6\nlimit_cny = 4e6\nreinstatements = "two"\n',
     'must be an integer >= 0 or "unlimited"'),
    ('type = "per_event_xl"\nretention_cny = 1e6\nlimit_cny = 4e6\npremium_cny = 1e5\nrate_on_line = 0.1\n',
     "give the premium once"),
    ('type = "per_event_xl"\nretention_cny = 1e6\nlimit_cny = 4e6\nattachment_cny = 1e6\n', "attachment_cny"),
    ('type = "per_events_xl"\n', "per_event_xl"),  # the valid choices list it
])
def test_a_per_event_layer_is_validated_like_a_per_dispute_layer(tmp_path, table, fragment):
    from leisim.errors import InputError
    from leisim.scenarios.schema import load_scenario

    path = tmp_path / "bad.toml"
    path.write_text(BOOK + "[[reinsurance]]\n" + table)
    with pytest.raises(InputError) as err:
        load_scenario(path)
    assert fragment in str(err.value) and str(path) in str(err.value), str(err.value)


def test_a_per_event_layer_is_priced_and_reinstated_like_a_per_dispute_layer():
    event, dispute = contracts_from_scenario([EVENT_XL | {"rate_on_line": 0.1, "reinstatement_premium": 0.5},
                                              DISPUTE_XL | {"rate_on_line": 0.1, "reinstatement_premium": 0.5}], 1.0)
    assert event.kind == "per_event_xl" and event._replace(kind=dispute.kind, name=dispute.name, reinsurer=dispute.reinsurer) == dispute
    assert event.cover == 2 * 2.0e6 and event.premium == pytest.approx(2.0e5)
    due = np.array([0.0, 1.0e6, 2.0e6, 3.5e6, 4.0e6])
    for a, b in zip(reinsurance.price(event, due).values(), reinsurance.price(dispute, due).values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reinsurance.reinstatement_share(event, due), np.minimum(due, 2.0e6) / 2.0e6)


def test_the_library_scenario_adds_an_event_layer_to_the_baseline_program():
    from leisim.scenarios.schema import load_scenario

    base, scenario = load_scenario("baseline"), load_scenario("event_xl")
    assert [c.kind for c in scenario.contracts] == ["quota_share", "per_dispute_xl", "per_event_xl", "stop_loss"]
    assert [c for c in scenario.reinsurance if c["type"] != "per_event_xl"] == base.reinsurance
    assert {k: v for k, v in scenario.raw.items() if k not in ("name", "description", "reinsurance")} == \
        {k: v for k, v in base.raw.items() if k not in ("name", "description", "reinsurance")}
