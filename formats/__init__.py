"""File formats leisim reads and writes below the scenario layer: the portfolio CSVs (policies.csv,
exposures.csv) and a run's checkpoint (finished chunks of years, resumable).

Every file goes through one atomic writer (:func:`leisim.files.atomic_write`); results.nc is
written by :mod:`leisim.simulator.results`, where the per-year record it holds is defined."""
