"""Reinsurance programs: cessions inside the kernel (pure JAX), premiums on the host (NumPy).

A *program* is a list of contracts applied in inuring order: each contract sees what the
contracts before it left retained.

- Quota share: cedes ``cession`` of every retained dispute amount.
- Per-dispute excess of loss: cedes ``min(max(x - retention, 0), limit)`` of each retained dispute
  amount ``x``; the layer's annual aggregate cover is ``(1 + reinstatements) * limit`` (unlimited
  reinstatements: no aggregate cap). When the cap binds, each dispute's recovery is cut pro rata.
- Per-event excess of loss: the same layer on each loss *event*'s retained total ``E``, ``min(max(E -
  retention, 0), limit)``, with the same aggregate cover, reinstatements and premiums. An event is a
  campaign (every dispute one Schedule A complaint or ITC 337 investigation brings into the year: one
  loss to a reinsurer, whatever the number of insured sellers it names) or a single dispute
  otherwise. An event's recovery is allocated to its disputes pro rata to their retained amounts.
- Aggregate stop loss: cedes ``min(max(S - attachment, 0), limit)`` of the annual retained total
  ``S``, allocated to disputes pro rata to their retained amounts.

Every contract is computed on amounts *due* (inuring recoveries are deemed recoverable, the usual
wording). Then reinsurer default: each reinsurer draws one uniform per simulated year; it
defaults with the contract's probability and then pays only its recovery rate of what is due.
Contracts that name the same ``reinsurer`` share the uniform, so they fail together.

Pro-rata allocations keep per-dispute amounts consistent with annual totals, which is what lets
net losses be attributed to countries and dispute types (capital allocation) exactly.

Programs are arrays of shape ``[program, contract]`` so that several programs (a comparison on
common random numbers) run in one kernel pass; unused contract slots have kind ``NONE``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .ordered import segment_total, settled

NONE, QUOTA_SHARE, PER_DISPUTE_XL, STOP_LOSS, PER_EVENT_XL = range(5)
KINDS = {"quota_share": QUOTA_SHARE, "per_dispute_xl": PER_DISPUTE_XL, "stop_loss": STOP_LOSS,
         "per_event_xl": PER_EVENT_XL}
# Excess-of-loss layers: a limit per dispute or event, an annual aggregate cover of (1 + reinstatements)
# x limit, reinstatement premiums; priced, validated and reported alike (they differ only in the kernel).
LAYERS = ("per_dispute_xl", "per_event_xl")

# The default uniforms' stream: fold_in(year key, DEFAULT_STREAM), apart from the year's other
# draws, so that adding or changing reinsurance never changes the gross losses.
DEFAULT_STREAM = 0x7E1_05E


class Programs(NamedTuple):
    """Reinsurance programs as arrays ``[program, contract]`` (amounts in CNY)."""

    kind: jax.Array  # i32: NONE | QUOTA_SHARE | PER_DISPUTE_XL | STOP_LOSS | PER_EVENT_XL
    lower: jax.Array  # f64: QS cession; XL retention; SL attachment
    width: jax.Array  # f64: XL limit per dispute (per event); SL limit per year; QS unused
    cover: jax.Array  # f64: annual aggregate cover (XL: (1 + reinstatements) x limit; inf if unlimited)
    reinsurer: jax.Array  # i32: index of the reinsurer's default uniform
    default_probability: jax.Array  # f64
    recovery_rate: jax.Array  # f64


class Cession(NamedTuple):
    """One year's reinsurance outcome, per program (leading axis ``program``)."""

    due: jax.Array  # f64[program, contract]: ceded amounts before default
    recovered: jax.Array  # f64[program, contract]: what the reinsurers actually pay
    net: jax.Array  # f64[program]: gross minus recoveries
    recovered_by_slot: jax.Array  # f64[slot]: the first program's recoveries attributed to each dispute


def _safe_ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0), 0.0)


