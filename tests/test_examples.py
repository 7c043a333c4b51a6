"""examples/: each script runs as a user would run it (a fresh process, few years), and says what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECT = {  # a line each script must print
    "simulate.py": "net VaR 0.995",
    "compare_reinsurance.py": "QS 40%",
    "stress.py": "us_patent_surge: net VaR 99.5%",
    "fit.py": "R-hat",
}


def test_every_example_is_checked():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECT)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_runs(script, tmp_path):
    env = os.environ | {"LEISIM_EXAMPLE_YEARS": "2000", "LEISIM_EXAMPLE_SAMPLES": "30"}
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert EXPECT[script] in result.stdout, result.stdout[-2000:]
    assert "Traceback" not in result.stderr


def test_readme_example_files_are_shipped_and_valid():
    """The README's command lines name these files; each validates as what it is."""
    from leisim import app

    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in ("my_stress.toml", "qs40.toml", "xl_only.toml"):
        assert f"examples/{name}" in readme and (EXAMPLES / name).is_file()
    assert app.load_scenario(EXAMPLES / "my_stress.toml").name == "my_stress"
    qs40 = app.load_program(EXAMPLES / "qs40.toml")
    assert qs40.name == "QS 40%" and [(c.kind, c.name) for c in qs40.contracts] == [("quota_share", "QS 40%")]
    assert app.load_program(EXAMPLES / "xl_only.toml").name == "XL only"


@pytest.mark.slow
def test_readme_lines_with_example_files_run(tmp_path):
    """`leisim reinsurance compare none examples/qs40.toml examples/xl_only.toml` and `leisim simulate
    --scenario examples/my_stress.toml`, as the README gives them (fewer years)."""
    from click.testing import CliRunner

    from leisim.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    compared = run("reinsurance", "compare", "none", EXAMPLES / "qs40.toml", EXAMPLES / "xl_only.toml", "--years",
                   "3000", "--chunk-size", "1000", "--no-plots", "--out", tmp_path / "re", "--json")
    assert compared.exit_code == 0, compared.output
    names = [p["program"] for p in json.loads(compared.stdout)["reinsurance_comparison"]["programs"]]
    assert names == ["none", "QS 40%", "XL only"]
    stressed = run("simulate", "--scenario", EXAMPLES / "my_stress.toml", "--years", "3000", "--chunk-size", "1000",
                   "--no-plots", "--out", tmp_path / "my", "--json", "-q")
    assert stressed.exit_code == 0, stressed.output
    assert json.loads(stressed.stdout)["scenario"] == "my_stress"
