"""Poisson counts by inversion (engine.poisson_count) against SciPy's Poisson quantile function.

Deterministic: every word of a dense grid (and the 2,000 smallest and largest words, where the
tails are) is inverted and compared with ``scipy.stats.poisson.ppf`` at the same uniform, so the
check is exact, not statistical.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from leisim.simulator.engine import poisson_count, poisson_window

WORDS = np.unique(np.concatenate([np.linspace(0, 2**32 - 1, 100_001).astype(np.uint32),
                                  np.arange(2000, dtype=np.uint32), (2**32 - 1 - np.arange(2000)).astype(np.uint32)]))
UNIFORMS = (WORDS.astype(np.float64) + 0.5) * 2.0**-32


def _counts(rate: float, buffer: int) -> np.ndarray:
    invert = jax.jit(jax.vmap(lambda word, rate: poisson_count(word, rate, buffer), in_axes=(0, None)))
    return np.asarray(invert(jnp.asarray(WORDS), jnp.float64(rate)))


@pytest.mark.parametrize(("rate", "buffer"), [(0.0, 64), (1e-3, 64), (0.5, 64), (4.4, 64), (23.0, 128),
                                               (127.9, 128), (1000.0, 1024), (5.0e4, 65536)])
def test_inversion_is_the_poisson_quantile(rate, buffer):
    np.testing.assert_array_equal(_counts(rate, buffer), stats.poisson.ppf(UNIFORMS, rate).astype(np.int64))


def test_a_rate_above_the_buffer_overflows_whatever_the_word():
    # The window holds rates up to the buffer; above it every count exceeds the buffer, so the year
    # is recomputed with a larger buffer (a wider window), never returned with a wrong count.
    assert _counts(180.0, 128).min() > 128
    assert _counts(129.0, 128).min() > 128


def test_the_window_grows_with_the_buffer():
    widths = [poisson_window(b) for b in (32, 64, 128, 1024, 1 << 20)]
    assert widths == sorted(widths) and all(w % 8 == 0 for w in widths)
    assert poisson_window(1 << 20) < 0.02 * (1 << 20)  # negligible beside the buffer's own slots
