"""The ``leisim`` command line: the only place that reads and writes files, sets JAX options and prints."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import click

from .errors import InputError
from .files import atomic_directory, atomic_write, sha256_file
from .models.settings import FIT_DEFAULTS
from .scenarios.schema import MAX_SEED, MAX_YEARS

YEARS = click.IntRange(1, MAX_YEARS)
SEED = click.IntRange(0, MAX_SEED)


class _Group(click.Group):
    """Bad input is an InputError: show its message and exit 2, never a traceback."""

    def parse_args(self, ctx, args):
        ctx.meta["leisim_args"] = list(args)  # the command line as given, for provenance
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)


def _command_line() -> str:
    """The command line that ran, quoted so that it can be pasted back into a shell."""
    import shlex

    ctx = click.get_current_context(silent=True)
    args = ctx.find_root().meta.get("leisim_args") if ctx is not None else None
    return shlex.join(["leisim"] + (args if args is not None else sys.argv[1:]))


def compilation_cache_dir() -> str | None:
    """Where compiled kernels are kept between runs; None when caching is off.

    JAX_COMPILATION_CACHE_DIR (JAX's own setting) wins; else LEISIM_COMPILATION_CACHE (a folder, or
    ``off``); else ``$XDG_CACHE_HOME/leisim/jax`` (``~/.cache/leisim/jax``). A cached kernel is the
    same executable XLA would compile (the key covers the program, the JAX/XLA versions, the flags and
    the devices), so results never depend on it; a second run skips ~15 s of compilation per kernel.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    chosen = os.environ.get("LEISIM_COMPILATION_CACHE", "")
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return chosen
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "leisim", "jax")


def _setup_jax() -> None:
    from .simulator.driver import host_device_flags

    # One host device per core, so that the simulated years use every core (set before JAX
    # starts its backends; an explicit XLA_FLAGS device count is respected).
    os.environ["XLA_FLAGS"] = host_device_flags()
    import jax

    # Sample in float32, accumulate in float64 (STYLE.md rule 12): float64 must be available.
    jax.config.update("jax_enable_x64", True)
    cache = compilation_cache_dir()
    if cache is not None and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        click.echo(f"Warning: {w.message}", err=True)


def _fmt(x: float | None, scale: float = 1e6, digits: int = 2) -> str:
    return "-" if x is None else f"{x / scale:,.{digits}f}"


def _print_summary(summary: dict) -> None:
    g, n = summary["gross"], summary["net"]
    click.echo(f"\nScenario {summary['scenario']!r}: {summary['years']:,} simulated years, seed {summary['seed']}, "
               f"amounts in CNY million (± 1 Monte Carlo standard error)")
    click.echo(f"{'':22}{'gross':>26}{'net':>26}")
    click.echo(f"{'mean':22}{_fmt(g['mean']):>17} ± {_fmt(g['se']['mean'], digits=3):<6}"
               f"{_fmt(n['mean']):>17} ± {_fmt(n['se']['mean'], digits=3):<6}")
    click.echo(f"{'std':22}{_fmt(g['std']):>26}{_fmt(n['std']):>26}")
    for level in g["var"]:
        for name, key in (("VaR", "var"), ("TVaR", "tvar")):
            click.echo(f"{name + ' ' + level:22}{_fmt(g[key][level]):>17} ± {_fmt(g['se'][key][level], digits=3):<6}"
                       f"{_fmt(n[key][level]):>17} ± {_fmt(n['se'][key][level], digits=3):<6}")
    lr = summary["loss_ratio"]["gross"]
    click.echo(f"{'premium':22}{_fmt(summary['premium']):>17}")
    click.echo(f"{'loss ratio (gross)':22}{'-' if lr is None else f'{lr:.1%}':>17}")
    ri = summary["reinsurance"]
    if ri["applied"]:
        click.echo("\nReinsurance (inuring order)")
        for c in ri["contracts"]:
            click.echo(f"  {c['name']:30} recovered {_fmt(c['expected_recovered'])} ± {_fmt(c['expected_recovered_se'], digits=3)}"
                       f"   premium {_fmt(c['premium'])}   P(loss) {c['probability_of_loss']:.1%}"
                       + (f"   P(exhausted) {c['probability_exhausted']:.2%}" if c["probability_exhausted"] is not None else ""))
        click.echo(f"  {'margin paid to reinsurers':30} {_fmt(ri['margin'])}")
    cap = summary["capital"]
    ratio = cap["solvency_ratio"]
    result = cap.get("result", {})
    if result:
        click.echo(f"\n{'expected result':22}{_fmt(result['expected']):>17} ± {_fmt(cap['se']['expected_result'], digits=3):<6}"
                   f"(premium {_fmt(result['premium_earned'])} - expenses {_fmt(result['expenses'])} "
                   f"- reinsurance {_fmt(result['reinsurance_premiums_net_of_commissions'])} "
                   f"- net cost {_fmt(result['expected_net_cost'])})")
    click.echo(f"{'required capital (SCR)':22}{_fmt(cap['required']):>17} ± {_fmt(cap['se']['required'], digits=3):<6}"
               "(99.5% VaR of the one-year loss of own funds)")
    click.echo(f"{'  VaR minus mean':22}{_fmt(cap['var_minus_mean']['required']):>17}        "
               "(99.5% VaR of net cost - its mean; for comparison)")
    click.echo(f"{'own funds (available)':22}{_fmt(cap['available']):>17}")
    click.echo(f"{'solvency ratio':22}{'-' if ratio is None else f'{ratio:.0%}':>17}"
               + ("" if ratio is None else f" ± {cap['se']['solvency_ratio']:.0%}  (C-ROSS: >= 100%: "
                  f"{'met' if cap['meets']['comprehensive_100pct'] else 'NOT met'})"))
    if cap["exhaustion_probability"] is not None:
        click.echo(f"{'P(own funds exhausted)':22}{cap['exhaustion_probability']:>17.3%}")
    top = sorted(cap["allocation"]["by_country"].items(), key=lambda kv: -kv[1]["capital"])[:5]
    click.echo(f"{'capital by country':22}" + ", ".join(f"{k} {_fmt(v['capital'])}" for k, v in top))
    res = summary["reserves"]
    if res.get("expected_outstanding") is not None:
        click.echo(f"{'reserve (best est.)':22}{_fmt(res['expected_outstanding']):>17}   P(it covers the run-off) "
                   f"{res['adequacy']['probability']:.1%}; 99.5% run-off {_fmt(res['reserve_for_adequacy']['0.995'])}; "
                   f"one-year reserve risk {_fmt(res['one_year_reserve_risk']['capital'])}")
    d = summary["disputes"]
    click.echo(f"{'disputes per year':22}{d['mean_per_year']:>17.2f}  (expected {d['expected_per_year']:.2f}, "
               f"max {d['max_per_year']})")
    pu = summary.get("parameter_uncertainty")
    if pu:
        click.echo(f"{'parameter uncertainty':22}{pu['parameter_share_of_variance']:>16.1%}  of the variance of annual "
                   f"gross payouts ({pu['draws']} posterior draws)")
        if "var_0.995_widening" in pu and pu["var_0.995_widening"] is not None:
            click.echo(f"{'':22}99.5% VaR {_fmt(pu['var_0.995_posterior'])} with it, "
                       f"{_fmt(pu['var_0.995_point_estimate'])} at the posterior mean: "
                       f"{pu['var_0.995_widening']:+.1%} (± {pu['var_0.995_widening_se']:.1%})")


def _run_options(command):
    """The options `simulate` and `reinsurance compare` share: portfolio, years, seed, chunk size, plots."""
    for option in reversed((
        click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
                     help="Folder with policies.csv and exposures.csv [default: the embedded pilot portfolio]."),
        click.option("--years", type=YEARS, default=None, help="Simulated years [default: the scenario's]."),
        click.option("--seed", type=SEED, default=None, help="Random seed [default: the scenario's]."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True,
                     help="Years per kernel call: changes memory use and speed, never the results."),
        click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures."),
        click.option("--overwrite", is_flag=True, help="Replace the output folder if it already holds a run."),
        click.option("--x64", is_flag=True, help="Sample in float64 too (default: float32 sampling with float64 "
                     "accumulation, which agrees within Monte Carlo error and runs faster)."),
        click.option("--devices", type=click.IntRange(min=1), default=None,
                     help="Use at most this many local devices [default: all; on a CPU, one per core]. "
                          "Never changes the results."),
    )):
        command = option(command)
    return command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leisim")
