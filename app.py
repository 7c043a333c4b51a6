"""The application layer: what a run is asked to do, its loaded inputs, its orchestration, its outputs.

Between the entry points (:mod:`leisim.cli`, the Python API in :mod:`leisim.api`) and the pure
layers (``scenarios`` composes, ``simulator`` simulates and summarizes). Data flow of a run::

    RunSpec --load--> Job (scenario, portfolio, programs, compositions) --simulate chunks--> store
        --outcome--> Run (summary, per-year records) --save--> summary.json, results.nc, figures

The store is a checkpoint on disk (the CLI: resumable, process 0 of a distributed run writes it)
or memory (the API); both feed the same summary, so ``leisim.simulate(...).summary`` is the CLI's
summary.json for the same arguments. Nothing here prints: messages go to ``notify`` and
progress to ``progress`` (see :func:`progress_bar`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import outputs
from .errors import InputError
from .files import atomic_directory, atomic_write, sha256_file
from .formats.portfolio import Portfolio
from .scenarios.schema import Program, Scenario
from .simulator.capital import CapitalSpec
from .summary import Summary
from .vocabulary import REVERSE_TARGETS

Notify = Callable[[str], None]
Progress = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def no_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress sink that shows nothing."""
    yield lambda n: None


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error (position and time left)."""
    import click

    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True) as bar:
        yield bar.update


def warn(message: str) -> None:
    """The API's ``notify``: a Python warning, which a notebook shows once and a script may filter."""
    warnings.warn(message, LeisimWarning, stacklevel=3)


class LeisimWarning(UserWarning):
    """Something in a run's inputs or checkpoint the user should know about (the run goes on)."""


def _relay_warnings(caught: list[warnings.WarningMessage], notify: Notify) -> None:
    seen: set[str] = set()
    for w in caught:
        if str(w.message) not in seen:
            seen.add(str(w.message))
            notify(str(w.message))


def json_text(doc: dict) -> str:
    """Strict JSON (RFC 8259): NaN and infinities written as null."""

    def finite(value: Any) -> Any:
        if isinstance(value, float):
            return value if value == value and abs(value) != float("inf") else None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(doc), indent=2, allow_nan=False) + "\n"


# --------------------------------------------------------------------------------------------------
# What a run is asked to do


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A ``simulate`` (or ``reinsurance compare``) run as asked: the checkpoint's manifest stores it,
    so that ``--resume`` repeats it exactly. ``years``/``seed``/``out_dir`` None: the scenario's."""

    VERSION: ClassVar[int] = 1
    FIELDS: ClassVar[tuple[str, ...]] = ("scenario_ref", "portfolio_dir", "years", "seed", "out_dir", "chunk_size",
                                         "plots", "compare_point_estimate", "compare", "include_own")

    scenario_ref: str = "baseline"
    portfolio_dir: str | None = None
    years: int | None = None
    seed: int | None = None
    out_dir: str | None = None
    chunk_size: int = 10_000
    plots: bool = True
    compare_point_estimate: bool = True
    compare: tuple[str, ...] = ()
    include_own: bool = True
    overwrite: bool = False
    x64: bool = False
    posterior: str | None = None  # a posterior file (`simulate --posterior`); None: the scenario's
    ord_format: str | None = None  # also write the ORD-style loss tables (exports.py): "parquet" | "csv"

    def absolute(self) -> RunSpec:
        """Input paths made absolute (a library scenario name stays a name), so that ``--resume`` works
        from any working folder."""
        from .scenarios.schema import library_names

        def absolute(text: str | None) -> str | None:
            return text if text is None else str(Path(text).expanduser().resolve())

        ref = self.scenario_ref
        return dataclasses.replace(
            self, portfolio_dir=absolute(self.portfolio_dir), posterior=absolute(self.posterior),
            scenario_ref=ref if ref in library_names() else str(absolute(ref)),
            compare=tuple(c if c == "none" else str(absolute(c)) for c in self.compare))

    def to_manifest(self) -> dict:
        """The ``arguments`` of a checkpoint's manifest.json (JSON types; ``spec_version`` added)."""
        doc = dataclasses.asdict(self)
        doc["compare"] = list(self.compare)
        doc["spec_version"] = self.VERSION
        return doc

    @classmethod
    def from_manifest(cls, arguments: dict, source: str) -> RunSpec:
        """The spec a checkpoint stored; ``source`` names the manifest in errors."""
        if not isinstance(arguments, dict):
            raise InputError("cannot resume: the checkpoint's manifest holds no run settings", file=source)
        version = arguments.get("spec_version", 1)
        if version != cls.VERSION:
            raise InputError(f"cannot resume: the checkpoint was written by another leisim (run settings version "
                             f"{version}, this one reads {cls.VERSION}); start the run again with --overwrite",
                             file=source, field="spec_version", value=version)
        missing = [k for k in cls.FIELDS if k not in arguments]
        if missing:
            raise InputError(f"cannot resume: the checkpoint's manifest lacks {', '.join(missing)} (damaged, or "
                             "written by another version); start the run again with --overwrite", file=source)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in arguments.items() if k in known}
        values["compare"] = tuple(values.get("compare") or ())
        return cls(**values)


def checkpoint_spec(out_dir: Path) -> RunSpec:
    """The spec of the unfinished run in ``out_dir`` (its checkpoint's manifest)."""
    from .formats.checkpoint import CheckpointError, ChunkStore

    try:
        arguments = ChunkStore.open(Path(out_dir) / outputs.CHECKPOINT).manifest["arguments"]
    except (CheckpointError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"cannot resume: {err}", field="--resume", value=str(out_dir)) from None
    return RunSpec.from_manifest(arguments, str(Path(out_dir) / outputs.CHECKPOINT / "manifest.json"))


def resume_spec(out_dir: Path, *, given: Sequence[str] = (), plots: bool = True) -> RunSpec:
    """The spec that finishes the interrupted run in ``out_dir``: its checkpoint's, written to ``out_dir``
    wherever the run was started (a copy, a move). ``given``: run settings also given on the command line
    (refused: they come from the checkpoint)."""
    if given:
        flags = ("--" + g.replace("_ref", "").replace("_dir", "").replace("_", "-") for g in given)
        raise InputError("--resume takes the run's settings from its checkpoint; leave out " + ", ".join(flags),
                         field="--resume", value=str(out_dir))
    stored = checkpoint_spec(out_dir)
    return dataclasses.replace(stored, plots=stored.plots and plots, out_dir=str(out_dir))


# --------------------------------------------------------------------------------------------------
# Loaded inputs


