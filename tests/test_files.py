"""Nothing lost, nothing mixed: output folders, inputs, locks, posteriors, file modes (issue 16).

Each refusal must be exit status 2 with an "Error:" naming the file or option, before anything
is written, and leave the user's files exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from leisim import cli
from leisim.cli import main
from leisim.data.generate import default_portfolio_dir
from leisim.models.posterior import default_posterior_path

# Cheap runs: the fixed scenario (one small kernel) unless the posterior is what is tested.
FIXED = ["--scenario", "calibrated_fixed", "--years", "500", "--chunk-size", "500", "--no-plots"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


@pytest.fixture
def portfolio(tmp_path):
    folder = tmp_path / "book"
    shutil.copytree(default_portfolio_dir(), folder, ignore=shutil.ignore_patterns("history", "*.nc", "checks.*"))
    return folder


def test_overwrite_never_replaces_a_folder_that_holds_an_input(portfolio, tmp_path):
    before = snapshot(portfolio)
    refused(run("simulate", *FIXED, "--portfolio", str(portfolio), "--out", str(portfolio), "--overwrite"),
            "input of this run")
    refused(run("simulate", *FIXED, "--portfolio", str(portfolio / "."), "--out", str(tmp_path), "--overwrite"),
            "input of this run")  # a parent of the input
    refused(run("data", "history", "--portfolio", str(portfolio), "--out", str(portfolio), "--overwrite"),
            "input of this run")
    assert snapshot(portfolio) == before


def test_overwrite_replaces_only_folders_leisim_wrote(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "budget.xlsx").write_bytes(b"the user's own file")
    for args in (["simulate", *FIXED], ["data", "generate"], ["stress", "--scenarios", "legal_cost_inflation"]):
        refused(run(*args, "--out", str(mine), "--overwrite"), "did not write", str(mine))
    assert snapshot(mine) == {"budget.xlsx": b"the user's own file"}
    # A folder leisim wrote is replaced with --overwrite (and carries its marker).
    out = tmp_path / "run"
    assert run("simulate", *FIXED, "--out", str(out)).exit_code == 0
    marker = json.loads((out / cli.OUTPUT_MARKER).read_text())
    assert marker["written_by"] == "leisim" and marker["kind"] == "simulate"
    assert run("simulate", *FIXED, "--seed", "3", "--out", str(out), "--overwrite").exit_code == 0
    assert json.loads((out / "summary.json").read_text())["seed"] == 3


def test_stress_does_not_replace_a_simulate_run_without_overwrite(tmp_path):
    out = tmp_path / "stress"
    assert run("simulate", *FIXED, "--out", str(out)).exit_code == 0
    before = snapshot(out)
    refused(run("stress", "--scenarios", "legal_cost_inflation", "--years", "500", "--out", str(out)), "--overwrite")
    assert snapshot(out) == before


def test_unusual_output_places_are_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    refused(run("simulate", *FIXED, "--out", ".", "--overwrite"), "working folder")
    refused(run("simulate", *FIXED, "--out", str(tmp_path.parent), "--overwrite"), "working folder")
    (tmp_path / "afile").write_text("x")
    refused(run("simulate", *FIXED, "--out", "afile/run"), "writable")
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    refused(run("simulate", *FIXED, "--out", "link"), "symbolic link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "keep.txt", "link", "target"]
    assert list(target.iterdir()) == []


def test_a_second_writer_of_one_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    lock = cli._lock_output(out)  # another run holds the folder
    try:
        refused(run("simulate", *FIXED, "--out", str(out)), "another leisim run", f"pid {os.getpid()}")
        assert not out.exists()
    finally:
        cli._release(lock)
    assert run("simulate", *FIXED, "--out", str(out)).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock file left


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: p["sigma"].values.__setitem__((0, 5, 1), np.nan), "sigma must be finite"),
    (lambda p: p["sigma"].values.__setitem__((1, 7, 0), -1.0), "sigma must be > 0"),
    (lambda p: p["sigma"].values.__setitem__((0, 0, 2), 30.0), "sigma must be <= 5"),
    (lambda p: p["stage_log_probability"].values.__setitem__((0, 3, 0, 0, 0), np.log(4.0)), "stage_log_probability"),
    (lambda p: p["win_probability"].values.__setitem__((0, 9, 2), 1.5), "win_probability must be <= 1"),
])
def test_a_damaged_posterior_is_refused_naming_the_variable_and_draw(tmp_path, damage, fragment):
    tree = xr.open_datatree(default_posterior_path(), engine="h5netcdf").load()
    posterior = tree["posterior"].to_dataset()
    damage(posterior)
    tree["posterior"] = xr.DataTree(posterior)
    path = tmp_path / "bad.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\nextends = "baseline"\n[model]\nposterior = "bad.nc"\n')  # beside the scenario
    out = tmp_path / "run"
    refused(run("simulate", "--scenario", str(scenario), "--years", "200", "--out", str(out)), "bad.nc", fragment,
            "chain", "draw")
    assert not out.exists()


def test_a_relative_posterior_is_taken_from_the_scenario_folder(tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(default_posterior_path(), folder / "fit.nc")
    (folder / "s.toml").write_text('name = "s"\nextends = "baseline"\n[model]\nposterior = "fit.nc"\n')
    monkeypatch.chdir(tmp_path)  # not the scenario's folder
    result = run("scenarios", "show", str(folder / "s.toml"))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert json.loads(text[text.index("{"):text.rindex("}") + 1])["model"]["posterior"] == str((folder / "fit.nc").resolve())
    (folder / "t.toml").write_text('name = "t"\nextends = "baseline"\n[model]\nposterior = "missing.nc"\n')
    refused(run("scenarios", "validate", str(folder / "t.toml")), "model.posterior", "file not found")


def test_generated_files_are_readable_by_colleagues(tmp_path):
    old = os.umask(0o022)
    try:
        assert run("data", "generate", "--out", str(tmp_path / "book")).exit_code == 0
    finally:
        os.umask(old)
    for name in ("policies.csv", "exposures.csv"):
        assert (tmp_path / "book" / name).stat().st_mode & 0o777 == 0o644
