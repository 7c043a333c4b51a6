"""Posterior predictive checks: pass on the shipped fit, fail when the simulation misplaces disputes.

Each coverage check fails a calibrated model with probability ~0.1% (models/ppc.py states the
binomial rule), so a pass on the shipped history is expected; a posterior whose US and Brazil
rates are swapped (what the alias-table bug of issue 15 did inside the engine: disputes landed
in the wrong stratum) must fail the country x type check, and a cost level shifted by a factor
e must fail the cost calibration.
"""

from __future__ import annotations

import numpy as np
import pytest

from leisim.models import ppc
from leisim.models.history import default_history_dir, load_history
from leisim.models.posterior import load_posterior

pytestmark = pytest.mark.slow
YEARS = 500


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


def test_misplaced_disputes_and_costs_fail_the_checks(history, posterior):
    countries = [str(c) for c in posterior["log_rate"].coords["country"].values]
    us, br = countries.index("US"), countries.index("BR")
    swapped = posterior.copy(deep=True)
    rates = swapped["log_rate"].values
    rates[:, [us, br]] = rates[:, [br, us]]
    swapped["log_median"] = swapped["log_median"] + 1.0  # costs x e
    doc = ppc.predictive_checks(history, swapped, seed=1, years=YEARS)
    assert not doc["pass"]
    assert not doc["checks"]["disputes_by_country_and_type"]["pass"]
    assert not doc["checks"]["costs"]["pass"]
    labels = doc["checks"]["disputes_by_country_and_type"]["labels"]
    inside = doc["checks"]["disputes_by_country_and_type"]["intervals"]["0.999"]["inside"]
    assert not inside[labels.index("US/patent")] and not inside[labels.index("BR/patent")]
    assert np.isfinite(doc["checks"]["costs"]["ks_pvalue"])