@dataclasses.dataclass(frozen=True)
class Job:
    """A run's loaded inputs: the scenario, the book, the programs compared, the compositions."""

    scenario: Scenario
    portfolio: Portfolio
    names: tuple[str, ...]  # one per program, the first reported as ceded/net
    capital_specs: tuple[CapitalSpec, ...]
    composition: Any  # scenarios.compose.Composition
    point_composition: Any  # the same years at the posterior mean, or None
    years: int
    seed: int
    chunk_size: int
    include_own: bool
    inputs: tuple[str, ...]  # the files and folders the run reads (an output folder must not hold them)

    @property
    def posterior_path(self) -> Path | None:
        return self.scenario.posterior_path


def _require_reference(reference: object, field: str, expected: str) -> None:
    if not isinstance(reference, (str, Path)):
        raise InputError(f"expected {expected}", field=field, value=f"{reference!r} ({type(reference).__name__})")


def load_scenario(reference: str | Path | Scenario) -> Scenario:
    """A library name, a .toml path or a Scenario (returned as it is)."""
    if isinstance(reference, Scenario):
        return reference
    _require_reference(reference, "scenario", "a library name, a .toml path or a leisim Scenario")
    from .scenarios.schema import load_scenario as load

    return load(reference)


def with_posterior(scenario: Scenario, posterior: str | Path | None) -> Scenario:
    """``scenario`` drawing its parameters from ``posterior`` (a file `leisim fit` wrote), or as it is."""
    if posterior is None:
        return scenario
    if scenario.model.parameters != "posterior":
        raise InputError(f"scenario {scenario.name!r} uses fixed parameters ([model] parameters = "
                         f"{scenario.model.parameters!r}); --posterior applies to posterior-driven scenarios",
                         field="--posterior", value=str(posterior), choices=["a posterior-driven scenario"])
    path = Path(posterior).expanduser().resolve()
    if not path.is_file():
        raise InputError("file not found: give the path of a posterior written by `leisim fit`",
                         field="--posterior", value=str(posterior))
    return scenario.updated({"model": {"posterior": str(path)}})


def load_portfolio(reference: str | Path | Portfolio | None) -> Portfolio:
    """A folder with policies.csv and exposures.csv, a Portfolio, or None (the embedded pilot book)."""
    if isinstance(reference, Portfolio):
        return reference
    if reference is not None:
        _require_reference(reference, "portfolio", "a folder with policies.csv and exposures.csv, a leisim "
                                                   "Portfolio, or None (the embedded pilot book)")
    from .data.generate import default_portfolio_dir
    from .formats.portfolio import load_portfolio as load

    return load(reference or default_portfolio_dir())


def load_program(reference: str | Path | Program) -> Program:
    if isinstance(reference, Program):
        return reference
    _require_reference(reference, "compare", "a reinsurance program .toml path, \"none\" or a leisim Program")
    from .scenarios.schema import load_program as load

    return load(reference)


def prepare(scenario: Scenario, portfolio: Portfolio, *, programs: Sequence[Program] = (), include_own: bool = True,
            years: int | None = None, seed: int | None = None, chunk_size: int = 10_000,
            compare_point_estimate: bool = True, x64: bool = False, notify: Notify = warn) -> Job:
    """Compose the run's kernels: the scenario's program first (``include_own``), then ``programs``."""
    from .scenarios.compose import compose
    from .simulator.reinsurance import contracts_from_scenario

    premium = float(portfolio.premium_cny.sum())
    names: list[str] = []
    contract_sets: list = []
    capital_specs: list[CapitalSpec] = []
    if include_own:
        names.append(f"{scenario.name} (scenario)" if programs else scenario.name)
        contract_sets.append(contracts_from_scenario(scenario.contracts, premium))
        capital_specs.append(scenario.capital_spec)
    for program in programs:
        names.append(program.name)
        contract_sets.append(contracts_from_scenario(program.contracts, premium))
        # The program's [capital], else the scenario's; expenses are an underwriting figure, not the program's.
        capital_specs.append(CapitalSpec.of(program.capital if program.capital is not None else scenario.capital,
                                            expense_ratio=scenario.expense_ratio))
    if not any(contract_sets):
        contract_sets = []  # nothing to cede: the kernel skips reinsurance
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The posterior-mean comparison runs the same kernel over a row appended after the draws.
        composition = compose(scenario, portfolio, programs=contract_sets, x64=x64,
                              point_estimate_row=compare_point_estimate)
    _relay_warnings(caught, notify)
    point_composition = composition.at_point_estimate() if composition.has_point_estimate else None
    years = scenario.years if years is None else years
    inputs = [portfolio.source, scenario.source, *(p.source for p in programs if p.source != "none"),
              str(scenario.posterior_path or "")]
    return Job(scenario=scenario, portfolio=portfolio, names=tuple(names), capital_specs=tuple(capital_specs),
               composition=composition, point_composition=point_composition, years=years,
               seed=scenario.seed if seed is None else seed, chunk_size=min(chunk_size, years),
               include_own=include_own, inputs=tuple(i for i in inputs if i and not i.startswith("<")))


def check_resources(job: Job, *, out_dir: Path | None, devices: int) -> None:
    """Refuse, before simulating, a run whose checkpoint and outputs cannot fit on the disk or whose
    chunks cannot fit in memory (exit 2 with the estimate and what to change)."""
    import jax

    from .scenarios.compose import available_memory

    composition, years, chunk_size = job.composition, job.years, job.chunk_size
    shape = composition.shape
    n_contracts = max((len(p) for p in composition.programs), default=0)
    n_programs = len(composition.programs)
    n_countries = len(composition.countries)
    # float64 values one simulated year keeps: the record written per chunk (per-country and per-type
    # columns, contracts, payments by development year) and, twice as many, results.nc.
    per_year_record = 8.0 * (8 + 3 * n_countries + 4 + 3 * n_programs * n_contracts + n_programs
                             + 3 * composition.dev_years)
    per_year_record += 8.0 if job.point_composition is not None else 0.0
    if out_dir is None:  # the API: every year's record stays in memory (a MemoryStore)
        held = years * per_year_record * 1.5  # the records and, while summarizing, a sorted column or two
        available = available_memory()
        if held > 0.8 * available:
            raise InputError(f"a {years:,}-year run held in memory needs about {held / 1e9:,.1f} GB and "
                             f"{available / 1e9:,.1f} GB are available; simulate fewer years, or use `leisim "
                             "simulate`, which streams the years to disk", field="years", value=years)
    else:
        disk = years * per_year_record * 2.2  # checkpoint + results.nc (a little larger) + seals
        free = outputs.free_bytes(out_dir)
        if disk > free:
            raise InputError(f"a {years:,}-year run needs about {disk / 1e9:,.1f} GB of disk for its checkpoint "
                             f"and results.nc, and {out_dir} has {free / 1e9:,.1f} GB free; simulate fewer years "
                             "(--years) or write to a larger disk (--out)", field="--years", value=years)
    # Memory: a chunk's kernel outputs on the devices, their host copy and the record built from it.
    per_year_kernel = 8.0 * (12 + 3 * shape.n_cells + 2 * n_programs * max(n_contracts, 1) + n_programs
                             + 3 * max(shape.dev_years, 1))
    chunk_bytes = chunk_size * (3.0 * per_year_kernel + 2.0 * per_year_record)
    # The slots of the years vectorised together (batch_years per device) and the parameter tables.
    slots = shape.dispute_buffer + shape.campaign_dispute_buffer + shape.event_buffer
    batch_bytes = devices * min(shape.batch_years, chunk_size) * slots * 8.0 * 24
    params_bytes = sum(getattr(x, "nbytes", 0) for x in jax.tree_util.tree_leaves(composition.params))
    need = chunk_bytes + batch_bytes + 2.0 * params_bytes
    available = available_memory()
    if need > 0.8 * available:
        raise InputError(f"--chunk-size {chunk_size:,} needs about {need / 1e9:,.1f} GB of memory and "
                         f"{available / 1e9:,.1f} GB are available; lower --chunk-size (memory grows with it, the "
                         "results do not change)", field="--chunk-size", value=chunk_size)


