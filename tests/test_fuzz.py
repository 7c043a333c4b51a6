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
                   "None", "true", "1.2.3", "--1", "1e", "ten", "1e308", "1e16"]  # > 1e15 CNY, > 1e6 CNY million
HOSTILE_TEXT = INVALID_NUMBERS + ["0", "1", "1e12", "ZZ", "us", "U S", "é" * 5000, "x" * 100_000,
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


def write_mutated_history(directory: Path, target: str, data) -> bool:
    """The three history files, ``target`` with one hostile change; False if it has no rows to change."""
    rows, _ = HISTORY[target]
    if not rows:
        return False
    mutated, columns, transform, _ = data.draw(table_mutation([dict(r) for r in rows]))
    directory.mkdir(exist_ok=True)
    for name, (original, cols) in HISTORY.items():
        write(directory / name, *((mutated, columns, transform) if name == target else (original, cols, None)))
    return True


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(["exposures.csv", "disputes.csv", "campaigns.csv"]), data=st.data())
def test_history_csvs(target, data):
    with tempfile.TemporaryDirectory() as tmp:
        if write_mutated_history(Path(tmp), target, data):
            check(load_history, Path(tmp), target, False)


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


# ---------------------------------------------------------------------------------------------
# Through the command line: exit status 2, a message naming the file, no traceback, nothing written.

from click.testing import CliRunner  # noqa: E402

from leisim.cli import main  # noqa: E402

CLI_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_refused(result, *names: str) -> None:
    """Exit 2 with the project's one-line error naming one of ``names``; never a traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Error:" in result.output
    assert any(n in result.output for n in names), result.output


@CLI_FUZZ
@given(target=st.sampled_from(["policies.csv", "exposures.csv"]), data=st.data())
def test_cli_portfolio(target, data):
    """`leisim data validate` accepts or refuses (exit 0 or 2); an invalid portfolio stops `simulate` too,
    before anything is written."""
    rows = POLICIES if target == "policies.csv" else EXPOSURES
    mutated, columns, transform, invalid = data.draw(table_mutation(rows))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "portfolio"
        directory.mkdir()
        for name, original in (("policies.csv", POLICIES), ("exposures.csv", EXPOSURES)):
            if name == target:
                write(directory / name, mutated, columns, transform)
            else:
                write(directory / name, original, list(original[0]), None)
        result = cli("data", "validate", "--portfolio", str(directory))
        if result.exit_code == 0:
            assert not invalid, f"accepted an invalid {target}"
            assert result.output.startswith("ok  portfolio")
            return
        assert_refused(result, target)
        out = Path(tmp) / "out"
        refused = cli("simulate", "--portfolio", str(directory), "--years", "10", "--out", str(out))
        assert_refused(refused, target)
        assert not out.exists() and sorted(p.name for p in Path(tmp).iterdir()) == ["portfolio"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(["exposures.csv", "disputes.csv", "campaigns.csv"]), data=st.data())
def test_cli_history(target, data):
    """`leisim data validate --history` and `leisim fit` refuse a bad history with exit 2 and write no posterior."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "history"
        if not write_mutated_history(directory, target, data):
            return
        result = cli("data", "validate", "--history", str(directory))
        if result.exit_code == 0:
            return
        files = list(HISTORY)  # a change to one file can make another inconsistent (years, ids): either is named
        assert_refused(result, *files)
        posterior = Path(tmp) / "posterior.nc"
        assert_refused(cli("fit", "--history", str(directory), "--out", str(posterior)), *files)
        assert not posterior.exists()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(TOML_KEYS + ["shocks.fx", "reinsurance.cession", "capital.unknown"]),
       value=st.sampled_from(TOML_VALUES + ['{ XXX = 1.1 }', '{ USD = -1 }', '{ "*" = "a" }', '"<b>bold</b>"']),
       junk=st.one_of(st.none(), st.binary(max_size=60)))
