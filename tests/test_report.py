"""The capital-adequacy report: every number matches its source, user strings are escaped, it renders."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leisim import report
from leisim.cli import main
from leisim.data.generate import default_portfolio_dir
from leisim.models.posterior import default_posterior_path
from leisim.scenarios.portfolio import load_portfolio


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class _Figures(HTMLParser):
    """Collects the tagged figures: (source, key, exact value, unit, text shown)."""

    def __init__(self):
        super().__init__()
        self.found, self._open = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "v":
            self._open = [attrs["data-source"], attrs["data-key"], attrs["data-value"], attrs["data-unit"], ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[4] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.found.append(tuple(self._open))
            self._open = None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    out = base / "run"
    assert run("simulate", "--years", "3000", "--chunk-size", "1000", "--out", str(out)).exit_code == 0
    stress_dir = base / "stress"
    result = run("stress", "--scenarios", "legal_cost_inflation", "--years", "1000", "--chunk-size", "1000",
                 "--no-sensitivities", "--out", str(stress_dir))
    assert result.exit_code == 0, result.output
    result = run("report", str(out), "--stress", str(stress_dir))
    assert result.exit_code == 0, result.output
    return out, stress_dir


@pytest.mark.slow
def test_every_number_equals_its_source(run_dir):
    out, stress_dir = run_dir
    sources = {"summary": json.loads((out / "summary.json").read_text()),
               "stress": json.loads((stress_dir / "stress.json").read_text()),
               "checks": json.loads((default_posterior_path().parent / "checks.json").read_text())}
    page = (out / "report.html").read_text()
    parser = _Figures()
    parser.feed(page)
    assert len(parser.found) > 80
    for source, key, value, unit, text in parser.found:
        expected = report._get(sources[source], key)
        assert expected is not None, key
        assert value == repr(expected), (key, value, expected)
        assert text == report._fmt(expected, unit), (key, text)
    # The executive summary's figures are there.
    keys = {k for _, k, _, _, _ in parser.found}
    assert {"capital|required", "capital|solvency_ratio", "capital|exhaustion_probability",
            "reserves|adequacy|probability", "capital|result|expected", "capital|var_minus_mean|required",
            "legal_cost_inflation|metrics|solvency_ratio", "legal_cost_inflation|metrics|core_ratio",
            "baseline|metrics|years", "checks|disputes_by_country_and_type|intervals|0.9|covered"} <= keys


@pytest.mark.slow
def test_the_report_says_what_a_regulator_needs_to_read(run_dir):
    out, stress_dir = run_dir
    page = (out / "report.html").read_text()
    stress = json.loads((stress_dir / "stress.json").read_text())
    first_page = page[:page.index("The portfolio</h2>")]
    assert "Synthetic data." in first_page  # the embedded data are synthetic, said up front
    # The worst stress scenario is named in the executive summary, with its verdict.
    assert "worst for solvency is <b>legal_cost_inflation</b>" in first_page
    assert ("survives it" in first_page) == bool(stress["legal_cost_inflation"]["metrics"]["meets"]["comprehensive_100pct"])
    assert "Stressed levels" in page and "Change from the baseline" in page
    assert "P(reserve covers run-off)" in page and "Reserve adequacy<" not in page
    assert "Posterior predictive checks" in page and "Why this definition" in page
    # Issue 20: a contents list, numbered sections, A4 pages with page numbers, the validation section.
    assert "<nav class='toc'>" in page and "@page{size:A4" in page and "counter(page)" in page
    assert "Validation</h2>" in page and "Model drift" in page and "IFRS 17 risk adjustment" in page


@pytest.mark.slow
def test_report_is_self_contained(run_dir):
    out, _ = run_dir
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for section in ("Executive summary", "The portfolio", "The model", "Fit diagnostics", "Results", "Reinsurance",
                    "Capital and its allocation", "Reserves and payment pattern", "Stress tests",
                    "Limitations and judgment calls", "Provenance"):
        assert section in page, section


def test_user_strings_are_escaped():
    portfolio = load_portfolio(default_portfolio_dir())
    ids = ("<script>alert(1)</script>",) + portfolio.policy_id[1:]
    tables = report.portfolio_tables(dataclasses.replace(portfolio, policy_id=ids))
    summary = {"scenario": "<b>x</b>", "years": 1, "seed": 0, "gross": {}, "net": {}, "premium": 0.0,
               "capital": {"allocation": {"by_country": {}}}, "reserves": {}, "reinsurance": {"applied": False},
               "loss_ratio": {}, "provenance": {"command": "leisim simulate <img src=x onerror=alert(1)>"}}
    page = report.render(summary, figures={}, portfolio=tables,
                         stress={"<i>s</i>": {"description": "<script>bad()</script>", "metrics": {},
                                              "change_from_baseline": {}}})
    assert "<script>" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.slow
def test_recorded_command_reproduces_the_summary(run_dir, tmp_path):
    out, _ = run_dir
    first = json.loads((out / "summary.json").read_text())
    args = shlex.split(first["provenance"]["command"])[1:]
    args[args.index("--out") + 1] = str(tmp_path / "again")
    assert run(*args).exit_code == 0
    second = json.loads((tmp_path / "again" / "summary.json").read_text())
    first.pop("provenance"), second.pop("provenance")
    assert first == second


def test_missing_run_directory_exits_2(tmp_path):
    result = run("report", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "summary.json" in result.output


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium() -> str | None:
    """A headless Chromium; where none is installed, the system's package manager installs one (root only)."""
    found = _find_chromium()
    if found or shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
                    ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        try:
            subprocess.run(command, capture_output=True, timeout=600, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = _find_chromium()
        if found:
            return found
    return None


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium, and the system's package manager could not install one (needs root and "
                    "apt-get; install chromium by hand to run the rendering check)")
    out, _ = run_dir
    page = (out / "report.html").resolve()
    shot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    done = subprocess.run(common + [f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr and ":ERROR:CONSOLE" not in done.stderr
    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    summary = json.loads((out / "summary.json").read_text())
    assert report._fmt(summary["capital"]["required"], "M") in dom
    assert report._fmt(summary["capital"]["solvency_ratio"], "%") in dom


class _Structure(HTMLParser):
    """The page's markup (tags and attribute names, in order) and its text with entities decoded."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))
        self.text.extend(value or "" for _, value in attrs)

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag, ()))

    def handle_data(self, data):
        self.text.append(data)


HOSTILE_HTML = ["<script>alert(1)</script>", "</td></tr></table>", "<img src=x onerror=alert(1)>", "<!--", "-->",
                "&amp;", "&lt;b&gt;", "\"'><svg onload=alert(1)>", "<![CDATA[x]]>", "</style><style>", "javascript:x",
                "<a href='//evil'>", "</body></html>", "&#60;script&#62;", "<", ">", "&", "\"", "'"]
# Printable text only (the report is text, and HTML has no escape for control characters).
hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE_HTML),
                                  st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)),
                        min_size=1, max_size=4).map("".join)


def _page_with(strings: dict[str, str], summary: dict, stress: dict) -> str:
    """The report with ``strings`` in every slot a user (or a hand-edited file) controls."""
    import copy

    s, t = copy.deepcopy(summary), copy.deepcopy(stress)
    s["scenario"] = strings["scenario"]
    s["provenance"] = {k: strings["provenance"] for k in s["provenance"]} | {strings["key"]: strings["provenance"]}
    for contract in s["reinsurance"].get("contracts", []):
        contract["name"], contract["type"] = strings["contract"], strings["type"]
    s["capital"]["definition"] = strings["definition"]
    by_country = s["capital"]["allocation"]["by_country"]
    by_country[strings["country"]] = by_country.pop(next(iter(by_country)))
    # Stress scenario names are keys of the report's a|b|c paths; scenario names cannot hold "|" (schema.SAFE_NAME).
    names = [k for k in t if not k.startswith("_")]
    renamed = strings["stress"].replace("|", "/")
    t = {(renamed if k == names[-1] else k): v for k, v in t.items()}
    t[renamed]["description"] = strings["description"]
    portfolio = {"policies": 2, "premium_cny": 1e6, "subsidy_share": 0.8, "limits": strings["limits"],
                 "deductibles": "0M", "by_country": [(strings["country"], 1.0, 1)],
                 "by_sector": [(strings["sector"], 2, 1e6)], "ids_sample": [strings["policy"], "P2"]}
    diagnostics = {"rows": [{"parameter": f"sigma[{strings['parameter']}]", "mean": 1.0, "sd": 0.1, "q05": 0.8,
                             "q95": 1.2, "r_hat": 1.0, "ess_bulk": 900.0, "ess_tail": 800.0}],
                   "divergences": 0, "settings": strings["settings"], "command": strings["command"], "created": "x"}
    reverse = {"results": {strings["shock"]: {"found": True, "multiplier": 1.5, "multiplier_se": 0.1,
                                                "target": strings["target"], "value": 1.0}}}
    return report.render(s, figures={}, stress=t, reverse=reverse, diagnostics=diagnostics, portfolio=portfolio)


_PLAIN: dict = {}


def _plain_page(run_dir):
    """The run's documents and the markup of its report with harmless strings (computed once)."""
    if not _PLAIN:
        out, stress_dir = run_dir
        summary = json.loads((out / "summary.json").read_text())
        stress = json.loads((stress_dir / "stress.json").read_text())
        plain = _Structure()
        plain.feed(_page_with({slot: f"plain{i}" for i, slot in enumerate(SLOTS)}, summary, stress))
        _PLAIN.update(summary=summary, stress=stress, plain=plain)
    return _PLAIN["summary"], _PLAIN["stress"], _PLAIN["plain"]


SLOTS = ("scenario", "provenance", "key", "contract", "type", "definition", "country", "stress", "description",
         "limits", "sector", "policy", "parameter", "settings", "command", "shock", "target")


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strings=st.fixed_dictionaries({slot: hostile_text for slot in SLOTS}))
def test_every_user_string_is_escaped(run_dir, strings):
    """Whatever the strings, the page has exactly the markup of a page with harmless strings (no tag or
    attribute comes from the data), and each string reads back whole from the decoded text."""
    summary, stress, plain = _plain_page(run_dir)
    hostile = _Structure()
    hostile.feed(_page_with(strings, summary, stress))
    hostile.close()
    assert hostile.tags == plain.tags
    text = "".join(hostile.text)
    for slot, value in strings.items():
        shown = value.replace("|", "/") if slot == "stress" else value
        assert shown in text, (slot, value)
