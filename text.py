"""The text leisim prints: summaries, comparisons, stress tables, fit diagnostics (lines, no I/O)."""

from __future__ import annotations

import dataclasses

from .simulator.capital import passes


def fmt(x: float | None, scale: float = 1e6, digits: int = 2) -> str:
    return "-" if x is None else f"{x / scale:,.{digits}f}"


def summary_lines(summary: dict) -> list[str]:
    lines: list[str] = []
    out = lines.append
    g, n = summary["gross"], summary["net"]
    out(f"\nScenario {summary['scenario']!r}: {summary['years']:,} simulated years, seed {summary['seed']}, "
               f"amounts in CNY million (± 1 Monte Carlo standard error)")
    out(f"{'':22}{'gross':>26}{'net':>26}")
    out(f"{'mean':22}{fmt(g['mean']):>17} ± {fmt(g['se']['mean'], digits=3):<6}"
               f"{fmt(n['mean']):>17} ± {fmt(n['se']['mean'], digits=3):<6}")
    out(f"{'std':22}{fmt(g['std']):>26}{fmt(n['std']):>26}")
    for level in g["var"]:
        for name, key in (("VaR", "var"), ("TVaR", "tvar")):
            out(f"{name + ' ' + level:22}{fmt(g[key][level]):>17} ± {fmt(g['se'][key][level], digits=3):<6}"
                       f"{fmt(n[key][level]):>17} ± {fmt(n['se'][key][level], digits=3):<6}")
    lr = summary["loss_ratio"]["gross"]
    out(f"{'premium':22}{fmt(summary['premium']):>17}")
    out(f"{'loss ratio (gross)':22}{'-' if lr is None else f'{lr:.1%}':>17}")
    ri = summary["reinsurance"]
    if ri["applied"]:
        out("\nReinsurance (inuring order)")
        for c in ri["contracts"]:
            out(f"  {c['name']:30} recovered {fmt(c['expected_recovered'])} ± {fmt(c['expected_recovered_se'], digits=3)}"
                       f"   premium {fmt(c['premium'])}   P(loss) {c['probability_of_loss']:.1%}"
                       + (f"   P(exhausted) {c['probability_exhausted']:.2%}" if c["probability_exhausted"] is not None else ""))
        out(f"  {'margin paid to reinsurers':30} {fmt(ri['margin'])}")
    cap = summary["capital"]
    ratio = cap["solvency_ratio"]
    result = cap.get("result", {})
    if result:
        out(f"\n{'expected result':22}{fmt(result['expected']):>17} ± {fmt(cap['se']['expected_result'], digits=3):<6}"
                   f"(premium {fmt(result['premium_earned'])} - expenses {fmt(result['expenses'])} "
                   f"- reinsurance {fmt(result['reinsurance_premiums_net_of_commissions'])} "
                   f"- net cost {fmt(result['expected_net_cost'])})")
    out(f"{'required capital (SCR)':22}{fmt(cap['required']):>17} ± {fmt(cap['se']['required'], digits=3):<6}"
               "(99.5% VaR of the one-year loss of own funds)")
    out(f"{'  VaR minus mean':22}{fmt(cap['var_minus_mean']['required']):>17}        "
               "(99.5% VaR of net cost - its mean; for comparison)")
    out(f"{'own funds (available)':22}{fmt(cap['available']):>17}")
    out(f"{'solvency ratio':22}{'-' if ratio is None else f'{ratio:.0%}':>17}"
               + ("" if ratio is None else f" ± {cap['se']['solvency_ratio']:.0%}  (C-ROSS: >= 100%: "
                  f"{'met' if cap['meets']['comprehensive_100pct'] else 'NOT met'})"))
    if cap["exhaustion_probability"] is not None:
        out(f"{'P(own funds exhausted)':22}{cap['exhaustion_probability']:>17.3%}")
    top = sorted(cap["allocation"]["by_country"].items(), key=lambda kv: -kv[1]["capital"])[:5]
    out(f"{'capital by country':22}" + ", ".join(f"{k} {fmt(v['capital'])}" for k, v in top))
    res = summary["reserves"]
    if res.get("expected_outstanding") is not None:
        out(f"{'reserve (best est.)':22}{fmt(res['expected_outstanding']):>17}   P(it covers the run-off) "
                   f"{res['adequacy']['probability']:.1%}; 99.5% run-off {fmt(res['reserve_for_adequacy']['0.995'])}; "
                   f"one-year reserve risk {fmt(res['one_year_reserve_risk']['capital'])}")
    d = summary["disputes"]
    out(f"{'disputes per year':22}{d['mean_per_year']:>17.2f}  (expected {d['expected_per_year']:.2f}, "
               f"max {d['max_per_year']})")
    pu = summary.get("parameter_uncertainty")
    if pu:
        out(f"{'parameter uncertainty':22}{pu['parameter_share_of_variance']:>16.1%}  of the variance of annual "
                   f"gross payouts ({pu['draws']} posterior draws)")
        if "var_0.995_widening" in pu and pu["var_0.995_widening"] is not None:
            out(f"{'':22}99.5% VaR {fmt(pu['var_0.995_posterior'])} with it, "
                       f"{fmt(pu['var_0.995_point_estimate'])} at the posterior mean: "
                       f"{pu['var_0.995_widening']:+.1%} (± {pu['var_0.995_widening_se']:.1%})")
    return lines


