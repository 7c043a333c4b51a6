"""Complete the shipped posterior with the model-check groups, keeping its draws.

    python -m leisim.data.complete        (from the repository root, so that the history is
                                           recorded as data/default/history)

The shipped data/default/posterior.nc predates the log_likelihood, posterior_predictive and
prior_predictive groups. A refit with today's models would draw other parameters, and so change
every default simulation; :func:`leisim.models.fit.complete` adds the groups from the stored
draws instead (deterministic: the fit's seed). Afterwards, rerun the shipped checks, which record
the posterior's SHA-256: ``leisim check --out data/default --overwrite``.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax
import xarray as xr

from ..models.fit import complete
from ..models.history import default_history_dir, load_history
from ..models.posterior import default_posterior_path, write_tree


def main(path: Path) -> None:
    # The stored draws are float32; the log-likelihoods are computed from them in float64.
    jax.config.update("jax_enable_x64", True)
    try:
        leisim_version = version("leisim")
    except PackageNotFoundError:
        leisim_version = "0.0.0+source"
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        completed = complete(tree, load_history(default_history_dir()), version=leisim_version)
    write_tree(completed, path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_posterior_path())