def main() -> None:
    """leisim: Monte Carlo risk simulator for legal-expenses insurance of overseas IP disputes."""


@main.command()
@click.option("--scenario", "scenario_ref", default="baseline", show_default=True,
              help="A library scenario name (see `leisim scenarios list`) or a path to a .toml file.")
@_run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: results/<scenario>/].")
@click.option("--compare-point-estimate/--no-compare-point-estimate", default=True, show_default=True,
              help="Posterior runs: also run the same years at the posterior mean parameters and report how "
                   "much parameter uncertainty widens the 99.5% VaR.")
@click.option("--compare-reinsurance", "compare", multiple=True, metavar="PROGRAM.toml",
              help="Also run this reinsurance program (a .toml with [[reinsurance]] tables, or `none`) on the same "
                   "simulated years and print it beside the scenario's own program. Repeat for several.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Finish the interrupted run whose output folder is DIR, from its checkpoint "
                   "(DIR/.checkpoint); its settings come from the checkpoint.")
@click.option("--distributed", is_flag=True,
              help="Run as one process of several (jax.distributed): years are split over every process's "
                   "devices and process 0 writes the outputs.")
@click.option("--coordinator", envvar="JAX_COORDINATOR_ADDRESS", default=None, metavar="HOST:PORT",
              help="--distributed: address of process 0's coordinator [env JAX_COORDINATOR_ADDRESS; default: "
                   "detected from the cluster (Slurm, Open MPI, ...)].")
@click.option("--num-processes", envvar="JAX_NUM_PROCESSES", type=click.IntRange(min=1), default=None,
              help="--distributed: number of processes [env JAX_NUM_PROCESSES].")
@click.option("--process-id", envvar="JAX_PROCESS_ID", type=click.IntRange(min=0), default=None,
              help="--distributed: this process's index, 0 .. N-1 [env JAX_PROCESS_ID].")
def simulate(scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots, overwrite, x64, devices,
             compare_point_estimate, compare, resume_dir, distributed, coordinator, num_processes, process_id):
    """Simulate annual payouts and write summary.json, results.nc and figures.

    Finished chunks of years are checkpointed in OUT/.checkpoint; after an interruption (Ctrl-C,
    a killed job), `leisim simulate --resume OUT` finishes the run with exactly the results an
    uninterrupted run gives.
    """
    if (coordinator is not None or num_processes is not None or process_id is not None) and not distributed:
        raise InputError("--coordinator, --num-processes and --process-id need --distributed",
                         field="--distributed", value="not given")
    run = {"scenario_ref": scenario_ref, "portfolio_dir": None if portfolio_dir is None else str(portfolio_dir),
           "years": years, "seed": seed, "out_dir": None if out_dir is None else str(out_dir),
           "chunk_size": chunk_size, "plots": plots, "compare_point_estimate": compare_point_estimate,
           "compare": list(compare), "include_own": True, "overwrite": overwrite, "x64": x64}
    if resume_dir is not None:
        ctx = click.get_current_context()
        given = [name for name in ("scenario_ref", "portfolio_dir", "years", "seed", "out_dir", "chunk_size", "compare")
                 if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)]
        if given:
            raise InputError("--resume takes the run's settings from its checkpoint; leave out "
                             + ", ".join("--" + g.replace("_ref", "").replace("_dir", "").replace("_", "-") for g in given),
                             field="--resume", value=str(resume_dir))
        run = _checkpoint_arguments(resume_dir)
        run["plots"] = run["plots"] and plots
        run["out_dir"] = str(resume_dir)  # the folder given, wherever the run was started (a copy, a move)
    _run_simulation(run, resume=resume_dir is not None, devices=devices,
                    distributed=(coordinator, num_processes, process_id) if distributed else None)


@main.group()
def reinsurance() -> None:
    """Reinsurance programs: compare them on common random numbers."""


@reinsurance.command("compare")
@click.argument("programs", nargs=-1, required=True, metavar="PROGRAM.toml...")
@click.option("--scenario", "scenario_ref", default="baseline", show_default=True,
              help="The scenario whose gross losses every program is applied to.")
@_run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: results/<scenario>-reinsurance/].")
def reinsurance_compare(programs, scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots, overwrite,
                        x64, devices):
    """Compare reinsurance programs side by side on the same simulated years.

    Each PROGRAM.toml holds [[reinsurance]] tables (and optionally name and [capital]); `none` is
    the program without reinsurance. The first program is reported in summary.json as ceded/net.
    """
    if out_dir is None:
        from .scenarios.schema import load_scenario

        out_dir = Path("results") / f"{load_scenario(scenario_ref).name}-reinsurance"
    run = {"scenario_ref": scenario_ref, "portfolio_dir": None if portfolio_dir is None else str(portfolio_dir),
           "years": years, "seed": seed, "out_dir": str(out_dir), "chunk_size": chunk_size, "plots": plots,
           "compare_point_estimate": False, "compare": list(programs), "include_own": False, "overwrite": overwrite, "x64": x64}
    _run_simulation(run, devices=devices)


CHECKPOINT = ".checkpoint"  # inside the output folder: finished chunks of an unfinished run


