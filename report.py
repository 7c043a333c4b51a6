"""The capital-adequacy report: one self-contained HTML file from a run's outputs (at the edge).

Pure: :func:`render` takes the parsed documents and the figures' bytes and returns the HTML; the
command line reads the files and writes the result atomically. Every user-supplied string is
escaped (``html.escape``). Every figure from summary.json / stress.json is printed in a
``<span class="v" data-key="...">`` whose ``data-key`` is its path in the source document and
``data-value`` its exact value, so a test (or a reviewer) can cross-check the report against it.
Images are embedded as base64 data URIs: the file opens with no network access.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
from pathlib import Path

# The judgment calls a reader must know about (docs/CALIBRATION.md "Not found (judgment)" and the
# design choices documented in docs/ARCHITECTURE.md).
LIMITATIONS = (
    "The dispute history and the pilot portfolio are synthetic, drawn from documented parameters calibrated to "
    "public figures (docs/CALIBRATION.md); they are not PICC's data.",
    "Not sourced, judgment: ITC 337 defence costs; Beijing policy limits, deductibles, coinsurance, rates and insured "
    "count; C-ROSS II factors for this line; Schedule A defendants per case; the UK recoverable share of costs.",
    "Fee shifting: the recoverable share of costs and the adverse-costs ratio per forum are fixed judgment values.",
    "FX volatilities are judgment within the sourced ranges (USD/CNY 3-5%, EUR/CNY 6-9%).",
    "Reinsurance terms and prices of the baseline are illustrative; premiums not given are priced at the simulated "
    "expected loss with a stated loading.",
    "Per-dispute excess of loss applies per insured dispute: a mass-defendant campaign is not one event for it.",
    "A policy's annual aggregate limit is shared among its disputes pro rata, not in the order they occur.",
    "Reserves are gross of reinsurance; legal costs are paid evenly over each dispute's duration; the best estimate "
    "uses open disputes weighted by their forum's mean cost (no case estimates).",
    "Required capital covers insurance risk on the one-year view (99.5% VaR of the loss of own funds from the "
    "year's underwriting result); market and operational risk and the C-ROSS correlation matrix are not modelled; "
    "the expense ratio is a judgment default unless the scenario sets it.",
)


def _get(doc: dict, key: str):
    value = doc
    for part in key.split("|"):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def _fmt(value, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if unit == "M":
        return f"{value / 1e6:,.2f}"
    if unit == "%":
        return f"{value:.1%}"
    if unit == "p":
        return f"{value:.3%}"
    if unit == "x":
        return f"x{value:.4f}"
    if unit == "int":
        return f"{int(value):,}"
    if unit == "g":
        return f"{value:.3g}"
    return html.escape(str(value))


def _v(doc: dict, key: str, unit: str = "M", source: str = "summary") -> str:
    """A figure from ``doc`` (path ``a|b|c``), tagged for cross-checking."""
    value = _get(doc, key)
    raw = "" if value is None else repr(value)
    return (f'<span class="v" data-source="{source}" data-key="{html.escape(key)}" '
            f'data-value="{html.escape(raw)}" data-unit="{unit}">{_fmt(value, unit)}</span>')


def _img(figures: dict, name: str, alt: str) -> str:
    data = figures.get(name)
    if not data:
        return ""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"></figure>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1a1a1a;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:2px solid #0072B2;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem;width:100%}th,td{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right}th:first-child,td:first-child{text-align:left}thead th{background:#eef4fa}
.kpi{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.6rem}
.kpi div{border:1px solid #ccc;border-radius:6px;padding:.6rem}.kpi b{display:block;font-size:1.4rem}
.synthetic{border:2px solid #E69F00;background:#fff7e6;padding:.5rem .8rem}
.pass{color:#007a4d;font-weight:bold}.fail{color:#b2182b;font-weight:bold}
figure{margin:.8rem 0}img{max-width:100%;height:auto}.small{font-size:.85rem;color:#444}
code{font-size:.85rem;word-break:break-all}
nav.toc ol{columns:2;font-size:.9rem}nav.toc a{color:#0072B2;text-decoration:none}
@page{size:A4;margin:16mm 14mm 18mm 14mm;@bottom-right{content:"page " counter(page) " of " counter(pages);font-size:9pt;
color:#444}@bottom-left{content:"leisim capital-adequacy report";font-size:9pt;color:#444}}
@media print{body{max-width:none;margin:0;font-size:10pt}h2,h3{break-after:avoid;page-break-after:avoid}
figure,table,.keep{break-inside:avoid;page-break-inside:avoid}nav.toc{break-after:page}}
"""


def _stress_passes(metrics: dict) -> bool | None:
    """C-ROSS verdict of one stressed scenario: comprehensive >= 100% and core >= 50% (None: no capital given)."""
    from .simulator.capital import passes

    return passes(metrics.get("meets") or {})


def _failing_stresses(stress: dict) -> list[str]:
    return [n for n in stress if not n.startswith("_") and _stress_passes(stress[n]["metrics"]) is False]


