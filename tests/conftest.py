"""Shared test set-up: float64 on, fixed keys, shared compositions (STYLE.md rule 9)."""

from __future__ import annotations

import os
import shutil
import tempfile

# Four host devices: every test runs the sharded kernel over a four-device mesh (as on a 4-GPU
# machine), and the device-count tests compare it with a single device.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
# The suite is compile-bound (small runs of large kernels): LLVM's optimisation level 1 instead of
# the default compiles the baseline kernel in ~13 s instead of ~17 s on 2 cores and runs it as fast
# (20,000 baseline years: 1.49 s either way, the same annual totals). Subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=1"

# One compilation cache for the session, shared by every xdist worker and every `leisim`
# subprocess (they inherit the variable): a kernel compiled by one test file is loaded, not
# recompiled, by the next (~15 s saved per kernel on 2 cores). Results never depend on it (the
# key covers the program, versions, flags and devices). A fresh folder per session (made by the
# controller, removed at its end), so that timings stay those of a fresh machine.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="leisim-test-jax-cache-")
    os.environ["LEISIM_TEST_OWNS_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property-based tests draw the same cases on every run (a CI failure reproduces locally);
# HYPOTHESIS_PROFILE=explore draws fresh ones.
settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

jax.config.update("jax_enable_x64", True)

SEED = 20261121


@pytest.fixture
def key():
    return jax.random.key(SEED)


@pytest.fixture(scope="session")
def baseline():
    """The embedded baseline scenario on the embedded portfolio, composed once."""
    from leisim.data.generate import default_portfolio_dir
    from leisim.scenarios.compose import compose
    from leisim.scenarios.portfolio import load_portfolio
    from leisim.scenarios.schema import load_scenario

    return compose(load_scenario("baseline"), load_portfolio(default_portfolio_dir()))


def pytest_unconfigure(config):
    owned = os.environ.get("LEISIM_TEST_OWNS_CACHE")
    if owned and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(owned, ignore_errors=True)


PACKAGED = ("", "simulator", "models", "scenarios", "formats", "data")  # the folders pyproject installs


def _stale_files(installed, tree) -> list[str]:
    """Python files of the package that differ between an installed copy and the working tree."""
    names = set()
    for root in (installed, tree):
        for folder in PACKAGED:
            names |= {str((root / folder / p.name).relative_to(root)) for p in (root / folder).glob("*.py")}
    return sorted(n for n in names
                  if not ((installed / n).is_file() and (tree / n).is_file()
                          and (installed / n).read_bytes() == (tree / n).read_bytes()))


def pytest_configure(config):
    """Refuse to test an installed copy of leisim that is not the working tree's code (a stale
    non-editable install would pass or fail for code that is not what was edited)."""
    from pathlib import Path

    import leisim

    tested = Path(leisim.__file__).resolve().parent
    tree = Path(__file__).resolve().parents[1]
    if tested != tree and os.environ.get("PYTEST_XDIST_WORKER") is None:
        stale = _stale_files(tested, tree)
        if stale:
            raise pytest.UsageError(
                f"the leisim installed at {tested} is not the working tree's code ({', '.join(stale[:5])}"
                f"{' ...' if len(stale) > 5 else ''} differ): reinstall it (pip install '.[test]'; remove setuptools' "
                "build/ folder first if a module was deleted or renamed, or it ships again), or install the tree "
                "editable for development (pip install -e '.[test]')")


def pytest_report_header(config):
    """Which copy of leisim the tests import: the working tree (an editable install) or an installed
    copy (CI's fresh, non-editable install, the same files), so that nobody tests a stale copy."""
    from pathlib import Path

    import leisim

    tested = Path(leisim.__file__).resolve().parent
    tree = Path(__file__).resolve().parents[1]
    if tested == tree:
        return f"leisim: the working tree ({tree})"
    return (f"leisim: an installed copy ({tested}), not the working tree ({tree}); for development, "
            "`pip install -e '.[test]'` so that the tests test what you edit")
