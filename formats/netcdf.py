"""A NetCDF-4 file written in slices along its first dimension (h5netcdf), so that a file far
larger than memory is written in constant memory: the format of results.nc (what it holds is
:mod:`leisim.simulator.results`'s).

Variables along the first dimension are chunked by the slices' length (each HDF5 chunk written,
and compressed, once: a partial write into a chunk would read it back and compress it again) and
compressed losslessly (shuffle + deflate ``DEFLATE``), readable by any netCDF-4 reader.

Chunks are compressed here, several at a time (zlib releases the GIL, so a 2-core machine compresses
two variables at once), and written as they are (HDF5's direct chunk write): the bytes HDF5's own
shuffle and deflate filters would have stored (HDF5's shuffle: the i-th bytes of every value
together; deflate: a zlib stream), so readers see the same file. A slice that is not one whole chunk
is written through HDF5 as before.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# Deflate level: 1 is most of the size saving for little time (per-year float64 values with few
# distinct exponents; shuffle groups their bytes first).
DEFLATE = 1


def compressed_chunk(values: np.ndarray, rows: int) -> bytes:
    """One chunk of ``rows`` rows as HDF5's shuffle then deflate filters store it (``values``: at most
    ``rows`` rows, in the dataset's dtype; a short last chunk is padded with zeros, which HDF5 keeps
    but never reads past the dataset's extent)."""
    values = np.ascontiguousarray(values)
    if values.shape[0] < rows:
        values = np.concatenate([values, np.zeros((rows - values.shape[0],) + values.shape[1:], values.dtype)])
    planes = values.reshape(-1).view(np.uint8).reshape(-1, values.dtype.itemsize).T  # byte i of every value
    return zlib.compress(np.ascontiguousarray(planes).tobytes(), DEFLATE)


def write_sliced(path: str | Path, *, dims: Mapping[str, int], coords: Mapping[str, tuple[object, np.ndarray]],
                 variables: Mapping[str, tuple[tuple[str, ...], str, Mapping]], slices: Iterable[Mapping[str, np.ndarray]],
                 attrs: Mapping, coord_attrs: Mapping[str, Mapping] | None = None) -> None:
    """Write ``path``: ``dims`` (name -> size; the first is the sliced one), ``coords`` (a dimension
    -> (dtype, or ``object`` for text; values)), ``variables`` (name -> (dims, dtype, attributes)),
    then each of ``slices`` in order (name -> the next rows of every variable along the first
    dimension), and the file's ``attrs`` (``coord_attrs``: a coordinate -> its attributes)."""
    import h5netcdf
    import h5py

    first = next(iter(dims))
    unsliced = [name for name, (var_dims, _, _) in variables.items() if var_dims[:1] != (first,)]
    if unsliced:
        raise ValueError(f"variables not along {first!r} cannot be written in slices: {unsliced}")
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(dims)
        for name, (dtype, values) in coords.items():
            coordinate = f.create_variable(name, (name,), h5py.string_dtype() if dtype is object else dtype)
            coordinate[:] = values
            coordinate.attrs.update(dict((coord_attrs or {}).get(name, {})))
        created: dict = {}

        def create(rows: int) -> None:
            for name, (var_dims, dtype, var_attrs) in variables.items():
                chunks = (max(1, min(dims[first], rows)),) + tuple(dims[d] for d in var_dims[1:])
                created[name] = f.create_variable(name, var_dims, dtype, chunks=chunks, compression="gzip",
                                                  compression_opts=DEFLATE, shuffle=True)
                created[name].attrs.update(var_attrs)

        start, chunk_rows = 0, 0
        with ThreadPoolExecutor(max_workers=max(1, min(len(variables), os.cpu_count() or 1))) as pool:
            for part in slices:
                rows = int(next(iter(part.values())).shape[0])
                if not created:
                    create(rows)
                    chunk_rows = max(1, min(dims[first], rows))
                arrays = [np.asarray(part[name]).astype(dtype) for name, (_, dtype, _) in variables.items()]
                # One whole chunk (or the short last one) of every variable; anything else, a variable with the
                # wrong number of rows or columns included, goes through HDF5's write (which refuses a bad shape).
                whole = start % chunk_rows == 0 and (rows == chunk_rows or start + rows == dims[first] < start + chunk_rows
                                                     ) and all(array.shape == (rows,) + tuple(created[name].shape[1:])
                                                               for name, array in zip(variables, arrays))
                if whole:
                    chunks = pool.map(compressed_chunk, arrays, [chunk_rows] * len(arrays))
                    for name, array, data in zip(variables, arrays, chunks):
                        created[name]._h5ds.id.write_direct_chunk((start,) + (0,) * (array.ndim - 1), data)
                else:
                    for name, array in zip(variables, arrays):
                        created[name][start:start + rows] = array
                start += rows
        if not created:
            create(1)
        f.attrs.update(dict(attrs))