def test_cli_scenario(key, value, junk):
    """`leisim scenarios validate` accepts or refuses; a refused scenario stops `simulate` before writing."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        if junk is not None:
            path.write_bytes(junk)
        else:
            table, _, leaf = key.rpartition(".")
            body = VALID_SCENARIO
            if table == "reinsurance":
                body = body.replace(f"\n{leaf} = ", f"\nold_{leaf} = ") + f"{leaf} = {value}\n"
            elif table:
                body = body.replace("[[reinsurance]]", f"[{table}]\n{leaf} = {value}\n[[reinsurance]]", 1)
                if table == "shocks":
                    body = body.replace("[shocks]\nfrequency = { US = 1.5 }\n", "", 1) if leaf != "frequency" else body
            else:
                body = f"{leaf} = {value}\n" + "\n".join(line for line in body.splitlines() if not line.startswith(f"{leaf} ="))
            path.write_text(body, encoding="utf-8")
        result = cli("scenarios", "validate", str(path))
        if result.exit_code == 0:
            return
        assert_refused(result, "fuzz.toml", "etc")
        out = Path(tmp) / "out"
        assert_refused(cli("simulate", "--scenario", str(path), "--years", "10", "--out", str(out)), "fuzz.toml", "etc")
        assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["simulate", "--years", "0"], "--years"), (["simulate", "--years", "ten"], "--years"),
    (["simulate", "--years", "1e99"], "--years"), (["simulate", "--seed", "-1"], "--seed"),
    (["simulate", "--seed", str(2**64)], "--seed"), (["simulate", "--years", str(10**11)], "--years"),
    (["simulate", "--chunk-size", "0"], "--chunk-size"), (["simulate", "--devices", "0"], "--devices"),
    (["simulate", "--scenario", "no_such_scenario"], "no_such_scenario"),
    (["simulate", "--scenario", "../../etc/passwd"], "passwd"),
    (["simulate", "--portfolio", "/nonexistent/portfolio"], "/nonexistent/portfolio"),
    (["simulate", "--coordinator", "localhost:1"], "--distributed"),
    (["simulate", "--compare-reinsurance", "/nonexistent/program.toml"], "program.toml"),
    (["stress", "--scenarios", "baseline,no_such"], "no_such"),
    (["report", "/nonexistent/run"], "/nonexistent/run"),
    (["fit", "--history", "/nonexistent/history"], "/nonexistent/history"),
    (["data", "validate", "--portfolio", "/nonexistent/p"], "/nonexistent/p"),
    (["scenarios", "validate", "/nonexistent/s.toml"], "s.toml"),
    (["reinsurance", "compare", "/nonexistent/program.toml"], "program.toml"),
])
def test_cli_options_out_of_range_exit_2(tmp_path, args, fragment):
    out = tmp_path / "out"
    result = cli(*args, *(["--out", str(out)] if args[0] in ("simulate", "stress", "fit", "reinsurance") else []))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and fragment in result.output, result.output
    assert not out.exists()


def test_hand_edited_run_outputs_are_refused_by_report(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for text, fragment in (("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"scenario": "x"}', "missing key"),
                           ('{"scenario": "x", "gross": 1, "net": [], "capital": "c", "reserves": {}, "reinsurance": 3}',
                            "shape")):
        (run_dir / "summary.json").write_text(text)
        result = cli("report", str(run_dir))
        assert_refused(result, "summary.json")
        assert fragment in result.output, result.output
        assert not (run_dir / "report.html").exists()


FIXED = '''name = "fixed"
[model]
parameters = "fixed"
[[model.cells]]
country = "US"
dispute_type = "patent"
frequency = {{ distribution = "poisson", rate = {rate} }}
severity = {severity}
'''


@pytest.mark.parametrize("severity, accepted", [
    ('{ distribution = "lognormal", median_cny = 1e6, sigma = 4.0 }', True),
    ('{ distribution = "lognormal", median_cny = 1e6, sigma = 6.0 }', False),
    ('{ distribution = "lognormal", median_cny = 1e13, sigma = 1.0 }', False),
    ('{ distribution = "pareto", alpha = 0.8, scale_cny = 1e5 }', True),
    ('{ distribution = "pareto", alpha = 0.3, scale_cny = 1e5 }', False),
])
def test_severities_that_would_overflow_float32_are_refused(tmp_path, severity, accepted):
    path = tmp_path / "fixed.toml"
    path.write_text(FIXED.format(rate=0.01, severity=severity))
    result = cli("scenarios", "validate", str(path))
    if accepted:
        assert result.exit_code == 0, result.output
    else:
        assert_refused(result, "fixed.toml")


def test_a_year_with_more_disputes_than_memory_holds_is_refused(tmp_path):
    # 100 disputes per CNY million of exports on 1e6 CNY million: 1e8 disputes a year, refused
    # before anything is compiled or written, with what to check.
    (tmp_path / "p").mkdir()
    write(tmp_path / "p" / "policies.csv", POLICIES[:1], list(POLICIES[0]), None)
    write(tmp_path / "p" / "exposures.csv", [{"policy_id": "P1", "country": "US", "exposure": "1e6"}],
          ["policy_id", "country", "exposure"], None)
    path = tmp_path / "huge.toml"
    path.write_text(FIXED.format(rate=100, severity='{ distribution = "lognormal", median_cny = 1e6, sigma = 1.0 }'))
    out = tmp_path / "out"
    result = cli("simulate", "--scenario", str(path), "--portfolio", str(tmp_path / "p"), "--out", str(out))
    assert result.exit_code == 2 and "more than leisim simulates" in result.output and "exposure units" in result.output
    assert not out.exists()
