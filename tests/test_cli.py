"""The leisim command line, run in-process (it shares compiled kernels with the other tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from leisim.cli import main
from leisim.data.generate import default_portfolio_dir

# The baseline at chunk size 1000 compiles the same kernel as the engine's chunk test.
SMALL = ["--years", "3000", "--chunk-size", "1000"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "baseline"
    result = run("simulate", *SMALL, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.slow
def test_simulate_writes_the_contract_files(baseline_run):
    out, result = baseline_run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "seed", "years", "currency", "premium", "gross", "ceded", "net", "capital", "reserves"):
        assert key in summary
    for part in ("gross", "ceded", "net"):
        block = summary[part]
        assert set(block) >= {"mean", "std", "var", "tvar", "se"}
        assert set(block["var"]) == set(block["tvar"]) == {"0.9", "0.99", "0.995", "0.999"}
        assert "0.995" in block["se"]["var"] and "0.99" in block["se"]["tvar"]
    assert set(summary["capital"]) >= {"required", "available", "solvency_ratio"}
    assert summary["years"] == 3000 and summary["currency"] == "CNY" and summary["scenario"] == "baseline"

    with xr.open_dataset(out / "results.nc") as ds:
        assert ds["gross"].dims == ds["ceded"].dims == ds["net"].dims == ("year",)
        assert ds["gross_by_country"].dims == ("year", "country")
        assert ds.sizes["year"] == 3000
        assert float(ds["gross"].mean()) == pytest.approx(summary["gross"]["mean"], rel=1e-12)
        assert float(ds["gross_by_country"].sum("country").mean()) == pytest.approx(summary["gross"]["mean"], rel=1e-9)
        for attr in ("scenario", "scenario_sha256", "seed", "leisim_version", "jax_version", "numpyro_version", "device"):
            assert attr in ds.attrs
    for figure in ("loss_distribution.png", "exceedance.png", "country_contributions.png"):
        assert (out / figure).stat().st_size > 10_000
    assert "VaR 0.995" in result.output and "solvency ratio" in result.output
    # The baseline is posterior-driven: the variance split and the point-estimate comparison.
    split = summary["parameter_uncertainty"]
    assert split["draws"] == 1000 and 0.0 <= split["parameter_share_of_variance"] <= 1.0
    assert split["var_0.995_point_estimate"] > 0 and "parameter uncertainty" in result.output


@pytest.mark.slow
def test_simulate_applies_reinsurance_capital_and_reserves(baseline_run):
    out, result = baseline_run
    summary = json.loads((out / "summary.json").read_text())
    ri = summary["reinsurance"]
    assert ri["applied"] and [c["type"] for c in ri["contracts"]] == ["quota_share", "per_dispute_xl", "stop_loss"]
    assert summary["ceded"]["mean"] > 0
    assert summary["net"]["mean"] == pytest.approx(summary["gross"]["mean"] - summary["ceded"]["mean"], rel=1e-9)
    cap = summary["capital"]
    for key in ("by_country", "by_dispute_type"):
        total = sum(v["capital"] for v in cap["allocation"][key].values())
        assert total == pytest.approx(cap["insurance_risk"], rel=1e-9)
    assert cap["solvency_ratio"] == pytest.approx(cap["available"] / cap["required"])
    res = summary["reserves"]
    assert res["expected_outstanding"] > 0 and 0 < res["adequacy"]["probability"] < 1
    assert res["payment_pattern"]["cumulative_share"][-1] == pytest.approx(1.0)
    with xr.open_dataset(out / "results.nc") as ds:
        assert ds["ceded_by_contract"].dims == ("year", "contract") and ds.sizes["contract"] == 3
        assert float(abs(ds["gross"] - ds["ceded"] - ds["net"]).max()) < 1e-6
        assert bool((ds["net"] <= ds["gross"]).all())
        assert float(abs(ds["payments"].sum("development_year") - ds["gross"]).max()) < 1e-3
        assert float(ds["ceded_by_contract"].sum("contract").mean()) == pytest.approx(summary["ceded"]["mean"], rel=1e-6)
    for figure in ("gross_vs_net.png", "layer_usage.png", "capital_allocation.png", "payment_pattern.png"):
        assert (out / figure).stat().st_size > 10_000
    assert "Reinsurance (inuring order)" in result.output


@pytest.mark.slow
def test_compare_reinsurance_programs(tmp_path):
    program = tmp_path / "qs50.toml"
    program.write_text('name = "QS 50%"\n[[reinsurance]]\ntype = "quota_share"\ncession = 0.5\n')
    out = tmp_path / "cmp"
    result = run("reinsurance", "compare", "none", str(program), "--scenario", "calibrated_fixed",
                 "--years", "2000", "--no-plots", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "summary.json").read_text())["reinsurance_comparison"]["programs"]
    assert [r["program"] for r in rows] == ["none", "QS 50%"]
    assert rows[1]["net_var_0.995"] == pytest.approx(0.5 * rows[0]["net_var_0.995"], rel=1e-12)
    # VaR minus mean halves with a 50% quota share; the SCR does not: the ceded premium leaves the
    # income (premium - expenses - reinsurance premium) while only the claims are shared.
    assert rows[1]["required_capital_var_minus_mean"] == pytest.approx(0.5 * rows[0]["required_capital_var_minus_mean"],
                                                                       rel=1e-9)
    for r in rows:  # SCR = VaR 99.5 of the net cost - fixed income, income = expected result + mean net cost
        assert r["required_capital"] == pytest.approx(max(r["net_var_0.995"] - r["expected_result"] - r["net_mean"], 0.0),
                                                      rel=1e-9)
    assert "required capital" in result.output and "QS 50%" in result.output


def test_bad_reinsurance_program_exits_2(tmp_path):
    program = tmp_path / "bad.toml"
    program.write_text('[[reinsurance]]\ntype = "per_dispute_xl"\nretention_cny = -1\nlimit_cny = 5\n')
    out = tmp_path / "cmp"
    result = run("simulate", *SMALL, "--compare-reinsurance", str(program), "--out", str(out))
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "reinsurance[0].retention_cny" in result.output
    assert not out.exists()
    result = run("reinsurance", "compare", str(tmp_path / "missing.toml"), "--out", str(out))
    assert result.exit_code == 2 and "missing.toml" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--scenario", "no_such_scenario"], "unknown scenario name"),
        (["--portfolio", "/nonexistent/folder"], "portfolio directory not found"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "out"
    result = run("simulate", *SMALL, "--out", str(out), *args)
    assert result.exit_code == 2
    assert fragment in result.output
    assert not out.exists()


def test_bad_csv_names_file_row_and_column(tmp_path):
    portfolio = tmp_path / "portfolio"
    portfolio.mkdir()
    text = (default_portfolio_dir() / "policies.csv").read_text().splitlines()
    cells = text[5].split(",")
    cells[6] = "NaN"  # aggregate_limit_cny
    text[5] = ",".join(cells)
    (portfolio / "policies.csv").write_text("\n".join(text) + "\n")
    (portfolio / "exposures.csv").write_text((default_portfolio_dir() / "exposures.csv").read_text())
    result = run("simulate", *SMALL, "--portfolio", str(portfolio), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "policies.csv: row 6, column aggregate_limit_cny: must be a finite number" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_failed_run_leaves_the_previous_outputs(baseline_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run("simulate", *SMALL, "--out", str(out)).exit_code == 0
    before = (out / "summary.json").read_text()

    from leisim import plots

    def broken(*_, **__):
        raise OSError("disk full")

    monkeypatch.setattr(plots, "write_all", broken)
    result = run("simulate", *SMALL, "--seed", "5", "--out", str(out), "--overwrite")
    assert result.exit_code == 2 and "Error:" in result.output and "disk full" in result.output
    assert f"leisim simulate --resume {out}" in result.output  # the new run's years are kept to finish it
    assert (out / "summary.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial directory left behind


def test_scenarios_list_show_validate(tmp_path):
    listing = run("scenarios", "list")
    assert listing.exit_code == 0 and "baseline" in listing.output
    shown = run("scenarios", "show", "baseline")
    assert shown.exit_code == 0 and '"parameters": "posterior"' in shown.output
    assert run("scenarios", "validate", "baseline").exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nyears = -5\n')
    result = run("scenarios", "validate", str(bad))
    assert result.exit_code == 2 and "years" in result.output and "bad.toml" in result.output


def test_data_generate_reproduces_the_embedded_portfolio(tmp_path):
    result = run("data", "generate", "--seed", "0", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0
    for name in ("policies.csv", "exposures.csv"):
        assert (tmp_path / "p" / name).read_bytes() == (default_portfolio_dir() / name).read_bytes()


def test_data_history_reproduces_the_shipped_history(tmp_path):
    from leisim.models.history import default_history_dir

    result = run("data", "history", "--seed", "0", "--out", str(tmp_path / "h"))
    assert result.exit_code == 0, result.output
    for name in ("exposures.csv", "disputes.csv", "campaigns.csv"):
        assert (tmp_path / "h" / name).read_bytes() == (default_history_dir() / name).read_bytes()


def test_fit_with_a_missing_history_exits_2(tmp_path):
    result = run("fit", "--history", str(tmp_path / "none"), "--out", str(tmp_path / "p.nc"))
    assert result.exit_code == 2 and "history directory not found" in result.output
    assert not (tmp_path / "p.nc").exists()


@pytest.mark.slow
def test_stress_writes_a_table_keyed_by_scenario(tmp_path):
    out = tmp_path / "stress"
    result = run("stress", "--scenarios", "legal_cost_inflation,reinsurer_default", "--years", "1000",
                 "--chunk-size", "1000", "--sensitivity-years", "500", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "stress.json").read_text())
    assert {"baseline", "legal_cost_inflation", "reinsurer_default"} <= set(doc)
    change = doc["legal_cost_inflation"]["change_from_baseline"]["net_mean"]
    assert change["difference"] > 0 and change["se"] < change["se_if_independent"]
    assert set(doc["_sensitivities"]["by_country"]["US"]) == {"frequency", "severity"}
    with xr.open_dataset(out / "stress.nc") as ds:
        assert ds["net"].dims == ("scenario", "year") and ds.sizes["scenario"] == 3
        np.testing.assert_array_equal(ds["gross"].sel(scenario="reinsurer_default"), ds["gross"].sel(scenario="baseline"))
    assert (out / "tornado.png").stat().st_size > 10_000 and (out / "sensitivities.png").stat().st_size > 10_000
    assert "legal_cost_inflation" in result.output and "SCR" in result.output and "PASS" in result.output
    levels = doc["legal_cost_inflation"]["metrics"]
    assert levels["years"] == 1000 and levels["own_funds"] == doc["baseline"]["metrics"]["own_funds"]
    assert set(levels["meets"]) == {"comprehensive_100pct", "core_50pct"}


@pytest.mark.slow
def test_reverse_stress_from_the_command_line(tmp_path):
    out = tmp_path / "reverse"
    result = run("stress", "--reverse", "--baseline", "calibrated_fixed", "--target", "net_loss_ratio=0.6",
                 "--shock", "frequency:*", "--reverse-years", "1000", "--chunk-size", "1000", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "reverse.json").read_text())
    found = doc["results"]["frequency:*"]
    assert found["found"] and found["multiplier"] > 1 and found["metric"] >= 0.6


@pytest.mark.parametrize("args, fragment", [
    (["--reverse", "--shock", "frequncy:US"], "Did you mean 'frequency'"),
    (["--reverse", "--target", "solvency=1"], "unknown reverse-stress target"),
    (["--scenarios", "no_such_scenario"], "unknown scenario name"),
])
def test_bad_stress_arguments_exit_2(tmp_path, args, fragment):
    out = tmp_path / "bad"
    result = run("stress", "--years", "100", "--out", str(out), *args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not out.exists()


def test_scenarios_diff():
    result = run("scenarios", "diff", "baseline", "legal_cost_inflation")
    assert result.exit_code == 0
    assert 'shocks.severity.*: (absent) -> 1.3' in result.output


@pytest.mark.parametrize("text, fragment", [
    ('name = "x"\nextends = "baseline"\n[shocks]\nfrequncy = { US = 2.0 }\n', "Did you mean 'frequency'"),
    ('name = "x"\nextends = "baseline"\n[shocks]\nfrequency = { US = "double" }\n', "must be a number"),
    ('name = "x"\nextends = "baseline"\n[shocks]\nseverity = { "*" = -1.3 }\n', "must be >= 0"),
    ('name = "x"\nextends = "x.toml"\n', "cycle"),
    ('name = "x"\nextends = "missing.toml"\n', "not found"),
    ('name = "x"\n[shocks\n', "TOML"),
], ids=["unknown-key", "wrong-type", "negative-multiplier", "extends-cycle", "missing-extends", "malformed"])
def test_bad_scenario_files_exit_2_from_stress(tmp_path, text, fragment):
    path = tmp_path / "x.toml"
    path.write_text(text)
    out = tmp_path / "out"
    result = run("stress", "--scenarios", str(path), "--years", "100", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and fragment.lower() in result.output.lower(), result.output
    assert not out.exists()


@pytest.mark.slow
def test_outputs_are_not_replaced_without_overwrite(baseline_run, tmp_path):
    out, _ = baseline_run
    before = (out / "summary.json").read_bytes()
    result = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(out)])
    assert result.exit_code == 2
    assert "already holds outputs" in result.output and "--overwrite" in result.output
    assert (out / "summary.json").read_bytes() == before
    (tmp_path / "unfinished" / ".checkpoint").mkdir(parents=True)
    result = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(tmp_path / "unfinished")])
    assert result.exit_code == 2
    assert "--resume" in result.output
    (tmp_path / "stress").mkdir()
    (tmp_path / "stress" / "stress.json").write_text("{}")
    result = CliRunner().invoke(main, ["stress", "--out", str(tmp_path / "stress")])
    assert result.exit_code == 2
    assert "already holds outputs" in result.output


def _strict_json(path: Path) -> dict:
    """summary.json as strict JSON: NaN or Infinity (which Python's json would accept) fail the test."""
    def refuse(constant):
        raise AssertionError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_one_policy_with_limits_of_zero_and_1e12_through_the_posterior(tmp_path):
    """The full default model (posterior draws, lifecycle, campaigns, FX, reinsurance, reserves) on a
    portfolio of one policy: with limits of 0 nothing is paid and every output is finite or null (no
    ratio to a zero); with limits of 1e12 CNY and no deductible or coinsurance the policy pays every
    dispute in full (gross equals ground-up, year by year). The disputes are the same in both runs."""
    outs = {}
    for limit in ("0", "1e12"):
        folder = tmp_path / f"portfolio-{limit}"
        folder.mkdir()
        (folder / "policies.csv").write_text(
            "policy_id,sector,premium_cny,deductible_cny,coinsurance,limit_per_dispute_cny,aggregate_limit_cny\n"
            f"P1,new_energy,10000,0,0,{limit},{limit}\n")
        (folder / "exposures.csv").write_text("policy_id,country,exposure\nP1,US,100\n")
        outs[limit] = tmp_path / f"run-{limit}"
        result = run("simulate", "--portfolio", str(folder), "--years", "1000", "--chunk-size", "1000",
                     "--no-compare-point-estimate", "--out", str(outs[limit]))
        assert result.exit_code == 0, result.output
    zero, full = (xr.open_dataset(outs[k] / "results.nc", engine="h5netcdf") for k in ("0", "1e12"))
    with zero, full:
        np.testing.assert_array_equal(zero["ground_up"].values, full["ground_up"].values)
        assert zero["ground_up"].values.sum() > 0 and full["disputes"].values.sum() > 0
        for name in ("gross", "ceded", "net", "net_cost", "gross_by_country", "payments"):
            assert np.all(zero[name].values == 0.0), name
        np.testing.assert_allclose(full["gross"].values, full["ground_up"].values, rtol=1e-6)
    summary = _strict_json(outs["0"] / "summary.json")
    assert summary["gross"]["var"]["0.995"] == 0.0 and summary["capital"]["required"] == 0.0
    assert summary["capital"]["solvency_ratio"] is None  # available / 0 is not a ratio
    assert {p.name for p in outs["0"].glob("*.png")} >= {"loss_distribution.png", "capital_allocation.png",
                                                         "layer_usage.png", "exceedance.png"}
    summary = _strict_json(outs["1e12"] / "summary.json")
    assert summary["gross"]["mean"] > 0 and np.isfinite(summary["capital"]["solvency_ratio"])


def test_generated_data_and_posteriors_are_not_replaced_without_overwrite(tmp_path):
    folder = tmp_path / "p"
    assert run("data", "generate", "--policies", "5", "--out", str(folder)).exit_code == 0
    before = (folder / "policies.csv").read_bytes()
    result = run("data", "generate", "--policies", "7", "--seed", "3", "--out", str(folder))
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (folder / "policies.csv").read_bytes() == before
    result = run("data", "generate", "--policies", "7", "--seed", "3", "--out", str(folder), "--overwrite")
    assert result.exit_code == 0 and (folder / "policies.csv").read_bytes() != before
    assert sorted(p.name for p in folder.iterdir()) == [".leisim-output.json", "exposures.csv", "policies.csv"]
    assert run("data", "validate", "--portfolio", str(folder)).output.startswith("ok  portfolio")
    posterior = tmp_path / "posterior.nc"
    posterior.write_bytes(b"an earlier fit")
    result = run("fit", "--out", str(posterior))
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert posterior.read_bytes() == b"an earlier fit"
