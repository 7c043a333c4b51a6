"""ORD-style loss tables of a run: what brokers' reinsurance models and pandas/Parquet pipelines read.

Three tables, named and shaped after the Open Results Data (ORD) standard of Oasis LMF where they fit
(CamelCase columns; ``Period`` = the simulated year, 1-based; ``PeriodWeight`` = 1 / years):

- ``ylt``: the year loss table, one row per simulated year: ground-up, gross, ceded, net and net cost
  (net plus reinstatement premiums), and per contract of the scenario's program what was due and
  recovered and the reinstatement premiums paid (columns ``CededLoss[<contract>]`` ...). Its
  ``GrossLoss`` averages to summary.json's ``gross.mean``.
- ``ept``: the exceedance-probability table, ORD's columns ``SummaryId, EPCalc, EPType, ReturnPeriod,
  Loss`` plus ``Perspective`` and the Monte Carlo ``StandardError``. ``SummaryId`` 1 = gross, 2 = net;
  ``EPCalc`` 2 (full uncertainty: every parameter draw and year); ``EPType`` 1 = OEP, 2 = OEP TVaR,
  3 = AEP, 4 = AEP TVaR, at the return periods of ``metrics.RETURN_PERIODS`` up to a tenth of the
  years. AEP at T is ``metrics.var`` of the annual totals at 1 - 1/T, so the 200-year AEP is
  summary.json's 99.5% VaR exactly (gross and net alike); the AEP TVaR its TVaR. Gross OEP: the largest
  single-dispute payment of each year, before a policy's annual aggregate cuts its disputes pro rata
  (summary.json's ``exceedance.oep``); net OEP: each year's largest ``NetLoss`` of the dispute table (after
  that cut and the program's recoveries), written only with the dispute table.
- ``plt``: the period (dispute) loss table, one row per simulated dispute: ``Period, PeriodWeight,
  EventId`` (disputes that one campaign brought in share it: one loss event to a reinsurer),
  ``DisputeId``, ``Campaign``, ``PolicyId``, ``Country``, ``DisputeType``, ``Stage``, ``GroundUpLoss``,
  ``GrossLoss``, ``CededLoss`` (the program's recoveries attributed to the dispute, after default),
  ``NetLoss``. Per period, ``GrossLoss`` sums to the YLT's and ``NetLoss`` to its net.

Parquet by default (pyarrow, one row group per chunk of years: constant memory), CSV on request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .simulator import metrics

FORMATS = ("parquet", "csv")
EP_TYPES = {"OEP": 1, "OEP TVaR": 2, "AEP": 3, "AEP TVaR": 4}
EP_CALC_FULL_UNCERTAINTY = 2
SUMMARY_IDS = {"gross": 1, "net": 2}
CHUNK_YEARS = 65_536  # rows of the year loss table per row group


class TableWriter:
    """One table written in pieces (pyarrow tables of one schema) as Parquet or CSV."""

    def __init__(self, path: Path, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.path, self.fmt, self._writer = path, fmt, None

    def write(self, table) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = (pq.ParquetWriter(self.path, table.schema, compression="zstd") if self.fmt == "parquet"
                            else pcsv.CSVWriter(self.path, table.schema))
        self._writer.write_table(table)

    def close(self, schema=None) -> None:
        """Finish the file (an empty table of ``schema`` if nothing was written)."""
        if self._writer is None and schema is not None:
            import pyarrow as pa

            self.write(pa.Table.from_pylist([], schema=schema))
        if self._writer is not None:
            self._writer.close()


def year_loss_tables(dataset, chunk_years: int = CHUNK_YEARS) -> Iterator:
    """The YLT of a results.nc Dataset (opened lazily: read ``chunk_years`` years at a time)."""
    import pyarrow as pa

    n = dataset.sizes["year"]
    contracts = [str(c) for c in dataset["contract"].values] if "contract" in dataset.coords else []
    for start in range(0, n, chunk_years):
        part = dataset.isel(year=slice(start, min(start + chunk_years, n)))
        rows = part.sizes["year"]
        columns = {
            "Period": np.asarray(part["year"].values, np.int64) + 1,
            "PeriodWeight": np.full(rows, 1.0 / n),
            "GroundUpLoss": part["ground_up"].values,
            "GrossLoss": part["gross"].values,
            "CededLoss": part["ceded"].values,
            "NetLoss": part["net"].values,
            "NetCost": part["net_cost"].values,
            "MaxDisputeLoss": part["max_dispute"].values,
            "Disputes": part["disputes"].values.astype(np.int64),
        }
        for j, name in enumerate(contracts):
            columns[f"CededDueLoss[{name}]"] = part["ceded_due_by_contract"].values[:, j]
            columns[f"CededLoss[{name}]"] = part["ceded_by_contract"].values[:, j]
            columns[f"ReinstatementPremium[{name}]"] = part["reinstatement_premium"].values[:, j]
        yield pa.table(columns)


def ep_rows(perspective: str, annual: np.ndarray | None, largest: np.ndarray | None) -> list[dict]:
    """EPT rows of one perspective from its annual totals (AEP) and each year's largest dispute (OEP)."""
    rows = []
    for ep, values in (("OEP", largest), ("AEP", annual)):
        if values is None:
            continue
        ordered = np.sort(np.asarray(values, np.float64))
        periods = [t for t in metrics.RETURN_PERIODS if t * 10 <= ordered.size]
        for t in periods:
            level = 1.0 - 1.0 / t
            value_at_risk = metrics.var(ordered, level)
            rows.append(_ep_row(perspective, ep, t, value_at_risk, metrics.var_se(ordered, level)))
            rows.append(_ep_row(perspective, f"{ep} TVaR", t, metrics.tvar(ordered, level),
                                metrics.tvar_se(ordered, level, value_at_risk, presorted=True)))
    return rows