def fingerprint(job: Job) -> str:
    """Hash of everything the simulated years depend on (kernel inputs, contracts, years, seed, chunks)."""
    import jax

    digest = hashlib.sha256(repr((job.years, job.seed, job.chunk_size)).encode())
    for comp in (job.composition, job.point_composition):
        if comp is None:
            continue
        digest.update(repr((comp.shape, comp.programs, comp.premium_cny)).encode())
        for leaf in jax.tree_util.tree_leaves(comp.params):
            digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Simulating


def distributed_settings(distributed: bool, coordinator: str | None, n_processes: int | None,
                         process_id: int | None) -> tuple | None:
    """The (coordinator, processes, process id) of a distributed run; None for a single process."""
    if not distributed:
        if coordinator is not None or n_processes is not None or process_id is not None:
            raise InputError("--coordinator, --num-processes and --process-id need --distributed",
                             field="--distributed", value="not given")
        return None
    return coordinator, n_processes, process_id


def init_distributed(coordinator: str | None, n_processes: int | None, process_id: int | None) -> None:
    """Join the other processes of the run (jax.distributed), before any JAX backend starts."""
    import jax

    try:
        if coordinator is None and n_processes is None and process_id is None:
            jax.distributed.initialize()  # the cluster's own variables (Slurm, Open MPI, Kubernetes, ...)
        else:
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=n_processes,
                                       process_id=process_id)
    except (RuntimeError, ValueError) as err:
        raise InputError(f"cannot start jax.distributed ({err}); give --coordinator HOST:PORT, --num-processes "
                         "and --process-id, or run under a cluster launcher that sets them",
                         field="--distributed", value=f"coordinator={coordinator}, processes={n_processes}, "
                                                      f"id={process_id}") from None


def agreed(mask: np.ndarray) -> np.ndarray:
    """Process 0's value of ``mask`` on every process (one process: ``mask`` itself)."""
    import jax

    if jax.process_count() == 1:
        return mask
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(mask))


def devices_for(limit: int | None) -> tuple:
    from .simulator.driver import run_devices

    try:
        return run_devices(limit)
    except ValueError as err:
        raise InputError(str(err), field="--devices", value=limit) from None


def simulate_into(job: Job, store, *, devices: tuple, progress: Progress = no_progress, notify: Notify = warn,
                  writer: bool = True) -> None:
    """Simulate the job's years chunk by chunk into ``store`` (chunks already there are kept).

    ``writer`` False: a process of a distributed run other than 0, which simulates its share of every
    chunk and stores nothing (``store`` may be None).
    """
    import jax

    from .simulator import results
    from .simulator.driver import run_years

    years, chunk_size = job.years, job.chunk_size
    starts = np.arange(0, years, chunk_size)
    key = jax.random.key(job.seed)
    streams = [("main", job.composition, f"Simulating {job.scenario.name}",
                lambda t: results.record(t, job.composition))]
    if job.point_composition is not None:
        streams.append(("point", job.point_composition, "Same years at the posterior mean", lambda t: {"gross": t.gross}))
    for name, comp, label, to_record in streams:
        done = store.done(name) if writer else {}
        if writer:
            for problem in store.discarded:
                notify(f"checkpoint chunk {problem}; simulating its years again")
            store.discarded = []
        finished = agreed(np.isin(starts, list(done)))
        skip = set(starts[finished].tolist())

        def sink(start: int, table, name=name, to_record=to_record) -> None:
            if writer:
                store.put(name, start, to_record(table))

        with progress(label, years) as update:
            update(int(sum(min(chunk_size, years - s) for s in skip)))
            run_years(key, comp.params, comp.shape, years=years, chunk_size=chunk_size, progress=update,
                      devices=devices, sink=sink, skip=skip)


# --------------------------------------------------------------------------------------------------
# The outcome


class Run:
    """A finished run: ``summary`` (what summary.json holds), ``dataset`` (what results.nc holds),
    ``save(folder)`` (the CLI's outputs, atomically)."""

    def __init__(self, job: Job, years_data, *, point: dict | None, command: str):
        from .simulator import results

        self.job = job
        self._years = years_data
        attrs = results.provenance(scenario_name=job.scenario.name, scenario_sha256=job.scenario.sha256,
                                   seed=job.seed, years=job.years, command=command)
        attrs["portfolio"] = _resolved(job.portfolio.source)
        if job.posterior_path is not None:
            attrs["posterior"] = str(job.posterior_path.resolve())
            attrs["posterior_sha256"] = sha256_file(attrs["posterior"])  # which fit, even if the file is replaced
        self.attrs = attrs
        capital_spec = job.capital_specs[0] if job.capital_specs else job.scenario.capital
        summary = results.summarize(years_data, job.composition, provenance_attrs=attrs, capital_spec=capital_spec,
                                    reserves_spec=job.scenario.reserves, point_estimate=point)
        if len(job.names) > 1 or not job.include_own:
            summary["reinsurance_comparison"] = {
                "programs": results.compare_programs(years_data, job.composition, list(job.names),
                                                     list(job.capital_specs)),
                "common_random_numbers": "every program is applied to the same simulated disputes and years",
            }
        self.summary = Summary(summary)  # exactly summary.json's document, with typed views
        self._dataset = None

    def __repr__(self) -> str:
        s = self.summary
        return (f"<leisim.Run {s['scenario']!r}: {s['years']:,} years, seed {s['seed']}, gross mean "
                f"{s['gross']['mean'] / 1e6:,.2f} M CNY, net 99.5% VaR {s['net']['var']['0.995'] / 1e6:,.2f} M CNY>")

    @property
    def dataset(self):
        """The per-year values and provenance as an xarray Dataset, exactly what results.nc holds."""
        if self._dataset is None:
            from .simulator import results

            self._dataset = results.dataset(self._years, self.job.composition, provenance_attrs=self.attrs)
        return self._dataset

    def write(self, folder: Path, *, plots: bool = True, ord_format: str | None = None) -> None:
        """summary.json, results.nc, (``plots``) the figures and (``ord_format``: "parquet" | "csv") the
        ORD-style loss tables in ``ord/`` into ``folder`` (a staging folder)."""
        from .simulator import results

        outputs.write_marker(folder, "simulate")
        (folder / "summary.json").write_text(json_text(self.summary))
        results.write_netcdf(folder / "results.nc", self._years, self.job.composition, provenance_attrs=self.attrs)
        if plots or ord_format:
            import xarray as xr

            with xr.open_dataset(folder / "results.nc", engine="h5netcdf") as dataset:
                if plots:
                    from . import plots as figures

                    figures.write_all(dataset, self.summary, folder)
                if ord_format:
                    from . import exports

                    (folder / "ord").mkdir()
                    exports.write_tables(folder / "ord", dataset, fmt=ord_format, disputes=dispute_tables(self.job))

    def save(self, out_dir: str | Path, *, overwrite: bool = False, plots: bool = True,
             ord_format: str | None = None) -> Path:
        """Write the run's outputs into ``out_dir`` as `leisim simulate` does: staged, then renamed into
        place. A folder holding files is replaced only with ``overwrite`` and only if leisim wrote it."""
        out_dir = Path(out_dir)
        outputs.guard_output_folder(out_dir, overwrite=overwrite, inputs=self.job.inputs)
        lock = outputs.lock_output(out_dir)
        try:
            with atomic_directory(out_dir) as staging:
                self.write(staging, plots=plots, ord_format=ord_format)
        finally:
            outputs.release(lock)
        return out_dir


