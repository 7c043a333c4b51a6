"""Portfolio CSVs: valid files load; each bad file names the file, row, column and value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leisim.data.generate import default_portfolio_dir
from leisim.errors import InputError
from leisim.scenarios.portfolio import load_portfolio

POLICIES = """policy_id,sector,premium_cny,deductible_cny,coinsurance,limit_per_dispute_cny,aggregate_limit_cny
A,machinery,10000,5000,0.1,1000000,2000000
B,e_commerce,5000,0,0.2,500000,500000
"""
EXPOSURES = """policy_id,country,exposure
A,US,10
A,DE,5
B,US,2
"""


def folder(tmp_path: Path, policies: str = POLICIES, exposures: str = EXPOSURES) -> Path:
    (tmp_path / "policies.csv").write_text(policies, encoding="utf-8")
    (tmp_path / "exposures.csv").write_text(exposures, encoding="utf-8")
    return tmp_path


def test_embedded_portfolio_loads():
    portfolio = load_portfolio(default_portfolio_dir())
    assert portfolio.n_policies == 300
    assert len(portfolio.countries) == 10
    assert np.all(portfolio.exposure >= 0) and portfolio.exposure.sum() > 0


def test_valid_files_with_a_byte_order_mark(tmp_path):
    path = folder(tmp_path, "\ufeff" + POLICIES)
    portfolio = load_portfolio(path)
    assert portfolio.policy_id == ("A", "B")
    assert portfolio.countries == ("DE", "US")
    np.testing.assert_array_equal(portfolio.exposure, [[5.0, 10.0], [0.0, 2.0]])


@pytest.mark.parametrize(
    "policies, exposures, where, fragment",
    [
        (POLICIES.replace("0.1,1000000", "nan,1000000"), EXPOSURES, "row 2, column coinsurance", "finite"),
        (POLICIES.replace("0.1,1000000", "1.5,1000000"), EXPOSURES, "row 2, column coinsurance", "between 0 and 1"),
        (POLICIES.replace("1000000,2000000", "-1000000,2000000"), EXPOSURES, "row 2, column limit_per_dispute_cny", "between 0 and 1e+15"),
        (POLICIES.replace("B,e_commerce", "A,e_commerce"), EXPOSURES, "row 3, column policy_id", "duplicate"),
        (POLICIES.replace(",aggregate_limit_cny", ""), EXPOSURES, "header", "missing column(s) aggregate_limit_cny"),
        (POLICIES, EXPOSURES.replace("A,DE", "A,EU"), "row 3, column country", "EU is not a country"),
        (POLICIES, EXPOSURES.replace("B,US", "C,US"), "row 4, column policy_id", "not found in policies.csv"),
        (POLICIES, EXPOSURES.replace("B,US,2", "B,US,abc"), "row 4, column exposure", "not a number"),
        (POLICIES, EXPOSURES + "A,US,3\n", "row 5", "duplicate (policy_id, country)"),
        ("", EXPOSURES, "policies.csv", "empty"),
    ],
    ids=["nan", "coinsurance", "negative-limit", "duplicate-id", "missing-column", "unknown-country",
         "unknown-policy", "text-exposure", "duplicate-cell", "empty-file"],
)
def test_bad_files_name_file_row_and_column(tmp_path, policies, exposures, where, fragment):
    path = folder(tmp_path, policies, exposures)
    with pytest.raises(InputError) as err:
        load_portfolio(path)
    message = str(err.value)
    assert where in message and fragment in message, message
    assert ".csv" in message


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="portfolio directory not found"):
        load_portfolio(tmp_path / "nope")


def test_missing_file(tmp_path):
    (tmp_path / "policies.csv").write_text(POLICIES)
    with pytest.raises(InputError, match="exposures.csv: file not found"):
        load_portfolio(tmp_path)
