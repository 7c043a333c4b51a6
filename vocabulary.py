"""The domain's words, defined once: dispute types, litigation stages, campaign kinds.

Everything that names one of these imports it from here (scenario schema, shocks, models, the
kernel, reports), so that a name cannot mean five things in one module and three in another.

- ``DISPUTE_TYPES``: the intellectual-property rights a dispute can be about; a fixed-parameter
  scenario may give rates for any of them.
- ``MODELLED_DISPUTE_TYPES``: the subset the hierarchical model is fitted on (the types with
  public dispute counts and AIPLA cost figures; docs/CALIBRATION.md): a posterior has these.
- ``STAGES``: where a dispute ends in the litigation lifecycle; from ``TRIAL`` on a dispute is
  decided on the merits, which is where fee shifting applies.
- ``CAMPAIGN_KINDS``: mass-defendant events (a US "Schedule A" complaint, a US ITC section 337
  investigation) that bring many disputes in one year.
- ``REVERSE_TARGETS``: the metrics a reverse stress test can aim at, each with whether a larger
  value is worse (the search moves a shock until the metric reaches its target).
"""

from __future__ import annotations

DISPUTE_TYPES: tuple[str, ...] = ("patent", "trademark", "trade_secret", "design", "copyright")
MODELLED_DISPUTE_TYPES: tuple[str, ...] = ("patent", "trademark", "trade_secret")
STAGES: tuple[str, ...] = ("early", "discovery", "trial", "appeal")
TRIAL: int = STAGES.index("trial")
CAMPAIGN_KINDS: tuple[str, ...] = ("schedule_a", "itc_337")
REVERSE_TARGETS: dict[str, bool] = {
    "solvency_ratio": False, "core_ratio": False, "required_capital": True, "expected_result": False,
    "net_var_0.995": True, "net_tvar_0.99": True, "exhaustion_probability": True, "net_loss_ratio": True,
    "reserve_adequacy": False}