def _worst_stress(stress: dict) -> str | None:
    """The stressed scenario with the lowest solvency ratio (the baseline excluded)."""
    base = stress.get("_provenance", {}).get("baseline")
    ratios = {n: stress[n]["metrics"].get("solvency_ratio") for n in stress if not n.startswith("_") and n != base}
    ratios = {n: r for n, r in ratios.items() if r is not None}
    return min(ratios, key=ratios.get) if ratios else None


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return '<span class="small">n/a</span>'
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _validation(s: dict, figures: dict[str, bytes], attribution: dict | None, backtest: dict | None = None,
                sbc: dict | None = None) -> list[str]:
    """The validation section (issue 20): model drift against the factor charge, the IFRS 17 risk
    adjustment and, when a `leisim attribute` run is given, the analysis of change."""
    parts = ["<h2>Validation</h2><p>What a supervisor's validation record asks of an internal model beside its "
             "results: stability against a simpler measure (model drift, PRA SS15/16), the confidence level of the "
             "IFRS 17 risk adjustment (para 119) and the analysis of change between runs (Delegated Regulation "
             "2015/35 Art 242).</p>"]
    if backtest:
        parts.append(f"<h3>Backtest against experience</h3><p>Fitted on {backtest['training_years'][0]}-"
                     f"{backtest['training_years'][1]} of {html.escape(str(backtest.get('history', '')))}, scored on the "
                     f"held-out years {backtest['holdout_years'][0]}-{backtest['holdout_years'][1]} "
                     f"(frequency model: {html.escape(str(backtest.get('frequency_family', '')))}).</p>")
        rows = [[html.escape(name), _verdict(block.get("pass")), html.escape(str(block.get("rule", "")))]
                for name, block in backtest["checks"].items()]
        for level, block in backtest.get("calibration", {}).items():
            label = (f"pooled PIT of the held-out counts (n = {block['n']})" if level == "pit" else
                     f"pooled {float(level):.0%} coverage: {block['covered']} of {block['n']} "
                     f"(at least {block['lower_bound']})")
            rows.append([label, _verdict(block.get("pass")), html.escape(block["rule"])])
        parts.append(_table(["check", "verdict", "rule"], rows))
        parts.append(_img(figures, "backtest.png", "backtest: held-out years against their predictive intervals"))
    if sbc:
        rows = [[html.escape(name), str(block["histogram"]), f"{block['p_value']:.3g}", _verdict(block["pass"])]
                for name, block in sbc["parameters"].items()]
        parts.append(f"<h3>Simulation-based calibration</h3><p>{sbc['replicates']} prior draws of the frequency "
                     f"model, each simulated and refitted; the rank of the true value among "
                     f"{sbc['posterior_draws']} posterior draws is uniform if the model and sampler are right "
                     f"(Talts et al. 2018). {html.escape(sbc['rule'])}.</p>"
                     + _table(["parameter", "rank histogram", "p-value", "verdict"], rows))
        parts.append(_img(figures, "sbc.png", "simulation-based calibration: rank histograms"))
    drift = s.get("drift")
    if drift:
        f = drift["factor"]
        parts.append("<h3>Model drift: internal model against the factor charge</h3>"
                     f"<p>Factor charge: {f['multiplier']:g} x sd x volume, sd {f['premium_sd']:.1%} (premium risk) and "
                     f"{f['reserve_sd']:.1%} (reserve risk), correlation {f['correlation']:g} (Solvency II standard "
                     "formula, legal expenses). A ratio that moves from run to run without a change in the book is "
                     "drift to explain.</p>")
        rows = []
        for part, label in (("premium", "premium (underwriting year)"), ("reserve", "reserve (one-year)"),
                            ("combined", "combined")):
            ratio = drift["ratio"].get(part)
            rows.append([label, _v(s, f"drift|internal|{part}"), _v(s, f"drift|factor|{part}"),
                         "n/a" if ratio is None else _v(s, f"drift|ratio|{part}", "x")])
        parts.append(_table(["capital", "internal model (CNY million)", "factor charge (CNY million)", "ratio"], rows))
    ra = _get(s, "reserves|risk_adjustment")
    if ra:
        coc = ra["cost_of_capital"]
        parts.append("<h3>IFRS 17 risk adjustment</h3>"
                     f"<p>{html.escape(ra['basis'])}.</p>"
                     + _table(["measure", "risk adjustment (CNY million)", "± SE", "confidence level"], [
                         [f"at {ra['confidence_level']:.0%} confidence", _v(s, "reserves|risk_adjustment|at_confidence"),
                          _v(s, "reserves|risk_adjustment|at_confidence_se"), f"{ra['confidence_level']:.1%}"],
                         [f"cost of capital ({coc['rate']:.0%} a year)",
                          _v(s, "reserves|risk_adjustment|cost_of_capital|risk_adjustment"),
                          _v(s, "reserves|risk_adjustment|cost_of_capital|risk_adjustment_se")
                          if coc.get("risk_adjustment_se") is not None else "n/a",
                          _v(s, "reserves|risk_adjustment|cost_of_capital|equivalent_confidence_level", "%") + " ± "
                          + _v(s, "reserves|risk_adjustment|cost_of_capital|equivalent_confidence_level_se", "%")],
                     ]))
    if attribution:
        parts.append(f"<h3>Analysis of change: {html.escape(str(attribution['from']))} to "
                     f"{html.escape(str(attribution['to']))}</h3><p>Steps applied one at a time in this order: "
                     f"{html.escape(', '.join(attribution['order']))}; every step on the same "
                     f"{attribution['years']:,} simulated years, ± paired standard errors; the steps add up to the "
                     "total.</p>")
        for metric, block in attribution["metrics"].items():
            if not block:
                continue
            unit = "x" if metric in ("solvency_ratio", "core_ratio") else "%" if metric == "exhaustion_probability" \
                else "M"
            rows = [[html.escape(r["step"]), _fmt(r["contribution"], unit), _fmt(r["se"], unit)]
                    for r in block["steps"] if r["changed"]]
            rows.append(["<b>total</b>", _fmt(block["total"], unit), _fmt(block["total_se"], unit)])
            parts.append(f"<div class='keep'><p><b>{html.escape(metric.replace('_', ' '))}</b>: "
                         f"{_fmt(block['from'], unit)} to {_fmt(block['to'], unit)}</p>"
                         + _table(["step", "contribution", "± SE"], rows) + "</div>")
        parts.append(_img(figures, "attribution.png", "analysis of change, waterfall"))
    return parts