def comparison_lines(rows: list[dict]) -> list[str]:
    lines: list[str] = []
    out = lines.append
    width = max(16, *(len(r["program"]) + 2 for r in rows))
    out("\nReinsurance programs on the same simulated years (CNY million; ratio in %)")
    out(f"{'':26}" + "".join(f"{r['program']:>{width}}" for r in rows))
    table = (
        ("ceded (mean)", "ceded_mean", 1e6), ("reinsurance margin paid", "margin", 1e6),
        ("net mean", "net_mean", 1e6), ("net VaR 99.5%", "net_var_0.995", 1e6),
        ("net TVaR 99%", "net_tvar_0.99", 1e6), ("expected result", "expected_result", 1e6),
        ("required capital (SCR)", "required_capital", 1e6), ("solvency ratio", "solvency_ratio", 0.01),
        ("P(own funds exhausted)", "exhaustion_probability", 0.01),
    )
    for label, key, scale in table:
        out(f"{label:26}" + "".join(f"{fmt(r[key], scale):>{width}}" for r in rows))
    return lines


def stress_lines(doc: dict, names: list[str]) -> list[str]:
    lines: list[str] = []
    out = lines.append
    base = doc[names[0]]["metrics"]
    columns = (("net mean", "net_mean", 1e6), ("VaR 99.5", "net_var_0.995", 1e6), ("TVaR 99", "net_tvar_0.99", 1e6),
               ("exp. result", "expected_result", 1e6), ("SCR", "required_capital", 1e6),
               ("solvency", "solvency_ratio", 0.01), ("core", "core_ratio", 0.01),
               ("P(reserve ok)", "reserve_adequacy", 0.01))
    width = max(len(n) for n in names) + 2
    out(f"\nStressed levels ({base.get('years', 0):,} simulated years each; CNY million, ratios in %; "
               "C-ROSS: comprehensive >= 100%, core >= 50%)")
    out(f"{'':{width}}" + "".join(f"{label:>14}" for label, _, _ in columns) + "   C-ROSS")
    for name in names:
        m = doc[name]["metrics"]
        row = f"{name:{width}}"
        for _, key, scale in columns:
            v = m.get(key)
            row += f"{'-' if v is None else f'{v / scale:,.1f}':>14}"
        verdict = {None: "-", True: "PASS", False: "FAIL"}[passes(m.get("meets") or {})]
        out(row + f"   {verdict}")
    out(f"\nStress test on common random numbers: change from {names[0]} (± SE of the difference); "
               "CNY million")
    out(f"{'':{width}}" + "".join(f"{label:>20}" for label, _, _ in columns))
    for name in names[1:]:
        change = doc[name]["change_from_baseline"]
        row = f"{name:{width}}"
        for _, key, scale in columns:
            c = change.get(key)
            text = "-" if c is None else f"{c['difference'] / scale:+,.2f} ±{c['se'] / scale:,.2f}"
            row += f"{text:>20}"
        out(row)
    sens = doc.get("_sensitivities")
    if sens:
        out(f"\nSensitivities: change in net VaR 99.5 per +10% (CNY million, {sens['years']:,} years)")
        for country, entry in sens["by_country"].items():
            f, v = entry["frequency"]["net_var_0.995"], entry["severity"]["net_var_0.995"]
            out(f"  {country:4} frequency {f['difference'] / 1e6:+8.3f} ± {f['se'] / 1e6:.3f}   "
                       f"severity {v['difference'] / 1e6:+8.3f} ± {v['se'] / 1e6:.3f}")
    return lines


def fit_lines(result) -> list[str]:
    lines: list[str] = []
    out = lines.append
    rows = {row["name"]: row for row in result.summary}
    out(f"\n{'parameter':34}{'mean':>10}{'5%':>10}{'95%':>10}{'R-hat':>8}{'ESS bulk':>10}{'ESS tail':>10}")
    shown = [name for name in rows if name.startswith(("mu_type", "sigma_year", "dispersion", "campaign_log_rate",
                                                         "kappa[0", "sigma[", "win_logit_mean", "tau_"))]
    for name in shown:
        r = rows[name]
        out(f"{name:34}{r['mean']:10.3f}{r['q05']:10.3f}{r['q95']:10.3f}{r['r_hat']:8.3f}"
                   f"{r['ess_bulk']:10.0f}{r['ess_tail']:10.0f}")
    finite = [r for r in result.summary if r["r_hat"] == r["r_hat"]]
    worst = max(finite, key=lambda r: r["r_hat"])
    low_bulk = min(finite, key=lambda r: r["ess_bulk"] if r["ess_bulk"] == r["ess_bulk"] else 1e18)
    out(f"\nDiagnostics over {len(result.summary)} scalars: max R-hat {worst['r_hat']:.3f} ({worst['name']}), "
               f"min bulk ESS {low_bulk['ess_bulk']:.0f} ({low_bulk['name']}), divergences {result.divergences}")
    return lines


