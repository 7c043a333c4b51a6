"""results.nc's writer (formats/netcdf.write_sliced): chunks compressed here and written directly must
read back exactly, through HDF5's own filters (h5py) and as netCDF (xarray), as a plain write would."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from leisim.formats.netcdf import write_sliced


@pytest.mark.parametrize("cuts", [[0, 500, 1000, 1500, 1999], [0, 700, 1999], [0, 1999], [0, 1000, 1999],
                                  [0, 500, 800, 1000, 1999]],
                         ids=["even+short", "uneven", "one", "even", "short-mid"])
def test_sliced_writes_read_back_exactly(tmp_path, cuts):
    rng = np.random.default_rng(5)
    n = 1999
    gross = rng.lognormal(15.0, 2.0, n)
    by_country = rng.lognormal(12.0, 1.0, (n, 3))
    count = rng.integers(0, 1000, n).astype(np.int32)
    spans = list(zip(cuts[:-1], cuts[1:]))
    spans[-1] = (spans[-1][0], n)
    path = tmp_path / "r.nc"
    write_sliced(path, dims={"year": n, "country": 3}, coords={"country": (object, np.array(["US", "DE", "JP"]))},
                 variables={"gross": (("year",), "f8", {"units": "CNY"}),
                            "gross_by_country": (("year", "country"), "f8", {}),
                            "disputes": (("year",), "i4", {})},
                 slices=({"gross": gross[a:b], "gross_by_country": by_country[a:b], "disputes": count[a:b]}
                         for a, b in spans),
                 attrs={"seed": 3})
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["gross"][:], gross)
        np.testing.assert_array_equal(f["gross_by_country"][:], by_country)
        np.testing.assert_array_equal(f["disputes"][:], count)
        assert f["gross"].compression == "gzip" and f["gross"].shuffle
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["gross"].values, gross)
        np.testing.assert_array_equal(ds["gross_by_country"].values, by_country)
        assert list(ds["country"].values) == ["US", "DE", "JP"]
        assert ds["gross"].attrs["units"] == "CNY" and ds.attrs["seed"] == 3


def test_a_slice_of_the_wrong_shape_is_refused(tmp_path):
    # A variable with fewer rows than the slice (or other columns) must not be padded into a chunk.
    with pytest.raises((TypeError, ValueError)):
        write_sliced(tmp_path / "r.nc", dims={"year": 8}, coords={},
                     variables={"a": (("year",), "f8", {}), "b": (("year",), "f8", {})},
                     slices=[{"a": np.zeros(4), "b": np.zeros(3)}, {"a": np.zeros(4), "b": np.zeros(4)}], attrs={})
