"""Load and validate the portfolio: ``policies.csv`` and ``exposures.csv`` (DESIGN.md contract)."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from array import array
from pathlib import Path

import numpy as np

from ..countries import COUNTRIES
from ..errors import InputError

POLICY_COLUMNS = (
    "policy_id",
    "sector",
    "premium_cny",
    "deductible_cny",
    "coinsurance",
    "limit_per_dispute_cny",
    "aggregate_limit_cny",
)
EXPOSURE_COLUMNS = ("policy_id", "country", "exposure")


@dataclasses.dataclass(frozen=True)
class Portfolio:
    """A validated portfolio. Amounts in CNY; exposure in CNY million of export revenue.

    ``exposure[p, c]`` is policy ``p``'s exposure to ``countries[c]``.
    """

    policy_id: tuple[str, ...]
    sector: tuple[str, ...]
    premium_cny: np.ndarray
    deductible_cny: np.ndarray
    coinsurance: np.ndarray
    limit_per_dispute_cny: np.ndarray
    aggregate_limit_cny: np.ndarray
    subsidy_share: np.ndarray
    countries: tuple[str, ...]
    exposure: np.ndarray  # [policy, country]
    source: str = "<memory>"

    @property
    def n_policies(self) -> int:
        return len(self.policy_id)

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.sector)))


def _close(name: str, known: tuple[str, ...]) -> str | None:
    """The known column a header name looks like a slip of (case, a letter or two), if any."""
    import difflib

    folded = {k.lower(): k for k in known}
    if name.lower() in folded:
        return folded[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.85)
    return folded[match[0]] if match else None


def _sniff(path: Path) -> str:
    """A hint when the file is not what a CSV reader expects (UTF-16, semicolons, tabs)."""
    head = path.read_bytes()[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 3 and head[1:2] == b"\x00"):
        return "; it looks like UTF-16 text: save it as UTF-8 CSV"
    first = head.split(b"\n", 1)[0]
    if b"," not in first and b";" in first:
        return "; it looks semicolon-separated: save it as comma-separated CSV"
    if b"," not in first and b"\t" in first:
        return "; it looks tab-separated: save it as comma-separated CSV"
    return ""


def read_rows(path: Path, required: tuple[str, ...], *, allow_empty: bool = False,
              optional: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (plus ``_line``); InputError for a missing file, column or row.

    A header naming a column twice is refused (a reader would keep the last one silently), and
    so is an unknown column that looks like a slip of a known one (``subsidy_shares``, ``Exposure``).
    For large files, :func:`iter_rows` gives the same rows one at a time.
    """
    rows = list(iter_rows(path, required, optional=optional))
    if not rows and not allow_empty:
        raise InputError("the file has a header but no rows", file=str(path))
    return rows


def iter_rows(path: Path, required: tuple[str, ...], *, optional: tuple[str, ...] = ()):
    """The rows of :func:`read_rows`, streamed: memory does not grow with the file (a 1,000,000-row
    exposures.csv is validated in constant memory for its rows). The header is checked before the
    first row is yielded."""
    if not path.is_file():
        raise InputError(
            "file not found; a portfolio directory holds policies.csv and exposures.csv",
            file=str(path),
        )
    known = tuple(required) + tuple(optional)
    try:
        # utf-8-sig: spreadsheets exported by hand often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise InputError(
                    f"the file is empty; it needs a header row: {','.join(required)}", file=str(path)
                )
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:
                raise InputError(f"the header names column(s) {', '.join(twice)} more than once; keep one of each",
                                 file=str(path), field="header", value=",".join(header))
            for name in header:
                if name not in known and _close(name, known) is not None:
                    raise InputError(f"unknown column {name!r}: did you mean {_close(name, known)!r}? (the columns "
                                     f"are {', '.join(known)})", file=str(path), field="header", value=name)
            missing = [name for name in required if name not in header]
            if missing:
                raise InputError(
                    f"missing column(s) {', '.join(missing)}; the header must hold {','.join(required)}"
                    + _sniff(path),
                    file=str(path),
                    field="header",
                    value=",".join(header),
                )
            width = len(header)
            for fields in reader:
                if not fields:
                    continue  # a blank line (csv.DictReader skips them too)
                if len(fields) > width:
                    raise InputError(
                        f"row {reader.line_num} has more fields than the header",
                        file=str(path),
                        field=f"row {reader.line_num}",
                    )
                row = {name: (fields[i].strip() if i < len(fields) else "") for i, name in enumerate(header)}
                row["_line"] = str(reader.line_num)
                yield row
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason}); save the file as UTF-8 CSV" + _sniff(path),
                         file=str(path)) from None
    except csv.Error as err:
        raise InputError(f"not a valid CSV file ({err})", file=str(path)) from None


