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
    assert not list(store.glob("*.partial"))  # staged files renamed or removed


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
