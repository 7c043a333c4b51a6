"""The posterior benchmark of `leisim bench` reports what it says it reports (at a tiny size)."""

from __future__ import annotations

import jax
import pytest
from click.testing import CliRunner

from leisim.benchmarks import kernel, posterior
from leisim.cli import main


@pytest.mark.slow
def test_the_posterior_scan_times_the_default_job_beside_the_reference_model(tmp_path):
    # 300 policies, seed 0: the embedded default book, so the kernel is the one the CLI and API
    # tests compile (chunks of 1,000 years).
    lines: list[str] = []
    (row,) = posterior.scan([300], years=1000, chunk_size=1000, repeats=1, devices=jax.local_devices(),
                            reference_years=600, reference_max_policies=300, progress=lines.append)
    assert row["policies"] == 300 and row["years"] == 1000 and row["years_per_s"] > 0 and row["compile_s"] >= 0
    # Every event slot of every year draws at least one word, and the plain reference draws at
    # least one variate per dispute it simulates.
    assert row["kernel_words_per_year"] >= 64  # the smallest event buffer
    assert row["reference_variates_per_year"] >= row["expected_disputes_per_year"]
    # The same model, independent draws: the mean gross agrees within 4 combined SEs.
    assert row["means_agree_within_4se"], row
    assert "posterior baseline" in lines[0] and "reference" in lines[0]
    report = {"device": "cpu", "devices": 1, "floor": {"uniform_per_s": 1e9, "normal_per_s": 5e8},
              "years_scan": [], "policies_scan": [], "devices_scan": [], "posterior_scan": [row]}
    kernel.plot(report, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_bench_offers_the_posterior_scan():
    out = CliRunner().invoke(main, ["bench", "--help"]).output
    for option in ("--posterior-policies", "--no-posterior", "--reference-years", "--reference-max-policies"):
        assert option in out
