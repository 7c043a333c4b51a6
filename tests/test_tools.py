"""What the rest of the risk stack reads (issue 19): ORD-style tables, CF attributes, --json, -q / -v,
--posterior, the shipped example files. Checked with pandas / pyarrow / xarray and against quantities
computed another way (NumPy's inverted-CDF quantile, sums of the year table)."""

from __future__ import annotations

import json
import shutil

import click
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from leisim.cli import main
from leisim.models.posterior import default_posterior_path

# The baseline at chunk size 1000 compiles the same kernel as tests/test_cli.py's runs.
SMALL = ["--years", "3000", "--chunk-size", "1000", "--no-plots"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def ord_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tools") / "baseline"
    result = run("simulate", *SMALL, "--out", str(out), "--ord", "--json", "-q")
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_json_is_the_summary_and_nothing_else(ord_run):
    out, result = ord_run
    printed = json.loads(result.stdout)  # the whole of standard output parses
    assert printed == json.loads((out / "summary.json").read_text())
    assert "Simulating" not in result.stderr  # -q: no progress bar


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_ept_aep_is_the_summary_var_and_an_independent_quantile(ord_run):
    out, _ = ord_run
    summary = json.loads((out / "summary.json").read_text())
    ept = pd.read_parquet(out / "ord" / "ept.parquet")
    ylt = pd.read_parquet(out / "ord" / "ylt.parquet")
    assert {"SummaryId", "EPCalc", "EPType", "ReturnPeriod", "Loss"} <= set(ept.columns)
    for perspective, summary_id, column in (("gross", 1, "GrossLoss"), ("net", 2, "NetLoss")):
        aep = ept[(ept.SummaryId == summary_id) & (ept.EPType == 3)].set_index("ReturnPeriod").Loss
        tvar = ept[(ept.SummaryId == summary_id) & (ept.EPType == 4)].set_index("ReturnPeriod").Loss
        assert aep[200.0] == summary[perspective]["var"]["0.995"]
        assert tvar[200.0] == pytest.approx(summary[perspective]["tvar"]["0.995"], rel=1e-12)
        # Independently: the lower empirical quantile (inf{x: F_n(x) >= p}) of the YLT's column, and the
        # mean of the worst 1/T of years (3,000 years: 1/T x 3,000 is a whole number of years at these T).
        values = np.sort(ylt[column].to_numpy())
        for period in (10.0, 100.0, 200.0):
            assert aep[period] == np.quantile(values, 1 - 1 / period, method="inverted_cdf")
            tail = int(round(values.size / period))
            assert tvar[period] == pytest.approx(values[-tail:].mean(), rel=1e-12)
        assert (aep.sort_index().diff().dropna() >= 0).all()  # non-decreasing in the return period
    oep = ept[(ept.SummaryId == 1) & (ept.EPType == 1)].set_index("ReturnPeriod").Loss
    assert oep[100.0] == np.quantile(ylt.MaxDisputeLoss.to_numpy(), 0.99, method="inverted_cdf")


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_ylt_adds_up_to_the_summary(ord_run):
    out, _ = ord_run
    summary = json.loads((out / "summary.json").read_text())
    ylt = pd.read_parquet(out / "ord" / "ylt.parquet")
    assert len(ylt) == 3000 and ylt.Period.tolist() == list(range(1, 3001))
    assert (ylt.GrossLoss * ylt.PeriodWeight).sum() == pytest.approx(summary["gross"]["mean"], rel=1e-12)
    assert ylt.NetLoss.mean() == pytest.approx(summary["net"]["mean"], rel=1e-12)
    ceded = ylt[[c for c in ylt.columns if c.startswith("CededLoss[")]].sum(axis=1)
    assert ceded.to_numpy() == pytest.approx(ylt.CededLoss.to_numpy(), rel=1e-9, abs=1e-3)
    assert np.allclose(ylt.GrossLoss - ylt.CededLoss, ylt.NetLoss, rtol=1e-9, atol=1e-3)


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_plt_adds_up_to_the_ylt(ord_run):
    out, _ = ord_run
    ylt = pd.read_parquet(out / "ord" / "ylt.parquet").set_index("Period")
    plt = pd.read_parquet(out / "ord" / "plt.parquet")
    assert {"Period", "EventId", "PolicyId", "Country", "DisputeType", "Stage", "GroundUpLoss", "GrossLoss",
            "CededLoss", "NetLoss"} <= set(plt.columns)
    by_period = plt.groupby("Period")[["GrossLoss", "NetLoss", "GroundUpLoss"]].sum().reindex(ylt.index, fill_value=0.0)
    assert np.allclose(by_period.GrossLoss, ylt.GrossLoss, rtol=1e-9, atol=1e-2)
    assert np.allclose(by_period.NetLoss, ylt.NetLoss, rtol=1e-9, atol=1e-2)
    assert np.allclose(by_period.GroundUpLoss, ylt.GroundUpLoss, rtol=1e-6, atol=1.0)
    counts = plt.groupby("Period").size().reindex(ylt.index, fill_value=0)
    assert (counts.to_numpy() == ylt.Disputes.to_numpy()).all()
    # MaxDisputeLoss is the largest payment before a policy's annual aggregate cuts its disputes pro rata
    # (summary.json's OEP); the PLT's GrossLoss is after that cut: equal where no aggregate binds, never above.
    largest = plt.groupby("Period").GrossLoss.max().reindex(ylt.index, fill_value=0.0)
    assert (largest <= ylt.MaxDisputeLoss * (1 + 1e-9)).all()
    assert np.isclose(largest, ylt.MaxDisputeLoss, rtol=1e-6).mean() > 0.8
    # Campaign disputes share their event; an ordinary dispute is an event of its own.
    ordinary = plt[~plt.Campaign]
    assert not ordinary.duplicated(["Period", "EventId"]).any()
    assert plt.Campaign.any()
    # Net OEP (from the dispute table) is in the EPT.
    ept = pd.read_parquet(out / "ord" / "ept.parquet")
    net_oep = ept[(ept.SummaryId == 2) & (ept.EPType == 1)].set_index("ReturnPeriod").Loss
    net_largest = plt.groupby("Period").NetLoss.max().reindex(ylt.index, fill_value=0.0).to_numpy()
    assert net_oep[100.0] == pytest.approx(np.quantile(net_largest, 0.99, method="inverted_cdf"), rel=1e-12)


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_results_nc_is_cf_conformant(ord_run):
    out, _ = ord_run
    with xr.open_dataset(out / "results.nc") as ds:
        assert ds.attrs["Conventions"].startswith("CF-")
        for name in list(ds.data_vars) + list(ds.coords):
            assert "units" in ds[name].attrs and "long_name" in ds[name].attrs, name
        assert "sample index" in ds["year"].attrs["long_name"] and "not a calendar year" in ds["year"].attrs["long_name"]
        assert ds["gross"].encoding.get("zlib") or ds["gross"].encoding.get("compression") == "gzip"
        assert ds["gross"].encoding.get("shuffle")
        assert ds["gross"].encoding.get("chunksizes") == (1000,)  # chunked by the run's chunks of years
        for value in ds.attrs.values():
            assert not isinstance(value, (bool, np.bool_))


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_export_writes_the_same_tables_and_refuses_what_it_did_not_write(ord_run, tmp_path):
    out, _ = ord_run
    csv_dir = tmp_path / "csv"
    result = run("export", str(out), "--table-format", "csv", "--out", str(csv_dir))
    assert result.exit_code == 0, result.output
    # The export reads results.nc alone: every row but the net OEP (which needs the disputes) as --ord wrote it.
    exported_ept = pd.read_csv(csv_dir / "ept.csv")
    written = pd.read_parquet(out / "ord" / "ept.parquet")
    both = exported_ept.merge(written, on=["SummaryId", "EPType", "ReturnPeriod"], suffixes=("", "_ord"))
    assert len(both) == len(exported_ept) and np.array_equal(both.Loss.to_numpy(), both.Loss_ord.to_numpy())
    assert not ((exported_ept.SummaryId == 2) & (exported_ept.EPType <= 2)).any()
    exported = pd.read_csv(csv_dir / "ylt.csv")
    assert np.array_equal(exported.GrossLoss.to_numpy(), pd.read_parquet(out / "ord" / "ylt.parquet").GrossLoss.to_numpy())
    again = run("export", str(out), "--out", str(csv_dir))
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = run("export", str(out), "--out", str(mine), "--overwrite")
    assert refused.exit_code == 2 and (mine / "notes.txt").read_text() == "keep me"
    missing = run("export", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "results.nc" in missing.stderr


def test_every_command_takes_quiet_and_verbose():
    def commands(group, path=()):
        for name, command in group.commands.items():
            yield (*path, name), command
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))

    for path, command in commands(main):
        names = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"-q", "--quiet", "-v", "--verbose"} <= names, path
    for name in ("simulate", "stress", "fit", "report"):
        assert "--json" in {o for p in main.commands[name].params for o in getattr(p, "opts", [])}