def _event_layer(retained: jax.Array, event: jax.Array | None, retention: jax.Array, limit: jax.Array,
                 slot_sum: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """A per-event layer before its aggregate cap: each slot's share of its event's layer loss
    ``min(max(E - retention, 0), limit)`` (pro rata to the slot's retained amount within the event's
    retained total ``E``) and the year's total over events.

    Each event's total is a scatter-add in slot order and the total over events sums each event's layer
    at its first slot with ``slot_sum``, so neither depends on how many slots the buffers have (the
    kernel's events sit at the same slots in any buffer that holds them: ordered.py). A one-dispute event
    has ``E = x`` exactly and a share of exactly 1, so it cedes what a per-dispute layer would, bit for bit.
    """
    n_slots = retained.shape[-1]
    slot = jnp.arange(n_slots, dtype=jnp.int32)
    segment = slot if event is None else event
    event_total = segment_total(retained, segment, n_slots + 1)[segment]
    layer = jnp.clip(event_total - retention, 0.0, limit)
    first = jax.ops.segment_min(slot, segment, num_segments=n_slots + 1)[segment] == slot  # integers: exact
    return layer * _safe_ratio(retained, event_total), slot_sum(jnp.where(first, layer, 0.0))


def cede(u_default: jax.Array, amounts: jax.Array, total: jax.Array, programs: Programs,
         kinds: tuple[tuple[int, ...], ...], slot_sum: Callable[[jax.Array], jax.Array] = jnp.sum,
         event: jax.Array | None = None) -> Cession:
    """Apply each program to one year's disputes.

    Args:
        u_default: f64[reinsurer] this year's default uniforms.
        amounts: f64[slot] the insurer's payment for each dispute slot (0 for empty slots).
        total: the year's gross total (the exact sum the amounts are a split of).
        programs: the programs' numbers, ``[program, contract]``.
        kinds: the programs' contract kinds (static: only the arithmetic each contract needs is
            traced; measured 1.6x faster on the kernel than selecting among all three).
        slot_sum: how to total a per-slot array (the kernel passes a fixed-order sum, so that a
            year's cessions do not depend on the buffer size it was simulated with).
        event: i32[slot] each slot's loss event for per-event layers, in ``0 .. slot count`` (the slots
            of one event share it; empty slots may share one of their own); default: every slot its own.
    """
    dues: list[jax.Array] = []
    recovereds: list[jax.Array] = []
    nets: list[jax.Array] = []
    by_slot: list[jax.Array] = []
    n_contracts = programs.kind.shape[1]
    for p, program in enumerate(kinds):
        retained, retained_total = amounts, total
        recovered_by_slot = jnp.zeros_like(amounts)
        due: list[jax.Array] = []
        recovered: list[jax.Array] = []
        for c in range(n_contracts):  # inuring order
            kind = program[c] if c < len(program) else NONE
            lower, width, cover = programs.lower[p, c], programs.width[p, c], programs.cover[p, c]
            if kind == NONE:
                due.append(jnp.zeros((), amounts.dtype))
                recovered.append(jnp.zeros((), amounts.dtype))
                continue
            if kind == QUOTA_SHARE:
                per_slot, ceded = retained * lower, lower * retained_total
            elif kind == PER_DISPUTE_XL:
                layer = jnp.clip(retained - lower, 0.0, width)
                layer_total = slot_sum(layer)
                ceded = jnp.minimum(layer_total, cover)
                per_slot = layer * _safe_ratio(ceded, layer_total)
            elif kind == PER_EVENT_XL:
                layer, layer_total = _event_layer(retained, event, lower, width, slot_sum)
                ceded = jnp.minimum(layer_total, cover)
                per_slot = layer * _safe_ratio(ceded, layer_total)
            else:  # STOP_LOSS
                ceded = jnp.clip(retained_total - lower, 0.0, width)
                per_slot = retained * _safe_ratio(ceded, retained_total)
            ceded = jnp.minimum(ceded, retained_total)  # never more than is retained (rounding)
            per_slot = settled(per_slot)  # rounded before it is subtracted or added (ordered.py)
            retained = jnp.maximum(retained - per_slot, 0.0)
            retained_total = retained_total - ceded
            paid_share = jnp.where(u_default[programs.reinsurer[p, c]] < programs.default_probability[p, c],
                                   programs.recovery_rate[p, c], 1.0)
            if p == 0:  # the first program's recoveries are attributed to cells
                recovered_by_slot = recovered_by_slot + settled(per_slot * paid_share)
            due.append(ceded)
            recovered.append(ceded * paid_share)
        program_due, program_recovered = jnp.stack(due), jnp.stack(recovered)
        # Net = what stays retained + what defaulting reinsurers failed to pay; never above gross.
        nets.append(jnp.minimum(retained_total + (program_due - program_recovered).sum(), total))
        dues.append(program_due)
        recovereds.append(program_recovered)
        by_slot.append(recovered_by_slot)
    return Cession(due=jnp.stack(dues), recovered=jnp.stack(recovereds), net=jnp.stack(nets),
                   recovered_by_slot=by_slot[0])


def default_uniforms(year_key: jax.Array, n_reinsurers: int) -> jax.Array:
    return jax.random.uniform(jax.random.fold_in(year_key, DEFAULT_STREAM), (max(n_reinsurers, 1),), jnp.float64)


# ---------------------------------------------------------------------------------------------
# Host side: contracts from the scenario, and their premiums.


class Contract(NamedTuple):
    """A validated contract with amounts resolved to CNY (host side)."""

    name: str
    kind: str  # quota_share | per_dispute_xl | per_event_xl | stop_loss
    lower: float  # cession | retention | attachment
    limit: float  # per dispute or per event (XL) or per year (SL); inf for a quota share
    reinstatements: float  # XL: number (inf: unlimited); others: 0
    reinstatement_premium: float  # XL: share of the layer premium per full reinstatement
    premium: float | None  # fixed premium (CNY); None: priced at the simulated expected loss x (1 + loading)
    loading: float
    ceding_commission: float  # QS: share of the ceded premium returned to the cedant
    reinsurer: str
    default_probability: float
    recovery_rate: float
    counterparty_factor: float  # C-ROSS counterparty default risk factor on recoverables

    @property
    def cover(self) -> float:
        """Annual aggregate cover."""
        if self.kind in LAYERS:
            return (1.0 + self.reinstatements) * self.limit
        return self.limit


@dataclasses.dataclass(frozen=True)
class ContractSpec:
    """A validated ``[[reinsurance]]`` table, typed, with its defaults: what the scenario file says
    (amounts as given: in CNY or as loss ratios of the portfolio's premium), before
    :meth:`resolve` turns it into a kernel :class:`Contract` for a portfolio."""

    kind: str  # quota_share | per_dispute_xl | per_event_xl | stop_loss
    name: str
    reinsurer: str
    cession: float = 0.0  # quota share
    ceding_commission: float = 0.0  # quota share
    retention_cny: float = 0.0  # XL (per dispute or per event)
    limit_cny: float | None = None  # XL, stop loss (else limit_loss_ratio)
    reinstatements: float = math.inf  # XL: a count; inf: unlimited (the default)
    reinstatement_premium: float = 0.0  # XL: share of the layer premium per full reinstatement
    attachment_cny: float | None = None  # stop loss (else attachment_loss_ratio)
    attachment_loss_ratio: float | None = None
    limit_loss_ratio: float | None = None
    premium_cny: float | None = None  # else rate_on_line x limit, else priced at expected loss x (1 + loading)
    rate_on_line: float | None = None
    loading: float = 0.0
    default_probability: float = 0.0
    recovery_rate: float = 0.0
    counterparty_factor: float = 0.0

    @classmethod
    def of(cls, table: dict, index: int) -> ContractSpec:
        """From a table the scenario schema validated; ``index``: its place in the program (for the
        default name and reinsurer)."""
        kind = str(table["type"])

        def number(key: str) -> float | None:
            return None if key not in table else float(table[key])

        reinstatements = table.get("reinstatements", "unlimited")
        return cls(kind=kind, name=str(table.get("name", f"{index + 1}: {kind}")),
                   reinsurer=str(table.get("reinsurer", f"#{index}")), cession=float(table.get("cession", 0.0)),
                   ceding_commission=float(table.get("ceding_commission", 0.0)),
                   retention_cny=float(table.get("retention_cny", 0.0)), limit_cny=number("limit_cny"),
                   reinstatements=math.inf if reinstatements == "unlimited" else float(reinstatements),
                   reinstatement_premium=float(table.get("reinstatement_premium", 0.0)),
                   attachment_cny=number("attachment_cny"), attachment_loss_ratio=number("attachment_loss_ratio"),
                   limit_loss_ratio=number("limit_loss_ratio"), premium_cny=number("premium_cny"),
                   rate_on_line=number("rate_on_line"), loading=float(table.get("loading", 0.0)),
                   default_probability=float(table.get("default_probability", 0.0)),
                   recovery_rate=float(table.get("recovery_rate", 0.0)),
                   counterparty_factor=float(table.get("counterparty_factor", 0.0)))

    def resolve(self, premium_cny: float) -> Contract:
        """The kernel's contract on a portfolio of premium ``premium_cny``: loss ratios to CNY, the
        premium fixed (CNY, or rate on line x limit) or None (priced at the simulated expected loss)."""
        if self.kind == "quota_share":
            return self._contract(self.cession, np.inf, 0.0, 0.0, self.cession * premium_cny, self.ceding_commission)
        if self.kind in LAYERS:
            limit = float(self.limit_cny)  # type: ignore[arg-type]  # required by the schema
            return self._contract(self.retention_cny, limit, self.reinstatements, self.reinstatement_premium,
                                  self._premium(limit), 0.0)
        attachment = (self.attachment_cny if self.attachment_cny is not None
                      else float(self.attachment_loss_ratio) * premium_cny)  # type: ignore[arg-type]
        limit = self.limit_cny if self.limit_cny is not None else float(self.limit_loss_ratio) * premium_cny  # type: ignore[arg-type]
        return self._contract(attachment, limit, 0.0, 0.0, self._premium(limit), 0.0)

    def _contract(self, lower: float, limit: float, reinstatements: float, reinstatement_premium: float,
                  premium: float | None, ceding_commission: float) -> Contract:
        return Contract(name=self.name, kind=self.kind, lower=lower, limit=limit, reinstatements=reinstatements,
                        reinstatement_premium=reinstatement_premium, premium=premium, loading=self.loading,
                        ceding_commission=ceding_commission, reinsurer=self.reinsurer,
                        default_probability=self.default_probability, recovery_rate=self.recovery_rate,
                        counterparty_factor=self.counterparty_factor)

    def _premium(self, limit: float) -> float | None:
        if self.premium_cny is not None:
            return self.premium_cny
        return self.rate_on_line * limit if self.rate_on_line is not None else None


def contract_specs(reinsurance: Sequence[dict | ContractSpec]) -> tuple[ContractSpec, ...]:
    """A validated ``[[reinsurance]]`` list (tables or specs already) as typed specs, in inuring order."""
    return tuple(c if isinstance(c, ContractSpec) else ContractSpec.of(c, i) for i, c in enumerate(reinsurance))


def contracts_from_scenario(reinsurance: Sequence[dict | ContractSpec], premium_cny: float) -> list[Contract]:
    """Resolve a validated ``[[reinsurance]]`` list: loss ratios to CNY (on ``premium_cny``), names, defaults."""
    return [spec.resolve(premium_cny) for spec in contract_specs(reinsurance)]


def program_arrays(programs: list[list[Contract]]) -> tuple[Programs, tuple[tuple[int, ...], ...], tuple[str, ...]]:
    """Stack programs into kernel arrays (padded with NONE); also their kinds and the reinsurers' names."""
    n_contracts = max([len(p) for p in programs] + [1])
    reinsurers: list[str] = []
    shape = (len(programs), n_contracts)
    kind, reinsurer = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    lower, width, cover = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    p_default, recovery = np.zeros(shape), np.ones(shape)
    for p, program in enumerate(programs):
        for c, contract in enumerate(program):
            if contract.reinsurer not in reinsurers:
                reinsurers.append(contract.reinsurer)
            kind[p, c] = KINDS[contract.kind]
            lower[p, c], width[p, c], cover[p, c] = contract.lower, min(contract.limit, 1e300), min(contract.cover, 1e300)
            reinsurer[p, c] = reinsurers.index(contract.reinsurer)
            p_default[p, c], recovery[p, c] = contract.default_probability, contract.recovery_rate
    arrays = Programs(kind=jnp.asarray(kind), lower=jnp.asarray(lower, jnp.float64), width=jnp.asarray(width, jnp.float64),
                      cover=jnp.asarray(cover, jnp.float64), reinsurer=jnp.asarray(reinsurer),
                      default_probability=jnp.asarray(p_default, jnp.float64),
                      recovery_rate=jnp.asarray(recovery, jnp.float64))
    kinds = tuple(tuple(KINDS[c.kind] for c in program) for program in programs)
    return arrays, kinds, tuple(reinsurers)


def reinstated(contract: Contract, due: np.ndarray) -> np.ndarray:
    """Amount reinstated each year: ``min(layer loss, reinstatements x limit)`` (XL only, else 0)."""
    if contract.kind not in LAYERS or contract.reinstatements == 0:
        return np.zeros_like(due)
    return np.minimum(due, contract.reinstatements * contract.limit)


def reinstatement_share(contract: Contract, due: np.ndarray) -> np.ndarray:
    """Each year's reinstated amount as a share of the layer limit (0 for other contracts)."""
    amount = reinstated(contract, due)
    return amount / contract.limit if contract.kind in LAYERS else np.zeros_like(due)


def price_from_means(contract: Contract, mean_due: float, mean_share: float) -> dict:
    """The contract's premium and ceding commission from the run's mean due and mean reinstated share.

    A fixed premium is taken as given. Otherwise the premium is the expected ceded loss times
    ``1 + loading``, net of the expected reinstatement premiums it will earn: for a layer with
    paid reinstatements at rate ``c``, ``P (1 + c E[min(L, k l)] / l) = (1 + loading) E[min(L, (k+1) l)]``
    (Mata 2000; Sundt 1991), where ``due = min(L, (k+1) l)`` is the annual ceded loss.
    """
    if contract.premium is not None:
        premium = contract.premium
    else:
        premium = (1.0 + contract.loading) * mean_due / (1.0 + contract.reinstatement_premium * mean_share)
    commission = contract.ceding_commission * premium if contract.kind == "quota_share" else 0.0
    return {"premium": premium, "priced": contract.premium is None, "ceding_commission": commission}


def price(contract: Contract, due: np.ndarray) -> dict:
    """:func:`price_from_means` on the years ``due``, plus each year's reinstatement premium."""
    share = reinstatement_share(contract, due)
    out = price_from_means(contract, float(due.mean()), float(share.mean()))
    out["reinstatement_premiums"] = contract.reinstatement_premium * out["premium"] * share  # [year]
    return out
