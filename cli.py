"""The ``leisim`` command line: options in, the API's application layer (:mod:`leisim.app`) does the
work, text out. Bad input (an InputError) ends in one ``Error:`` line and exit status 2."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from . import app, outputs, text
from .benchmarks.command import bench
from .errors import InputError
from .files import atomic_write
from .models.settings import FIT_DEFAULTS
from .runtime import compilation_cache_dir
from .scenarios.schema import MAX_SEED, MAX_YEARS, library_names, load_scenario
from .vocabulary import REVERSE_TARGETS

__all__ = ["main", "compilation_cache_dir"]

YEARS = click.IntRange(1, MAX_YEARS)
SEED = click.IntRange(0, MAX_SEED)


class _Group(click.Group):
    """Bad input is an InputError: show its message and exit 2, never a traceback."""

    def parse_args(self, ctx, args):
        ctx.meta["leisim_args"] = list(args)  # the command line as given, for provenance
        if ctx.parent is None:  # one invocation's output settings (tests call main() several times in a process)
            from .runtime import show_library_messages

            for key in _MODE:
                _MODE[key] = False
            show_library_messages(False)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)


# How much a command says: -q (errors and warnings only), -v (also JAX/XLA/NumPyro's own messages), --json
# (standard output holds one JSON document and nothing else). Set by every command's options (_verbosity).
_MODE = {"quiet": False, "verbose": False, "json": False}


def _set_mode(ctx, param, value) -> None:
    if value:
        _MODE[param.name] = True
        if param.name == "verbose":
            from .runtime import show_library_messages

            show_library_messages(True)


def _verbosity(command):
    """-q / -v on a command (also accepted before it: `leisim -q simulate`)."""
    command.params.append(click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_mode,
                                       help="Print only errors and warnings (no progress bars, no summary)."))
    command.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_set_mode,
                                       help="Also show JAX, XLA and NumPyro's own messages (compile warnings, "
                                            "sampler progress), silenced by default."))
    return command


def _json_option(command):
    return click.option("--json", "json", is_flag=True, expose_value=False, callback=_set_mode,
                        help="Print the result as one JSON document on standard output and nothing else there "
                             "(messages and progress go to standard error).")(command)


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def _info(message: str) -> None:
    """A message for people (standard error), silenced by -q."""
    if not _MODE["quiet"]:
        click.echo(message, err=True)


def _echo(lines: list[str]) -> None:
    """Text for people on standard output: silenced by -q and by --json (standard output is the JSON)."""
    if _MODE["quiet"] or _MODE["json"]:
        return
    for line in lines:
        click.echo(line)


def _emit_json(doc: dict) -> None:
    if _MODE["json"]:
        click.echo(app.json_text(doc), nl=False)


def _progress():
    return app.no_progress if _MODE["quiet"] else app.progress_bar


def _portfolio(help: str = "Folder with policies.csv and exposures.csv [default: the embedded pilot portfolio]."):
    return click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None, help=help)


def _seed(default: int | None = 0, help: str | None = None):
    return click.option("--seed", type=SEED, default=default, show_default=default is not None, help=help)


def _overwrite(help: str = "Replace the --out folder if it already holds files."):
    return click.option("--overwrite", is_flag=True, help=help)


def _out(default: Path | None, help: str | None = None):
    return click.option("--out", "out_dir", type=click.Path(path_type=Path), default=default,
                        show_default=default is not None, help=help)


def _run_options(command):
    """The options `simulate` and `reinsurance compare` share: portfolio, years, seed, chunk size, plots."""
    for option in reversed((
        _portfolio(),
        click.option("--years", type=YEARS, default=None, help="Simulated years [default: the scenario's]."),
        _seed(None, "Random seed [default: the scenario's]."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True,
                     help="Years per kernel call: changes memory use and speed, never the results."),
        click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures."),
        _overwrite("Replace the output folder if it already holds a run."),
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
    """leisim: Monte Carlo risk simulator for legal-expenses insurance of overseas IP disputes.

    Shell completion (bash): eval "$(_LEISIM_COMPLETE=bash_source leisim)"; zsh: zsh_source; fish: fish_source.
    """


@main.command()
@click.option("--scenario", "scenario_ref", default="baseline", show_default=True,
              help="A library scenario name (see `leisim scenarios list`) or a path to a .toml file.")
@_run_options
@_out(None, "Output folder [default: results/<scenario>/].")
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
@click.option("--posterior", "posterior", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="A posterior written by `leisim fit` to draw the parameters from [default: the scenario's "
                   "[model] posterior, else the shipped one]. Posterior-driven scenarios only.")
@click.option("--ord", "ord_format", flag_value="parquet", default=None,
              help="Also write the ORD-style loss tables into OUT/ord: year loss table, dispute (period) loss "
                   "table and exceedance-probability table, as Parquet.")
@click.option("--ord-csv", "ord_format", flag_value="csv", help="As --ord, as CSV files.")
@_json_option
def simulate(scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots, overwrite, x64, devices,
             compare_point_estimate, compare, resume_dir, distributed, coordinator, num_processes, process_id,
             posterior, ord_format):
    """Simulate annual payouts and write summary.json, results.nc and figures.

    Finished chunks of years are checkpointed in OUT/.checkpoint; after an interruption (Ctrl-C,
    a killed job), `leisim simulate --resume OUT` finishes the run with exactly the results an
    uninterrupted run gives.
    """
    spec = _spec(scenario_ref, portfolio_dir, out_dir, years=years, seed=seed, chunk_size=chunk_size, plots=plots,
                 compare_point_estimate=compare_point_estimate, compare=tuple(compare), overwrite=overwrite, x64=x64,
                 posterior=None if posterior is None else str(posterior), ord_format=ord_format)
    if resume_dir is not None:
        ctx = click.get_current_context()
        given = [name for name in ("scenario_ref", "portfolio_dir", "years", "seed", "out_dir", "chunk_size", "compare",
                                   "posterior")
                 if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)]
        spec = app.resume_spec(resume_dir, given=given, plots=plots)
        if ord_format is not None:
            spec = dataclasses.replace(spec, ord_format=ord_format)
    _simulate(spec, resume=resume_dir is not None, devices=devices,
              distributed=app.distributed_settings(distributed, coordinator, num_processes, process_id))


def _spec(scenario_ref: str, portfolio_dir: Path | None, out_dir: Path | None, **settings) -> app.RunSpec:
    return app.RunSpec(scenario_ref=scenario_ref, portfolio_dir=None if portfolio_dir is None else str(portfolio_dir),
                       out_dir=None if out_dir is None else str(out_dir), **settings)


def _simulate(spec: app.RunSpec, *, resume: bool = False, devices: int | None = None,
              distributed: tuple | None = None) -> None:
    def interrupted(checkpoint: Path, out_dir: Path) -> None:
        click.echo(f"\nInterrupted. Finished chunks are kept in {checkpoint}; finish the run with\n"
                   f"  leisim simulate --resume {outputs.quote(out_dir)}", err=True)
        raise SystemExit(130) from None

    run, out_dir = app.simulate_spec(spec, resume=resume, devices=devices, distributed=distributed,
                                     progress=_progress(), notify=_warn, command=outputs.command_line(),
                                     on_interrupt=interrupted)
    if run is None:  # not process 0 of a distributed run
        return
    _emit_json(run.summary)
    _echo(text.summary_lines(run.summary))
    if "reinsurance_comparison" in run.summary:
        _echo(text.comparison_lines(run.summary["reinsurance_comparison"]["programs"]))
    _echo([f"\nWrote {out_dir}/summary.json, results.nc" + (" and figures" if spec.plots else "")
           + (f", ord/ ({spec.ord_format})" if spec.ord_format else "")])


@main.group()
def reinsurance() -> None:
    """Reinsurance programs: compare them on common random numbers."""


@reinsurance.command("compare")
@click.argument("programs", nargs=-1, required=True, metavar="PROGRAM.toml...")
@click.option("--scenario", "scenario_ref", default="baseline", show_default=True,
              help="The scenario whose gross losses every program is applied to.")
@_run_options
@_out(None, "Output folder [default: results/<scenario>-reinsurance/].")
@_json_option
def reinsurance_compare(programs, scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots, overwrite,
                        x64, devices):
    """Compare reinsurance programs side by side on the same simulated years.

    Each PROGRAM.toml holds [[reinsurance]] tables (and optionally name and [capital]); `none` is
    the program without reinsurance. The first program is reported in summary.json as ceded/net.
    """
    if out_dir is None:
        out_dir = Path("results") / f"{app.load_scenario(scenario_ref).name}-reinsurance"
    spec = _spec(scenario_ref, portfolio_dir, out_dir, years=years, seed=seed, chunk_size=chunk_size, plots=plots,
                 compare_point_estimate=False, compare=tuple(programs), include_own=False, overwrite=overwrite, x64=x64)
    _simulate(spec, devices=devices)


@main.group()
def scenarios() -> None:
    """List, show and validate scenario files."""


@scenarios.command("list")
def scenarios_list():
    """The scenarios shipped with leisim."""
    for name in library_names():
        description = " ".join(load_scenario(name).description.split())
        click.echo(f"{name:24} {description[:100]}")


@scenarios.command("show")
@click.argument("reference")
def scenarios_show(reference):
    """Print a scenario fully resolved (extends applied), as JSON."""
    scenario = load_scenario(reference)
    click.echo(json.dumps(scenario.raw, indent=2))
    click.echo(f"# sha256 {scenario.sha256}  source {scenario.source}", err=True)


@scenarios.command("validate")
@click.argument("references", nargs=-1, required=True)
def scenarios_validate(references):
    """Validate scenario files or names; exit 2 on the first invalid one."""
    for reference in references:
        scenario = load_scenario(reference)
        _echo([f"ok  {reference}  ({scenario.name}, sha256 {scenario.sha256[:12]})"])


@scenarios.command("diff")
@click.argument("first")
@click.argument("second")
def scenarios_diff(first, second):
    """Print what differs between two scenarios, fully resolved (key path: first -> second)."""
    a, b = load_scenario(first), load_scenario(second)
    rows = text.differences(a.raw, b.raw)
    _echo(rows)
    click.echo(f"# {len(rows)} difference(s) between {a.name} and {b.name}", err=True)


@main.command()
@click.option("--scenarios", "names", default=None,
              help="Comma-separated library names or .toml paths [default: the whole library]. The baseline is "
                   "always included.")
@click.option("--baseline", "baseline_ref", default="baseline", show_default=True,
              help="The scenario the others are compared with.")
@_portfolio()
@click.option("--years", type=YEARS, default=100_000, show_default=True, help="Simulated years per scenario.")
@_seed(0, "One seed for every scenario (common random numbers).")
@_out(Path("results/stress"))
@click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--sensitivities/--no-sensitivities", default=True, show_default=True,
              help="Per country: change in net VaR 99.5 / TVaR 99 per +10% frequency and severity.")
@click.option("--sensitivity-years", type=YEARS, default=20_000, show_default=True)
@click.option("--reverse", is_flag=True, help="Run a reverse stress test instead of the scenario set.")
@click.option("--target", default="solvency_ratio=1.0", show_default=True,
              help="Reverse stress target, metric=value (the SCR of the one-year result; premiums and reinsurance "
                   "prices fixed): " + ", ".join(REVERSE_TARGETS) + ".")
@click.option("--shock", "shock_specs", multiple=True, default=("frequency:US",), show_default=True,
              help="Reverse stress: the shock to scale, kind:key (frequency:US, frequency:*, severity:*, fx:USD, "
                   "frequency_by_type:patent, campaigns:schedule_a). Repeat for several.")
@click.option("--reverse-years", type=YEARS, default=20_000, show_default=True,
              help="Simulated years per evaluation of the reverse stress test.")
@click.option("--plots/--no-plots", default=True, show_default=True)
@_overwrite("Replace a stress run already in the output folder.")
@_json_option
def stress(names, baseline_ref, portfolio_dir, years, seed, out_dir, chunk_size, sensitivities, sensitivity_years,
           reverse, target, shock_specs, reverse_years, plots, overwrite):
    """Run scenarios side by side on common random numbers (or a reverse stress test)."""
    if reverse:
        doc = app.reverse_to_folder(out_dir, baseline_ref, portfolio_dir, target=target, shock_specs=shock_specs,
                                    seed=seed, years=reverse_years, chunk_size=chunk_size, notify=_info,
                                    on_result=lambda *found: _echo([text.reverse_line(*found)]))
        _emit_json(doc)
        _echo([f"Wrote {out_dir}/reverse.json"])
        return
    refs = [n.strip() for n in names.split(",") if n.strip()] if names else None
    result = app.stress_to_folder(out_dir, refs, baseline_ref, portfolio_dir, overwrite=overwrite, plots=plots,
                                  years=years, seed=seed, chunk_size=chunk_size, sensitivities=sensitivities,
                                  sensitivity_years=sensitivity_years, progress=_progress(), notify=_warn,
                                  command=outputs.command_line())
    _emit_json(result.document)
    _echo(text.stress_lines(result.document, list(result.names)))
    _echo([f"\nWrote {out_dir}/stress.json, stress.nc" + (" and figures" if plots else "")])


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False, default=Path("results/baseline"))
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="The HTML file [default: RUN_DIR/report.html].")
@click.option("--stress", "stress_dir", type=click.Path(path_type=Path), default=None,
              help="A `leisim stress` output folder [default: results/stress, if it exists].")
@_portfolio("The portfolio folder [default: the one the run recorded].")
@click.option("--checks", "checks_path", type=click.Path(path_type=Path), default=None,
              help="A `leisim check` checks.json [default: checks.json beside the run's posterior, if any].")
@click.option("--attribution", "attribution_dir", type=click.Path(path_type=Path), default=None,
              help="A `leisim attribute` output folder [default: results/attribution, if it exists].")
@click.option("--backtest", "backtest_dir", type=click.Path(path_type=Path), default=None,
              help="A `leisim backtest` output folder [default: results/backtest, if it exists].")
@click.option("--sbc", "sbc_dir", type=click.Path(path_type=Path), default=None,
              help="A `leisim sbc` output folder [default: results/sbc, if it exists].")
@_json_option
def report(run_dir, out_file, stress_dir, portfolio_dir, checks_path, attribution_dir, backtest_dir, sbc_dir):
    """Write the capital-adequacy report: one self-contained HTML file from a run's outputs.

    RUN_DIR is a `leisim simulate` output folder [default: results/baseline, where `leisim simulate`
    writes]; `leisim simulate && leisim stress && leisim report` reports on the defaults.
    """
    from . import report as report_mod

    page = report_mod.build(run_dir, stress_dir=stress_dir, portfolio_dir=portfolio_dir, checks_path=checks_path,
                            attribution_dir=attribution_dir, backtest_dir=backtest_dir, sbc_dir=sbc_dir,
                            notify=_warn)
    out_file = out_file or run_dir / "report.html"
    atomic_write(out_file, page)
    _emit_json({"report": str(out_file), "bytes": len(page.encode()), "run_dir": str(run_dir),
                "summary": json.loads((run_dir / "summary.json").read_text())})
    _echo([f"Wrote {out_file} ({len(page) / 1e6:.1f} MB)"])


@main.command()
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with exposures.csv, disputes.csv, campaigns.csv [default: the shipped synthetic history].")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("results/posterior.nc"),
              show_default=True, help="Where to write the posterior (NetCDF, ArviZ groups).")
@click.option("--chains", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--warmup", type=click.IntRange(min=10), default=FIT_DEFAULTS.warmup, show_default=True)
@click.option("--samples", type=click.IntRange(min=10), default=FIT_DEFAULTS.samples, show_default=True)
@_seed()
@click.option("--target-accept", type=click.FloatRange(0.5, 0.999), default=FIT_DEFAULTS.target_accept,
              show_default=True, help="NUTS target acceptance: higher removes divergences, costs time.")
@click.option("--checks/--no-checks", default=False, show_default=True,
              help="Prior and posterior predictive checks, plotted beside --out.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@_json_option
def fit(history_dir, out_path, chains, warmup, samples, seed, target_accept, checks, overwrite):
    """Fit the frequency and severity models to a dispute history with NUTS."""
    from . import api

    history = api.load_history(history_dir)
    app.require_disputes(history)
    app.refuse_file_target(out_path, overwrite=overwrite, what="a posterior can take hours to fit")
    _info(f"Fitting {history.source}: {history.cell_disputes.sum()} disputes in {len(history.years)} years, "
          f"{history.n_disputes} with payments; {chains} chains x ({warmup} warmup + {samples} samples)")
    fitted = api.fit(history, chains=chains, warmup=warmup, samples=samples, seed=seed, target_accept=target_accept,
                     progress=_MODE["verbose"] or not _MODE["quiet"], command=outputs.command_line())
    fitted.save(out_path, overwrite=True)
    _echo(text.fit_lines(fitted.result))
    for message in fitted.result.warnings:
        _warn(message)
    doc = {"posterior": str(out_path), **text.fit_document(fitted.result)}
    if checks:
        checks_doc, written = app.fit_checks(history, fitted, out_path.parent, seed=seed, posterior_path=out_path,
                                             notify=_info)
        _echo(text.checks_lines(checks_doc))
        _echo(["Predictive checks: " + ", ".join(str(p) for p in written)])
        doc["checks"] = {k: v for k, v in checks_doc.items() if not k.startswith("_")}
        doc["checks_files"] = [str(p) for p in written]
    _emit_json(doc)
    _echo([f"\nWrote {out_path}"])


@main.command()
@click.argument("posterior_path", metavar="POSTERIOR", type=click.Path(path_type=Path), required=False)
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="The dispute history to check against [default: the shipped synthetic history].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/checks"), show_default=True,
              help="Folder for checks.json and checks.png.")
@click.option("--years", type=click.IntRange(1000, 200_000), default=2000, show_default=True,
              help="Replicated years per history year.")
@_seed()
@click.option("--overwrite", is_flag=True, help="Replace checks already in --out.")
def check(posterior_path, history_dir, out_dir, years, seed, overwrite):
    """Posterior predictive checks of POSTERIOR (default: the shipped one) against a dispute history.

    Replicates the history's own exposures under the posterior through the simulation engine and
    sets dispute counts (by country x type, by year), campaigns and costs by stage against what
    was observed: predictive intervals, coverage, PIT values, a plot. Exit status 1 if a check
    fails.
    """
    doc = app.check_to_folder(posterior_path, history_dir, out_dir, years=years, seed=seed, overwrite=overwrite,
                              notify=_info)
    _echo(text.checks_lines(doc))
    _echo([f"\nWrote {doc['_written'][0]}, {doc['_written'][1].name}"])
    if not doc["pass"]:
        sys.exit(1)


@main.command()
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="A dispute-history folder [default: the shipped synthetic history, where the truth is known].")
@click.option("--holdout-years", type=click.IntRange(min=1), default=2, show_default=True,
              help="The last N years of the history are held out: the models are fitted on the years before.")
@click.option("--years", type=click.IntRange(1000, 200_000), default=2000, show_default=True,
              help="Replicated years per held-out year.")
@click.option("--chains", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--warmup", type=click.IntRange(min=10), default=FIT_DEFAULTS.warmup, show_default=True)
@click.option("--samples", type=click.IntRange(min=10), default=FIT_DEFAULTS.samples, show_default=True)
@click.option("--frequency-family", type=click.Choice(["negative_binomial", "poisson"]), default="negative_binomial",
              show_default=True, help="poisson: the misspecified frequency model, to see the backtest reject it.")
@_seed()
@_out(Path("results/backtest"))
@_overwrite("Replace a backtest leisim wrote there before.")
@_json_option
def backtest(history_dir, holdout_years, years, chains, warmup, samples, frequency_family, seed, out_dir, overwrite):
    """Backtest against experience: fit on the history up to year T, then score each held-out year's dispute
    counts (by country x type, by year), campaigns and costs against their predictive distributions: PIT values,
    coverage of the 50 / 90% intervals, pass / fail per check with its stated tolerance. Exit status 1 if a check
    fails."""
    doc = app.backtest_to_folder(out_dir, history_dir, holdout_years=holdout_years, seed=seed, years=years,
                                 chains=chains, warmup=warmup, samples=samples, frequency_family=frequency_family,
                                 overwrite=overwrite, notify=_info)
    _emit_json(doc)
    _echo(text.checks_lines(doc))
    for level, block in doc["calibration"].items():
        verdict = "PASS" if block["pass"] else "FAIL" if block["pass"] is False else "n/a"
        if level == "pit":
            _echo([f"pooled PIT of held-out counts: n = {block['n']}, KS p = {block['ks_pvalue']}: {verdict}"])
        else:
            _echo([f"pooled {float(level):.0%} coverage of held-out counts: {block['covered']} of {block['n']} "
                   f"(at least {block['lower_bound']}): {verdict}"])
    _echo([f"\nWrote {out_dir}/backtest.json, backtest.png, posterior.nc"])
    if not doc["pass"]:
        sys.exit(1)


@main.command()
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="The history whose design (exposures, sectors, years, campaign targets) the data are simulated on "
                   "[default: the shipped one].")
@click.option("--replicates", type=click.IntRange(min=10), default=100, show_default=True,
              help="Prior draws, each simulated and fitted.")
@click.option("--design-years", type=click.IntRange(min=1), default=None,
              help="Use the history's first N years only (a smaller design fits faster) [default: all].")
@click.option("--warmup", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--samples", type=click.IntRange(min=20), default=200, show_default=True)
@_seed()
@_out(Path("results/sbc"))
@_overwrite("Replace a calibration leisim wrote there before.")
@_json_option
def sbc(history_dir, replicates, design_years, warmup, samples, seed, out_dir, overwrite):
    """Simulation-based calibration (Talts et al. 2018) of the frequency model: parameters drawn from the prior,
    data simulated, the model fitted, the rank of each true value among the posterior draws; rank histograms and a
    chi-square test of uniformity per parameter. Exit status 1 if one fails."""
    doc = app.sbc_to_folder(out_dir, history_dir, replicates=replicates, seed=seed, warmup=warmup, samples=samples,
                            design_years=design_years, overwrite=overwrite, notify=_info)
    _emit_json(doc)
    for name, block in doc["parameters"].items():
        _echo([f"{name:26} ranks {block['histogram']}  p = {block['p_value']:.3g}  "
               + ("PASS" if block["pass"] else "FAIL")])
    _echo([f"\nWrote {out_dir}/sbc.json, sbc.png"])
    if not doc["pass"]:
        sys.exit(1)


@main.group()
def data() -> None:
    """The embedded synthetic data."""


@data.command("history")
@_seed()
@_portfolio("The book the history is drawn on [default: the embedded pilot portfolio].")
@_out(Path("history"))
@_overwrite()
def data_history(seed, portfolio_dir, out_dir, overwrite):
    """Write a synthetic dispute history drawn from the documented true parameters (seed 0: the shipped one)."""
    from .models.history import HISTORY_YEARS

    rows = app.write_history_folder(out_dir, seed=seed, portfolio_dir=portfolio_dir, overwrite=overwrite)
    _echo([f"Wrote {out_dir}/exposures.csv, disputes.csv, campaigns.csv: {HISTORY_YEARS[0]}-{HISTORY_YEARS[-1]}, "
           f"{len(rows['disputes'])} paid disputes, {len(rows['campaigns'])} campaigns (seed {seed})"])


@data.command("generate")
@_seed()
@click.option("--policies", type=click.IntRange(min=1), default=300, show_default=True)
@_out(Path("portfolio"))
@_overwrite()
def data_generate(seed, policies, out_dir, overwrite):
    """Write a synthetic pilot portfolio (policies.csv, exposures.csv); seed 0 is the embedded default."""
    app.write_portfolio_folder(out_dir, seed=seed, policies=policies, overwrite=overwrite)
    _echo([f"Wrote {out_dir}/policies.csv and {out_dir}/exposures.csv ({policies} policies, seed {seed})"])


@data.command("validate")
@_portfolio("A portfolio folder (policies.csv, exposures.csv) [default: the embedded one, unless --history "
                   "is given alone].")
@click.option("--history", "history_dir", type=click.Path(path_type=Path), default=None,
              help="A dispute-history folder (exposures.csv, disputes.csv, campaigns.csv).")
def data_validate(portfolio_dir, history_dir):
    """Check portfolio and history files without simulating; exit 2 naming the file, row, column and value of
    the first problem."""
    from . import api

    if portfolio_dir is not None or history_dir is None:
        _echo(text.portfolio_lines(api.load_portfolio(portfolio_dir)))
    if history_dir is not None:
        _echo(text.history_lines(api.load_history(history_dir), history_dir))


@main.command()
@click.argument("first", metavar="SCENARIO_A")
@click.argument("second", metavar="SCENARIO_B")
@_portfolio()
@click.option("--years", type=YEARS, default=50_000, show_default=True, help="Simulated years (the same for every step).")
@_seed(0, "One seed for every step (common random numbers).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--metric", "metrics", multiple=True,
              help="A metric to attribute (repeat) [default: required_capital, expected_result, solvency_ratio, "
                   "net_mean, net_var_0.995]: required_capital, expected_result, solvency_ratio, net_mean, "
                   "net_var_0.995, net_tvar_0.99, gross_mean, core_ratio, exhaustion_probability.")
@click.option("--order", default=None, metavar="STEP,STEP,...",
              help="The order the steps are applied in [default: exposure,frequency,severity,fx,reinsurance,default,"
                   "parameters,other]; every step once.")
@_out(Path("results/attribution"))
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write the waterfall chart.")
@_overwrite("Replace an attribution leisim wrote there before.")
@_json_option
def attribute(first, second, portfolio_dir, years, seed, chunk_size, metrics, order, out_dir, plots, overwrite):
    """Analysis of change from SCENARIO_A to SCENARIO_B: the change in SCR, expected result and solvency ratio
    split into steps (exposure, frequency, severity, FX, reinsurance, default, parameters, other) applied one at
    a time in a stated order on common random numbers, each with its paired SE; the steps add up to the total."""
    doc = app.attribute_to_folder(out_dir, first, second, portfolio_dir, years=years, seed=seed, chunk_size=chunk_size,
                                  metrics=metrics or None,
                                  order=None if order is None else [s.strip() for s in order.split(",") if s.strip()],
                                  overwrite=overwrite, plots=plots, progress=_progress(),
                                  command=outputs.command_line())
    _emit_json(doc)
    _echo(text.attribution_lines(doc))
    _echo([f"\nWrote {out_dir}/attribution.json" + (", attribution.png" if plots else "")])


@main.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--format", "table_set", type=click.Choice(["ord"]), default="ord", show_default=True,
              help="The tables to write: ord (year loss table and exceedance-probability table, ORD column names).")
@click.option("--table-format", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@_out(None, "Folder for the tables [default: RUN_DIR/ord].")
@_overwrite("Replace tables leisim wrote there before.")
def export(run_dir, table_set, table_format, out_dir, overwrite):
    """Write a finished run's loss tables (from its results.nc) for other tools: the year loss table (gross,
    ceded, net, per contract) and the exceedance-probability table (AEP and OEP with TVaR at the usual return
    periods). The dispute loss table needs the disputes: `leisim simulate --ord` writes all three."""
    folder, written = app.export_to_folder(run_dir, out_dir, fmt=table_format, overwrite=overwrite)
    _echo([f"Wrote {', '.join(str(p) for p in written)}"])


main.add_command(bench)


def _every_command(group: click.Group):
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _every_command(command)


for _command in (main, *_every_command(main)):
    _verbosity(_command)


if __name__ == "__main__":
    main()