def _contents(parts: list[str]) -> list[str]:
    """Number the h2 headings, give them anchors, and put a contents list after the first page's notice."""
    titles = []

    def anchor(match: re.Match) -> str:
        titles.append(match.group(1))
        return f"<h2 id='s{len(titles)}'>{len(titles)}. {match.group(1)}</h2>"

    parts = [re.sub(r"<h2>(.*?)</h2>", anchor, p) for p in parts]
    toc = ("<nav class='toc'><h2 class='toc'>Contents</h2><ol>"
           + "".join(f"<li><a href='#s{i}'>{t}</a></li>" for i, t in enumerate(titles, 1)) + "</ol></nav>")
    at = next((i + 1 for i, p in enumerate(parts) if "class='synthetic'" in p), 2)
    return parts[:at] + [toc] + parts[at:]


def render(summary: dict, *, figures: dict[str, bytes], stress: dict | None = None, reverse: dict | None = None,
           diagnostics: dict | None = None, portfolio: dict | None = None, checks: dict | None = None,
           attribution: dict | None = None, backtest: dict | None = None, sbc: dict | None = None) -> str:
    """The report's HTML. ``diagnostics``: the fit's table and attributes; ``portfolio``: summary tables."""
    s = summary
    cap, res, ri = s["capital"], s["reserves"], s["reinsurance"]
    prov = s.get("provenance", {})
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>leisim capital-adequacy report: {html.escape(str(s['scenario']))}</title><style>{CSS}</style>"
             f"</head><body>"]
    parts.append(f"<h1>Capital adequacy: {html.escape(str(s['scenario']))}</h1>"
                 f"<p class='small'>Overseas IP legal-expenses insurance, Beijing pilot. {_v(s, 'years', 'int')} "
                 f"simulated years, seed {_v(s, 'seed', 'int')}, amounts in CNY million; ± values are Monte Carlo "
                 f"standard errors. Generated {dt.datetime.now(dt.UTC).date().isoformat()} by leisim.</p>")

    parts.append("<p class='synthetic'><b>Synthetic data.</b> The embedded dispute history, the pilot portfolio and "
                 "the parameters fitted to them are synthetic, calibrated to public figures (docs/CALIBRATION.md): "
                 "they describe no real insured and are not PICC's data. Results on them illustrate the method.</p>")

    # 1. Executive summary.
    ratio = cap.get("solvency_ratio")
    core = cap.get("core_ratio")
    meets = cap.get("meets", {})
    adequacy = _get(s, "reserves|adequacy|probability")
    words = []
    if _get(s, "capital|result|expected") is not None:
        words.append(f"The book's expected underwriting result is {_v(s, 'capital|result|expected')} million CNY a year "
                     f"(premium {_v(s, 'capital|result|premium_earned')} million, expenses "
                     f"{_v(s, 'capital|result|expenses')}, reinsurance {_v(s, 'capital|result|reinsurance_premiums_net_of_commissions')}"
                     f", expected net claims and reinstatement premiums {_v(s, 'capital|result|expected_net_cost')}).")
    if ratio is not None:
        words.append(f"Its solvency capital requirement, the 99.5% VaR of the one-year loss of own funds, is "
                     f"{_v(s, 'capital|required')} million, against {_v(s, 'capital|available')} million of own funds: "
                     f"a solvency ratio of {_v(s, 'capital|solvency_ratio', '%')} (± "
                     f"{_v(s, 'capital|se|solvency_ratio', '%')}), which "
                     f"{'meets' if meets.get('comprehensive_100pct') else 'does NOT meet'} the C-ROSS comprehensive "
                     f"threshold of 100%" + (f"; the core ratio is {_v(s, 'capital|core_ratio', '%')} against 50%"
                                            if core is not None else "") + ".")
    if cap.get("exhaustion_probability") is not None:
        words.append(f"The probability that one year's loss exhausts the own funds is "
                     f"{_v(s, 'capital|exhaustion_probability', 'p')}.")
    if stress:
        worst = _worst_stress(stress)
        if worst is not None:
            m = stress[worst]["metrics"]
            survives = _stress_passes(m)
            words.append(f"Of {len([k for k in stress if not k.startswith('_')]) - 1} stress scenarios the worst for "
                         f"solvency is <b>{html.escape(worst)}</b>: solvency ratio "
                         f"{_v(stress, f'{worst}|metrics|solvency_ratio', '%', 'stress')}, core ratio "
                         f"{_v(stress, f'{worst}|metrics|core_ratio', '%', 'stress')}; the book "
                         + ("survives it (C-ROSS thresholds met)." if survives
                            else "does <b>not</b> survive it: it falls below a C-ROSS threshold.")
                         + (" Scenarios failing: " + ", ".join(html.escape(n) for n in _failing_stresses(stress)) + "."
                            if _failing_stresses(stress) else ""))
    if adequacy is not None:
        words.append(f"A reserve of {_v(s, 'reserves|adequacy|reserve')} million at the end of the underwriting year "
                     f"covers its run-off with probability {_v(s, 'reserves|adequacy|probability', '%')}; "
                     f"{_v(s, 'reserves|reserve_for_adequacy|0.995')} million would cover it in 99.5% of years.")
    parts.append("<h2>Executive summary</h2><p>" + " ".join(words) + "</p>")
    parts.append("<div class='kpi'>"
                 f"<div>Required capital (SCR)<b>{_v(s, 'capital|required')}</b>± {_v(s, 'capital|se|required')}</div>"
                 f"<div>Solvency ratio<b>{_v(s, 'capital|solvency_ratio', '%')}</b>C-ROSS ≥ 100%: "
                 f"{_verdict(meets.get('comprehensive_100pct'))}</div>"
                 f"<div>Core ratio<b>{_v(s, 'capital|core_ratio', '%')}</b>C-ROSS ≥ 50%: "
                 f"{_verdict(meets.get('core_50pct'))}</div>"
                 f"<div>Expected result<b>{_v(s, 'capital|result|expected')}</b>per year</div>"
                 f"<div>P(own funds exhausted)<b>{_v(s, 'capital|exhaustion_probability', 'p')}</b>per year</div>"
                 f"<div>P(reserve covers run-off)<b>{_v(s, 'reserves|adequacy|probability', '%')}</b>"
                 "reserve held: the best estimate</div>"
                 "</div>")

    # 2. Portfolio.
    if portfolio:
        parts.append("<h2>The portfolio</h2>")
        parts.append(f"<p>{portfolio['policies']:,} policies, premium {portfolio['premium_cny'] / 1e6:,.2f} million CNY "
                     f"(subsidised share {portfolio['subsidy_share']:.0%}); per-dispute limits "
                     f"{html.escape(portfolio['limits'])}; deductibles {html.escape(portfolio['deductibles'])}.</p>")
        parts.append("<h3>Exposure by country (export revenue, CNY million)</h3>" + _table(
            ["country", "exposure", "policies exposed"],
            [[html.escape(c), f"{e:,.1f}", f"{n:,}"] for c, e, n in portfolio["by_country"]]))
        parts.append("<h3>Policies by sector</h3>" + _table(
            ["sector", "policies", "premium (CNY million)"],
            [[html.escape(k), f"{n:,}", f"{p / 1e6:,.2f}"] for k, n, p in portfolio["by_sector"]]))
        if portfolio.get("ids_sample"):
            parts.append("<p class='small'>Policy ids (first): " + ", ".join(html.escape(i) for i in portfolio["ids_sample"])
                         + "</p>")

    # 3. The model.
    parts.append("<h2>The model</h2><p>Frequency: disputes per policy-year per (country, dispute type), negative "
                 "binomial (NB1) with country × type rates partially pooled through region and dispute-type "
                 "hyper-priors, sector effects, log exposure and a common year effect; US Schedule A and ITC 337 "
                 "campaigns naming many insured sellers at once. Severity: the litigation lifecycle (the stage a "
                 "dispute ends at; a lognormal cost per stage with pooled country levels; fee shifting where the loser "
                 "pays; durations per stage for the payment pattern), fitted allowing for truncation at the deductible "
                 "and censoring at the limit. Priors come from docs/CALIBRATION.md: US patent-suit rates 0.3-1.5% of "
                 "exporters a year, AIPLA cost medians by stage, fee-shifting rules per forum, durations (RPX 2021, "
                 "PwC 2015, JUVE); countries without history draw from the pooled hyper-priors.</p>")
    if diagnostics:
        rows = diagnostics["rows"]
        worst_rhat = max((r["r_hat"] for r in rows), default=float("nan"))
        min_bulk = min((r["ess_bulk"] for r in rows), default=float("nan"))
        min_tail = min((r["ess_tail"] for r in rows), default=float("nan"))
        div = diagnostics.get("divergences", 0)
        # The rules `leisim fit` warns by (models/diagnostics.py): R-hat <= RHAT_MAX, ESS >= 100 per chain.
        from .models.diagnostics import ESS_MIN_PER_CHAIN, RHAT_MAX

        floor = ESS_MIN_PER_CHAIN * int(diagnostics.get("chains", 1))
        parts.append("<h3>Fit diagnostics</h3>" + _table(
            ["check", "value", "rule", "verdict"],
            [["largest R-hat", f"{worst_rhat:.4f}", f"<= {RHAT_MAX:g}", _verdict(worst_rhat <= RHAT_MAX)],
             ["smallest bulk ESS", f"{min_bulk:,.0f}", f">= {floor:,}", _verdict(min_bulk >= floor)],
             ["smallest tail ESS", f"{min_tail:,.0f}", f">= {floor:,}", _verdict(min_tail >= floor)],
             ["divergent transitions", f"{div}", "0", _verdict(div == 0)]]))
        parts.append(f"<p class='small'>Fit: {html.escape(diagnostics.get('settings', ''))}; "
                     f"{html.escape(diagnostics.get('command', ''))}; {html.escape(diagnostics.get('created', ''))}.</p>")
        key_rows = [r for r in rows if r["parameter"].split("[")[0] in
                    ("mu_type", "sigma_year", "dispersion", "sigma", "duration_log_median", "tau_country")]
        parts.append("<h3>Posterior summaries (selected)</h3>" + _table(
            ["parameter", "mean", "sd", "5%", "95%", "R-hat", "bulk ESS"],
            [[html.escape(r["parameter"]), f"{r['mean']:.3f}", f"{r['sd']:.3f}", f"{r['q05']:.3f}", f"{r['q95']:.3f}",
              f"{r['r_hat']:.3f}", f"{r['ess_bulk']:,.0f}"] for r in key_rows]))

    if checks:
        rows = []
        for name, c in checks["checks"].items():
            if "intervals" in c:
                detail = ", ".join(f"{_v(checks, f'checks|{name}|intervals|{lvl}|covered', 'int', 'checks')} of "
                                   f"{_v(checks, f'checks|{name}|n', 'int', 'checks')} inside {float(lvl):.1%} "
                                   + (f"(at least {_v(checks, f'checks|{name}|intervals|{lvl}|minimum_covered', 'int', 'checks')})"
                                      if iv.get("pass") is not None else "(reported, not tested: too few values)")
                                   for lvl, iv in c["intervals"].items())
                if "discrepancy" in c:
                    detail += (f"; chi-square discrepancy predictive p = "
                               f"{_v(checks, f'checks|{name}|discrepancy|p_value', 'g', 'checks')}")
            else:
                detail = (f"{_v(checks, f'checks|{name}|n', 'int', 'checks')} PIT values, KS p = "
                          f"{_v(checks, f'checks|{name}|ks_pvalue', 'g', 'checks')}")
            rows.append([html.escape(name.replace("_", " ")), detail, _verdict(c.get("pass"))])
        parts.append("<h3>Posterior predictive checks</h3><p>The history's own exposures replicated under the "
                     f"posterior ({_v(checks, 'replicated_years_per_history_year', 'int', 'checks')} years per "
                     "history year, through the simulation engine), set against what was observed. "
                     + html.escape(str(checks.get("method", ""))) + ".</p>"
                     + _table(["check", "coverage / calibration", "verdict"], rows))
        parts.append(_img(figures, "checks.png", "posterior predictive checks"))

    # 4. Results.
    parts.append("<h2>Results</h2>")
    rows = []
    for label, key in (("mean", "mean"), ("standard deviation", "std")):
        rows.append([label, _v(s, f"gross|{key}"), _v(s, f"net|{key}")])
    for level in ("0.9", "0.99", "0.995", "0.999"):
        rows.append([f"VaR {float(level):.1%}", _v(s, f"gross|var|{level}") + " ± " + _v(s, f"gross|se|var|{level}"),
                     _v(s, f"net|var|{level}") + " ± " + _v(s, f"net|se|var|{level}")])
        rows.append([f"TVaR {float(level):.1%}", _v(s, f"gross|tvar|{level}") + " ± " + _v(s, f"gross|se|tvar|{level}"),
                     _v(s, f"net|tvar|{level}") + " ± " + _v(s, f"net|se|tvar|{level}")])
    rows.append(["premium", _v(s, "premium"), _v(s, "reinsurance|net_premium") if ri.get("applied") else "n/a"])
    rows.append(["loss ratio", _v(s, "loss_ratio|gross", "%"), _v(s, "loss_ratio|net", "%")])
    parts.append(_table(["annual result (CNY million)", "gross", "net of reinsurance"], rows))
    pu = s.get("parameter_uncertainty")
    if pu:
        parts.append(f"<p>Parameter uncertainty: each simulated year uses one of {_v(s, 'parameter_uncertainty|draws', 'int')} "
                     f"posterior draws. It accounts for {_v(s, 'parameter_uncertainty|parameter_share_of_variance', '%')} of "
                     f"the variance of annual gross payments (process: the rest); at the posterior mean the 99.5% VaR "
                     f"would be {_v(s, 'parameter_uncertainty|var_0.995_point_estimate')} instead of "
                     f"{_v(s, 'parameter_uncertainty|var_0.995_posterior')} million.</p>")
    parts.append(_img(figures, "loss_distribution.png", "distribution of annual gross payments"))
    parts.append(_img(figures, "gross_vs_net.png", "exceedance curves gross and net"))
    parts.append(_img(figures, "exceedance.png", "AEP and OEP exceedance curves"))

    # 5. Reinsurance.
    if ri.get("applied"):
        parts.append("<h2>Reinsurance</h2><p>Contracts apply in the order listed (inuring order).</p>")
        rows = []
        for i, c in enumerate(ri["contracts"]):
            base = f"reinsurance|contracts|{i}"
            rows.append([html.escape(str(c["name"])), html.escape(str(c["type"])),
                         _v(s, f"{base}|premium"), _v(s, f"{base}|expected_recovered"),
                         _v(s, f"{base}|expected_reinstatement_premium"), _v(s, f"{base}|margin"),
                         _v(s, f"{base}|probability_of_loss", "%")])
        parts.append(_table(["contract", "type", "premium", "expected recovery", "reinstatement premium",
                             "margin paid", "P(loss)"], rows))
        parts.append(f"<p>Margin paid to reinsurers in total: {_v(s, 'reinsurance|margin')} million a year.</p>")
        parts.append(_img(figures, "layer_usage.png", "layer usage"))

    # 6. Capital allocation.
    parts.append("<h2>Capital and its allocation</h2>")
    parts.append(f"<p>{html.escape(str(cap.get('definition', '')))}. Allocation: "
                 f"{html.escape(str(cap.get('allocation', {}).get('method', '')))}.</p>")
    if _get(s, "capital|var_minus_mean|required") is not None:
        parts.append("<p>Why this definition: Solvency II (Art. 101(3)) and C-ROSS II calibrate the capital "
                     "requirement to the 99.5% one-year VaR of the change in own funds. Own funds move by the year's "
                     "result, so an expected loss the premium does not cover needs capital too, and a stress that "
                     "raises claims while premiums and reinsurance prices stay fixed lowers the ratio. "
                     "For comparison, the 99.5% VaR of the net cost minus its mean (which assumes the premium carries "
                     f"the expected cost) is {_v(s, 'capital|var_minus_mean|required')} million, a solvency ratio of "
                     f"{_v(s, 'capital|var_minus_mean|solvency_ratio', '%')}; it is not used for the verdicts.</p>")
        parts.append(_table(["one-year result (CNY million)", "value"], [
            ["premium earned (subsidy included)", _v(s, "capital|result|premium_earned")],
            ["expenses (" + _v(s, "capital|result|expense_ratio", "%") + " of premium)", _v(s, "capital|result|expenses")],
            ["reinsurance premiums net of ceding commissions", _v(s, "capital|result|reinsurance_premiums_net_of_commissions")],
            ["expected net claims + reinstatement premiums", _v(s, "capital|result|expected_net_cost")],
            ["expected result", _v(s, "capital|result|expected")],
            ["result in the 1-in-200 year", _v(s, "capital|result_var_0.995")],
        ]))
    alloc = cap.get("allocation", {}).get("by_country", {})
    parts.append(_table(["country", "capital (CNY million)", "± SE", "share"],
                        [[html.escape(k), _v(s, f"capital|allocation|by_country|{k}|capital"),
                          _v(s, f"capital|allocation|by_country|{k}|se"),
                          _v(s, f"capital|allocation|by_country|{k}|share", "%")]
                         for k in sorted(alloc, key=lambda k: -alloc[k]["capital"])]))
    parts.append(_img(figures, "capital_allocation.png", "capital allocation"))

    # 7. Reserves.
    if res.get("expected_outstanding") is not None:
        parts.append("<h2>Reserves and payment pattern</h2>")
        parts.append(f"<p>Expected outstanding at the end of the underwriting year: "
                     f"{_v(s, 'reserves|expected_outstanding')} ± {_v(s, 'reserves|expected_outstanding_se')} million; "
                     f"one-year reserve risk (99.5% VaR of the first run-off year's development minus its mean): "
                     f"{_v(s, 'reserves|one_year_reserve_risk|capital')} million; expected shortfall beyond the "
                     f"held reserve {_v(s, 'reserves|adequacy|expected_shortfall')} million.</p>")
        pattern = res["payment_pattern"]["cumulative_share"]
        parts.append(_table(["development year", "expected payments (CNY million)", "cumulative share paid"],
                            [[str(j), _v(s, f"reserves|payment_pattern|expected_payments|{j}"),
                              _v(s, f"reserves|payment_pattern|cumulative_share|{j}", "%")] for j in range(len(pattern))]))
        parts.append(_img(figures, "payment_pattern.png", "payment pattern"))

    # 8. Stress.
    if stress:
        names = [k for k in stress if not k.startswith("_")]
        base = stress.get("_provenance", {}).get("baseline", names[0] if names else "")
        years = _get(stress, f"{base}|metrics|years")
        parts.append(f"<h2>Stress tests</h2><p>Each scenario runs on the same simulated years as {html.escape(base)} "
                     "(common random numbers); premiums as written and reinsurance prices stay at the baseline's (a "
                     "scenario that changes the book earns its own book's premium). Stressed "
                     "levels first, with the C-ROSS verdict (comprehensive ratio ≥ 100% and core ratio ≥ 50%); "
                     "then each change from the baseline ± the standard error of the paired difference. "
                     + (f"Stress runs: {_v(stress, f'{base}|metrics|years', 'int', 'stress')} simulated years each; "
                        f"the baseline run above: {_v(s, 'years', 'int')}." if years is not None else "") + "</p>")
        level_keys = (("expected_result", "M"), ("net_var_0.995", "M"), ("required_capital", "M"), ("own_funds", "M"),
                      ("solvency_ratio", "%"), ("core_ratio", "%"))
        rows = []
        for name in names:
            m = stress[name]["metrics"]
            rows.append([html.escape(name)] + [_v(stress, f"{name}|metrics|{key}", unit, "stress") for key, unit in level_keys]
                        + [_verdict(_stress_passes(m))])
        parts.append("<h3>Stressed levels (CNY million)</h3>" + _table(
            ["scenario", "expected result", "net VaR 99.5%", "SCR", "own funds", "solvency ratio", "core ratio",
             "C-ROSS"], rows))
        rows = []
        change_keys = (("expected_result", "M"), ("net_var_0.995", "M"), ("required_capital", "M"),
                       ("solvency_ratio", "%"), ("reserve_adequacy", "%"))
        for name in names:
            if name == base:
                continue
            row = [html.escape(name)]
            for key, unit in change_keys:
                c = _get(stress, f"{name}|change_from_baseline|{key}")
                row.append("n/a" if c is None else _v(stress, f"{name}|change_from_baseline|{key}|difference", unit,
                                                      "stress") + " ± " +
                           _v(stress, f"{name}|change_from_baseline|{key}|se", unit, "stress"))
            rows.append(row)
        parts.append("<h3>Change from the baseline (± paired SE)</h3>" + _table(
            ["scenario", "expected result", "net VaR 99.5%", "SCR", "solvency ratio", "P(reserve covers run-off)"],
            rows))
        parts.append("<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(str(stress[n].get('description', '')))}"
                                      "</li>" for n in names) + "</ul>")
        parts.append(_img(figures, "tornado.png", "tornado chart"))
        parts.append(_img(figures, "sensitivities.png", "sensitivities by country"))
    if reverse:
        rows = []
        for shock, r in reverse.get("results", {}).items():
            rows.append([html.escape(shock),
                         "not breached" if not r.get("found") else _v(reverse, f"results|{shock}|multiplier", "x", "reverse"),
                         _v(reverse, f"results|{shock}|multiplier_se", "x", "reverse"),
                         html.escape(f"{r.get('target')} = {r.get('value')}")])
        parts.append("<h2>Reverse stress test</h2><p>The smallest multiplier of each shock at which the target is "
                     "breached (bisection on common random numbers).</p>"
                     + _table(["shock", "multiplier", "± SE", "target"], rows))

    parts += _validation(s, figures, attribution, backtest, sbc)

    # 9. Limitations and provenance.
    parts.append("<h2>Limitations and judgment calls</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in LIMITATIONS)
                 + "</ul>")
    rows = [[html.escape(k), f"<code>{html.escape(str(v))}</code>"] for k, v in prov.items()]
    parts.append("<h2>Provenance</h2><p>Re-running the command line below with the same versions reproduces "
                 "summary.json exactly (the seed fixes every random number).</p>" + _table(["item", "value"], rows))
    parts = _contents(parts)
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def portfolio_tables(portfolio) -> dict:
    """The portfolio section's numbers."""
    import numpy as np

    by_country = [(c, float(portfolio.exposure[:, i].sum()), int((portfolio.exposure[:, i] > 0).sum()))
                  for i, c in enumerate(portfolio.countries)]
    sectors = sorted(set(portfolio.sector))
    sector = np.asarray(portfolio.sector)
    by_sector = [(k, int((sector == k).sum()), float(portfolio.premium_cny[sector == k].sum())) for k in sectors]
    premium = float(portfolio.premium_cny.sum())
    subsidy = float((portfolio.premium_cny * portfolio.subsidy_share).sum() / premium) if premium > 0 else 0.0
    limits = sorted(set(portfolio.limit_per_dispute_cny.tolist()))
    deductibles = sorted(set(portfolio.deductible_cny.tolist()))

    def fmt(values):
        shown = ", ".join(f"{v / 1e6:g}M" for v in values[:8])
        return shown + (" ..." if len(values) > 8 else "")

    return {"policies": portfolio.n_policies, "premium_cny": premium, "subsidy_share": subsidy,
            "by_country": by_country, "by_sector": by_sector, "limits": fmt(limits), "deductibles": fmt(deductibles),
            "ids_sample": list(portfolio.policy_id[:5])}


