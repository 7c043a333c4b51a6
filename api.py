"""The Python API: what the command line does, as functions that return objects (``import leisim``).

    import leisim
    run = leisim.simulate("baseline", years=20_000, seed=1)  # a library name, a .toml path or a Scenario
    run.summary           # what summary.json holds
    run.dataset           # what results.nc holds (xarray)
    run.save("results/x")

Every function sets up JAX itself (host devices, float64 totals, the compilation cache) and prints
nothing unless ``progress=True``; what the command line prints as ``Warning:`` arrives here as a
:class:`LeisimWarning`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import app
from .app import LeisimWarning, Run, RunSpec, StressOutcome
from .errors import InputError
from .formats.portfolio import Portfolio
from .runtime import setup_jax
from .scenarios.schema import MAX_SEED, MAX_YEARS, Program, Scenario
from .summary import Summary

__all__ = ["simulate", "stress", "reverse_stress", "fit", "load_scenario", "load_portfolio", "load_history",
           "load_program", "load_posterior", "Run", "RunSpec", "StressOutcome", "Fit", "Scenario", "Portfolio",
           "Program", "Summary", "InputError", "LeisimWarning"]

load_scenario = app.load_scenario
load_portfolio = app.load_portfolio
load_program = app.load_program


def load_history(folder: str | Path | None = None):
    """A dispute history (exposures.csv, disputes.csv, campaigns.csv) [default: the shipped synthetic one]."""
    from .models.history import default_history_dir
    from .models.history import load_history as load

    return load(folder or default_history_dir())


def load_posterior(path: str | Path | None = None):
    """A posterior written by `leisim fit` (its ``posterior`` group) [default: the shipped one]."""
    from .models.posterior import load_posterior as load

    return load(path)


def _whole(name: str, value, low: int, high: int | None = None, *, optional: bool = True) -> None:
    """An integer argument within its bounds (the CLI's option types check the same)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"{low:,} .. {high:,}" if high is not None else f">= {low:,}"
        raise InputError(f"must be a whole number in {bounds}", field=name, value=value)


def _progress(progress: bool) -> app.Progress:
    return app.progress_bar if progress else app.no_progress


def _scenario_word(scenario: Scenario) -> str:
    """How `--scenario` names this scenario: its library name or file, if it is what that file holds."""
    from .scenarios.schema import library_names, library_path, load_scenario

    source = Path(scenario.source)
    try:
        on_file = source.is_file() and load_scenario(source).sha256 == scenario.sha256
    except InputError:
        on_file = False
    if not on_file:  # built or changed in memory (Scenario.updated): no file reproduces it
        return f"<in-memory scenario {scenario.name!r}, sha256 {scenario.sha256[:16]}>"
    named = [n for n in library_names() if Path(library_path(n)).resolve() == source.resolve()]
    return named[0] if named else scenario.source


def _command(scenario: Scenario, portfolio: Portfolio, programs: Sequence[Program], *, years: int, seed: int,
             x64: bool, compare_point_estimate: bool) -> str:
    """The `leisim simulate` command line that gives the same run (recorded in the provenance); inputs
    built in memory appear as <in-memory ...> (no command reproduces them)."""
    from .data.generate import default_portfolio_dir

    words = ["leisim", "simulate", "--scenario", _scenario_word(scenario)]
    if portfolio.source.startswith("<"):
        words += ["--portfolio", "<in-memory portfolio>"]
    elif Path(portfolio.source).resolve() != default_portfolio_dir().resolve():
        words += ["--portfolio", portfolio.source]
    words += ["--years", str(years), "--seed", str(seed)]
    for program in programs:
        words += ["--compare-reinsurance", program.source if program.source != "none" else "none"]
    if not compare_point_estimate:
        words.append("--no-compare-point-estimate")
    if x64:
        words.append("--x64")
    return shlex.join(words)


def simulate(scenario: str | Path | Scenario = "baseline", *, portfolio: str | Path | Portfolio | None = None,
             years: int | None = None, seed: int | None = None, chunk_size: int = 10_000, devices: int | None = None,
             compare_point_estimate: bool = True, compare: Sequence[str | Path | Program] = (), x64: bool = False,
             progress: bool = False) -> Run:
    """Simulate the scenario's years on the portfolio; ``.summary`` equals `leisim simulate`'s summary.json.

    Args:
        scenario: a library name (``leisim.app.stress_scenarios`` lists them), a .toml path or a Scenario.
        portfolio: a folder with policies.csv and exposures.csv, a Portfolio, or None (the pilot book).
        years, seed: default the scenario's.
        chunk_size: years per kernel call (memory, never the results).
        devices: at most this many local devices [default: all].
        compare_point_estimate: posterior runs: also simulate the same years at the posterior mean.
        compare: reinsurance programs (.toml, ``"none"`` or Program) run on the same years beside the
            scenario's own.
        x64: sample in float64 too.
        progress: show a progress bar on standard error.
    """
    _whole("years", years, 1, MAX_YEARS)
    _whole("seed", seed, 0, MAX_SEED)
    _whole("chunk_size", chunk_size, 1, optional=False)
    _whole("devices", devices, 1)
    setup_jax()
    scenario = app.load_scenario(scenario)
    portfolio = app.load_portfolio(portfolio)
    programs = [app.load_program(p) for p in compare]
    job = app.prepare(scenario, portfolio, programs=programs, years=years, seed=seed, chunk_size=chunk_size,
                      compare_point_estimate=compare_point_estimate, x64=x64)
    devices_used = app.devices_for(devices)
    app.check_resources(job, out_dir=None, devices=len(devices_used))
    from .formats.checkpoint import MemoryStore

    store = MemoryStore()
    app.simulate_into(job, store, devices=devices_used, progress=_progress(progress))
    command = _command(scenario, portfolio, programs, years=job.years, seed=job.seed, x64=x64,
                       compare_point_estimate=compare_point_estimate)
    return app.outcome(job, store, command=command)


def stress(scenarios: Sequence[str | Path | Scenario] | None = None, *, baseline: str | Path | Scenario = "baseline",
           portfolio: str | Path | Portfolio | None = None, years: int = 100_000, seed: int = 0,
           chunk_size: int = 10_000, sensitivities: bool = False, sensitivity_years: int = 20_000,
           progress: bool = False) -> StressOutcome:
    """Scenarios side by side with the baseline on common random numbers (`leisim stress`).

    Returns a :class:`StressOutcome`: ``.table`` (metrics by scenario), ``.document`` (stress.json),
    ``.dataset`` (stress.nc), ``.save(folder)``. ``sensitivities`` (per country, +10% frequency and
    severity: two runs per country) is off by default here and on in the CLI.
    """
    _whole("years", years, 1, MAX_YEARS, optional=False)
    _whole("seed", seed, 0, MAX_SEED, optional=False)
    _whole("chunk_size", chunk_size, 1, optional=False)
    _whole("sensitivity_years", sensitivity_years, 1, MAX_YEARS, optional=False)
    setup_jax()
    chosen = app.stress_scenarios(scenarios, baseline)
    return app.run_stress(chosen, app.load_portfolio(portfolio), years=years, seed=seed, chunk_size=chunk_size,
                          sensitivities=sensitivities, sensitivity_years=sensitivity_years,
                          progress=_progress(progress))


def reverse_stress(target: str = "solvency_ratio=1.0", *, shocks: Sequence[str] = ("frequency:US",),
                   baseline: str | Path | Scenario = "baseline", portfolio: str | Path | Portfolio | None = None,
                   years: int = 20_000, seed: int = 0, chunk_size: int = 10_000) -> dict:
    """The smallest multiplier of each shock (``kind:key``) that breaches ``target`` (what reverse.json holds)."""
    from .scenarios.stress import parse_shock

    _whole("years", years, 1, MAX_YEARS, optional=False)
    _whole("seed", seed, 0, MAX_SEED, optional=False)
    _whole("chunk_size", chunk_size, 1, optional=False)
    setup_jax()
    metric, value = app.parse_target(target)
    return app.run_reverse(app.load_scenario(baseline), app.load_portfolio(portfolio),
                           shocks=[parse_shock(s) for s in shocks], metric=metric, value=value, seed=seed,
                           years=years, chunk_size=chunk_size, notify=lambda message: None)


@dataclasses.dataclass
class Fit:
    """A fitted posterior: ``tree`` (an xarray DataTree with ArviZ's groups: posterior, sample_stats,
    observed_data, log_likelihood, posterior_predictive, prior_predictive; ``arviz.from_datatree(fit.tree)``
    reads it), ``result`` (draws, diagnostics)."""

    tree: Any  # xarray.DataTree
    result: Any  # models.fit.FitResult

    @property
    def summary(self) -> list[dict]:
        """One row per scalar parameter: mean, quantiles, R-hat, bulk and tail ESS."""
        return self.result.summary

    @property
    def posterior(self):
        """The posterior draws as an xarray Dataset (chain, draw)."""
        return self.tree["posterior"].to_dataset()

    def to_inference_data(self):
        """An ``arviz.InferenceData`` with the fit's groups (needs ArviZ, which leisim does not require)."""
        try:
            import arviz
        except ImportError:
            raise InputError("ArviZ is not installed: pip install arviz (or read fit.tree, an xarray DataTree with "
                             "the same groups)", field="arviz") from None
        groups = {name: self.tree[name].to_dataset() for name in self.tree.children}
        return arviz.InferenceData(**groups)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """The posterior file `leisim fit --out` writes (atomically; refuses to replace one without ``overwrite``)."""
        from .models.posterior import write_tree

        path = Path(path)
        if path.is_dir():
            raise InputError("is a folder; give the path of a .nc file", field="path", value=str(path))
        if path.exists() and not overwrite:
            raise InputError("already exists; pass overwrite=True to replace it", field="path", value=str(path))
        write_tree(self.tree, path)
        return path


def fit(history=None, *, chains: int = 2, warmup: int | None = None, samples: int | None = None, seed: int = 0,
        target_accept: float | None = None, progress: bool = False, command: str = "") -> Fit:
    """Fit the frequency and severity models to a dispute history with NUTS (`leisim fit`).

    ``history``: a History (:func:`load_history`), a folder, or None (the shipped synthetic history).
    """
    from . import __version__
    from .models import fit as fitting
    from .models.settings import FIT_DEFAULTS

    _whole("chains", chains, 1, optional=False)
    _whole("warmup", warmup, 10)
    _whole("samples", samples, 10)
    _whole("seed", seed, 0, MAX_SEED, optional=False)
    setup_jax()
    if history is None or isinstance(history, (str, Path)):
        history = load_history(history)
    app.require_disputes(history)
    settings = fitting.FitSettings(chains=chains, warmup=warmup or FIT_DEFAULTS.warmup,
                                   samples=samples or FIT_DEFAULTS.samples, seed=seed,
                                   target_accept=target_accept or FIT_DEFAULTS.target_accept)
    result = fitting.fit(history, settings, progress=progress)
    tree = fitting.to_datatree(result, history, provenance={"command": command, "leisim_version": __version__})
    return Fit(tree=tree, result=result)