def _resolved(source: str) -> str:
    return source if source.startswith("<") else str(Path(source).resolve())


def dispute_tables(job: Job, *, chunk_years: int = 5_000) -> Iterator:
    """The run's disputes as the dispute loss table (exports.plt_schema), one pyarrow table per chunk of
    years: the same years simulated again with each dispute kept (year y draws from fold_in(key, y) alone,
    so they are the run's disputes exactly: driver.run_dispute_records)."""
    import jax
    import pyarrow as pa

    from . import exports
    from .simulator.driver import run_dispute_records
    from .vocabulary import STAGES

    comp = job.composition
    key = jax.random.key(job.seed)
    countries = np.array(comp.group_country, dtype=object)
    types = np.array(comp.group_dispute_type, dtype=object)
    stages = np.array(STAGES if comp.shape.n_stages == len(STAGES) else ("",) * len(STAGES), dtype=object)
    policies = np.array(job.portfolio.policy_id, dtype=object)
    schema = exports.plt_schema()
    devices = devices_for(None)
    for start in range(0, job.years, chunk_years):
        ids = np.arange(start, min(start + chunk_years, job.years), dtype=np.int64)
        rows = run_dispute_records(key, ids, comp.params, comp.shape, chunk_size=min(job.chunk_size, 2_000),
                                   devices=devices)
        period = rows.year + 1
        # Each dispute's index within its period (rows come year by year, in slot order).
        first = np.searchsorted(rows.year, rows.year, side="left")
        yield pa.table({
            "Period": period, "PeriodWeight": np.full(rows.size, 1.0 / job.years), "EventId": rows.event + 1,
            "DisputeId": np.arange(rows.size) - first + 1, "Campaign": rows.campaign,
            "PolicyId": policies[rows.policy], "Country": countries[rows.cell], "DisputeType": types[rows.cell],
            "Stage": stages[rows.stage], "GroundUpLoss": rows.ground_up, "GrossLoss": rows.gross,
            "CededLoss": rows.ceded, "NetLoss": rows.gross - rows.ceded,
        }, schema=schema)


def outcome(job: Job, store, *, command: str) -> Run:
    """The run's summary from the stored years (checkpoint or memory)."""
    from .simulator import metrics, results

    point = None
    if job.point_composition is not None:
        point = metrics.risk_measures(results.sorted_column(store.years("point", job.years), "gross"), presorted=True)
    return Run(job, store.years("main", job.years), point=point, command=command)


def simulate_spec(spec: RunSpec, *, resume: bool = False, devices: int | None = None,
                  distributed: tuple | None = None, progress: Progress = no_progress, notify: Notify = warn,
                  command: str = "", on_interrupt: Callable[[Path, Path], None] | None = None) -> tuple[Run | None, Path]:
    """The command line's run: checkpointed into ``out_dir/.checkpoint``, resumable, written at the end.

    Returns the finished run (None on processes other than 0 of a distributed run) and its folder.
    The run's per-year records were the checkpoint's, which the written folder replaces: read its
    ``summary`` (or the folder's results.nc), not its ``dataset``.
    """
    from .runtime import setup_jax

    scenario = with_posterior(load_scenario(spec.scenario_ref), spec.posterior)
    portfolio = load_portfolio(spec.portfolio_dir)
    programs = [load_program(p) for p in spec.compare]
    setup_jax()
    if distributed is not None:
        init_distributed(*distributed)
    import jax

    device_list = devices_for(devices)
    job = prepare(scenario, portfolio, programs=programs, include_own=spec.include_own, years=spec.years,
                  seed=spec.seed, chunk_size=spec.chunk_size, compare_point_estimate=spec.compare_point_estimate,
                  x64=spec.x64, notify=notify)
    out_dir = Path(spec.out_dir or Path("results") / scenario.name)
    writer = jax.process_index() == 0  # only process 0 reads and writes files
    refusal = None
    if not resume and writer:
        try:
            outputs.guard_output_folder(out_dir, overwrite=spec.overwrite, inputs=job.inputs)
        except InputError as err:
            refusal = err
    if agreed(np.array([refusal is not None]))[0]:  # every process stops, not only process 0
        raise refusal or InputError("process 0 refused the output folder (see its message)", field="--out",
                                    value=str(out_dir))
    if not resume and writer:
        check_resources(job, out_dir=out_dir, devices=len(device_list))
    spec = dataclasses.replace(spec, years=job.years, seed=job.seed, out_dir=str(out_dir))
    lock = outputs.lock_output(out_dir) if writer else None  # held until the outputs are written
    try:
        store = _open_store(out_dir, spec, job, resume=resume) if writer else None
        checkpoint = out_dir / outputs.CHECKPOINT
        try:
            simulate_into(job, store, devices=device_list, progress=progress, notify=notify, writer=writer)
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            if writer:
                on_interrupt(checkpoint, out_dir)  # says how to resume
            raise SystemExit(130) from None  # every process of the run, not only process 0
        except OSError as err:  # a full disk, a quota, a file system gone read-only: keep what is done
            raise outputs.write_failure(err, checkpoint, out_dir) from None
        if not writer:
            return None, out_dir
        try:
            run = _write_from_store(job, store, out_dir, plots=spec.plots, command=command, ord_format=spec.ord_format)
        except OSError as err:
            raise outputs.write_failure(err, checkpoint, out_dir) from None
    finally:
        outputs.release(lock)  # no lock file left beside the folder, whatever stopped the run
    return run, out_dir


