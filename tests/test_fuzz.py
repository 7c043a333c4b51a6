"""Hostile input: generated malformed files end in the project's own error, never a traceback.

Each loader (portfolio CSVs, dispute-history CSVs, scenario TOML) is fed small valid files with
one hostile change (a wrong type, NaN or infinity, a negative or huge number, an out-of-range
share, an unknown country, a duplicate or unknown id, an empty file, a byte-order mark, a very
long string, a cut-off file, random bytes). The loader must either accept the file (the change
was harmless) or raise InputError naming the file; a change that is certainly invalid must be
refused with the row or key and the value. Over 1,000 generated cases in all (see max_examples).
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leisim.errors import InputError
from leisim.models.history import load_history
from leisim.scenarios.portfolio import load_portfolio
from leisim.scenarios.schema import load_scenario

POLICIES = [
    {"policy_id": "P1", "sector": "new_energy", "premium_cny": "10000", "deductible_cny": "50000", "coinsurance": "0.1",
     "limit_per_dispute_cny": "500000", "aggregate_limit_cny": "1000000", "subsidy_share": "0.8"},
    {"policy_id": "P2", "sector": "medical_devices", "premium_cny": "20000", "deductible_cny": "0", "coinsurance": "0.2",
     "limit_per_dispute_cny": "2000000", "aggregate_limit_cny": "2000000", "subsidy_share": "0.8"},
]
EXPOSURES = [{"policy_id": "P1", "country": "US", "exposure": "2.5"}, {"policy_id": "P2", "country": "DE", "exposure": "1.0"},
             {"policy_id": "P2", "country": "US", "exposure": "0.5"}]
NUMERIC = {"premium_cny", "deductible_cny", "coinsurance", "limit_per_dispute_cny", "aggregate_limit_cny",
           "subsidy_share", "exposure"}
OPTIONAL = {"subsidy_share"}  # may be left out or empty (no subsidy)
# Values no numeric column may hold.
INVALID_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0.5", "abc", "", " ", "1e400", "0x10", "1,5",
                   "None", "true", "1.2.3", "--1", "1e", "ten"]
HOSTILE_TEXT = INVALID_NUMBERS + ["0", "1", "1e12", "1e308", "ZZ", "us", "U S", "é" * 5000, "x" * 100_000,
                                  "\ufeffP1", "P1", "P2", "P3", "=cmd|' /C calc'!A0", "<script>alert(1)</script>",
                                  "'; DROP TABLE policies;--", "\\..\\..", "../../etc/passwd", "\t", "\u202e", "🙂"]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def to_csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@st.composite
def table_mutation(draw, rows: list[dict]):
    """One hostile change to a table: ``(rows, columns, raw text transform, certainly_invalid)``."""
    rows = [dict(r) for r in rows]
    columns = list(rows[0])
    kind = draw(st.sampled_from(["cell", "cell_text", "drop_column", "duplicate_row", "empty", "header_only",
                                 "bom", "truncate", "bytes", "blank_lines", "extra_column"]))
    text_transform = None
    invalid = False
    if kind in ("cell", "cell_text"):
        r = draw(st.integers(0, len(rows) - 1))
        column = draw(st.sampled_from(columns))
        value = draw(st.sampled_from(HOSTILE_TEXT)) if kind == "cell" else draw(st.text(max_size=30))
        rows[r][column] = value
        invalid = column in NUMERIC and value in INVALID_NUMBERS and not (column in OPTIONAL and not value.strip())
    elif kind == "drop_column":
        column = draw(st.sampled_from(columns))
        columns.remove(column)
        invalid = column not in OPTIONAL
    elif kind == "duplicate_row":
        rows.append(dict(rows[draw(st.integers(0, len(rows) - 1))]))
    elif kind == "empty":
        text_transform = lambda text: ""  # noqa: E731
        invalid = True
    elif kind == "header_only":
        rows = []
        invalid = True
    elif kind == "bom":
        text_transform = lambda text: "\ufeff" + text  # noqa: E731
    elif kind == "truncate":
        cut = draw(st.floats(0.0, 1.0))
        text_transform = lambda text: text[: int(len(text) * cut)]  # noqa: E731
    elif kind == "bytes":
        junk = draw(st.binary(min_size=1, max_size=200))
        text_transform = lambda text: junk  # noqa: E731
    elif kind == "blank_lines":
        text_transform = lambda text: text.replace("\n", "\n\n")  # noqa: E731
    elif kind == "extra_column":
        columns.append("notes")
        for row in rows:
            row["notes"] = draw(st.sampled_from(HOSTILE_TEXT))
    return rows, columns, text_transform, invalid


def write(path: Path, rows: list[dict], columns: list[str], transform) -> None:
    text = to_csv(rows, columns)
    data = transform(text) if transform else text
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")


def check(load, directory: Path, filename: str, invalid: bool) -> None:
    try:
        load(directory)
    except InputError as err:
        assert filename in str(err) or str(directory) in str(err), str(err)
        return
    assert not invalid, f"accepted an invalid {filename}"


@FUZZ
@given(mutation=table_mutation(POLICIES))
def test_policies_csv(mutation):
    rows, columns, transform, invalid = mutation
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write(directory / "policies.csv", rows, columns, transform)
        write(directory / "exposures.csv", EXPOSURES, list(EXPOSURES[0]), None)
        check(load_portfolio, directory, "policies.csv", invalid)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=table_mutation(EXPOSURES))
def test_exposures_csv(mutation):
    rows, columns, transform, invalid = mutation
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write(directory / "policies.csv", POLICIES, list(POLICIES[0]), None)
        write(directory / "exposures.csv", rows, columns, transform)
        check(load_portfolio, directory, "exposures.csv", invalid)


@pytest.mark.parametrize("column, value, fragment", [
    ("coinsurance", "1.5", "coinsurance"), ("coinsurance", "-0.1", "coinsurance"),
    ("limit_per_dispute_cny", "-1", "limit_per_dispute_cny"), ("aggregate_limit_cny", "nan", "aggregate_limit_cny"),
    ("premium_cny", "inf", "premium_cny"), ("subsidy_share", "2", "subsidy_share"),
])
def test_out_of_range_policy_values_name_row_column_and_value(tmp_path, column, value, fragment):
    rows = [dict(r) for r in POLICIES]
    rows[1][column] = value
    write(tmp_path / "policies.csv", rows, list(POLICIES[0]), None)
    write(tmp_path / "exposures.csv", EXPOSURES, list(EXPOSURES[0]), None)
    with pytest.raises(InputError) as err:
        load_portfolio(tmp_path)
    message = str(err.value)
    assert "policies.csv" in message and "row 3" in message and fragment in message and value in message


def test_unknown_country_duplicate_and_orphan_ids(tmp_path):
    write(tmp_path / "policies.csv", POLICIES + [dict(POLICIES[0])], list(POLICIES[0]), None)
    write(tmp_path / "exposures.csv", EXPOSURES, list(EXPOSURES[0]), None)
    with pytest.raises(InputError, match="policies.csv.*P1"):
        load_portfolio(tmp_path)
    write(tmp_path / "policies.csv", POLICIES, list(POLICIES[0]), None)
    for change, fragment in (({"country": "XX"}, "XX"), ({"policy_id": "P9"}, "P9")):
        write(tmp_path / "exposures.csv", EXPOSURES + [EXPOSURES[0] | change], list(EXPOSURES[0]), None)
        with pytest.raises(InputError, match=f"exposures.csv.*{fragment}"):
            load_portfolio(tmp_path)


def _history_tables() -> dict[str, tuple[list[dict], list[str]]]:
    source = Path(__file__).resolve().parents[1] / "data" / "default" / "history"
    out = {}
    for name in ("exposures.csv", "disputes.csv", "campaigns.csv"):
        with open(source / name, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [r for _, r in zip(range(40), reader)]
            out[name] = (rows, list(reader.fieldnames))
    # Keep disputes whose policy and year have exposure rows among the first 40.
    policies = {(r["policy_id"]) for r in out["exposures.csv"][0]}
    years = {r["year"] for r in out["exposures.csv"][0]}
    out["disputes.csv"] = ([r for r in out["disputes.csv"][0] if r["policy_id"] in policies and r["year"] in years
                            and not r["campaign_id"]], out["disputes.csv"][1])
    return out


HISTORY = _history_tables()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(["exposures.csv", "disputes.csv", "campaigns.csv"]), data=st.data())
def test_history_csvs(target, data):
    rows, columns = HISTORY[target]
    if not rows:
        return
    mutated, new_columns, transform, _ = data.draw(table_mutation([dict(r) for r in rows]))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, (original, cols) in HISTORY.items():
            if name == target:
                write(directory / name, mutated, new_columns, transform)
            else:
                write(directory / name, original, cols, None)
        check(load_history, directory, target, False)


VALID_SCENARIO = '''name = "fuzz"
extends = "baseline"
years = 1000
[shocks]
frequency = { US = 1.5 }
[[reinsurance]]
type = "per_dispute_xl"
retention_cny = 2000000.0
limit_cny = 6000000.0
reinstatements = 2
'''
TOML_VALUES = ['-1', '0', '1e400', 'nan', 'inf', '-inf', '"text"', '[1, 2]', '{ a = 1 }', 'true', '1e12', '""',
               '"' + "x" * 10_000 + '"', '"../../etc/passwd"', '"../../etc/evil.toml"', '"baseline"', '2.5', '[]']
TOML_KEYS = ['years', 'seed', 'extends', 'name', 'shocks.frequency', 'shocks.severity', 'reinsurance.limit_cny',
             'reinsurance.retention_cny', 'reinsurance.type', 'reinsurance.reinstatements', 'capital.available_cny',
             'model.parameters', 'shocks.unknown_shock', 'unknown_key']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["value", "bytes", "truncate", "text"]), key=st.sampled_from(TOML_KEYS),
       value=st.sampled_from(TOML_VALUES), junk=st.binary(max_size=100), cut=st.floats(0, 1),
       text=st.text(max_size=200))
def test_scenario_toml(kind, key, value, junk, cut, text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        if kind == "value":
            table, _, leaf = key.rpartition(".")
            body = VALID_SCENARIO.replace("[shocks]\n", "").replace("frequency = { US = 1.5 }\n", "")
            if table == "reinsurance":
                body = body.replace(f"{leaf} = ", f"old_{leaf} = ") if f"\n{leaf} = " in body else body
                body += f"{leaf} = {value}\n"
            elif table:
                body = body.replace("[[reinsurance]]", f"[{table}]\n{leaf} = {value}\n[[reinsurance]]")
            else:
                body = body.replace(f"{leaf} = ", f"# {leaf} = ") if body.startswith(f"{leaf} =") or f"\n{leaf} = " in body else body
                body = f"{leaf} = {value}\n" + body
            path.write_text(body, encoding="utf-8")
        elif kind == "bytes":
            path.write_bytes(junk)
        elif kind == "truncate":
            path.write_text(VALID_SCENARIO[: int(len(VALID_SCENARIO) * cut)], encoding="utf-8")
        else:
            path.write_text(text, encoding="utf-8")
        try:
            load_scenario(str(path))
        except InputError as err:
            assert str(path) in str(err) or "fuzz.toml" in str(err) or "etc" in str(err), str(err)


def test_deep_and_cyclic_extends_and_paths_outside_are_refused(tmp_path):
    for i in range(40):
        (tmp_path / f"s{i}.toml").write_text(f'name = "s{i}"\nextends = "s{i + 1}.toml"\n')
    (tmp_path / "s40.toml").write_text('name = "s40"\nextends = "baseline"\n')
    with pytest.raises(InputError, match="extends chain deeper"):
        load_scenario(str(tmp_path / "s0.toml"))
    (tmp_path / "a.toml").write_text('name = "a"\nextends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('name = "b"\nextends = "a.toml"\n')
    with pytest.raises(InputError, match="extends cycle"):
        load_scenario(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('name = "c"\nextends = "../../../../../../etc/passwd"\n')
    with pytest.raises(InputError, match="must end in .toml"):
        load_scenario(str(tmp_path / "c.toml"))
    (tmp_path / "d.toml").write_text('name = "d"\nextends = "../../../../../../etc/hostname.toml"\n')
    with pytest.raises(InputError, match="not found"):
        load_scenario(str(tmp_path / "d.toml"))
