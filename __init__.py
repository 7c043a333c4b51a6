"""leisim: Monte Carlo risk simulator for legal-expenses insurance of overseas IP disputes.

The Python API (see the README)::

    import leisim
    run = leisim.simulate("baseline", years=20_000, seed=1)
    run.summary, run.dataset, run.save("results/x")
    leisim.stress(["us_patent_surge"], years=20_000).table
    leisim.fit(leisim.load_history("history/"), chains=2).save("posterior.nc")

Names are imported on first use, so that ``import leisim`` stays light and leaves JAX unstarted until
a function sets it up (host devices must be chosen before JAX's backends start).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("leisim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["simulate", "stress", "reverse_stress", "fit", "load_scenario", "load_portfolio", "load_history",
           "load_program", "load_posterior", "Run", "RunSpec", "StressOutcome", "Fit", "Scenario", "Portfolio",
           "Program", "Summary", "InputError", "LeisimWarning", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'leisim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
