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
from helpers import interrupt_after_chunks

from leisim import outputs
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
    marker = json.loads((out / outputs.OUTPUT_MARKER).read_text())
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
    lock = outputs.lock_output(out)  # another run holds the folder
    try:
        refused(run("simulate", *FIXED, "--out", str(out)), "another leisim run", f"pid {os.getpid()}")
        assert not out.exists()
    finally:
        outputs.release(lock)
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


def test_a_damaged_or_foreign_checkpoint_chunk_is_simulated_again_and_named(tmp_path, monkeypatch):
    out = tmp_path / "run"
    reference = tmp_path / "reference"
    args = ["simulate", *FIXED[:2], "--years", "2000", "--chunk-size", "500", "--no-plots"]
    assert run(*args, "--out", str(reference)).exit_code == 0
    restore = interrupt_after_chunks(monkeypatch, 3)
    assert CliRunner().invoke(main, [*args, "--out", str(out)]).exit_code == 130
    restore()
    checkpoint = out / ".checkpoint"
    first, second = checkpoint / "main-000000000000.npz", checkpoint / "main-000000000500.npz"
    first.write_bytes(first.read_bytes()[:-40])  # truncated
    seal = json.loads((checkpoint / "main-000000001000.npz.seal").read_text())
    seal["fingerprint"] = "0" * 64  # from another run
    (checkpoint / "main-000000001000.npz.seal").write_text(json.dumps(seal))
    (second.with_name(second.name + ".seal")).unlink()  # killed before its seal
    moved = tmp_path / "moved"
    out.rename(moved)  # --resume finishes the folder it is given
    result = run("simulate", "--resume", str(moved))
    assert result.exit_code == 0, result.output
    for fragment in ("main-000000000000.npz: damaged", "main-000000000500.npz: no seal",
                     "main-000000001000.npz: written by another run"):
        assert fragment in result.output
    a, b = (json.loads((d / "summary.json").read_text()) for d in (reference, moved))
    for key in ("gross", "net", "capital"):
        assert a[key] == b[key], key
    assert not out.exists()


def _book(tmp_path: Path, *, policies: str | None = None, exposures: str | None = None) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(default_portfolio_dir(), folder, ignore=shutil.ignore_patterns("history", "*.nc", "checks.*"))
    if policies is not None:
        (folder / "policies.csv").write_text(policies)
    if exposures is not None:
        (folder / "exposures.csv").write_text(exposures)
    return folder


POLICY_HEADER = "policy_id,sector,premium_cny,deductible_cny,coinsurance,limit_per_dispute_cny,aggregate_limit_cny"


@pytest.mark.parametrize("policies, exposures, fragment", [
    (None, "policy_id,country,exposure,exposure\nBJ2024-0001,US,2.5,900000\n", "more than once"),
    (None, "policy_id,country,Exposure\nBJ2024-0001,US,2.5\n", "did you mean 'exposure'"),
    (POLICY_HEADER + ",subsidy_shares\nP1,machinery,1000,0,0.1,1000000,1000000,0.8\n", None, "did you mean 'subsidy_share'"),
    (POLICY_HEADER + "\nP1,machinery,1_000,0,0.1,1000000,1000000\n", None, "thousands separators"),
    (POLICY_HEADER + "\nP1,machinery,1000,0,0_1,1000000,1000000\n", None, "thousands separators"),
    (None, "policy_id,country,exposure\nBJ2024-0001,us,2.5\n", "did you mean 'US'"),
    (None, "policy_id,country,exposure\nBJ2024-0001,UK,2.5\n", "did you mean 'GB'"),
    (None, "policy_id;country;exposure\nBJ2024-0001;US;2.5\n", "semicolon-separated"),
    (None, "policy_id\tcountry\texposure\nBJ2024-0001\tUS\t2.5\n", "tab-separated"),
])
def test_ambiguous_csv_files_are_refused_with_a_hint(tmp_path, policies, exposures, fragment):
    folder = _book(tmp_path, policies=policies, exposures=exposures)
    before = snapshot(folder)
    refused(run("data", "validate", "--portfolio", str(folder)), fragment)
    assert snapshot(folder) == before


def test_a_utf16_file_gets_a_hint(tmp_path):
    folder = _book(tmp_path)
    (folder / "exposures.csv").write_bytes("policy_id,country,exposure\nBJ2024-0001,US,2.5\n".encode("utf-16"))
    refused(run("data", "validate", "--portfolio", str(folder)), "UTF-16")


def test_history_duplicates_and_an_empty_history_are_refused(tmp_path):
    from leisim.models.history import default_history_dir

    history = tmp_path / "history"
    shutil.copytree(default_history_dir(), history)
    lines = (history / "exposures.csv").read_text().splitlines()
    (history / "exposures.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    refused(run("data", "validate", "--history", str(history)), "duplicate (policy_id, year, country, dispute_type)")
    header, *rows = lines
    column = header.split(",").index("disputes")
    zeroed = [",".join(f if i != column else "0" for i, f in enumerate(r.split(","))) for r in rows]
    (history / "exposures.csv").write_text("\n".join([header, *zeroed]) + "\n")
    (history / "disputes.csv").write_text((default_history_dir() / "disputes.csv").read_text().splitlines()[0] + "\n")
    (history / "campaigns.csv").write_text((default_history_dir() / "campaigns.csv").read_text().splitlines()[0] + "\n")
    out = tmp_path / "posterior.nc"
    refused(run("fit", "--history", str(history), "--out", str(out)), "no dispute")
    assert not out.exists()


@pytest.mark.parametrize("text", [
    'name = "x"\na = ' + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
    'name = "x"\n[' + ".".join(["a"] * 3000) + "]\nx = 1\n",
    'name = "x"\nz = ' + "[" * 3000 + "]" * 3000 + "\n",
])
def test_hostile_toml_nesting_is_refused(tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    refused(run("scenarios", "validate", str(path)), "deep.toml", "nested")


def test_a_symlink_loop_is_refused(tmp_path):
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    refused(run("scenarios", "validate", str(loop)), "loop.toml")
    child = tmp_path / "child.toml"
    child.write_text('name = "child"\nextends = "loop.toml"\n')
    refused(run("scenarios", "validate", str(child)), "loop.toml")


def test_scenario_amounts_have_an_upper_bound(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\nextends = "baseline"\n[capital]\navailable_cny = 1e20\n')
    refused(run("scenarios", "validate", str(path)), "capital.available_cny", "<= 1e+15")


def test_runs_that_cannot_fit_are_refused_before_they_start(tmp_path, monkeypatch):
    out = tmp_path / "run"
    refused(run("simulate", "--scenario", "calibrated_fixed", "--years", "10000000000", "--out", str(out)),
            "GB of disk", "--years")
    refused(run("simulate", "--scenario", "calibrated_fixed", "--years", "10000000", "--chunk-size", "10000000",
                "--out", str(out)), "GB of memory", "--chunk-size")
    from leisim.scenarios import compose

    monkeypatch.setattr(compose, "available_memory", lambda: 1e7)  # a machine with 10 MB free
    refused(run("simulate", "--years", "200", "--out", str(out)), "policy, cell) entries", "GB of memory")
    assert not out.exists() and list(tmp_path.iterdir()) == []
