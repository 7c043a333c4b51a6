"""Default fit settings, importable without JAX (the command line reads them for its --help)."""

from __future__ import annotations

import dataclasses

FREQUENCY_FAMILIES = ("negative_binomial", "poisson")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """NUTS settings. The defaults give zero divergences and R-hat < 1.01 on the shipped history
    (the measurement: benchmarks/RESULTS.md, "Fit of the shipped history")."""

    chains: int = 2
    warmup: int = 1000
    samples: int = 1000
    seed: int = 0
    target_accept: float = 0.95
    max_tree_depth: int = 8
    # "negative_binomial" (NB1, the model), or "poisson": the deliberately misspecified model that the
    # backtest must reject (no over-dispersion: intervals too narrow for the history's clustered counts).
    frequency_family: str = "negative_binomial"

    def __post_init__(self):
        for name in ("chains", "warmup", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.5 <= self.target_accept < 1.0:
            raise ValueError(f"target_accept must be in [0.5, 1), got {self.target_accept}")
        if self.frequency_family not in FREQUENCY_FAMILIES:
            raise ValueError(f"frequency_family must be one of {FREQUENCY_FAMILIES}, got {self.frequency_family!r}")


FIT_DEFAULTS = FitSettings()
