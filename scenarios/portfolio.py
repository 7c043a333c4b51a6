"""The portfolio (policies.csv, exposures.csv): defined in :mod:`leisim.formats.portfolio`, below the
models and scenarios that both read it; imported here under its older name."""

from ..formats.portfolio import (  # noqa: F401
    EXPOSURE_UNIT,
    MAX_AMOUNT_CNY,
    MAX_EXPOSURE,
    Portfolio,
    country_hint,
    iter_rows,
    load_portfolio,
    read_number,
    read_rows,
)
