"""Arithmetic whose rounding no buffer size, batch width or fusion decision can change.

A year's result must be bit-identical however it was computed: in any chunk, on any number of
devices, resumed, or recomputed with larger buffers after an overflow (issue 16). Two things
in a compiled XLA program can break that for the same disputes:

- the order of a reduction: ``x.sum()`` lets XLA choose the tree, and it depends on the axis
  length, so the same disputes in a longer buffer (with zeros after them) can sum differently;
- contraction: XLA's CPU backend lets LLVM fuse a multiply and an add into one FMA inside a fused
  loop. ``a * b + c`` then rounds once or twice depending on what the fusion pass put together,
  which depends on the program's shapes (measured: 1-ulp differences in ``sum(rate * start)``
  between a 352-slot and a 64-slot kernel).

:func:`pairwise_sum` fixes the first; :func:`settled` (a select that no compiler may remove, so no
multiply before it fuses with an add after it) the second. ``pairwise_sum`` settles its input,
which is where the measured difference came from; the kernel also settles each per-slot value
that several sums read (costs, payments, durations), so that all of them see one rounding: that
is a precaution, not a measured failure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def settled(x):
    """``x`` (an array or a pytree of arrays) rounded as computed: no later add fuses with it.

    ``where(x == 0, 0, x)`` is the identity but for ``-0 -> +0``, and it is a select between the
    producer and any consumer, which neither XLA nor LLVM may remove (it would change the sign of
    zero), so no multiply before it can be contracted with an add after it. (``jax.lax.
    optimization_barrier`` does not do this: XLA's CPU pipeline removes it before fusion.)
    """

    def one(v):
        if not jnp.issubdtype(v.dtype, jnp.floating):
            return v
        return jnp.where(v == 0, jnp.zeros((), v.dtype), v)

    return jax.tree_util.tree_map(one, x)


def pairwise_sum(x: jax.Array) -> jax.Array:
    """Sum over the last axis in an order fixed by the positions alone: adjacent pairs, then pairs
    of pairs, on the axis padded with zeros to a power of two.

    Slots past the last dispute are zeros that join the tree only as ``s + 0 = s``, so the sum is
    bit-identical for any buffer length that holds the disputes (and, being pairwise, its rounding
    error is O(log n) rather than O(n)).
    """
    x = settled(x)
    n = x.shape[-1]
    size = 1 << max(n - 1, 0).bit_length()
    if size != n:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - n)])
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def segment_total(values: jax.Array, segments: jax.Array, n_segments: int) -> jax.Array:
    """``jax.ops.segment_sum`` of settled values: a scatter-add in slot order (XLA's CPU scatter is
    a sequential loop), where empty slots add exact zeros."""
    return jax.ops.segment_sum(settled(values), segments, num_segments=n_segments)