def diagnostics_table(tree_path) -> dict | None:
    """The fit's diagnostics group and attributes from a posterior .nc (None if it has none)."""
    import xarray as xr

    try:
        tree = xr.open_datatree(tree_path)
    except (OSError, ValueError):
        return None
    if "diagnostics" not in tree.children:
        return None
    d = tree["diagnostics"].to_dataset()
    attrs = tree["posterior"].attrs if "posterior" in tree.children else {}
    chains = int(tree["posterior"].sizes.get("chain", 1)) if "posterior" in tree.children else 1
    rows = [{"parameter": str(p), **{k: float(d[k].values[i]) for k in ("mean", "sd", "q05", "q95", "r_hat", "ess_bulk",
                                                                         "ess_tail")}}
            for i, p in enumerate(d["parameter"].values)]
    tree.close()
    return {"rows": rows, "chains": chains, "divergences": int(attrs.get("divergences", 0)),
            "settings": str(attrs.get("settings", "")),
            "command": str(attrs.get("command", "")), "created": str(attrs.get("created", ""))}


def load_json(path) -> dict | None:
    """A JSON object from ``path``; None where the file does not exist, InputError where it is not one."""
    from .errors import InputError

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg}, line {err.lineno}); re-run the command that wrote it",
                         file=str(path)) from None
    except (UnicodeDecodeError, IsADirectoryError) as err:
        raise InputError(f"not a JSON text file ({err})", file=str(path)) from None
    if not isinstance(doc, dict):
        raise InputError("must hold a JSON object (leisim writes one); re-run the command that wrote it",
                         file=str(path), value=type(doc).__name__)
    return doc