def test_quiet_validate_says_nothing_and_errors_still_show(tmp_path):
    quiet = run("scenarios", "validate", "baseline", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == ""
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nextends = "baseline"\n[shocks]\nseverity = 2\n')
    failed = run("-q", "scenarios", "validate", str(bad))
    assert failed.exit_code == 2 and "shocks.severity" in failed.stderr


def test_posterior_option(tmp_path):
    fixed = run("simulate", "--scenario", "calibrated_fixed", "--posterior", str(default_posterior_path()),
                "--years", "10", "--out", str(tmp_path / "f"))
    assert fixed.exit_code == 2 and "--posterior" in fixed.stderr and not (tmp_path / "f").exists()
    missing = run("simulate", "--posterior", str(tmp_path / "none.nc"), "--out", str(tmp_path / "m"))
    assert missing.exit_code == 2 and not (tmp_path / "m").exists()
    copy = tmp_path / "my_fit.nc"
    shutil.copy(default_posterior_path(), copy)
    out = tmp_path / "p"
    result = run("simulate", *SMALL, "--posterior", str(copy), "--out", str(out), "--json", "-q",
                 "--no-compare-point-estimate")
    assert result.exit_code == 0, result.output
    provenance = json.loads(result.stdout)["provenance"]
    assert provenance["posterior"] == str(copy.resolve())


@pytest.mark.slow  # the --ord run re-simulates its disputes: a second kernel to compile
def test_summary_carries_drift_and_the_ifrs17_risk_adjustment(ord_run):
    """Issue 20 items 4-5 in summary.json: the ratio to the factor charge recomputed from the summary's own
    blocks; the risk adjustment at 75% recomputed from the YLT-independent run-off is in reserving's tests."""
    out, _ = ord_run
    summary = json.loads((out / "summary.json").read_text())
    drift, result = summary["drift"], summary["capital"]["result"]
    volume = result["premium_earned"] - result["reinsurance_premiums_net_of_commissions"]
    assert drift["factor"]["premium"] == pytest.approx(3 * 0.083 * volume)
    assert drift["ratio"]["premium"] == pytest.approx(summary["capital"]["required"] / (3 * 0.083 * volume))
    ra = summary["reserves"]["risk_adjustment"]
    assert ra["confidence_level"] == 0.75 and ra["at_confidence"] > 0
    assert ra["at_confidence"] == pytest.approx(summary["reserves"]["reserve_for_adequacy"]["0.75"]
                                                - summary["reserves"]["expected_outstanding"], rel=1e-12)
    assert 0.5 < ra["cost_of_capital"]["equivalent_confidence_level"] < 1.0
