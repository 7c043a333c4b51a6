"""The Python API (``import leisim``): the same run as the command line, as objects."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import leisim
from leisim.cli import main

# The baseline at chunk size 1000 compiles the same kernel as test_cli and the engine's chunk test.
YEARS, CHUNK, SEED = 3000, 1000, 5
README = Path(__file__).resolve().parents[1] / "README.md"


def _without_stamp(summary: dict) -> dict:
    """A summary without what says when and how it was asked for (the time, the command line)."""
    doc = json.loads(json.dumps(summary))
    doc["provenance"].pop("created")
    doc["provenance"].pop("command")
    return doc


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "cli"
    result = CliRunner().invoke(main, ["simulate", "--years", str(YEARS), "--chunk-size", str(CHUNK), "--seed",
                                       str(SEED), "--out", str(out), "--no-plots"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = leisim.simulate("baseline", years=YEARS, chunk_size=CHUNK, seed=SEED)
    return out, run


def test_summary_is_the_clis_summary_json_bit_for_bit(pair):
    out, run = pair
    written = json.loads((out / "summary.json").read_text())
    # Through the same JSON writer, every number is the same double (json round-trips floats exactly).
    assert _without_stamp(json.loads(leisim.app.json_text(run.summary))) == _without_stamp(written)
    assert run.summary["provenance"]["command"].startswith("leisim simulate --scenario baseline")


def test_dataset_is_results_nc(pair):
    out, run = pair
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as stored:
        stored = stored.load()
    # Compressed (shuffle + deflate), chunked by the run's chunks of years.
    assert stored["gross"].encoding["zlib"] and stored["gross"].encoding["shuffle"]
    assert stored["gross"].encoding["chunksizes"] == (CHUNK,)
    ours = run.dataset
    assert set(ours.variables) == set(stored.variables)
    for name in stored.variables:
        assert ours[name].dims == stored[name].dims, name
        assert ours[name].dtype == stored[name].dtype or ours[name].dtype.kind == stored[name].dtype.kind == "O", name
        np.testing.assert_array_equal(ours[name].values, stored[name].values, err_msg=name)
        assert ours[name].attrs == stored[name].attrs, name
    assert {k: v for k, v in ours.attrs.items() if k not in ("created", "command")} == \
           {k: v for k, v in stored.attrs.items() if k not in ("created", "command")}


def test_the_typed_summary_reads_the_document_and_the_per_year_values(pair):
    out, run = pair
    s = run.summary
    assert isinstance(s, leisim.Summary) and isinstance(s, dict)
    loaded = leisim.Summary.load(out / "summary.json")
    assert _without_stamp(loaded.to_dict()) == _without_stamp(json.loads(leisim.app.json_text(s)))
    plain = s.to_dict()
    assert type(plain) is dict and plain == s
    plain["net"]["var"]["0.995"] = -1.0  # a copy: editing it leaves the run's summary alone
    assert s["net"]["var"]["0.995"] != -1.0
    # The views are the document's figures, and those are the per-year values' (computed here
    # another way: numpy's lower quantile and the mean of the years at or above it).
    net = np.sort(run.dataset["net"].values)
    n = net.size
    k = (995 * n + 999) // 1000 - 1  # lower empirical quantile: the smallest x with F_n(x) >= 0.995 (exact integers)
    assert s.net.var[0.995] == s["net"]["var"]["0.995"] == pytest.approx(net[k], rel=1e-12)
    assert s.net.mean == pytest.approx(net.mean(), rel=1e-12)
    assert s.net.se_mean == pytest.approx(net.std(ddof=1) / np.sqrt(n), rel=1e-6)
    assert s.gross.tvar[0.99] == s["gross"]["tvar"]["0.99"] and s.years == YEARS and s.seed == SEED
    capital = s.capital
    assert capital.required == s["capital"]["required"] and capital.solvency_ratio == s["capital"]["solvency_ratio"]
    assert capital.solvency_ratio == pytest.approx(capital.available / capital.required)
    assert capital.meets_comprehensive == (capital.solvency_ratio >= 1.0)
    with pytest.raises(leisim.InputError, match="basis"):
        s.measures("nett")


def test_the_capital_view_of_a_run_without_own_funds():
    from leisim.simulator import capital
    from leisim.summary import CapitalFigures

    # No [capital] available_cny: no ratio, no exhaustion probability, still an SCR.
    figures = CapitalFigures.of(capital.assess(np.arange(10.0), available=None, income=3.0))
    assert figures.available is None and figures.solvency_ratio is None and figures.exhaustion_probability is None
    assert figures.required > 0 and figures.meets_comprehensive is None


def test_a_file_that_is_not_a_summary_is_refused_by_name(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text('{"scenario": "x"}')
    with pytest.raises(leisim.InputError, match="summary.json"):
        leisim.Summary.load(bad)
    bad.write_text("{not json")
    with pytest.raises(leisim.InputError, match=re.escape(str(bad))):
        leisim.Summary.load(bad)


def test_save_writes_the_clis_outputs_and_keeps_other_files(pair, tmp_path):
    out, run = pair
    target = run.save(tmp_path / "saved", plots=False)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in out.iterdir())
    assert _without_stamp(json.loads((target / "summary.json").read_text())) == \
           _without_stamp(json.loads((out / "summary.json").read_text()))
    with pytest.raises(leisim.InputError, match="overwrite"):
        run.save(target, plots=False)
    run.save(target, plots=False, overwrite=True)  # leisim wrote it: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(leisim.InputError, match="did not write"):
        run.save(mine, plots=False, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_inputs_as_objects_paths_and_names_give_the_same_years(pair):
    _, run = pair
    scenario = leisim.load_scenario("baseline")
    portfolio = leisim.load_portfolio(None)
    again = leisim.simulate(scenario, portfolio=portfolio, years=YEARS, chunk_size=CHUNK, seed=SEED,
                            compare_point_estimate=False)
    np.testing.assert_array_equal(again.dataset["gross"].values, run.dataset["gross"].values)
    assert "parameter_uncertainty" in run.summary and "var_0.995_point_estimate" not in again.summary.get(
        "parameter_uncertainty", {})


def test_bad_input_is_an_input_error_and_nothing_prints(capsys):
    with pytest.raises(leisim.InputError, match="no_such_scenario"):
        leisim.simulate("no_such_scenario", years=10)
    with pytest.raises(leisim.InputError):
        leisim.load_portfolio("/nonexistent/book")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_warnings_are_python_warnings(tmp_path):
    toml = tmp_path / "odd.toml"
    toml.write_text('name = "odd"\nextends = "baseline"\n[shocks]\nexposure_by_sector = { NoSuchSector = 2.0 }\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = leisim.app.prepare(leisim.load_scenario(toml), leisim.load_portfolio(None), years=10,
                                 compare_point_estimate=False)
    assert job.years == 10
    assert any(issubclass(w.category, leisim.LeisimWarning) and "NoSuchSector" in str(w.message) for w in caught)


def test_run_spec_round_trips_through_the_manifest(tmp_path):
    spec = leisim.RunSpec(scenario_ref="baseline", years=10, seed=3, compare=("none",), out_dir=str(tmp_path))
    doc = json.loads(json.dumps(spec.to_manifest()))
    assert doc["spec_version"] == leisim.RunSpec.VERSION
    assert leisim.RunSpec.from_manifest(doc, "manifest.json") == spec
    with pytest.raises(leisim.InputError, match="version"):
        leisim.RunSpec.from_manifest(doc | {"spec_version": 99}, "manifest.json")
    with pytest.raises(leisim.InputError, match="lacks years"):
        leisim.RunSpec.from_manifest({k: v for k, v in doc.items() if k != "years"}, "manifest.json")


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch):
    # The README's API example as written, with fewer years (the same kernels as the tests above).
    code = _readme_example().replace("years=20_000", f"years={YEARS}, chunk_size={CHUNK}")
    assert code.count(f"years={YEARS}") >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert (tmp_path / "results" / "api-baseline" / "summary.json").is_file()
    assert list(namespace["table"].index)[0] == "baseline"


def test_scenario_variants_are_validated_and_leave_the_original_alone():
    base = leisim.load_scenario("baseline")
    before = json.dumps(base.raw, sort_keys=True)
    surge = base.updated({"shocks": {"frequency": {"US": 1.5}}}, name="us x1.5")
    assert surge.name == "us x1.5" and surge.shocks["frequency"]["US"] == 1.5
    assert surge.sha256 != base.sha256 and json.dumps(base.raw, sort_keys=True) == before
    # Tables merge key by key: the other shocks and the model stay.
    assert surge.raw["model"] == base.raw["model"]
    with pytest.raises(leisim.InputError, match="shocks.frequency"):
        base.updated({"shocks": {"frequency": {"US": -1.0}}})


@pytest.mark.parametrize("arguments", [{"years": 0}, {"years": -5}, {"years": 1.5}, {"years": True},
                                       {"seed": -1}, {"seed": 2**70}, {"chunk_size": 0}, {"devices": 0}])
def test_out_of_range_arguments_are_refused_by_name(arguments):
    (name, value), = arguments.items()
    with pytest.raises(leisim.InputError, match=name):
        leisim.simulate("baseline", **arguments)


def test_a_run_too_large_for_memory_is_refused_before_simulating(monkeypatch):
    from leisim.scenarios import compose

    job = leisim.app.prepare(leisim.load_scenario("calibrated_fixed"), leisim.load_portfolio(None), years=10**9)
    monkeypatch.setattr(compose, "available_memory", lambda: 8e9)  # an 8 GB machine: 10^9 years do not fit
    with pytest.raises(leisim.InputError, match="held in memory"):
        leisim.app.check_resources(job, out_dir=None, devices=1)
    leisim.app.check_resources(leisim.app.prepare(job.scenario, job.portfolio, years=10_000), out_dir=None, devices=1)


@pytest.mark.parametrize("arguments", [{"scenario": 123}, {"portfolio": 4.5}, {"compare": [7]}])
def test_inputs_of_the_wrong_kind_are_refused_by_name(arguments):
    (name, _), = arguments.items()
    with pytest.raises(leisim.InputError, match=name):
        leisim.simulate(**({"scenario": "baseline"} | arguments), years=10)
