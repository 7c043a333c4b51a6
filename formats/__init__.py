"""File formats below the scenario layer: the portfolio CSVs (policies.csv, exposures.csv), a run's
checkpoint (finished chunks of years, resumable) and the sliced, compressed NetCDF-4 writer of
results.nc (what results.nc holds is defined by :mod:`leisim.simulator.results`).

Every file goes through one atomic writer (:func:`leisim.files.atomic_write`)."""