def _open_store(out_dir: Path, spec: RunSpec, job: Job, *, resume: bool):
    from .formats.checkpoint import ChunkStore

    checkpoint = out_dir / outputs.CHECKPOINT
    stamp = fingerprint(job)
    if resume:
        store = ChunkStore.open(checkpoint)
        if store.manifest.get("fingerprint") != stamp:
            raise InputError("the scenario, portfolio, posterior or leisim version changed since the checkpoint "
                             "was written, so its years cannot be reused; restore them or start a new run",
                             field="--resume", value=str(out_dir))
        return store
    return ChunkStore.create(checkpoint, {"leisim_checkpoint": 1, "arguments": spec.absolute().to_manifest(),
                                          "fingerprint": stamp})


def _write_from_store(job: Job, store, out_dir: Path, *, plots: bool, command: str,
                      ord_format: str | None = None) -> Run:
    """The summary, results.nc and figures from the checkpoint, staged and moved into ``out_dir``."""
    need, free = outputs.output_bytes(store, job.years), outputs.free_bytes(out_dir.parent)
    if need > free:  # refuse before HDF5 meets a full disk (it may crash rather than fail cleanly)
        import errno

        raise OSError(errno.ENOSPC, f"No space left: the outputs need about {need / 1e6:,.0f} MB and "
                      f"{free / 1e6:,.0f} MB are free", str(out_dir))
    run = outcome(job, store, command=command)
    with atomic_directory(out_dir) as staging:  # replaces the folder, checkpoint included
        run.write(staging, plots=plots, ord_format=ord_format)
    return run


@contextlib.contextmanager
def staged_output(out_dir: Path, kind: str) -> Iterator[Path]:
    """A staging folder that becomes ``out_dir`` at the end (files.atomic_directory), with leisim's marker,
    under the folder's lock: what every command that writes a folder of its own does."""
    lock = outputs.lock_output(out_dir)
    try:
        with atomic_directory(out_dir) as staging:
            outputs.write_marker(staging, kind)
            yield staging
    finally:
        outputs.release(lock)