def _ep_row(perspective: str, ep_type: str, period: int, loss: float, se: float) -> dict:
    return {"SummaryId": SUMMARY_IDS[perspective], "Perspective": perspective, "EPCalc": EP_CALC_FULL_UNCERTAINTY,
            "EPType": EP_TYPES[ep_type], "EPTypeName": ep_type, "ReturnPeriod": float(period), "Loss": loss,
            "StandardError": se}


def ep_table(dataset, *, net_largest: np.ndarray | None = None):
    """The EPT of a results.nc Dataset (gross AEP and OEP, net AEP; net OEP if ``net_largest`` is given:
    each year's largest net dispute, from the dispute table)."""
    import pyarrow as pa

    rows = ep_rows("gross", dataset["gross"].values, dataset["max_dispute"].values)
    rows += ep_rows("net", dataset["net"].values, net_largest)
    rows.sort(key=lambda r: (r["SummaryId"], r["EPType"], -r["ReturnPeriod"]))
    return pa.Table.from_pylist(rows, schema=ept_schema())


def ept_schema():
    import pyarrow as pa

    return pa.schema([("SummaryId", pa.int32()), ("Perspective", pa.string()), ("EPCalc", pa.int32()),
                      ("EPType", pa.int32()), ("EPTypeName", pa.string()), ("ReturnPeriod", pa.float64()),
                      ("Loss", pa.float64()), ("StandardError", pa.float64())])


def plt_schema():
    import pyarrow as pa

    return pa.schema([("Period", pa.int64()), ("PeriodWeight", pa.float64()), ("EventId", pa.int64()),
                      ("DisputeId", pa.int64()), ("Campaign", pa.bool_()), ("PolicyId", pa.string()),
                      ("Country", pa.string()), ("DisputeType", pa.string()), ("Stage", pa.string()),
                      ("GroundUpLoss", pa.float64()), ("GrossLoss", pa.float64()), ("CededLoss", pa.float64()),
                      ("NetLoss", pa.float64())])


def write_tables(folder: Path, dataset, *, fmt: str = "parquet", disputes: Iterable | None = None) -> list[Path]:
    """Write ylt, ept (and plt, from ``disputes``: pyarrow tables of plt_schema() in period order) into
    ``folder`` (a staging folder); returns the files written."""
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    written = []
    ylt = TableWriter(folder / f"ylt{suffix}", fmt)
    for table in year_loss_tables(dataset):
        ylt.write(table)
    ylt.close()
    written.append(ylt.path)
    net_largest = None
    if disputes is not None:
        n = dataset.sizes["year"]
        net_largest = np.zeros(n)
        plt = TableWriter(folder / f"plt{suffix}", fmt)
        for table in disputes:
            plt.write(table)
            if table.num_rows:
                period = table["Period"].to_numpy() - 1
                np.maximum.at(net_largest, period, table["NetLoss"].to_numpy())
        plt.close(plt_schema())
        written.append(plt.path)
    ept = TableWriter(folder / f"ept{suffix}", fmt)
    ept.write(ep_table(dataset, net_largest=net_largest))
    ept.close()
    written.append(ept.path)
    return written
