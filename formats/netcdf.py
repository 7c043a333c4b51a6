"""A NetCDF-4 file written in slices along its first dimension (h5netcdf), so that a file far
larger than memory is written in constant memory: the format of results.nc (what it holds is
:mod:`leisim.simulator.results`'s).

Variables along the first dimension are chunked by the slices' length (each HDF5 chunk written,
and compressed, once: a partial write into a chunk would read it back and compress it again) and
compressed losslessly (shuffle + deflate ``DEFLATE``), readable by any netCDF-4 reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

# Deflate level: 1 is most of the size saving for little time (per-year float64 values with few
# distinct exponents; shuffle groups their bytes first).
DEFLATE = 1


def write_sliced(path: str | Path, *, dims: Mapping[str, int], coords: Mapping[str, tuple[object, np.ndarray]],
                 variables: Mapping[str, tuple[tuple[str, ...], str, Mapping]], slices: Iterable[Mapping[str, np.ndarray]],
                 attrs: Mapping) -> None:
    """Write ``path``: ``dims`` (name -> size; the first is the sliced one), ``coords`` (a dimension
    -> (dtype, or ``object`` for text; values)), ``variables`` (name -> (dims, dtype, attributes)),
    then each of ``slices`` in order (name -> the next rows of every variable along the first
    dimension), and the file's ``attrs``."""
    import h5netcdf
    import h5py

    first = next(iter(dims))
    unsliced = [name for name, (var_dims, _, _) in variables.items() if var_dims[:1] != (first,)]
    if unsliced:
        raise ValueError(f"variables not along {first!r} cannot be written in slices: {unsliced}")
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(dims)
        for name, (dtype, values) in coords.items():
            f.create_variable(name, (name,), h5py.string_dtype() if dtype is object else dtype)[:] = values
        created: dict = {}

        def create(rows: int) -> None:
            for name, (var_dims, dtype, var_attrs) in variables.items():
                chunks = (max(1, min(dims[first], rows)),) + tuple(dims[d] for d in var_dims[1:])
                created[name] = f.create_variable(name, var_dims, dtype, chunks=chunks, compression="gzip",
                                                  compression_opts=DEFLATE, shuffle=True)
                created[name].attrs.update(var_attrs)

        start = 0
        for part in slices:
            rows = int(next(iter(part.values())).shape[0])
            if not created:
                create(rows)
            for name, (_, dtype, _) in variables.items():
                created[name][start:start + rows] = np.asarray(part[name]).astype(dtype)
            start += rows
        if not created:
            create(1)
        f.attrs.update(dict(attrs))