def export_to_folder(run_dir: Path, out_dir: Path | None = None, *, fmt: str = "parquet", overwrite: bool = False
                     ) -> tuple[Path, list[Path]]:
    """`leisim export RUN_DIR`: the ORD-style year loss and exceedance tables (exports.py) of a finished
    run, from its results.nc, into ``out_dir`` (default ``RUN_DIR/ord``), staged and renamed. The dispute
    table needs the disputes themselves: `leisim simulate --ord` writes it with the run."""
    import xarray as xr

    from . import exports

    if fmt not in exports.FORMATS:
        raise InputError("unknown table format", field="--table-format", value=fmt, choices=exports.FORMATS)
    run_dir = Path(run_dir)
    source = run_dir / "results.nc"
    if not source.is_file():
        raise InputError(f"{run_dir} holds no results.nc: give the output folder of a finished `leisim simulate` "
                         "run", file=str(source), field="RUN_DIR", value=str(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "ord"
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="tables", inputs=[str(source)])
    try:
        dataset = xr.open_dataset(source, engine="h5netcdf")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {source} as a leisim results.nc ({err})", file=str(source)) from None
    with dataset:
        missing = [v for v in ("gross", "ceded", "net", "net_cost", "ground_up", "max_dispute", "disputes")
                   if v not in dataset]
        if missing:
            raise InputError(f"{source} is not a leisim results.nc: it lacks {', '.join(missing)}", file=str(source))
        with staged_output(out_dir, "export") as staging:
            written = exports.write_tables(staging, dataset, fmt=fmt)
    return out_dir, [out_dir / p.name for p in written]


# --------------------------------------------------------------------------------------------------
# Stress tests


def stress_scenarios(refs: Sequence[str | Path | Scenario] | None, baseline: str | Path | Scenario = "baseline"
                     ) -> list[Scenario]:
    """The baseline, then ``refs`` (default: the whole library but the fixed-parameter calibration), each once."""
    from .scenarios.schema import library_names

    base = load_scenario(baseline)
    if refs is None:
        refs = [n for n in library_names() if n != "calibrated_fixed"]
    unique: dict[str, Scenario] = {base.name: base}
    for ref in refs:
        scenario = load_scenario(ref)
        unique.setdefault(scenario.name, scenario)
    return list(unique.values())


@dataclasses.dataclass
class StressOutcome:
    """Scenarios side by side on common random numbers: ``document`` (what stress.json holds),
    ``dataset`` (stress.nc), ``table`` (one row of metrics per scenario)."""

    document: dict
    dataset: Any  # xarray.Dataset
    names: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # the files and folders the run read (an output folder must not hold them)

    @property
    def table(self):
        """A pandas DataFrame: one row per scenario, one column per metric (scenarios.stress.METRICS)."""
        import pandas as pd

        from .scenarios.stress import METRICS

        rows = {name: {m: self.document[name]["metrics"].get(m) for m in METRICS} for name in self.names}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("scenario")

    def write(self, folder: Path, *, plots: bool = True) -> None:
        outputs.write_marker(folder, "stress")
        (folder / "stress.json").write_text(json_text(self.document))
        self.dataset.to_netcdf(folder / "stress.nc")
        if plots:
            from . import plots as figures

            figures.tornado(self.document, folder / "tornado.png")
            if "_sensitivities" in self.document:
                figures.sensitivities(self.document["_sensitivities"], folder / "sensitivities.png")

    def save(self, out_dir: str | Path, *, overwrite: bool = False, plots: bool = True, guard: bool = True) -> Path:
        """stress.json, stress.nc and figures into ``out_dir``, staged then renamed (a reverse.json written
        there earlier stays). ``guard`` False: the caller checked the folder before the run."""
        out_dir = Path(out_dir)
        if guard:
            outputs.guard_output_folder(out_dir, overwrite=overwrite, inputs=self.inputs)
        previous = (out_dir / "reverse.json").read_bytes() if (out_dir / "reverse.json").is_file() else None
        with atomic_directory(out_dir) as staging:
            if previous is not None:
                (staging / "reverse.json").write_bytes(previous)
            self.write(staging, plots=plots)
        return out_dir


def run_stress(scenarios: Sequence[Scenario], portfolio: Portfolio, *, years: int, seed: int, chunk_size: int = 10_000,
               sensitivities: bool = True, sensitivity_years: int = 20_000, progress: Progress = no_progress,
               notify: Notify = warn, command: str = "") -> StressOutcome:
    """The stress test: every scenario on the same years (the first is the baseline), then per-country
    sensitivities of the baseline."""
    import jax
    import xarray as xr

    from .scenarios import stress as stress_mod
    from .simulator import results as results_mod

    key = jax.random.key(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress(f"Stress: {len(scenarios)} scenarios", years * len(scenarios)) as update:
            runs = stress_mod.simulate(list(scenarios), portfolio, key=key, years=years, chunk_size=chunk_size,
                                       progress=update)
    _relay_warnings(caught, notify)
    base_run, base = runs[0], scenarios[0]
    held = base.reserves.get("held_cny")
    if held is None and base_run.composition.dev_years > 1:
        held = float(base_run.series["run_off"].mean())
    doc = stress_mod.compare(base_run, runs, held_reserve=held)
    if sensitivities:
        n = min(sensitivity_years, years)
        countries = sum(portfolio.exposure[:, portfolio.countries.index(c)].sum() > 0 for c in portfolio.countries)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with progress("Sensitivities (+10% per country)", n * 2 * int(countries)) as update:
                doc["_sensitivities"] = stress_mod.sensitivities(base_run, portfolio, jax_key=key, years=n,
                                                                 chunk_size=chunk_size, progress=update)
    doc["_provenance"] = results_mod.provenance(scenario_name=",".join(r.name for r in runs),
                                                scenario_sha256=",".join(r.scenario.sha256 for r in runs), seed=seed,
                                                years=years, command=command)
    doc["_provenance"]["baseline"] = base.name
    doc["_provenance"]["reserve_held_for_adequacy"] = held
    dataset = xr.Dataset(
        {name: (("scenario", "year"), np.stack([r.series[name] for r in runs]), {"units": "CNY"})
         for name in ("gross", "net", "net_cost", "run_off")},
        coords={"scenario": np.array([r.name for r in runs], dtype=str), "year": np.arange(years, dtype=np.int32)},
    )
    dataset.attrs.update({k: ("" if v is None else str(v)) for k, v in doc["_provenance"].items()})
    inputs = [portfolio.source, *(s.source for s in scenarios), *(str(s.posterior_path or "") for s in scenarios)]
    return StressOutcome(document=doc, dataset=dataset, names=tuple(r.name for r in runs),
                         inputs=tuple(dict.fromkeys(i for i in inputs if i and not i.startswith("<"))))


def stress_to_folder(out_dir: Path, refs: Sequence[str] | None, baseline: str, portfolio_dir: Path | None, *,
                     overwrite: bool, plots: bool, **options) -> StressOutcome:
    """`leisim stress`: the folder checked before the run (inputs it holds, another tool's files), the
    scenarios run (:func:`run_stress` ``options``), stress.json, stress.nc and figures written."""
    from .data.generate import default_portfolio_dir
    from .models.posterior import default_posterior_path
    from .runtime import setup_jax

    inputs = [portfolio_dir or default_portfolio_dir(), default_posterior_path()]
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="outputs", inputs=inputs)
    portfolio = load_portfolio(portfolio_dir)
    chosen = stress_scenarios(refs, baseline)
    setup_jax()
    result = run_stress(chosen, portfolio, **options)
    result.save(out_dir, overwrite=overwrite, plots=plots, guard=False)  # guarded above, before the run
    return result


def reverse_to_folder(out_dir: Path, baseline: str, portfolio_dir: Path | None, *, target: str,
                      shock_specs: Sequence[str], **options) -> dict:
    """`leisim stress --reverse`: inputs checked, then :func:`run_reverse` (``options``), then reverse.json
    beside a stress run's outputs (the report reads both), written under a temporary name."""
    from .runtime import setup_jax
    from .scenarios.stress import parse_shock

    portfolio = load_portfolio(portfolio_dir)
    base = load_scenario(baseline)
    metric, value = parse_target(target)
    shocks = [parse_shock(spec) for spec in shock_specs]
    setup_jax()
    on_result = options.pop("on_result", None)
    doc = run_reverse(base, portfolio, shocks=shocks, metric=metric, value=value,
                      on_result=None if on_result is None else lambda shock, found: on_result(shock, found, metric, value),
                      **options)
    atomic_write(Path(out_dir) / "reverse.json", json_text(doc))
    return doc


def attribute_to_folder(out_dir: Path, first: str, second: str, portfolio_dir: Path | None, *, years: int, seed: int,
                        chunk_size: int = 10_000, metrics: Sequence[str] | None = None, order: Sequence[str] | None = None,
                        overwrite: bool = False, plots: bool = True, progress: Progress = no_progress,
                        command: str = "") -> dict:
    """`leisim attribute A B`: the analysis of change between two scenarios on common random numbers
    (scenarios/attribution.py), attribution.json and its waterfall chart written to ``out_dir``."""
    import jax

    from .runtime import setup_jax
    from .scenarios import attribution
    from .simulator import results as results_mod

    a, b = load_scenario(first), load_scenario(second)
    portfolio = load_portfolio(portfolio_dir)
    inputs = [portfolio.source, a.source, b.source, str(a.posterior_path or ""), str(b.posterior_path or "")]
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="outputs", inputs=[i for i in inputs if i])
    setup_jax()
    with progress(f"Attribution {a.name} -> {b.name}", years * (len(attribution.STEPS) + 2)) as update:
        doc = attribution.attribute(a, b, portfolio, key=jax.random.key(seed), years=years, chunk_size=chunk_size,
                                    metrics=tuple(metrics or attribution.DEFAULT_METRICS),
                                    order=None if order is None else tuple(order), progress=update)
    doc["provenance"] = results_mod.provenance(scenario_name=f"{a.name} -> {b.name}",
                                               scenario_sha256=f"{a.sha256} -> {b.sha256}", seed=seed, years=years,
                                               command=command)
    with staged_output(out_dir, "attribute") as staging:
        (staging / "attribution.json").write_text(json_text(doc))
        if plots:
            from . import plots as figures

            figures.waterfall(doc, staging / "attribution.png")
    return doc


def parse_target(text: str) -> tuple[str, float]:
    """``metric=value`` of a reverse stress test."""
    name, _, value = text.partition("=")
    try:
        metric, level = name.strip(), float(value)
    except ValueError:
        raise InputError("give the target as metric=value, e.g. solvency_ratio=1.0", field="--target",
                         value=text) from None
    if metric not in REVERSE_TARGETS:
        raise InputError("unknown reverse-stress target", field="--target", value=metric,
                         choices=sorted(REVERSE_TARGETS))
    return metric, level


