"""Campaign sizes by CDF inversion (issue 18): the fixed-point NB table and the kernel's inversion
against SciPy's negative binomial, word by word, inside the table and past its end."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from leisim.scenarios.compose import nb_cdf_table
from leisim.simulator.engine import campaign_extra_sellers

# (mean extra sellers m, concentration k): the shipped posterior's range (m 1.3-22, k 0.12-3.5),
# the documented truth (3, 1), (1.5, 2), and hostile ones (a near-Poisson row, a very long tail).
ROWS = np.array([[1.55, 0.22], [21.7, 0.118], [3.0, 1.0], [1.5, 2.0], [0.4, 1e4], [300.0, 0.3]])


def _expected(words: np.ndarray, m: float, k: float) -> np.ndarray:
    """The smallest n with F(n) >= (word + 1/2) / 2**32, by SciPy (the engine's definition)."""
    dist = stats.nbinom(k, k / (k + m))
    target = (words.astype(np.float64) + 0.5) / 2.0**32
    n = dist.ppf(target).astype(np.int64)
    # ppf works in floating point: step to the exact smallest n with cdf(n) >= target
    n = np.where(dist.cdf(n - 1) >= target, n - 1, n)
    return np.where(dist.cdf(n) < target, n + 1, n)


def test_the_table_is_scipys_cdf_in_fixed_point():
    table = nb_cdf_table(ROWS[:, 0], ROWS[:, 1], max_length=4096)
    assert table.dtype == np.uint32 and table.shape[1] & (table.shape[1] - 1) == 0  # a power of two
    for row, (m, k) in zip(table, ROWS):
        cdf = stats.nbinom(k, k / (k + m)).cdf(np.arange(table.shape[1]))
        # float64 CDFs summed two ways differ by ~1e-16: one fixed-point unit (2**-32) at a rounding tie
        reference = np.minimum(np.floor(cdf * 2.0**32 + 0.5), 2.0**32 - 1)
        assert np.abs(row.astype(np.float64) - reference).max() <= 1
    assert np.all(table[:5, -1] == 2**32 - 1) and table[5, -1] < 2**32 - 1  # only the hostile row is cut


def _params(max_length: int):
    table = nb_cdf_table(ROWS[:, 0], ROWS[:, 1], max_length=max_length)
    return SimpleNamespace(campaign_size_cdf=jnp.asarray(table[None]),
                           campaign_size=jnp.asarray(ROWS[None], jnp.float32)), table.shape[1]


@pytest.mark.parametrize("max_length", [64, 4096])
def test_each_word_gives_scipys_quantile_inside_the_table_and_exactly_past_it(max_length):
    params, length = _params(max_length)
    rng = np.random.default_rng(3)
    words = np.concatenate([rng.integers(0, 2**32, 400, dtype=np.uint64),
                            [0, 1, 2**31, 2**32 - 2, 2**32 - 1]]).astype(np.uint32)
    for row in range(len(ROWS)):
        # the float32 (m, k) the kernel reads, so that SciPy sees the same parameters
        m, k = (float(np.float32(v)) for v in ROWS[row])
        expected = _expected(words, m, k)
        rows = jnp.full(words.shape, row, jnp.int32)
        fast, beyond = campaign_extra_sellers(jnp.asarray(words), rows, params, SimpleNamespace(exact_tails=False))
        fast, beyond = np.asarray(fast), np.asarray(beyond)
        inside = ~beyond
        # the table was built from float64 (m, k); words a rounding step from a CDF step may differ by one
        assert np.abs(fast[inside] - _expected(words, *ROWS[row])[inside]).max(initial=0) == 0
        # flagged exactly when past the end; the top word (the cap's own value) is always resolved exactly
        below_top = words < 2**32 - 1
        np.testing.assert_array_equal(beyond[below_top], (expected >= length)[below_top])
        exact, flagged = campaign_extra_sellers(jnp.asarray(words), rows, params, SimpleNamespace(exact_tails=True))
        assert not np.asarray(flagged).any()
        exact = np.asarray(exact)
        np.testing.assert_array_equal(exact[inside], fast[inside])  # recomputation changes no in-table word
        past = ~inside
        np.testing.assert_array_equal(exact[past], expected[past])


def test_the_counts_follow_the_negative_binomial():
    """Chi-square of 200,000 inverted words against NB(m, k) (fixed key; bins with expected >= 20).
    With ~30 degrees of freedom the 1e-6 critical value is ~80: a correct sampler fails once in 10^6."""
    params, _ = _params(4096)
    words = jax.random.bits(jax.random.key(11), (200_000,), jnp.uint32)
    for row in (1, 2):
        m, k = ROWS[row]
        counts = np.asarray(campaign_extra_sellers(words, jnp.full(words.shape, row, jnp.int32), params,
                                                   SimpleNamespace(exact_tails=False))[0])
        pmf = stats.nbinom(k, k / (k + m)).pmf(np.arange(4096)) * counts.size
        last = int(np.flatnonzero(pmf >= 20).max())
        observed = np.bincount(np.minimum(counts, last), minlength=last + 1)[: last + 1]
        expected = np.append(pmf[:last], counts.size - pmf[:last].sum())
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        assert chi2 < stats.chi2.isf(1e-6, last), (row, chi2, last)
