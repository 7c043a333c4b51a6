"""The ``leisim`` command line: the only place that reads and writes files, sets JAX options and prints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import click

from .errors import InputError


class _Group(click.Group):
    """Bad input is an InputError: show its message and exit 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)


def _setup_jax() -> None:
    from .simulator.driver import host_device_flags

    # One host device per core, so that the simulated years use every core (set before JAX
    # starts its backends; an explicit XLA_FLAGS device count is respected).
    os.environ["XLA_FLAGS"] = host_device_flags()
    import jax

    # Sample in float32, accumulate in float64 (STYLE.md rule 12): float64 must be available.
    jax.config.update("jax_enable_x64", True)


@contextlib.contextmanager
def atomic_directory(target: Path):
    """Yield a temporary directory beside ``target`` and move it into place only on success.

    An interrupted run leaves ``target`` as it was (the previous complete run, or nothing).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    cap = summary["capital"]
    ratio = cap["solvency_ratio"]
    click.echo(f"{'required capital':22}{_fmt(cap['required']):>17} ± {_fmt(cap['se']['required'], digits=3):<6}")
    click.echo(f"{'available capital':22}{_fmt(cap['available']):>17}")
    click.echo(f"{'solvency ratio':22}{'-' if ratio is None else f'{ratio:.0%}':>17}")
    d = summary["disputes"]
    click.echo(f"{'disputes per year':22}{d['mean_per_year']:>17.2f}  (expected {d['expected_per_year']:.2f}, "
               f"max {d['max_per_year']})")
    if not summary["reinsurance"]["applied"] and summary["reinsurance"]["contracts_in_scenario"]:
        click.echo(f"Note: the scenario lists {summary['reinsurance']['contracts_in_scenario']} reinsurance "
                   "contract(s); they are not applied yet, so net equals gross.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leisim")
def main() -> None:
    """leisim: Monte Carlo risk simulator for legal-expenses insurance of overseas IP disputes."""


@main.command()
@click.option("--scenario", "scenario_ref", default="baseline", show_default=True,
              help="A library scenario name (see `leisim scenarios list`) or a path to a .toml file.")
@click.option("--portfolio", "portfolio_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with policies.csv and exposures.csv [default: the embedded pilot portfolio].")
@click.option("--years", type=click.IntRange(min=1), default=None, help="Simulated years [default: the scenario's].")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed [default: the scenario's].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: results/<scenario>/].")
@click.option("--chunk-size", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Years per kernel call: changes memory use and speed, never the results.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures.")
def simulate(scenario_ref, portfolio_dir, years, seed, out_dir, chunk_size, plots):
    """Simulate annual payouts and write summary.json, results.nc and figures."""
    from .data.generate import default_portfolio_dir
    from .scenarios.compose import compose
    from .scenarios.portfolio import load_portfolio
    from .scenarios.schema import load_scenario

    _setup_jax()
    import jax

    from .simulator import results
    from .simulator.driver import run_years

    scenario = load_scenario(scenario_ref)
    portfolio = load_portfolio(portfolio_dir or default_portfolio_dir())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composition = compose(scenario, portfolio)
    _show_warnings(caught)
    years = years or scenario.years
    seed = scenario.seed if seed is None else seed
    out_dir = out_dir or Path("results") / scenario.name

    with click.progressbar(length=years, label=f"Simulating {scenario.name}", file=sys.stderr,
                           show_pos=True, show_eta=True) as bar:
        table = run_years(jax.random.key(seed), composition.params, composition.shape,
                          years=years, chunk_size=chunk_size, progress=bar.update)

    gross_by_country = results.by_country(table, composition.group_country, composition.countries)
    attrs = results.provenance(scenario_name=scenario.name, scenario_sha256=scenario.sha256, seed=seed,
                               years=years, command=" ".join(["leisim"] + sys.argv[1:]))
    summary = results.summarize(
        table, countries=composition.countries, gross_by_country=gross_by_country,
        premium_cny=composition.premium_cny, capital_available_cny=scenario.capital_available_cny,
        expected_disputes=composition.expected_disputes,
        n_reinsurance_contracts=len(scenario.reinsurance), provenance_attrs=attrs,
    )
    dataset = results.to_dataset(table, countries=composition.countries,
                                 gross_by_country=gross_by_country, provenance_attrs=attrs)
    with atomic_directory(out_dir) as staging:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        dataset.to_netcdf(staging / "results.nc")
        if plots:
            from . import plots as figures

            figures.write_all(table.gross, summary, staging)
    _print_summary(summary)
    click.echo(f"\nWrote {out_dir}/summary.json, results.nc" + (" and figures" if plots else ""))


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


@main.group()
def data() -> None:
    """The embedded synthetic data."""


@data.command("generate")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--policies", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("portfolio"), show_default=True)
def data_generate(seed, policies, out_dir):
    """Write a synthetic pilot portfolio (policies.csv, exposures.csv); seed 0 is the embedded default."""
    from .data.generate import write_portfolio

    write_portfolio(out_dir, seed=seed, n_policies=policies)
    click.echo(f"Wrote {out_dir}/policies.csv and {out_dir}/exposures.csv ({policies} policies, seed {seed})")


if __name__ == "__main__":
    main()
