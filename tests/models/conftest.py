"""Model-fitting tests compile large NUTS programs: free them after each module, so that the
process that runs the whole suite does not accumulate compiled executables."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs():
    yield
    from leisim.models import fit

    fit._sampler.cache_clear()
    jax.clear_caches()
