"""`leisim bench`: its options (the command line registers it; the work is kernel.py and posterior.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ..outputs import command_line
from ..scenarios.schema import MAX_YEARS

YEARS = click.IntRange(1, MAX_YEARS)


@click.command()
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
@click.option("--posterior-policies", "posterior_list", type=click.IntRange(min=1), multiple=True,
              help="Book sizes of the posterior-baseline scan, what `leisim simulate` runs (repeat) "
                   "[default: 300, 3,000, 30,000]; beside it the plain NumPy reference model.")
@click.option("--posterior/--no-posterior", default=True, show_default=True, help="Run the posterior-baseline scan.")
@click.option("--posterior-years", type=YEARS, default=20_000, show_default=True)
@click.option("--reference-years", type=click.IntRange(min=0), default=5_000, show_default=True,
              help="Years of the reference model per book (0: do not run it).")
@click.option("--reference-max-policies", type=click.IntRange(min=0), default=3_000, show_default=True,
              help="Run the reference model on books up to this size (it is plain and slow on purpose).")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=Path("benchmarks/out/bench.json"),
              show_default=True, help="JSON output; the plot goes beside it (.png).")
def bench(years_list, policies_list, posterior_list, posterior, out_file, **options):
    """Time the kernel: the fixed reference workload (disputes/s and years/s by years, policies and
    devices, compile time, the NumPy baseline, the random-number floor) and the posterior baseline
    by book size beside the reference model, in one run."""
    from ..runtime import setup_jax
    from . import kernel as bench_mod

    setup_jax()
    bench_mod.command(out_file, years=list(years_list or (10_000, 100_000, 1_000_000)),
                      policies=list(policies_list or (300, 3_000, 30_000)), progress=click.echo,
                      posterior_policies=list(posterior_list or (300, 3_000, 30_000)) if posterior else [],
                      command=command_line(), **options)
    click.echo(f"Wrote {out_file} and {out_file.with_suffix('.png')}")
