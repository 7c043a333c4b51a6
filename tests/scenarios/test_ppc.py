"""Posterior predictive checks: pass on the shipped fit, fail when the simulation misplaces disputes.

Each coverage check fails a calibrated model with probability ~0.1% (scenarios/ppc.py states the
binomial rule and the discrepancy p-value floor), so a pass on the shipped history is expected;
an engine whose stratum alias tables send the alias branch to the first stratum (the class of
the issue-15 bug) must fail the country x type check, and a cost level shifted by a factor e
must fail the cost calibration.
"""

from __future__ import annotations

import numpy as np
import pytest

from leisim.models.history import default_history_dir, load_history
from leisim.models.posterior import load_posterior
from leisim.scenarios import ppc

pytestmark = pytest.mark.slow
YEARS = 2000


@pytest.fixture(scope="module")
def history():
    return load_history(default_history_dir())


@pytest.fixture(scope="module")
def posterior():
    return load_posterior()


def test_the_shipped_posterior_reproduces_the_shipped_history(history, posterior):
    doc = ppc.predictive_checks(history, posterior, seed=1, years=YEARS)
    assert doc["pass"], ppc.summary_lines(doc)
    cells = doc["checks"]["disputes_by_country_and_type"]
    assert cells["n"] == len(cells["labels"]) == len(cells["observed"]) >= 20
    assert sum(cells["observed"]) == history.cell_disputes.sum()
    assert all(0.0 <= p <= 1.0 for p in doc["checks"]["costs"]["pit"])


def test_misplaced_disputes_and_costs_fail_the_checks(history, posterior, monkeypatch):
    # The engine's class of bug from issue 15: every stratum alias pointing at stratum 0 (as the
    # mis-indexed table did for draws >= 1, so the alias branch landed on the first stratum);
    # the counts are replicated through the engine, so the checks must see it. And a posterior
    # whose costs are all e times too high must fail the cost calibration.
    from leisim.scenarios import compose

    built = compose.alias_rows

    def first_stratum(weights):
        accept, alias = built(weights)
        return accept, (np.zeros_like(alias) if alias.size > 10 else alias)  # stratum tables only

    monkeypatch.setattr(compose, "alias_rows", first_stratum)
    shifted = posterior.copy(deep=True)
    shifted["log_median"] = shifted["log_median"] + 1.0
    doc = ppc.predictive_checks(history, shifted, seed=1, years=YEARS)
    assert not doc["pass"]
    cells = doc["checks"]["disputes_by_country_and_type"]
    assert not cells["pass"] and cells["discrepancy"]["p_value"] < 0.001, ppc.summary_lines(doc)
    assert not doc["checks"]["costs"]["pass"] and doc["checks"]["costs"]["ks_pvalue"] < 1e-6


def test_the_check_command_writes_its_files_and_keeps_earlier_ones(tmp_path):
    import json

    from click.testing import CliRunner

    from leisim.cli import main

    out = tmp_path / "checks"
    result = CliRunner().invoke(main, ["check", "--years", str(YEARS), "--seed", "1", "--out", str(out)])
    doc = json.loads((out / "checks.json").read_text())
    assert result.exit_code == (0 if doc["pass"] else 1), result.output
    assert doc["posterior_sha256"] and (out / "checks.png").stat().st_size > 0
    before = (out / "checks.json").read_bytes()
    again = CliRunner().invoke(main, ["check", "--years", str(YEARS), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (out / "checks.json").read_bytes() == before