def run_reverse(base: Scenario, portfolio: Portfolio, *, shocks: Sequence[tuple[str, str]], metric: str, value: float,
                seed: int, years: int, chunk_size: int = 10_000, notify: Notify = warn,
                on_result: Callable[[str, dict], None] | None = None) -> dict:
    """The reverse stress test: per shock, the smallest multiplier that breaches ``metric`` = ``value``
    (what reverse.json holds); ``on_result(shock, found)`` as each shock's search ends."""
    import jax

    from .scenarios import stress as stress_mod

    found_by_shock = {}
    for kind, key in shocks:
        notify(f"Reverse stress: smallest {kind}:{key} multiplier with {metric} "
               f"{'>=' if REVERSE_TARGETS[metric] else '<='} {value:g} ({years:,} years each)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = stress_mod.reverse(base, portfolio, kind=kind, key=key, target=metric, value=value,
                                       jax_key=jax.random.key(seed), years=years, chunk_size=chunk_size,
                                       progress=lambda line: notify(f"  {line}"))
        found_by_shock[f"{kind}:{key}"] = found
        if on_result is not None:
            on_result(f"{kind}:{key}", found)
    return {"baseline": base.name, "seed": seed, "years": years, "target": {metric: value}, "results": found_by_shock}



# --------------------------------------------------------------------------------------------------
# Posterior predictive checks


def require_disputes(history) -> None:
    """A fit needs at least one dispute in the history (else it returns the priors alone)."""
    if history.cell_disputes.sum() == 0:
        raise InputError("the history holds no dispute: a fit would return the priors alone; check the disputes "
                         "column of exposures.csv", file=str(Path(history.source) / "exposures.csv"), field="disputes")


def display_path(path: str | Path) -> str:
    """A path as recorded in an output: relative to the working folder when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def posterior_checks(history, posterior, out_dir: Path, *, seed: int, posterior_path: Path, years: int = 2000,
                     notify: Notify | None = None) -> dict:
    """The posterior predictive checks of ``posterior`` against ``history``, written to ``out_dir`` as
    checks.json and checks.png (their paths in ``doc["_written"]``)."""
    from .scenarios import ppc

    if notify is not None:
        notify(f"Posterior predictive checks: {len(history.years)} history years x {years:,} replicated years "
               "through the simulation engine ...")
    doc = ppc.predictive_checks(history, posterior, seed=seed, years=years)
    doc["posterior"] = display_path(posterior_path)
    doc["posterior_sha256"] = sha256_file(posterior_path)
    doc["history"] = display_path(history.source)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "checks.json", out_dir / "checks.png"
    atomic_write(json_path, json_text(doc))
    def plot(tmp: Path) -> None:
        ppc.plot_checks(doc, tmp)

    atomic_write(png_path, plot)
    doc["_written"] = [json_path, png_path]
    return doc


def fit_checks(history, fitted, out_dir: Path, *, seed: int, posterior_path: Path,
               notify: Notify | None = None) -> tuple[dict, list[Path]]:
    """`leisim fit --checks`: the prior and posterior predictive plots of the fit beside the posterior
    file, then the engine's posterior predictive checks of the posterior as written; the checks'
    document and every file written."""
    from .models.checks import predictive_checks
    from .models.posterior import load_posterior

    paths = predictive_checks(history, fitted.result, out_dir, seed=seed)
    doc = posterior_checks(history, load_posterior(posterior_path), out_dir, seed=seed, posterior_path=posterior_path,
                           notify=notify)
    return doc, list(paths) + doc["_written"]


def split_history(history_dir: Path, cutoff: int, training: Path, holdout: Path) -> None:
    """Copy a history folder's rows into two folders: years up to ``cutoff``, and after it."""
    import csv

    from .models.history import CAMPAIGN_COLUMNS, DISPUTE_COLUMNS, EXPOSURE_COLUMNS

    for name, columns in (("exposures.csv", EXPOSURE_COLUMNS), ("disputes.csv", DISPUTE_COLUMNS),
                          ("campaigns.csv", CAMPAIGN_COLUMNS)):
        source = history_dir / name
        with open(source, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or list(columns)
            rows = list(reader)
        for target, keep in ((training, lambda y: y <= cutoff), (holdout, lambda y: y > cutoff)):
            target.mkdir(parents=True, exist_ok=True)
            with open(target / name, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(r for r in rows if keep(int(r["year"])))


BACKTEST_CHECKS = ("disputes_by_country_and_type", "disputes_by_year", "campaigns_by_year")
BACKTEST_TOLERANCE = 0.001  # a calibrated model fails each pooled test with about this probability


def backtest_calibration(checks: dict) -> dict:
    """Pooled calibration of the held-out counts: at each level, the number inside their predictive intervals
    against the ``BACKTEST_TOLERANCE`` quantile of Binomial(n, level) (one-sided: intervals of small discrete
    counts hold more than their level, [0, 1] around a mean of 0.3 holds 96%, so over-coverage is reported, not
    failed), and a Kolmogorov-Smirnov test of the pooled randomised PIT values against U(0, 1)."""
    from scipy import stats

    out: dict = {}
    for level in ("0.5", "0.9"):
        inside = [v for name in BACKTEST_CHECKS if name in checks for v in checks[name]["intervals"][level]["inside"]]
        n, covered = len(inside), int(sum(inside))
        p = float(level)
        low = int(stats.binom.ppf(BACKTEST_TOLERANCE, n, p)) if n else 0
        out[level] = {"n": n, "covered": covered, "coverage": covered / n if n else None, "lower_bound": low,
                      "upper_bound": n, "pass": bool(covered >= low) if n else None,
                      "rule": f"covered >= the {BACKTEST_TOLERANCE:g} quantile of Binomial(n, {level}) (over-coverage "
                              "of discrete counts reported, not failed)"}
    pit = [v for name in BACKTEST_CHECKS if name in checks for v in checks[name].get("pit", [])]
    ks = float(stats.kstest(pit, "uniform").pvalue) if pit else None
    out["pit"] = {"n": len(pit), "ks_pvalue": ks, "pass": None if ks is None else bool(ks >= BACKTEST_TOLERANCE),
                  "rule": f"KS test of the pooled randomised PIT values against U(0, 1): p >= {BACKTEST_TOLERANCE:g}"}
    return out


def backtest_to_folder(out_dir: Path, history_dir: Path | None, *, holdout_years: int, seed: int, years: int = 2000,
                       chains: int = 2, warmup: int | None = None, samples: int | None = None,
                       frequency_family: str = "negative_binomial", overwrite: bool = False,
                       notify: Notify | None = None) -> dict:
    """`leisim backtest`: fit the models on the history up to year T (all but the last ``holdout_years``), then
    score the held-out years' counts, campaigns and costs against their predictive distributions (the posterior
    predictive checks of scenarios/ppc.py on the held-out years alone): PIT values, coverage of the 50 / 90%
    intervals, pass / fail per check, and the pooled calibration (:func:`backtest_calibration`)."""
    import tempfile

    from .models import fit as fitting
    from .models.history import default_history_dir, load_history
    from .models.posterior import load_posterior, write_tree
    from .models.settings import FIT_DEFAULTS
    from .runtime import setup_jax
    from .scenarios import ppc

    source = Path(history_dir) if history_dir is not None else default_history_dir()
    history = load_history(source)
    if not 1 <= holdout_years < len(history.years):
        raise InputError(f"the history has {len(history.years)} years ({history.years[0]}-{history.years[-1]}): "
                         "hold out at least one and leave at least one to fit", field="--holdout-years",
                         value=holdout_years)
    cutoff = history.years[-holdout_years - 1]
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="a backtest", inputs=[str(source)])
    setup_jax()
    settings = fitting.FitSettings(chains=chains, warmup=warmup or FIT_DEFAULTS.warmup,
                                   samples=samples or FIT_DEFAULTS.samples, seed=seed,
                                   frequency_family=frequency_family)
    with tempfile.TemporaryDirectory() as tmp, staged_output(out_dir, "backtest") as staging:
        split_history(source, cutoff, Path(tmp) / "training", Path(tmp) / "holdout")
        training, holdout = load_history(Path(tmp) / "training"), load_history(Path(tmp) / "holdout")
        require_disputes(training)
        if notify is not None:
            notify(f"Backtest: fitting {training.years[0]}-{cutoff}, scoring {holdout.years[0]}-"
                   f"{holdout.years[-1]} ({settings.chains} chains x ({settings.warmup} + {settings.samples}))")
        result = fitting.fit(training, settings)
        tree = fitting.to_datatree(result, training, provenance={"leisim_command": "leisim backtest"})
        write_tree(tree, staging / "posterior.nc")
        doc = ppc.predictive_checks(holdout, load_posterior(staging / "posterior.nc"), seed=seed, years=years)
        doc["calibration"] = backtest_calibration(doc["checks"])
        doc["pass"] = bool(doc["pass"] and all(v["pass"] is not False for v in doc["calibration"].values()))
        doc |= {"history": display_path(source), "training_years": [training.years[0], cutoff],
                "holdout_years": [holdout.years[0], holdout.years[-1]], "frequency_family": frequency_family,
                "fit": {"divergences": int(result.divergences), "warnings": list(result.warnings),
                        "settings": dataclasses.asdict(settings)}}
        (staging / "backtest.json").write_text(json_text(doc))
        ppc.plot_checks(doc, staging / "backtest.png")
    return doc


def sbc_to_folder(out_dir: Path, history_dir: Path | None, *, replicates: int, seed: int, warmup: int, samples: int,
                  design_years: int | None = None, overwrite: bool = False, notify: Notify | None = None) -> dict:
    """`leisim sbc`: simulation-based calibration of the frequency model (models/sbc.py) on a history's design
    (its exposures, sectors, years and campaign targets), sbc.json and the rank histograms written."""
    import jax

    from .models import sbc
    from .models.frequency import FrequencyData
    from .models.history import default_history_dir, load_history
    from .models.settings import FitSettings
    from .runtime import setup_jax

    source = Path(history_dir) if history_dir is not None else default_history_dir()
    history = load_history(source)
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="a calibration", inputs=[str(source)])
    setup_jax()
    data = FrequencyData.from_history(history)
    if design_years is not None:
        if not 1 <= design_years <= len(history.years):
            raise InputError(f"the history has {len(history.years)} years", field="--design-years",
                             value=design_years)
        data = sbc.small_design(data, design_years)
    if notify is not None:
        notify(f"Simulation-based calibration: {replicates} prior draws, each simulated and fitted "
               f"({warmup} + {samples} NUTS steps), vectorised")
    doc = sbc.calibrate(data, key=jax.random.key(seed), replicates=replicates,
                        settings=FitSettings(chains=1, warmup=warmup, samples=samples, seed=seed, max_tree_depth=7))
    doc |= {"history": display_path(source), "design_years": design_years or len(history.years), "seed": seed}
    with staged_output(out_dir, "sbc") as staging:
        (staging / "sbc.json").write_text(json_text(doc))
        sbc.plot(doc, staging / "sbc.png")
    return doc


