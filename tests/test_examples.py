"""examples/: each script runs as a user would run it (a fresh process, few years), and says what it says."""

from __future__ import annotations

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