def fit_document(result) -> dict:
    """What `leisim fit --json` prints besides the posterior's path: the convergence diagnostics and the
    summary row of every scalar parameter (mean, quantiles, R-hat, ESS)."""
    finite = [r for r in result.summary if r["r_hat"] == r["r_hat"]]
    return {
        "divergences": int(result.divergences),
        "max_r_hat": max((float(r["r_hat"]) for r in finite), default=None),
        "min_ess_bulk": min((float(r["ess_bulk"]) for r in finite if r["ess_bulk"] == r["ess_bulk"]), default=None),
        "warnings": list(result.warnings),
        "settings": dataclasses.asdict(result.settings),
        "parameters": [dict(r) for r in result.summary],
    }


def attribution_lines(doc: dict) -> list[str]:
    """The analysis of change: per metric, each step's contribution with its paired SE."""
    lines = [f"Analysis of change {doc['from']} -> {doc['to']} ({doc['years']:,} years, common random numbers; "
             f"steps in this order: {', '.join(doc['order'])})"]
    for metric, block in doc["metrics"].items():
        if block is None:
            lines.append(f"\n{metric}: not defined for these scenarios")
            continue
        money = metric not in ("solvency_ratio", "core_ratio", "exhaustion_probability")

        def show(x: float, money: bool = money) -> str:
            return f"{x / 1e6:12,.2f} M" if money else f"{x:12.4f}  "

        lines.append(f"\n{metric}: {show(block['from']).strip()} -> {show(block['to']).strip()}")
        for row in block["steps"]:
            mark = "" if row["changed"] else "   (unchanged)"
            lines.append(f"  {row['step']:14}{show(row['contribution'])} ± {show(row['se']).strip()}{mark}")
        lines.append(f"  {'total':14}{show(block['total'])} ± {show(block['total_se']).strip()}")
    return lines


def reverse_line(shock: str, found: dict, metric: str, value: float) -> str:
    """One shock's answer of a reverse stress test."""
    if found["found"]:
        se = found.get("multiplier_se")
        return (f"{shock}: x{found['multiplier']:.4f}" + (f" ± {se:.4f}" if se else "")
                + f" breaches {metric} = {value:g} ({metric} there {found['metric']:.4g})")
    return f"{shock}: not breached up to x{found['searched_up_to']:g}"


def checks_lines(doc: dict) -> list[str]:
    """The posterior predictive checks' table and verdict (scenarios.ppc)."""
    from .scenarios import ppc

    verdict = ("every check passes" if doc["pass"] else
               "SOME CHECKS FAIL: the model (or the engine) does not reproduce the history")
    return ["  " + line for line in ppc.summary_lines(doc)] + ["  " + verdict]


def reverse_lines(doc: dict) -> list[str]:
    (metric, value), = doc["target"].items()
    return [reverse_line(shock, found, metric, value) for shock, found in doc["results"].items()]


def differences(first: dict, second: dict) -> list[str]:
    """``key.path: first -> second`` for every leaf where two resolved scenarios differ."""
    import json

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                out |= flatten(v, f"{prefix}.{k}" if prefix else k)
            return out
        return {prefix: value}

    def shown(value) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    fa, fb = flatten(first), flatten(second)
    return [f"{k}: {shown(fa.get(k, '(absent)'))} -> {shown(fb.get(k, '(absent)'))}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def portfolio_lines(p) -> list[str]:
    """`leisim data validate` on a portfolio."""
    import numpy as np

    exposed = [c for i, c in enumerate(p.countries) if p.exposure[:, i].sum() > 0]
    lines = [f"ok  portfolio {p.source}: {p.n_policies:,} policies in {len(p.sectors)} sectors, premium "
             f"{p.premium_cny.sum() / 1e6:,.2f} million CNY, exposure {p.exposure.sum():,.1f} million CNY to "
             f"{len(exposed)} countries ({', '.join(exposed)})"]
    unexposed = int(np.sum(p.exposure.sum(axis=1) == 0))
    if unexposed:
        lines.append(f"    note: {unexposed} policies have no exposure (no disputes)")
    return lines


def history_lines(h, folder) -> list[str]:
    """`leisim data validate` on a dispute history."""
    return [f"ok  history {folder}: years {h.years[0]}-{h.years[-1]}, {len(h.cell_exposure):,} exposure "
            f"cells, {int(h.cell_disputes.sum()):,} disputes ({len(h.dispute_cost):,} with a payment), "
            f"{len(h.campaign_dispute_cost):,} campaign disputes with a payment"]