def check_to_folder(posterior_path: Path | None, history_dir: Path | None, out_dir: Path, *, years: int, seed: int,
                    overwrite: bool, notify: Notify | None = None) -> dict:
    """`leisim check`: the posterior predictive checks of a posterior file [default: the shipped one]
    against a history [default: the shipped one], written to ``out_dir``."""
    from .models.history import default_history_dir, load_history
    from .models.posterior import default_posterior_path, load_posterior
    from .runtime import setup_jax

    history = load_history(history_dir or default_history_dir())
    posterior_path = Path(posterior_path or default_posterior_path())
    posterior = load_posterior(posterior_path)
    refuse_checks_target(out_dir, overwrite=overwrite)
    setup_jax()
    return posterior_checks(history, posterior, out_dir, seed=seed, posterior_path=posterior_path, years=years,
                            notify=notify)


# --------------------------------------------------------------------------------------------------
# Synthetic data and other single outputs


def write_history_folder(out_dir: Path, *, seed: int, portfolio_dir: str | Path | None, overwrite: bool) -> dict:
    """A synthetic dispute history drawn on the book (three CSVs that appear together); its rows."""
    from .data.generate import default_portfolio_dir
    from .models.history import generate_history, write_history

    portfolio = load_portfolio(portfolio_dir)
    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="files",
                                inputs=[portfolio_dir or default_portfolio_dir()])
    rows = generate_history(portfolio, seed=seed)
    with atomic_directory(out_dir) as staging:
        write_history(staging, rows)
        outputs.write_marker(staging, "history")
    return rows


def write_portfolio_folder(out_dir: Path, *, seed: int, policies: int, overwrite: bool) -> None:
    """A synthetic pilot portfolio (policies.csv and exposures.csv, which appear together)."""
    from .data.generate import write_portfolio

    outputs.guard_output_folder(out_dir, overwrite=overwrite, what="files")
    with atomic_directory(out_dir) as staging:
        write_portfolio(staging, seed=seed, n_policies=policies)
        outputs.write_marker(staging, "portfolio")


def refuse_file_target(path: Path, *, overwrite: bool, what: str) -> None:
    """A single output file (a posterior: hours of fitting) is never a folder nor replaced unasked."""
    if path.is_dir():
        raise InputError("is a folder; give --out the path of a .nc file", field="--out", value=str(path))
    if path.exists() and not overwrite:
        raise InputError(f"already exists; pass --overwrite to replace it ({what}), or choose another --out",
                         field="--out", value=str(path))


def refuse_checks_target(out_dir: Path, *, overwrite: bool) -> None:
    """checks.json and checks.png go into a folder; earlier checks are replaced only with --overwrite."""
    if not overwrite and any((out_dir / n).exists() for n in ("checks.json", "checks.png")):
        raise InputError(f"{out_dir} already holds checks; pass --overwrite to replace them, or choose another --out",
                         field="--out", value=str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file, not a folder; give --out another path", field="--out",
                         value=str(out_dir))
