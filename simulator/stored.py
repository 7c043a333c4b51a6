"""Kernels kept between runs as lowered programs (``jax.export``), so that a warm run neither
re-traces nor re-lowers them.

JAX's compilation cache skips XLA's compilation of a kernel it has seen, but every new process
still traces the year kernel in Python and lowers it to StableHLO before the cache can be asked:
~3 s per kernel shape on a 2-core CPU, twice in the default job (the main buffers and the grown
ones of the overflow recomputation), ~40% of a warm `leisim simulate` (benchmarks/RESULTS.md,
issue 18). Here the lowered program is serialised once (``jax.export``) next to the compilation
cache and loaded by later processes; calling it lowers a single ``call_exported`` and finds the
executable in the compilation cache.

The stored program is the one tracing would build: its file name is a hash of everything it
depends on (the kernel's source files, the JAX and jaxlib versions, the JAX settings that change
random bits or dtypes, the static shape, the devices, and the arguments' tree, shapes and dtypes),
so an edited kernel, another JAX or another shape never finds a stale program; a file that does not
load is ignored and rewritten. Results are bit-identical either way (tests/simulator/test_stored.py).
Nothing is stored when the compilation cache is off, or across processes (``jax.distributed``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import jax

from ..files import atomic_write

SUBFOLDER = "leisim-kernels"
# JAX settings that change what a traced kernel computes (random bits, dtypes, promotion).
_SETTINGS = ("jax_enable_x64", "jax_threefry_partitionable", "jax_default_prng_impl", "jax_numpy_dtype_promotion",
             "jax_default_matmul_precision")


def folder() -> Path | None:
    """Where lowered kernels are kept: beside JAX's compilation cache; None when it is off."""
    cache = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    if not cache or jax.process_count() > 1:
        return None
    return Path(cache) / SUBFOLDER


@functools.cache
def _source_digest() -> str:
    """A hash of the source of every module a traced kernel runs: the simulator package and the
    vocabulary it reads (an editable install that changes the kernel changes this)."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")) + [here.parent / "vocabulary.py"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _versions() -> str:
    names = ("jax", "jaxlib")
    found = []
    for name in names:
        try:
            found.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}=?")
    return ",".join(found)


def signature(label: str, devices: tuple[jax.Device, ...], args: tuple) -> str:
    """The file name of a kernel: a hash of its source, JAX, settings, ``label`` (its static shape),
    devices and the arguments' tree, shapes, dtypes and shardings."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    parts = [_source_digest(), _versions(), label, str(treedef),
             repr([(getattr(d, "platform", "?"), getattr(d, "device_kind", "?")) for d in devices]),
             repr([(leaf.shape, str(leaf.dtype), str(getattr(leaf, "sharding", ""))) for leaf in leaves]),
             repr([(name, str(getattr(jax.config, name, None))) for name in _SETTINGS])]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def load_or_export(function: Callable, label: str, devices: tuple[jax.Device, ...], args: tuple,
                   on_trace: Callable[[], None]) -> Callable | None:
    """A compiled-on-first-call equivalent of ``jax.jit(function)`` for ``args``' types, read from the
    store when there and else exported and stored; None when the store is off or fails (the
    caller then uses ``jax.jit(function)`` as it is).

    ``function`` takes and returns flat tuples of arrays (no key types, no custom trees): that is
    what ``jax.export`` serialises. ``on_trace`` is called when a program is built or loaded.
    """
    where = folder()
    if where is None:
        return None
    from jax import export

    path = where / f"{signature(label, devices, args)}.exported"
    exported = None
    try:
        exported = export.deserialize(bytearray(path.read_bytes()))
        on_trace()
    except Exception:  # not there, unreadable, from another format: build it again
        exported = None
    if exported is None:
        try:
            exported = export.export(jax.jit(function))(*args)
        except Exception:  # a program jax.export cannot express: trace as before
            return None
        try:
            atomic_write(path, bytes(exported.serialize()))
        except Exception:  # no flatbuffers package, or a read-only cache: use the program unstored
            pass
    return jax.jit(exported.call)