# Upper bounds that no real book reaches, so that a typo (a value in CNY where CNY million was meant,
# an exponent too many) is refused instead of overflowing float32 sampling or the buffers: amounts
# up to 1e15 CNY (limits of 1e12 are legal); exposure up to 1e6 CNY million (1 trillion CNY of
# exports to one country, above any single exporter's revenue).
MAX_AMOUNT_CNY = 1e15
MAX_EXPOSURE = 1e6
EXPOSURE_UNIT = " (exposure is export revenue in CNY million)"


# Names people write for a country that ISO 3166 spells otherwise.
COUNTRY_ALIASES = {"UK": "GB", "EN": "GB", "USA": "US", "GER": "DE", "JPN": "JP", "KOR": "KR", "SK": "KR",
                   "BRA": "BR", "IND": "IN", "FRA": "FR", "ITA": "IT", "NLD": "NL", "HOL": "NL", "CHN": "CN"}


def country_hint(text: str) -> str:
    """' (did you mean 'GB'?)' for 'UK', 'us', 'Usa'...; '' when nothing is close."""
    upper = text.strip().upper()
    guess = upper if upper in COUNTRIES else COUNTRY_ALIASES.get(upper)
    return f" (did you mean {guess!r}?)" if guess in COUNTRIES and guess != text else ""


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def read_number(row: dict[str, str], column: str, path: Path, *, low: float, high: float = math.inf,
                hint: str = "") -> float:
    """The cell as a finite number in [low, high]; InputError naming file, row, column, value (and ``hint``)."""
    text = row.get(column, "")
    where = f"row {row['_line']}, column {column}"
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise InputError("must be a finite number (no NaN or inf)", file=str(path), field=where, value=text)
    if not _NUMBER.fullmatch(text):
        # Python's float() also reads "1_000_000" and "0_1": a spreadsheet never means that.
        raise InputError("not a number (digits, one '.', an optional exponent; no thousands separators)",
                         file=str(path), field=where, value=text)
    value = float(text)
    if not math.isfinite(value):
        raise InputError("must be a finite number (no NaN or inf)", file=str(path), field=where, value=text)
    if not low <= value <= high:
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
        raise InputError(f"must be {bound}{hint}", file=str(path), field=where, value=text)
    return value


