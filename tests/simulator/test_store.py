"""The checkpoint store and the chunk-by-chunk summary: same numbers from memory, disk or any chunking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leisim.formats.checkpoint import CheckpointError, ChunkStore
from leisim.simulator import capital, results
from leisim.simulator.driver import YearTable, run_years

ATTRS = {"scenario": "baseline", "seed": 0}


@pytest.fixture(scope="module")
def table(baseline):
    import jax
    from conftest import SEED

    return run_years(jax.random.key(SEED), baseline.params, baseline.shape, years=3000, chunk_size=1000)


def split(table: YearTable, bounds) -> list[YearTable]:
    import dataclasses

    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        fields = {f.name: getattr(table, f.name)[lo:hi] for f in dataclasses.fields(table) if f.name != "recomputed_years"}
        years = table.recomputed_years
        out.append(YearTable(**fields, recomputed_years=years[(years >= lo) & (years < hi)]))
    return out


def test_summary_from_disk_equals_memory_and_any_chunking(table, baseline, tmp_path):
    whole = results.summarize(table, baseline, provenance_attrs=ATTRS, capital_spec={"available_cny": 1.2e8})
    pieces = split(table, [0, 700, 1000, 2999, 3000])
    records = [results.record(t, baseline) for t in pieces]
    memory = results.summarize(results.MemoryYears(records), baseline, provenance_attrs=ATTRS,
                               capital_spec={"available_cny": 1.2e8})
    store = ChunkStore.create(tmp_path / "ck", {"run": 1})
    for start, r in zip([0, 700, 1000, 2999], records):
        store.put("main", start, r)
    disk = results.summarize(store.years("main", 3000), baseline, provenance_attrs=ATTRS,
                             capital_spec={"available_cny": 1.2e8})
    assert json.dumps(memory) == json.dumps(disk)  # same chunks: bit for bit

    # Other chunking: quantiles are order statistics (exact); sums differ by rounding only.
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                yield f"{prefix}{k}", v

    a, b = dict(flat(whole)), dict(flat(memory))
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-6), k
    assert whole["gross"]["var"] == memory["gross"]["var"]


def test_results_nc_from_chunks_equals_memory(table, baseline, tmp_path):
    import xarray as xr

    pieces = [results.record(t, baseline) for t in split(table, [0, 1234, 3000])]
    results.write_netcdf(tmp_path / "a.nc", results.MemoryYears(pieces), baseline, provenance_attrs=ATTRS)
    results.write_netcdf(tmp_path / "b.nc", table, baseline, provenance_attrs=ATTRS)
    with xr.open_dataset(tmp_path / "a.nc", engine="h5netcdf") as a, xr.open_dataset(tmp_path / "b.nc", engine="h5netcdf") as b:
        a, b = a.load(), b.load()
        # Reinstatement premiums depend on the premium, a mean over the years: summed chunk by
        # chunk, it can differ in the last bit from the one-chunk sum. Everything else is exact.
        xr.testing.assert_identical(a.drop_vars(["net_cost", "reinstatement_premium"]),
                                    b.drop_vars(["net_cost", "reinstatement_premium"]))
        for name in ("net_cost", "reinstatement_premium"):
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-13)
        np.testing.assert_array_equal(a["gross"].values, table.gross)
        assert list(a["country"].values) == list(baseline.countries)
        np.testing.assert_allclose(a["gross_by_country"].values.sum(axis=1), table.gross, rtol=1e-12)


def test_store_finds_gaps_and_cleans_temporary_files(tmp_path):
    store = ChunkStore.create(tmp_path / "ck", {"run": 1})
    store.put("main", 0, {"gross": np.zeros(10)})
    store.put("main", 20, {"gross": np.zeros(5)})
    (tmp_path / "ck" / ".main-000000000010.abc123.partial.npz").write_bytes(b"half a file")  # killed mid-write
    assert store.done("main") == {0: 10, 20: 5}
    with pytest.raises(CheckpointError, match="covers 15 of 25 years"):
        store.years("main", 25)
    reopened = ChunkStore.open(tmp_path / "ck")
    assert not list((tmp_path / "ck").glob(".*partial*"))
    assert reopened.manifest == {"run": 1}
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        ChunkStore.open(tmp_path / "elsewhere")


def test_tail_weights_share_ties_and_add_up_to_tvar():
    from leisim.simulator import metrics

    # Many years tied at the 99% VaR (a capped layer): every tied year gets the same weight.
    total = np.concatenate([np.arange(900.0), np.full(100, 1000.0)])
    rng = np.random.default_rng(3)
    for perm in (np.arange(1000), rng.permutation(1000)):
        w = capital.tail_weights(total[perm], 0.95)
        assert w @ total[perm] == pytest.approx(metrics.tvar(np.sort(total), 0.95), rel=1e-12)
        assert np.unique(w[total[perm] == 1000.0]).size == 1