def build(run_dir: Path, *, stress_dir: Path | None = None, portfolio_dir: Path | None = None,
          checks_path: Path | None = None, attribution_dir: Path | None = None, backtest_dir: Path | None = None,
          sbc_dir: Path | None = None, notify=lambda message: None) -> str:
    """The report's HTML from a run's output folder (and a stress folder, a portfolio, posterior checks).

    ``stress_dir`` None: results/stress when it holds a stress run. ``checks_path`` None: checks.json
    beside the run's posterior, left out (with a ``notify``) when it checks another posterior.
    """
    from .errors import InputError
    from .files import sha256_file
    from .formats.portfolio import load_portfolio

    summary_path = run_dir / "summary.json"
    summary = load_json(summary_path)
    if summary is None:
        raise InputError("no summary.json here: give the --out folder of a `leisim simulate` run", file=str(run_dir))
    for key in ("scenario", "gross", "net", "capital", "reserves", "reinsurance"):
        if key not in summary:
            raise InputError("missing key: re-run `leisim simulate` with this version", file=str(summary_path),
                             field=key)
    if stress_dir is None and Path("results/stress/stress.json").is_file():
        stress_dir = Path("results/stress")
    stress = load_json(stress_dir / "stress.json") if stress_dir else None
    reverse = load_json(stress_dir / "reverse.json") if stress_dir else None
    if stress_dir is not None and stress is None and reverse is None:
        raise InputError("no stress.json or reverse.json here: give the --out folder of `leisim stress`",
                         file=str(stress_dir))
    prov = summary.get("provenance", {})
    portfolio_path = portfolio_dir or (Path(prov["portfolio"]) if prov.get("portfolio") else None)
    portfolio = portfolio_tables(load_portfolio(portfolio_path)) if portfolio_path else None
    diagnostics = diagnostics_table(prov["posterior"]) if prov.get("posterior") else None
    figures = {p.name: p.read_bytes() for p in run_dir.glob("*.png")}
    if stress_dir is not None:
        figures |= {p.name: p.read_bytes() for p in stress_dir.glob("*.png")}
    explicit = checks_path is not None
    if checks_path is None and prov.get("posterior") and (Path(prov["posterior"]).parent / "checks.json").is_file():
        checks_path = Path(prov["posterior"]).parent / "checks.json"
    checks = load_json(checks_path) if checks_path is not None else None
    if checks_path is not None and (checks is None or not isinstance(checks.get("checks"), dict)):
        raise InputError("not a checks.json written by `leisim check`", file=str(checks_path))
    if checks is not None and prov.get("posterior") and Path(prov["posterior"]).is_file():
        # Checks of another fit must not stand beside this run's results.
        if checks.get("posterior_sha256") != sha256_file(prov["posterior"]):
            message = (f"{checks_path} checks another posterior than the run's ({prov['posterior']}); "
                       "run `leisim check` on the run's posterior")
            if explicit:
                raise InputError(message, file=str(checks_path), field="posterior_sha256")
            notify(f"{message}; the report leaves the checks out")
            checks = None
    if checks is not None and checks_path is not None and (checks_path.parent / "checks.png").is_file():
        figures["checks.png"] = (checks_path.parent / "checks.png").read_bytes()
    if attribution_dir is None and Path("results/attribution/attribution.json").is_file():
        attribution_dir = Path("results/attribution")
    attribution = load_json(attribution_dir / "attribution.json") if attribution_dir else None
    if attribution_dir is not None and (attribution is None or "metrics" not in attribution):
        raise InputError("no attribution.json here: give the --out folder of `leisim attribute`",
                         file=str(attribution_dir))
    if attribution_dir is not None and (attribution_dir / "attribution.png").is_file():
        figures["attribution.png"] = (attribution_dir / "attribution.png").read_bytes()
    extra = {}
    for name, folder, key in (("backtest", backtest_dir, "checks"), ("sbc", sbc_dir, "parameters")):
        if folder is None and Path(f"results/{name}/{name}.json").is_file():
            folder = Path(f"results/{name}")
        doc = load_json(folder / f"{name}.json") if folder else None
        if folder is not None and (doc is None or key not in doc):
            raise InputError(f"no {name}.json here: give the --out folder of `leisim {name}`", file=str(folder))
        if folder is not None and (folder / f"{name}.png").is_file():
            figures[f"{name}.png"] = (folder / f"{name}.png").read_bytes()
        extra[name] = doc
    try:
        return render(summary, figures=figures, stress=stress, reverse=reverse, diagnostics=diagnostics,
                      portfolio=portfolio, checks=checks, attribution=attribution, **extra)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        # A hand-edited or foreign summary.json / stress.json: say which files, not a traceback.
        sources = [str(summary_path)] + [str(stress_dir / n) for n in ("stress.json", "reverse.json")
                                         if stress_dir is not None and (stress_dir / n).is_file()]
        raise InputError(f"the run's outputs do not have the shape this leisim writes ({type(err).__name__}: "
                         f"{err}); re-run `leisim simulate` (and `leisim stress`) with this version",
                         file=", ".join(sources)) from None