def load_portfolio(directory: str | Path) -> Portfolio:
    """Read ``policies.csv`` and ``exposures.csv`` from ``directory`` and validate them.

    Raises:
        InputError: naming the file, row and column of the first problem found.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            "portfolio directory not found; pass a folder holding policies.csv and exposures.csv",
            file=str(directory),
        )
    policies_path, exposures_path = directory / "policies.csv", directory / "exposures.csv"

    index: dict[str, int] = {}
    sectors: list[str] = []
    numbers: dict[str, list[float]] = {name: [] for name in POLICY_COLUMNS[2:] + ("subsidy_share",)}
    for row in iter_rows(policies_path, POLICY_COLUMNS, optional=("subsidy_share",)):
        policy_id = row["policy_id"]
        if not policy_id:
            raise InputError("empty policy_id", file=str(policies_path), field=f"row {row['_line']}, column policy_id")
        if policy_id in index:
            raise InputError(
                "duplicate policy_id; each policy appears once",
                file=str(policies_path),
                field=f"row {row['_line']}, column policy_id",
                value=policy_id,
            )
        index[policy_id] = len(index)
        if not row["sector"]:
            raise InputError("empty sector", file=str(policies_path), field=f"row {row['_line']}, column sector")
        sectors.append(row["sector"])
        for column in ("premium_cny", "deductible_cny", "limit_per_dispute_cny", "aggregate_limit_cny"):
            numbers[column].append(read_number(row, column, policies_path, low=0.0, high=MAX_AMOUNT_CNY))
        numbers["coinsurance"].append(read_number(row, "coinsurance", policies_path, low=0.0, high=1.0))
        subsidy = row.get("subsidy_share", "")
        numbers["subsidy_share"].append(
            read_number(row, "subsidy_share", policies_path, low=0.0, high=1.0) if subsidy else 0.0
        )

    if not index:
        raise InputError("the file has a header but no rows", file=str(policies_path))
    # Streamed, and kept as flat arrays: a 1,000,000-row file costs ~30 MB, not a dict per row.
    country_index: dict[str, int] = {}
    rows_policy, rows_country, rows_value, rows_line = array("q"), array("q"), array("d"), array("q")
    for row in iter_rows(exposures_path, EXPOSURE_COLUMNS):
        where = f"row {row['_line']}"
        policy_id, country = row["policy_id"], row["country"]
        if policy_id not in index:
            raise InputError(
                "policy_id not found in policies.csv",
                file=str(exposures_path),
                field=f"{where}, column policy_id",
                value=policy_id,
                choices=list(index)[:20] + (["..."] if len(index) > 20 else []),
            )
        if country not in COUNTRIES:
            raise InputError(
                "unknown country; use an ISO 3166 alpha-2 code (EU is not a country: book UPC "
                "disputes to the local division's country)" + country_hint(country),
                file=str(exposures_path),
                field=f"{where}, column country",
                value=country,
                choices=sorted(COUNTRIES),
            )
        rows_policy.append(index[policy_id])
        rows_country.append(country_index.setdefault(country, len(country_index)))
        rows_value.append(read_number(row, "exposure", exposures_path, low=0.0, high=MAX_EXPOSURE, hint=EXPOSURE_UNIT))
        rows_line.append(int(row["_line"]))
    if not rows_value:
        raise InputError("the file has a header but no rows", file=str(exposures_path))
    policy_of, country_of = np.frombuffer(rows_policy, np.int64), np.frombuffer(rows_country, np.int64)
    pair = policy_of * max(len(country_index), 1) + country_of
    order = np.argsort(pair, kind="stable")
    repeated = np.flatnonzero(np.diff(pair[order]) == 0)
    if repeated.size:
        later = order[repeated + 1]
        first = int(later[np.argmin(np.frombuffer(rows_line, np.int64)[later])])  # the earliest repeat in the file
        names = {c: name for name, c in country_index.items()}
        raise InputError(
            "duplicate (policy_id, country) row; give each policy's exposure to a country once",
            file=str(exposures_path),
            field=f"row {rows_line[first]}",
            value=f"{list(index)[int(policy_of[first])]},{names[int(country_of[first])]}",
        )

    countries = tuple(sorted(country_index))
    reorder = np.array([countries.index(name) for name in country_index])  # file order -> sorted order
    exposure = np.zeros((len(index), len(countries)))
    exposure[policy_of, reorder[country_of]] = np.frombuffer(rows_value, np.float64)

    return Portfolio(
        policy_id=tuple(index),
        sector=tuple(sectors),
        countries=countries,
        exposure=exposure,
        source=str(directory),
        **{name: np.asarray(values, dtype=np.float64) for name, values in numbers.items()},
    )
