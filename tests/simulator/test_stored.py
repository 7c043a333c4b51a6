"""Kernels kept between runs (simulator/stored.py): a loaded program gives the same years, bit for
bit, as the kernel traced in this process, and a stale, corrupt or foreign file is never used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import cell, composition, make_portfolio

from leisim.simulator import driver, stored

LOGNORMAL = {"distribution": "lognormal", "median_cny": 1.0e6, "sigma": 0.8}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store of its own (the suite's shared one would make the first call a load)."""
    monkeypatch.setattr(stored, "folder", lambda: tmp_path)
    driver.sharded_kernel.cache_clear()
    yield tmp_path
    driver.sharded_kernel.cache_clear()


def _comp():
    portfolio = make_portfolio(exposure=[[1.0, 0.5], [2.0, 0.0]], countries=("US", "DE"))
    return composition([cell("US", frequency={"distribution": "negative_binomial", "rate": 0.8, "concentration": 0.7},
                             severity=LOGNORMAL),
                        cell("DE", frequency={"distribution": "poisson", "rate": 0.4}, severity=LOGNORMAL)], portfolio)


def _years(key, comp):
    return driver.run_years(key, comp.params, comp.shape, years=300, chunk_size=300)


def _same(a, b) -> None:
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


def test_a_stored_kernel_gives_the_traced_kernels_years(key, store, monkeypatch):
    comp = _comp()
    monkeypatch.setattr(stored, "folder", lambda: None)  # the store off: plain jax.jit
    driver.sharded_kernel.cache_clear()
    traced = _years(key, comp)
    monkeypatch.setattr(stored, "folder", lambda: store)
    driver.sharded_kernel.cache_clear()
    exported = _years(key, comp)  # exports and stores
    files = sorted(store.glob("*.exported"))
    assert len(files) >= 1
    driver.sharded_kernel.cache_clear()  # as a new process would: nothing in memory
    before = driver.traces(comp.shape)
    loaded = _years(key, comp)
    assert driver.traces(comp.shape) == before + 1  # loaded, counted as one build
    assert sorted(store.glob("*.exported")) == files  # nothing rewritten
    _same(traced, exported)
    _same(traced, loaded)


def test_a_corrupt_file_is_rebuilt_and_another_kernel_gets_its_own(key, store):
    comp = _comp()
    first = _years(key, comp)
    (path,) = store.glob("*.exported")
    path.write_bytes(b"not a program")
    driver.sharded_kernel.cache_clear()
    again = _years(key, comp)
    _same(first, again)
    assert path.read_bytes() != b"not a program"  # rewritten
    # Another shape (one Poisson cell) is another file.
    other = composition([cell("US", frequency={"distribution": "poisson", "rate": 0.8}, severity=LOGNORMAL)],
                        make_portfolio(exposure=[[1.0], [2.0]]))
    _years(key, other)
    assert len(list(store.glob("*.exported"))) == 2
    assert not list(store.glob("*partial*"))  # staged files renamed or removed (files.atomic_write)


def test_the_signature_covers_the_source_shape_and_arguments(monkeypatch):
    import jax

    devices = tuple(jax.devices()[:1])
    args = (np.zeros(3, np.float32), np.zeros((2, 2), np.int32))
    base = stored.signature("shape A", devices, args)
    assert stored.signature("shape A", devices, args) == base
    assert stored.signature("shape B", devices, args) != base
    assert stored.signature("shape A", devices, (np.zeros(4, np.float32), args[1])) != base
    assert stored.signature("shape A", devices, (args[0].astype(np.float64), args[1])) != base
    monkeypatch.setattr(stored, "_source_digest", lambda: "an edited kernel")
    assert stored.signature("shape A", devices, args) != base


def test_one_grown_shape_serves_later_overflows():
    # Each shape is a compilation: the first overflow grows every buffer at least 4x (and resolves
    # campaign tails exactly), so that later overflowing years fit it and compile nothing new.
    from leisim.simulator.engine import EngineShape

    main = EngineShape(n_policies=3, n_cells=2, event_buffer=128, dispute_buffer=128, campaign_buffer=64,
                       campaign_dispute_buffer=160, n_stages=1, stratified=False, clustered=True,
                       families=(True, False, False), fee_shifting=False, fx=False, year_effect=True, batch_years=8)
    grown = driver._grow(main, events=129, disputes=100, campaigns=3, campaign_disputes=10)
    assert (grown.event_buffer, grown.dispute_buffer, grown.campaign_buffer, grown.campaign_dispute_buffer) == \
        (512, 512, 256, 640)
    assert grown.exact_tails
    assert driver._grow(grown, events=500, disputes=300, campaigns=200, campaign_disputes=600) is grown
    assert driver._grow(grown, events=600, disputes=1, campaigns=1, campaign_disputes=1) \
        .event_buffer == 2048
    # A year sent back for a campaign size past its table alone: the buffers fit, the tails need the exact path.
    assert driver._grow(main, events=1, disputes=1, campaigns=1, campaign_disputes=1).exact_tails


def test_batch_years_by_backend():
    from leisim.scenarios.compose import default_batch_years

    assert default_batch_years(288, "cpu") == 128  # cache-sized on a CPU
    assert default_batch_years(288, "gpu") == 8192  # 2**22 slots / 288 -> the power of two below
    assert default_batch_years(10, "gpu") == 16384 and default_batch_years(1 << 20, "gpu") == 128