# Every output folder leisim writes carries this marker (what wrote it, when, which version):
# --overwrite replaces a folder only if leisim wrote it, never a folder of the user's own files.
OUTPUT_MARKER = ".leisim-output.json"
# Folders written before the marker existed: a run's or a stress run's outputs and nothing else.
LEGACY_RUN_FILES = {"summary.json", "results.nc", "report.html", "stress.json", "stress.nc", "reverse.json",
                    CHECKPOINT}


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` (a staging folder about to become an output) as written by leisim."""
    import datetime as dt

    (folder / OUTPUT_MARKER).write_text(json.dumps({
        "written_by": "leisim", "kind": kind, "version": _version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")


def _is_leisim_output(folder: Path, entries: list[str]) -> bool:
    if OUTPUT_MARKER in entries:
        return True
    names = set(entries)
    return bool(names & {"summary.json", "stress.json", CHECKPOINT}) and all(
        n in LEGACY_RUN_FILES or n.endswith(".png") for n in names)


def guard_output_folder(out_dir: Path, *, overwrite: bool, what: str = "outputs", inputs=()) -> None:
    """Refuse an output folder that leisim must not write or replace, before any work starts.

    Refused always: a symbolic link, a file, the working folder or one above it, a folder that is
    or holds one of the run's ``inputs``, and a folder whose parent cannot be written. A folder
    holding files is refused without ``--overwrite``, and with it unless leisim wrote it.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise InputError(f"{out_dir} is a symbolic link; give --out the real folder (leisim replaces the folder "
                         "it writes, and would replace the link)", field="--out", value=str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file, not an output folder; give --out another path",
                         field="--out", value=str(out_dir))
    resolved = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(f"{out_dir} is the working folder or one above it; give --out a folder of its own "
                         "(leisim replaces the whole output folder)", field="--out", value=str(out_dir))
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == resolved or resolved in source.parents:
            raise InputError(f"{out_dir} is or holds an input of this run ({item}); give --out another folder",
                             field="--out", value=str(out_dir))
    parent = resolved.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {out_dir}: {parent} is not a writable folder; give --out a writable place",
                         field="--out", value=str(out_dir))
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if not entries:
        return
    if not overwrite:
        if entries == [CHECKPOINT]:
            raise InputError(f"{out_dir} holds an unfinished run: `leisim simulate --resume {_quote(out_dir)}` "
                             "finishes it, --overwrite starts again", field="--out", value=str(out_dir))
        raise InputError(f"{out_dir} already holds {what} ({', '.join(entries[:4])}); pass --overwrite to "
                         "replace them, or choose another --out", field="--out", value=str(out_dir))
    if not _is_leisim_output(out_dir, entries):
        raise InputError(f"{out_dir} holds files leisim did not write ({', '.join(entries[:4])}); --overwrite "
                         "replaces only folders leisim wrote: choose another --out, or empty it yourself",
                         field="--out", value=str(out_dir))


def _check_resources(composition, point_composition, *, years: int, chunk_size: int, out_dir: Path,
                     devices: int) -> None:
    """Refuse, before simulating, a run whose checkpoint and outputs cannot fit on the disk or whose
    chunks cannot fit in memory (exit 2 with the estimate and what to change)."""
    shape = composition.shape
    n_cells = shape.n_cells
    n_contracts = max((len(p) for p in composition.programs), default=0)
    n_programs = len(composition.programs)
    n_countries = len(composition.countries)
    # float64 values one simulated year keeps: the record written per chunk (per-country and per-type
    # columns, contracts, payments by development year) and, twice as many, results.nc.
    per_year_record = 8.0 * (8 + 3 * n_countries + 4 + 3 * n_programs * n_contracts + n_programs
                             + 3 * composition.dev_years)
    per_year_record += 8.0 if point_composition is not None else 0.0
    disk = years * per_year_record * 2.2  # checkpoint + results.nc (a little larger) + seals
    free = _free_bytes(out_dir)
    if disk > free:
        raise InputError(f"a {years:,}-year run needs about {disk / 1e9:,.1f} GB of disk for its checkpoint and "
                         f"results.nc, and {out_dir} has {free / 1e9:,.1f} GB free; simulate fewer years (--years) or "
                         "write to a larger disk (--out)", field="--years", value=years)
    # Memory: a chunk's kernel outputs on the devices, their host copy and the record built from it.
    per_year_kernel = 8.0 * (12 + 3 * n_cells + 2 * n_programs * max(n_contracts, 1) + n_programs
                             + 3 * max(shape.dev_years, 1))
    chunk_bytes = chunk_size * (3.0 * per_year_kernel + 2.0 * per_year_record)
    # The slots of the years vectorised together (batch_years per device) and the parameter tables.
    slots = shape.dispute_buffer + shape.campaign_dispute_buffer + shape.event_buffer
    batch_bytes = devices * min(shape.batch_years, chunk_size) * slots * 8.0 * 24
    import jax

    params_bytes = sum(getattr(x, "nbytes", 0) for x in jax.tree_util.tree_leaves(composition.params))
    need = chunk_bytes + batch_bytes + 2.0 * params_bytes
    from .scenarios.compose import available_memory

    available = available_memory()
    if need > 0.8 * available:
        raise InputError(f"--chunk-size {chunk_size:,} needs about {need / 1e9:,.1f} GB of memory and "
                         f"{available / 1e9:,.1f} GB are available; lower --chunk-size (memory grows with it, the "
                         "results do not change)", field="--chunk-size", value=chunk_size)


def _lock_output(out_dir: Path):
    """An exclusive OS lock on ``out_dir`` (a lock file beside it), held while the returned file is open.

    A second run into the same folder is refused at once (exit 2) instead of mixing its years
    with the first's; the lock dies with the process that holds it (a killed run leaves none).
    """
    import fcntl

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    path = out_dir.parent / f".{out_dir.name}.leisim-lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise InputError(f"another leisim run ({holder or 'pid unknown'}) is writing {out_dir}; wait for it to "
                         "finish, or give --out another folder", field="--out", value=str(out_dir)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def refuse_existing_run(out_dir: Path, inputs=()) -> None:
    """Outputs never replace an earlier run (or an unfinished one) unless --overwrite is given."""
    guard_output_folder(out_dir, overwrite=False, what="outputs", inputs=inputs)


def refuse_existing_folder(out_dir: Path, what: str) -> None:
    """Nothing replaces a folder that holds files unless --overwrite is given."""
    guard_output_folder(out_dir, overwrite=False, what=what)


def _absolute_inputs(run: dict) -> dict:
    """The run's settings with its input paths made absolute, as the checkpoint stores them, so that
    `--resume` works from any working folder (a library scenario name stays a name)."""
    from .scenarios.schema import library_names

    def absolute(text):
        return text if text is None else str(Path(text).expanduser().resolve())

    ref = run["scenario_ref"]
    return run | {"portfolio_dir": absolute(run["portfolio_dir"]),
                  "scenario_ref": ref if ref in library_names() else absolute(ref),
                  "compare": [c if c == "none" else absolute(c) for c in run["compare"]]}


def _checkpoint_arguments(out_dir: Path) -> dict:
    from .simulator.store import CheckpointError, ChunkStore

    try:
        arguments = dict(ChunkStore.open(Path(out_dir) / CHECKPOINT).manifest["arguments"])
    except (CheckpointError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"cannot resume: {err}", field="--resume", value=str(out_dir)) from None
    needed = ("scenario_ref", "portfolio_dir", "years", "seed", "out_dir", "chunk_size", "plots",
              "compare_point_estimate", "compare", "include_own")
    missing = [k for k in needed if k not in arguments]
    if missing:
        raise InputError(f"cannot resume: the checkpoint's manifest lacks {', '.join(missing)} (damaged, or written by "
                         "another version); start the run again with --overwrite", field="--resume",
                         value=str(Path(out_dir) / CHECKPOINT / "manifest.json"))
    return arguments


def _init_distributed(spec: tuple) -> None:
    """Join the other processes of the run (jax.distributed), before any JAX backend starts."""
    import jax

    coordinator, n_processes, process_id = spec
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


def _fingerprint(compositions, years: int, seed: int, chunk_size: int) -> str:
    """Hash of everything the simulated years depend on (kernel inputs, contracts, years, seed, chunks)."""
    import hashlib

    import jax
    import numpy as np

    digest = hashlib.sha256(repr((years, seed, chunk_size)).encode())
    for comp in compositions:
        digest.update(repr((comp.shape, comp.programs, comp.premium_cny)).encode())
        for leaf in jax.tree_util.tree_leaves(comp.params):
            digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


def _agreed(mask):
    """Process 0's value of ``mask`` on every process (one process: ``mask`` itself)."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return mask
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(mask))


def _run_simulation(run: dict, *, resume: bool = False, devices: int | None = None,
                    distributed: tuple | None = None) -> None:
    """Simulate, checkpointing each finished chunk, then write summary.json, results.nc and figures.

    ``run`` holds the settings (stored in the checkpoint, so that ``--resume`` repeats them):
    scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots, compare_point_estimate,
    compare (program files), include_own (the scenario's own program first).
    """
    from .data.generate import default_portfolio_dir
    from .scenarios.compose import compose
    from .scenarios.portfolio import load_portfolio
    from .scenarios.schema import Scenario, load_program, load_scenario
    from .simulator.reinsurance import contracts_from_scenario

    portfolio_dir = run["portfolio_dir"]
    scenario = load_scenario(run["scenario_ref"])
    portfolio = load_portfolio(portfolio_dir or default_portfolio_dir())
    extra = [load_program(p) for p in run["compare"]]
    premium = float(portfolio.premium_cny.sum())
    names, programs, capital_specs = [], [], []
    if run["include_own"]:
        names.append(f"{scenario.name} (scenario)" if extra else scenario.name)
        programs.append(contracts_from_scenario(scenario.reinsurance, premium))
        capital_specs.append(scenario.capital)
    for program in extra:
        names.append(program.name)
        programs.append(contracts_from_scenario(program.reinsurance, premium))
        spec = dict(program.capital) if program.capital is not None else dict(scenario.capital)
        spec.setdefault("expense_ratio", scenario.expense_ratio)  # an underwriting figure, not the program's
        capital_specs.append(spec)
    if not any(programs):
        programs = []  # nothing to cede: the kernel skips reinsurance

    _setup_jax()
    if distributed is not None:
        _init_distributed(distributed)
    import jax
    import numpy as np

    from .simulator import results
    from .simulator.driver import run_devices, run_years
    from .simulator.store import ChunkStore

    try:
        device_list = run_devices(devices)
    except ValueError as err:
        raise InputError(str(err), field="--devices", value=devices) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composition = compose(scenario, portfolio, programs=programs, x64=run.get("x64", False))
    _show_warnings(caught)
    point_composition = None
    if composition.n_draws > 1 and run["compare_point_estimate"]:
        raw = scenario.raw | {"model": scenario.raw.get("model", {}) | {"point_estimate": True}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same warnings were shown above
            point_composition = compose(Scenario(name=scenario.name, raw=raw, source=scenario.source), portfolio,
                                        programs=[], dev_years=0, x64=run.get("x64", False))
    years = run["years"] or scenario.years
    seed = scenario.seed if run["seed"] is None else run["seed"]
    out_dir = Path(run["out_dir"] or Path("results") / scenario.name)
    refusal = None
    if not resume and jax.process_index() == 0:
        from .models.posterior import default_posterior_path

        inputs = [portfolio_dir or default_portfolio_dir(), scenario.source, *run["compare"]]
        if scenario.parameters == "posterior":
            inputs.append(scenario.raw.get("model", {}).get("posterior") or default_posterior_path())
        try:
            guard_output_folder(out_dir, overwrite=run.get("overwrite", False), inputs=inputs)
        except InputError as err:
            refusal = err
    if _agreed(np.array([refusal is not None]))[0]:  # every process stops, not only process 0
        raise refusal or InputError("process 0 refused the output folder (see its message)", field="--out",
                                    value=str(out_dir))
    chunk_size = min(run["chunk_size"], years)
    if not resume and jax.process_index() == 0:
        _check_resources(composition, point_composition, years=years, chunk_size=chunk_size, out_dir=out_dir,
                         devices=len(device_list))
    run = run | {"years": years, "seed": seed, "out_dir": str(out_dir)}
    fingerprint = _fingerprint([c for c in (composition, point_composition) if c is not None], years, seed, chunk_size)

    writer = jax.process_index() == 0  # only process 0 reads and writes files
    checkpoint = out_dir / CHECKPOINT
    store = None
    lock = _lock_output(out_dir) if writer else None  # held (by the open file) until this function returns
    try:
        if writer:
            if resume:
                store = ChunkStore.open(checkpoint)
                if store.manifest.get("fingerprint") != fingerprint:
                    raise InputError("the scenario, portfolio, posterior or leisim version changed since the checkpoint "
                                     "was written, so its years cannot be reused; restore them or start a new run",
                                     field="--resume", value=str(out_dir))
            else:
                store = ChunkStore.create(checkpoint, {"leisim_checkpoint": 1, "arguments": _absolute_inputs(run),
                                                       "fingerprint": fingerprint})
        starts = np.arange(0, years, chunk_size)
        key = jax.random.key(seed)

        def simulate_stream(name: str, comp, label: str, to_record) -> None:
            done = store.done(name) if writer else {}
            for problem in getattr(store, "discarded", []) if writer else []:
                click.echo(f"Warning: checkpoint chunk {problem}; simulating its years again", err=True)
            if writer:
                store.discarded = []
            finished = _agreed(np.isin(starts, list(done)))
            skip = set(starts[finished].tolist())
            sink = (lambda start, table: store.put(name, start, to_record(table))) if writer else (lambda start, table: None)
            with click.progressbar(length=years, label=label, file=sys.stderr, show_pos=True, show_eta=True) as bar:
                bar.update(int(sum(min(chunk_size, years - s) for s in skip)))
                run_years(key, comp.params, comp.shape, years=years, chunk_size=chunk_size, progress=bar.update,
                          devices=device_list, sink=sink, skip=skip)

        try:
            simulate_stream("main", composition, f"Simulating {scenario.name}", lambda t: results.record(t, composition))
            if point_composition is not None:
                simulate_stream("point", point_composition, "Same years at the posterior mean", lambda t: {"gross": t.gross})
        except KeyboardInterrupt:
            if writer:
                click.echo(f"\nInterrupted. Finished chunks are kept in {checkpoint}; finish the run with\n"
                           f"  leisim simulate --resume {_quote(out_dir)}", err=True)
            raise SystemExit(130) from None
        except OSError as err:  # a full disk, a quota, a file system gone read-only: keep what is done
            raise _write_failure(err, checkpoint, out_dir) from None
        if not writer:
            return
        try:
            _write_outputs(store, composition, point_composition, run, scenario, names, capital_specs,
                           years=years, seed=seed, out_dir=out_dir, portfolio_dir=portfolio_dir)
        except OSError as err:
            raise _write_failure(err, checkpoint, out_dir) from None
    except BaseException:
        _release(lock)  # no lock file left beside the folder, whatever stopped the run
        raise
    _release(lock)


def _write_failure(err: OSError, checkpoint: Path, out_dir: Path) -> InputError:
    """What to say when a file cannot be written mid-run: the finished chunks stay; how to go on."""
    import errno

    kept = len(list(checkpoint.glob("*.npz.seal"))) if checkpoint.is_dir() else 0
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(err) or "errno = 28" in str(err):
        fix = "free some space on that disk"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make the folder writable again"
    else:
        fix = "fix the cause"
    where = err.filename or str(out_dir)
    return InputError(f"cannot write ({reason}); the run stopped and its {kept} finished chunk(s) are kept in "
                      f"{checkpoint}: {fix}, then finish it with `leisim simulate --resume {_quote(out_dir)}`",
                      file=str(where))


def _output_bytes(store, years: int) -> float:
    """Disk the outputs need: results.nc (about the checkpoint's size: the same per-year values) and figures."""
    chunk_bytes = sum(p.stat().st_size for p in store.path.glob("main-*.npz"))
    return 1.3 * chunk_bytes + 8.0 * years * 4 + 20e6


def _free_bytes(path: Path) -> int:
    probe = Path(path).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _write_outputs(store, composition, point_composition, run: dict, scenario, names, capital_specs, *,
                   years: int, seed: int, out_dir: Path, portfolio_dir) -> None:
    """The summary, results.nc and figures from the checkpoint, staged and moved into ``out_dir``."""
    from .data.generate import default_portfolio_dir
    from .simulator import metrics, results

    need, free = _output_bytes(store, years), _free_bytes(out_dir.parent)
    if need > free:  # refuse before HDF5 meets a full disk (it may crash rather than fail cleanly)
        import errno

        raise OSError(errno.ENOSPC, f"No space left: the outputs need about {need / 1e6:,.0f} MB and "
                      f"{free / 1e6:,.0f} MB are free", str(out_dir))
    main_years = store.years("main", years)
    point = None
    if point_composition is not None:
        point = metrics.risk_measures(results.sorted_column(store.years("point", years), "gross"), presorted=True)
    attrs = results.provenance(scenario_name=scenario.name, scenario_sha256=scenario.sha256, seed=seed,
                               years=years, command=_command_line())
    attrs["portfolio"] = str(Path(portfolio_dir or default_portfolio_dir()).resolve())
    if composition.parameters == "posterior":
        from .models.posterior import default_posterior_path

        attrs["posterior"] = str(Path(scenario.raw.get("model", {}).get("posterior") or default_posterior_path()).resolve())
        attrs["posterior_sha256"] = sha256_file(attrs["posterior"])  # which fit, even if the file is replaced
    capital_spec = capital_specs[0] if capital_specs else scenario.capital
    summary = results.summarize(main_years, composition, provenance_attrs=attrs, capital_spec=capital_spec,
                                reserves_spec=scenario.reserves, point_estimate=point)
    if len(names) > 1 or not run["include_own"]:
        summary["reinsurance_comparison"] = {
            "programs": results.compare_programs(main_years, composition, names, capital_specs),
            "common_random_numbers": "every program is applied to the same simulated disputes and years",
        }
    with atomic_directory(out_dir) as staging:  # replaces the folder, checkpoint included
        write_marker(staging, "simulate")
        (staging / "summary.json").write_text(_json_dumps(summary))
        results.write_netcdf(staging / "results.nc", main_years, composition, provenance_attrs=attrs)
        if run["plots"]:
            import xarray as xr

            from . import plots as figures

            with xr.open_dataset(staging / "results.nc", engine="h5netcdf") as dataset:
                figures.write_all(dataset, summary, staging)
    _print_summary(summary)
    if "reinsurance_comparison" in summary:
        _print_comparison(summary["reinsurance_comparison"]["programs"])
    click.echo(f"\nWrote {out_dir}/summary.json, results.nc" + (" and figures" if run["plots"] else ""))


def _release(lock) -> None:
    """Remove the lock file of a finished run (still holding the lock), then let it go."""
    if lock is None:
        return
    Path(lock.name).unlink(missing_ok=True)
    lock.close()


def _quote(path) -> str:
    import shlex

    return shlex.quote(str(path))


def _print_comparison(rows: list[dict]) -> None:
    width = max(16, *(len(r["program"]) + 2 for r in rows))
    click.echo("\nReinsurance programs on the same simulated years (CNY million; ratio in %)")
    click.echo(f"{'':26}" + "".join(f"{r['program']:>{width}}" for r in rows))
    lines = (
        ("ceded (mean)", "ceded_mean", 1e6), ("reinsurance margin paid", "margin", 1e6),
        ("net mean", "net_mean", 1e6), ("net VaR 99.5%", "net_var_0.995", 1e6),
        ("net TVaR 99%", "net_tvar_0.99", 1e6), ("expected result", "expected_result", 1e6),
        ("required capital (SCR)", "required_capital", 1e6), ("solvency ratio", "solvency_ratio", 0.01),
        ("P(own funds exhausted)", "exhaustion_probability", 0.01),
    )
    for label, key, scale in lines:
        click.echo(f"{label:26}" + "".join(f"{_fmt(r[key], scale):>{width}}" for r in rows))


@main.group()
def scenarios() -> None:
    """List, show and validate scenario files."""


@scenarios.command("list")
def scenarios_list():
    """The scenarios shipped with leisim."""
    from .scenarios.schema import library_names, load_scenario

    for name in library_names():
        description = " ".join(load_scenario(name).description.split())
        click.echo(f"{name:24} {description[:100]}")


@scenarios.command("show")
@click.argument("reference")
def scenarios_show(reference):
    """Print a scenario fully resolved (extends applied), as JSON."""
    from .scenarios.schema import load_scenario

    scenario = load_scenario(reference)
    click.echo(json.dumps(scenario.raw, indent=2))
    click.echo(f"# sha256 {scenario.sha256}  source {scenario.source}", err=True)


@scenarios.command("validate")
@click.argument("references", nargs=-1, required=True)
def scenarios_validate(references):
    """Validate scenario files or names; exit 2 on the first invalid one."""
    from .scenarios.schema import load_scenario

    for reference in references:
        scenario = load_scenario(reference)
        click.echo(f"ok  {reference}  ({scenario.name}, sha256 {scenario.sha256[:12]})")


@scenarios.command("diff")
@click.argument("first")
@click.argument("second")
def scenarios_diff(first, second):
    """Print what differs between two scenarios, fully resolved (key path: first -> second)."""
    from .scenarios.schema import load_scenario

    a, b = load_scenario(first), load_scenario(second)

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                out |= flatten(v, f"{prefix}.{k}" if prefix else k)
            return out
        return {prefix: value}

    fa, fb = flatten(a.raw), flatten(b.raw)
    rows = [(k, fa.get(k, "(absent)"), fb.get(k, "(absent)")) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    for key, x, y in rows:
        click.echo(f"{key}: {json.dumps(x) if not isinstance(x, str) else x} -> {json.dumps(y) if not isinstance(y, str) else y}")
    click.echo(f"# {len(rows)} difference(s) between {a.name} and {b.name}", err=True)


def _parse_target(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise InputError("give the target as metric=value, e.g. solvency_ratio=1.0", field="--target", value=text)


@main.command()
@click.option("--scenarios", "names", default=None,
              help="Comma-separated library names or .toml paths [default: the whole library]. The baseline is "
                   "always included.")
@click.option("--baseline", "baseline_ref", default="baseline", show_default=True,
              help="The scenario the others are compared with.")
@click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with policies.csv and exposures.csv [default: the embedded pilot portfolio].")
@click.option("--years", type=YEARS, default=100_000, show_default=True,
              help="Simulated years per scenario.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="One seed for every scenario (common random numbers).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/stress"), show_default=True)
@click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--sensitivities/--no-sensitivities", default=True, show_default=True,
              help="Per country: change in net VaR 99.5 / TVaR 99 per +10% frequency and severity.")
@click.option("--sensitivity-years", type=YEARS, default=20_000, show_default=True)
@click.option("--reverse", is_flag=True, help="Run a reverse stress test instead of the scenario set.")
@click.option("--target", default="solvency_ratio=1.0", show_default=True,
              help="Reverse stress target, metric=value (the SCR of the one-year result; premiums and reinsurance "
                   "prices fixed): " + ", ".join(
                  ("solvency_ratio", "core_ratio", "required_capital", "expected_result", "net_var_0.995",
                   "net_tvar_0.99", "exhaustion_probability", "net_loss_ratio", "reserve_adequacy")) + ".")
@click.option("--shock", "shock_specs", multiple=True, default=("frequency:US",), show_default=True,
              help="Reverse stress: the shock to scale, kind:key (frequency:US, frequency:*, severity:*, fx:USD, "
                   "frequency_by_type:patent, campaigns:schedule_a). Repeat for several.")
@click.option("--reverse-years", type=YEARS, default=20_000, show_default=True,
              help="Simulated years per evaluation of the reverse stress test.")
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a stress run already in the output folder.")
def stress(names, baseline_ref, portfolio_dir, years, seed, out_dir, chunk_size, sensitivities, sensitivity_years,
           reverse, target, shock_specs, reverse_years, plots, overwrite):
    """Run scenarios side by side on common random numbers (or a reverse stress test)."""
    from .data.generate import default_portfolio_dir
    from .models.posterior import default_posterior_path

    if not reverse:
        guard_output_folder(out_dir, overwrite=overwrite, what="outputs",
                            inputs=[portfolio_dir or default_portfolio_dir(), default_posterior_path()])
    from .scenarios import stress as stress_mod
    from .scenarios.portfolio import load_portfolio
    from .scenarios.schema import library_names, load_scenario

    portfolio = load_portfolio(portfolio_dir or default_portfolio_dir())
    base = load_scenario(baseline_ref)
    if reverse:
        metric, value = _parse_target(target)
        if metric not in stress_mod.TARGETS:
            raise InputError("unknown reverse-stress target", field="--target", value=metric,
                             choices=sorted(stress_mod.TARGETS))
        shocks = [stress_mod.parse_shock(spec) for spec in shock_specs]
        _setup_jax()
        import jax

        results = {}
        for kind, key in shocks:
            click.echo(f"Reverse stress: smallest {kind}:{key} multiplier with {metric} "
                       f"{'>=' if stress_mod.TARGETS[metric] else '<='} {value:g} ({reverse_years:,} years each)",
                       err=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = stress_mod.reverse(base, portfolio, kind=kind, key=key, target=metric, value=value,
                                           jax_key=jax.random.key(seed), years=reverse_years, chunk_size=chunk_size,
                                           progress=lambda line: click.echo(f"  {line}", err=True))
            results[f"{kind}:{key}"] = found
            if found["found"]:
                se = found.get("multiplier_se")
                click.echo(f"{kind}:{key}: x{found['multiplier']:.4f}" + (f" ± {se:.4f}" if se else "")
                           + f" breaches {metric} = {value:g} ({metric} there {found['metric']:.4g})")
            else:
                click.echo(f"{kind}:{key}: not breached up to x{found['searched_up_to']:g}")
        doc = {"baseline": base.name, "seed": seed, "years": reverse_years, "target": {metric: value},
               "results": results}
        # Beside a stress run's outputs (the report reads both): one file, written under a temporary name.
        atomic_write(out_dir / "reverse.json", _json_dumps(doc))
        click.echo(f"Wrote {out_dir}/reverse.json")
        return

    refs = [n.strip() for n in names.split(",") if n.strip()] if names else [n for n in library_names()
                                                                              if n != "calibrated_fixed"]
    scenarios = [base] + [load_scenario(r) for r in refs]
    seen, unique = set(), []
    for sc in scenarios:
        if sc.name not in seen:
            seen.add(sc.name)
            unique.append(sc)
    scenarios = unique
    _setup_jax()
    import jax

    from .simulator import results as results_mod

    key = jax.random.key(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with click.progressbar(length=years * len(scenarios), label=f"Stress: {len(scenarios)} scenarios",
                               file=sys.stderr, show_pos=True, show_eta=True) as bar:
            runs = stress_mod.simulate(scenarios, portfolio, key=key, years=years, chunk_size=chunk_size,
                                       progress=bar.update)
    _show_warnings([w for i, w in enumerate(caught) if str(w.message) not in {str(c.message) for c in caught[:i]}])
    base_run = runs[0]
    held = base.reserves.get("held_cny")
    if held is None and base_run.composition.dev_years > 1:
        held = float(base_run.series["run_off"].mean())
    doc = stress_mod.compare(base_run, runs, held_reserve=held)
    if sensitivities:
        n = min(sensitivity_years, years)
        countries = sum(portfolio.exposure[:, portfolio.countries.index(c)].sum() > 0 for c in portfolio.countries)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with click.progressbar(length=n * 2 * countries, label="Sensitivities (+10% per country)",
                                   file=sys.stderr, show_pos=True) as bar:
                doc["_sensitivities"] = stress_mod.sensitivities(base_run, portfolio, jax_key=key, years=n,
                                                                 chunk_size=chunk_size, progress=bar.update)
    doc["_provenance"] = results_mod.provenance(scenario_name=",".join(r.name for r in runs),
                                                scenario_sha256=",".join(r.scenario.sha256 for r in runs), seed=seed,
                                                years=years, command=_command_line())
    doc["_provenance"]["baseline"] = base.name
    doc["_provenance"]["reserve_held_for_adequacy"] = held
    import numpy as np
    import xarray as xr

    dataset = xr.Dataset(
        {name: (("scenario", "year"), np.stack([r.series[name] for r in runs]), {"units": "CNY"})
         for name in ("gross", "net", "net_cost", "run_off")},
        coords={"scenario": np.array([r.name for r in runs], dtype=str), "year": np.arange(years, dtype=np.int32)},
    )
    dataset.attrs.update({k: ("" if v is None else str(v)) for k, v in doc["_provenance"].items()})
    previous_reverse = (out_dir / "reverse.json").read_bytes() if (out_dir / "reverse.json").is_file() else None
    with atomic_directory(out_dir) as staging:
        write_marker(staging, "stress")
        if previous_reverse is not None:  # a reverse stress test written there earlier stays
            (staging / "reverse.json").write_bytes(previous_reverse)
        (staging / "stress.json").write_text(_json_dumps(doc))
        dataset.to_netcdf(staging / "stress.nc")
        if plots:
            from . import plots as figures

            figures.tornado(doc, staging / "tornado.png")
            if "_sensitivities" in doc:
                figures.sensitivities(doc["_sensitivities"], staging / "sensitivities.png")
    _print_stress(doc, [r.name for r in runs])
    click.echo(f"\nWrote {out_dir}/stress.json, stress.nc" + (" and figures" if plots else ""))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False, default=Path("results/baseline"))
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="The HTML file [default: RUN_DIR/report.html].")
@click.option("--stress", "stress_dir", type=click.Path(path_type=Path), default=None,
              help="A `leisim stress` output folder [default: results/stress, if it exists].")
@click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
              help="The portfolio folder [default: the one the run recorded].")
@click.option("--checks", "checks_path", type=click.Path(path_type=Path), default=None,
              help="A `leisim check` checks.json [default: checks.json beside the run's posterior, if any].")
def report(run_dir, out_file, stress_dir, portfolio_dir, checks_path):
    """Write the capital-adequacy report: one self-contained HTML file from a run's outputs.

    RUN_DIR is a `leisim simulate` output folder [default: results/baseline, where `leisim simulate`
    writes]; `leisim simulate && leisim stress && leisim report` reports on the defaults.
    """
    from . import report as report_mod
    from .scenarios.portfolio import load_portfolio

    summary_path = run_dir / "summary.json"
    summary = report_mod.load_json(summary_path)
    if summary is None:
        raise InputError("no summary.json here: give the --out folder of a `leisim simulate` run", file=str(run_dir))
    for key in ("scenario", "gross", "net", "capital", "reserves", "reinsurance"):
        if key not in summary:
            raise InputError("missing key: re-run `leisim simulate` with this version", file=str(summary_path),
                             field=key)
    if stress_dir is None and Path("results/stress/stress.json").is_file():
        stress_dir = Path("results/stress")
    stress = report_mod.load_json(stress_dir / "stress.json") if stress_dir else None
    reverse = report_mod.load_json(stress_dir / "reverse.json") if stress_dir else None
    if stress_dir is not None and stress is None and reverse is None:
        raise InputError("no stress.json or reverse.json here: give the --out folder of `leisim stress`",
                         file=str(stress_dir))
    prov = summary.get("provenance", {})
    portfolio_path = portfolio_dir or (Path(prov["portfolio"]) if prov.get("portfolio") else None)
    portfolio = report_mod.portfolio_tables(load_portfolio(portfolio_path)) if portfolio_path else None
    diagnostics = report_mod.diagnostics_table(prov["posterior"]) if prov.get("posterior") else None
    figures = {p.name: p.read_bytes() for p in run_dir.glob("*.png")}
    if stress_dir is not None:
        figures |= {p.name: p.read_bytes() for p in stress_dir.glob("*.png")}
    explicit = checks_path is not None
    if checks_path is None and prov.get("posterior") and (Path(prov["posterior"]).parent / "checks.json").is_file():
        checks_path = Path(prov["posterior"]).parent / "checks.json"
    checks = report_mod.load_json(checks_path) if checks_path is not None else None
    if checks_path is not None and (checks is None or not isinstance(checks.get("checks"), dict)):
        raise InputError("not a checks.json written by `leisim check`", file=str(checks_path))
    if checks is not None and prov.get("posterior") and Path(prov["posterior"]).is_file():
        # Checks of another fit must not stand beside this run's results.
        if checks.get("posterior_sha256") != sha256_file(prov["posterior"]):
            message = (f"{checks_path} checks another posterior than the run's ({prov['posterior']}); "
                       "run `leisim check` on the run's posterior")
            if explicit:
                raise InputError(message, file=str(checks_path), field="posterior_sha256")
            click.echo(f"Warning: {message}; the report leaves the checks out", err=True)
            checks = None
    if checks is not None and (checks_path.parent / "checks.png").is_file():
        figures["checks.png"] = (checks_path.parent / "checks.png").read_bytes()
    try:
        text = report_mod.render(summary, figures=figures, stress=stress, reverse=reverse, diagnostics=diagnostics,
                                 portfolio=portfolio, checks=checks)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        # A hand-edited or foreign summary.json / stress.json: say which files, not a traceback.
        sources = [str(summary_path)] + [str(stress_dir / n) for n in ("stress.json", "reverse.json")
                                         if stress_dir is not None and (stress_dir / n).is_file()]
        raise InputError(f"the run's outputs do not have the shape this leisim writes ({type(err).__name__}: {err}); "
                         "re-run `leisim simulate` (and `leisim stress`) with this version", file=", ".join(sources)) from None
    out_file = out_file or run_dir / "report.html"
    atomic_write(out_file, text)
    click.echo(f"Wrote {out_file} ({len(text) / 1e6:.1f} MB)")


def _print_stress(doc: dict, names: list[str]) -> None:
    base = doc[names[0]]["metrics"]
    columns = (("net mean", "net_mean", 1e6), ("VaR 99.5", "net_var_0.995", 1e6), ("TVaR 99", "net_tvar_0.99", 1e6),
               ("exp. result", "expected_result", 1e6), ("SCR", "required_capital", 1e6),
               ("solvency", "solvency_ratio", 0.01), ("core", "core_ratio", 0.01),
               ("P(reserve ok)", "reserve_adequacy", 0.01))
    width = max(len(n) for n in names) + 2
    click.echo(f"\nStressed levels ({base.get('years', 0):,} simulated years each; CNY million, ratios in %; "
               "C-ROSS: comprehensive >= 100%, core >= 50%)")
    click.echo(f"{'':{width}}" + "".join(f"{label:>14}" for label, _, _ in columns) + "   C-ROSS")
    for name in names:
        m = doc[name]["metrics"]
        row = f"{name:{width}}"
        for _, key, scale in columns:
            v = m.get(key)
            row += f"{'-' if v is None else f'{v / scale:,.1f}':>14}"
        from .simulator.capital import passes

        verdict = {None: "-", True: "PASS", False: "FAIL"}[passes(m.get("meets") or {})]
        click.echo(row + f"   {verdict}")
    click.echo(f"\nStress test on common random numbers: change from {names[0]} (± SE of the difference); "
               "CNY million")
    click.echo(f"{'':{width}}" + "".join(f"{label:>20}" for label, _, _ in columns))
    for name in names[1:]:
        change = doc[name]["change_from_baseline"]
        row = f"{name:{width}}"
        for _, key, scale in columns:
            c = change.get(key)
            text = "-" if c is None else f"{c['difference'] / scale:+,.2f} ±{c['se'] / scale:,.2f}"
            row += f"{text:>20}"
        click.echo(row)
    sens = doc.get("_sensitivities")
    if sens:
        click.echo(f"\nSensitivities: change in net VaR 99.5 per +10% (CNY million, {sens['years']:,} years)")
        for country, entry in sens["by_country"].items():
            f, v = entry["frequency"]["net_var_0.995"], entry["severity"]["net_var_0.995"]
            click.echo(f"  {country:4} frequency {f['difference'] / 1e6:+8.3f} ± {f['se'] / 1e6:.3f}   "
                       f"severity {v['difference'] / 1e6:+8.3f} ± {v['se'] / 1e6:.3f}")


@main.command()
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with exposures.csv, disputes.csv, campaigns.csv [default: the shipped synthetic history].")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("results/posterior.nc"),
              show_default=True, help="Where to write the posterior (NetCDF, ArviZ groups).")
@click.option("--chains", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--warmup", type=click.IntRange(min=10), default=FIT_DEFAULTS.warmup, show_default=True)
@click.option("--samples", type=click.IntRange(min=10), default=FIT_DEFAULTS.samples, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--target-accept", type=click.FloatRange(0.5, 0.999), default=FIT_DEFAULTS.target_accept,
              show_default=True, help="NUTS target acceptance: higher removes divergences, costs time.")
@click.option("--checks/--no-checks", default=False, show_default=True,
              help="Prior and posterior predictive checks, plotted beside --out.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
def fit(history_dir, out_path, chains, warmup, samples, seed, target_accept, checks, overwrite):
    """Fit the frequency and severity models to a dispute history with NUTS."""
    from .models.history import default_history_dir, load_history

    history = load_history(history_dir or default_history_dir())
    if history.cell_disputes.sum() == 0:
        raise InputError("the history holds no dispute: a fit would return the priors alone; check the disputes "
                         "column of exposures.csv", file=str(Path(history.source) / "exposures.csv"), field="disputes")
    if out_path.is_dir():
        raise InputError("is a folder; give --out the path of a .nc file", field="--out", value=str(out_path))
    if out_path.exists() and not overwrite:
        raise InputError("already exists; pass --overwrite to replace it (a posterior can take hours to fit), or "
                         "choose another --out", field="--out", value=str(out_path))
    _setup_jax()
    from .models import fit as fitting
    from .models.posterior import write_tree

    settings = fitting.FitSettings(chains=chains, warmup=warmup, samples=samples, seed=seed,
                                   target_accept=target_accept)
    click.echo(f"Fitting {history.source}: {history.cell_disputes.sum()} disputes in {len(history.years)} years, "
               f"{history.n_disputes} with payments; {chains} chains x ({warmup} warmup + {samples} samples)",
               err=True)
    result = fitting.fit(history, settings, progress=True)
    tree = fitting.to_datatree(result, history, provenance={"command": _command_line(),
                                                            "leisim_version": _version()})
    write_tree(tree, out_path)
    _print_fit(result)
    if checks:
        from .models.checks import predictive_checks
        from .models.posterior import load_posterior

        paths = predictive_checks(history, result, out_path.parent, seed=seed)
        doc = _posterior_checks(history, load_posterior(out_path), out_path.parent, seed=seed,
                                posterior_path=out_path)
        click.echo("Predictive checks: " + ", ".join(str(p) for p in paths + doc["_written"]))
    click.echo(f"\nWrote {out_path}")


def _display_path(path) -> str:
    """A path as recorded in an output: relative to the working folder when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _finite(value):
    """NaN and infinities become null: strict JSON (RFC 8259) has no token for them."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_dumps(doc: dict) -> str:
    return json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n"


def _posterior_checks(history, posterior, out_dir: Path, *, seed: int, posterior_path: Path, years: int = 2000) -> dict:
    """Run the posterior predictive checks, print them, write checks.json and checks.png into ``out_dir``."""
    from .models import ppc

    click.echo(f"Posterior predictive checks: {len(history.years)} history years x {years:,} replicated years "
               "through the simulation engine ...", err=True)
    doc = ppc.predictive_checks(history, posterior, seed=seed, years=years)
    doc["posterior"] = _display_path(posterior_path)
    doc["posterior_sha256"] = sha256_file(posterior_path)
    doc["history"] = _display_path(history.source)
    for line in ppc.summary_lines(doc):
        click.echo("  " + line)
    click.echo("  " + ("every check passes" if doc["pass"] else "SOME CHECKS FAIL: the model (or the engine) does "
                                                                "not reproduce the history"))
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "checks.json", out_dir / "checks.png"
    atomic_write(json_path, _json_dumps(doc))
    atomic_write(png_path, lambda tmp: ppc.plot_checks(doc, tmp))
    doc["_written"] = [json_path, png_path]
    return doc


@main.command()
@click.argument("posterior_path", metavar="POSTERIOR", type=click.Path(path_type=Path), required=False)
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="The dispute history to check against [default: the shipped synthetic history].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/checks"), show_default=True,
              help="Folder for checks.json and checks.png.")
@click.option("--years", type=click.IntRange(1000, 200_000), default=2000, show_default=True,
              help="Replicated years per history year.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace checks already in --out.")
def check(posterior_path, history_dir, out_dir, years, seed, overwrite):
    """Posterior predictive checks of POSTERIOR (default: the shipped one) against a dispute history.

    Replicates the history's own exposures under the posterior through the simulation engine and
    sets dispute counts (by country x type, by year), campaigns and costs by stage against what
    was observed: predictive intervals, coverage, PIT values, a plot. Exit status 1 if a check
    fails.
    """
    from .models.history import default_history_dir, load_history
    from .models.posterior import default_posterior_path, load_posterior

    history = load_history(history_dir or default_history_dir())
    posterior_path = posterior_path or default_posterior_path()
    posterior = load_posterior(posterior_path)
    if not overwrite and any((out_dir / n).exists() for n in ("checks.json", "checks.png")):
        raise InputError(f"{out_dir} already holds checks; pass --overwrite to replace them, or choose another --out",
                         field="--out", value=str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file, not a folder; give --out another path", field="--out", value=str(out_dir))
    _setup_jax()
    doc = _posterior_checks(history, posterior, out_dir, seed=seed, posterior_path=posterior_path, years=years)
    click.echo(f"\nWrote {doc['_written'][0]}, {doc['_written'][1].name}")
    if not doc["pass"]:
        sys.exit(1)


def _version() -> str:
    from . import __version__

    return __version__


def _print_fit(result) -> None:
    rows = {row["name"]: row for row in result.summary}
    click.echo(f"\n{'parameter':34}{'mean':>10}{'5%':>10}{'95%':>10}{'R-hat':>8}{'ESS bulk':>10}{'ESS tail':>10}")
    shown = [name for name in rows if name.startswith(("mu_type", "sigma_year", "dispersion", "campaign_log_rate",
                                                         "kappa[0", "sigma[", "win_logit_mean", "tau_"))]
    for name in shown:
        r = rows[name]
        click.echo(f"{name:34}{r['mean']:10.3f}{r['q05']:10.3f}{r['q95']:10.3f}{r['r_hat']:8.3f}"
                   f"{r['ess_bulk']:10.0f}{r['ess_tail']:10.0f}")
    finite = [r for r in result.summary if r["r_hat"] == r["r_hat"]]
    worst = max(finite, key=lambda r: r["r_hat"])
    low_bulk = min(finite, key=lambda r: r["ess_bulk"] if r["ess_bulk"] == r["ess_bulk"] else 1e18)
    click.echo(f"\nDiagnostics over {len(result.summary)} scalars: max R-hat {worst['r_hat']:.3f} ({worst['name']}), "
               f"min bulk ESS {low_bulk['ess_bulk']:.0f} ({low_bulk['name']}), divergences {result.divergences}")
    for message in result.warnings:
        click.echo(f"Warning: {message}", err=True)


@main.group()
def data() -> None:
    """The embedded synthetic data."""


@data.command("history")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
              help="The book the history is drawn on [default: the embedded pilot portfolio].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("history"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the --out folder if it already holds files.")
def data_history(seed, portfolio_dir, out_dir, overwrite):
    """Write a synthetic dispute history drawn from the documented true parameters (seed 0: the shipped one)."""
    from .data.generate import default_portfolio_dir
    from .models.history import HISTORY_YEARS, generate_history, write_history
    from .scenarios.portfolio import load_portfolio

    portfolio = load_portfolio(portfolio_dir or default_portfolio_dir())
    guard_output_folder(out_dir, overwrite=overwrite, what="files", inputs=[portfolio_dir or default_portfolio_dir()])
    rows = generate_history(portfolio, seed=seed)
    with atomic_directory(out_dir) as staging:  # the three files appear together or not at all
        write_history(staging, rows)
        write_marker(staging, "history")
    click.echo(f"Wrote {out_dir}/exposures.csv, disputes.csv, campaigns.csv: {HISTORY_YEARS[0]}-{HISTORY_YEARS[-1]}, "
               f"{len(rows['disputes'])} paid disputes, {len(rows['campaigns'])} campaigns (seed {seed})")


@data.command("generate")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--policies", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("portfolio"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the --out folder if it already holds files.")
def data_generate(seed, policies, out_dir, overwrite):
    """Write a synthetic pilot portfolio (policies.csv, exposures.csv); seed 0 is the embedded default."""
    from .data.generate import write_portfolio

    guard_output_folder(out_dir, overwrite=overwrite, what="files")
    with atomic_directory(out_dir) as staging:  # both files appear together or not at all
        write_portfolio(staging, seed=seed, n_policies=policies)
        write_marker(staging, "portfolio")
    click.echo(f"Wrote {out_dir}/policies.csv and {out_dir}/exposures.csv ({policies} policies, seed {seed})")


@data.command("validate")
@click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
              help="A portfolio folder (policies.csv, exposures.csv) [default: the embedded one, unless --history "
                   "is given alone].")
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="A dispute-history folder (exposures.csv, disputes.csv, campaigns.csv).")
def data_validate(portfolio_dir, history_dir):
    """Check portfolio and history files without simulating; exit 2 naming the file, row, column and value of
    the first problem."""
    import numpy as np

    from .data.generate import default_portfolio_dir
    from .models.history import load_history
    from .scenarios.portfolio import load_portfolio

    if portfolio_dir is not None or history_dir is None:
        p = load_portfolio(portfolio_dir or default_portfolio_dir())
        exposed = [c for i, c in enumerate(p.countries) if p.exposure[:, i].sum() > 0]
        click.echo(f"ok  portfolio {p.source}: {p.n_policies:,} policies in {len(p.sectors)} sectors, premium "
                   f"{p.premium_cny.sum() / 1e6:,.2f} million CNY, exposure {p.exposure.sum():,.1f} million CNY to "
                   f"{len(exposed)} countries ({', '.join(exposed)})")
        unexposed = int(np.sum(p.exposure.sum(axis=1) == 0))
        if unexposed:
            click.echo(f"    note: {unexposed} policies have no exposure (no disputes)")
    if history_dir is not None:
        h = load_history(history_dir)
        click.echo(f"ok  history {history_dir}: years {h.years[0]}-{h.years[-1]}, {len(h.cell_exposure):,} exposure "
                   f"cells, {int(h.cell_disputes.sum()):,} disputes ({len(h.dispute_cost):,} with a payment), "
                   f"{len(h.campaign_dispute_cost):,} campaign disputes with a payment")


@main.command()
@click.option("--years", "years_list", type=YEARS, multiple=True,
              help="Year counts of the years scan (repeat) [default: 1e4, 1e5, 1e6].")
@click.option("--policies", "policies_list", type=click.IntRange(min=1), multiple=True,
              help="Portfolio sizes of the policies scan (repeat) [default: 300, 3,000, 30,000].")
@click.option("--policy-years", type=YEARS, default=20_000, show_default=True,
              help="Years per run in the policies and devices scans.")
@click.option("--devices-scan/--no-devices-scan", default=True, show_default=True,
              help="Also time 1, 2, 4, ... devices (on a CPU: cores).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed runs per point (the median is kept; runs of 1e6 years or more: one).")
@click.option("--numpy-max-years", type=click.IntRange(min=0), default=1_000_000, show_default=True,
              help="Run the NumPy baseline up to this many years.")
@click.option("--reinsurance/--no-reinsurance", default=False, show_default=True,
              help="Also apply a quota share, a per-dispute XL and a stop loss in the kernel.")
@click.option("--reserves/--no-reserves", default=False, show_default=True,
              help="Also track the payment pattern in the kernel.")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=Path("benchmarks/out/bench.json"),
              show_default=True, help="JSON output; the plot goes beside it (.png).")
def bench(years_list, policies_list, policy_years, devices_scan, chunk_size, repeats, numpy_max_years, reinsurance,
          reserves, out_file):
    """Time the kernel on the reference workload: disputes/s and years/s by years, policies and devices,
    compile time, the NumPy baseline and the random-number floor, in one run."""
    _setup_jax()
    import jax

    from . import bench as bench_mod

    n_devices = jax.local_device_count()
    counts = sorted({min(2**k, n_devices) for k in range(n_devices.bit_length() + 1)}) if devices_scan else []
    report = bench_mod.run(years=list(years_list or (10_000, 100_000, 1_000_000)),
                           policies=list(policies_list or (300, 3_000, 30_000)), policy_years=policy_years,
                           device_counts=counts, chunk_size=chunk_size, repeats=repeats,
                           numpy_max_years=numpy_max_years, reinsurance=reinsurance, reserves=reserves,
                           progress=click.echo)
    report["command"] = _command_line()
    import datetime as dt

    report["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write(out_file, json.dumps(report, indent=2) + "\n")
    atomic_write(out_file.with_suffix(".png"), lambda path: bench_mod.plot(report, path))
    click.echo(f"Wrote {out_file} and {out_file.with_suffix('.png')}")


if __name__ == "__main__":
    main()
