"""What JAX needs before leisim runs: host devices, float64 totals, the compilation cache.

Both the command line and the Python API call :func:`setup_jax` first; it is idempotent and takes
effect for whatever has not started yet (the host device count only before JAX's backends start).
"""

from __future__ import annotations

import os


def compilation_cache_dir() -> str | None:
    """Where compiled kernels are kept between runs; None when caching is off.

    JAX_COMPILATION_CACHE_DIR (JAX's own setting) wins; else LEISIM_COMPILATION_CACHE (a folder, or
    ``off``); else ``$XDG_CACHE_HOME/leisim/jax`` (``~/.cache/leisim/jax``). A cached kernel is the
    same executable XLA would compile (the key covers the program, the JAX/XLA versions, the flags and
    the devices), so results never depend on it; a later run skips the compilation of each kernel.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    chosen = os.environ.get("LEISIM_COMPILATION_CACHE", "")
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return chosen
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "leisim", "jax")


def setup_jax() -> None:
    """Host devices (one per core), float64 available for totals, the compilation cache on."""
    from .simulator.driver import host_device_flags

    # One host device per core, so that the simulated years use every core (read when JAX starts
    # its backends, ignored after; an explicit XLA_FLAGS device count is respected).
    os.environ["XLA_FLAGS"] = host_device_flags()
    import jax

    # Sample in float32, accumulate in float64 (docs/STYLE.md rule 12): float64 must be available.
    jax.config.update("jax_enable_x64", True)
    cache = compilation_cache_dir()
    if cache is not None and not jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]
        jax.config.update("jax_compilation_cache_dir", cache)


def show_library_messages(show: bool) -> None:
    """JAX, XLA and NumPyro's own messages (XLA's "Very slow compile?" alarms, JAX's backend notes): silenced
    unless ``show`` (the CLI's -v). XLA's C++ log level is read when JAX starts its backends; a level the user
    set in TF_CPP_MIN_LOG_LEVEL is kept unless ``show``."""
    import logging

    if show:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # 3: C++ errors too (they reach Python as exceptions)
    for name in ("jax", "absl", "numpyro"):
        logging.getLogger(name).setLevel(logging.NOTSET if show else logging.ERROR)
