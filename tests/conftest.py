"""Shared test set-up: float64 on, fixed keys, shared compositions (STYLE.md rule 9)."""

from __future__ import annotations

import os

# Four host devices: every test runs the sharded kernel over a four-device mesh (as on a 4-GPU
# machine), and the device-count tests compare it with a single device.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

SEED = 20261121


@pytest.fixture
def key():
    return jax.random.key(SEED)


@pytest.fixture(scope="session")
def baseline():
    """The embedded baseline scenario on the embedded portfolio, composed once."""
    from leisim.data.generate import default_portfolio_dir
    from leisim.scenarios.portfolio import load_portfolio
    from leisim.scenarios.schema import load_scenario

    from leisim.scenarios.compose import compose

    return compose(load_scenario("baseline"), load_portfolio(default_portfolio_dir()))
