"""Figures for a run (matplotlib, at the edge): one consistent, colour-blind-safe style."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# Okabe & Ito (2008) palette: distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MILLIONS = FuncFormatter(lambda x, _: f"{x / 1e6:,.1f}")


def _style(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def histogram(values, bins: int = 120, block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of ``values`` (an array or a lazily read 1-D variable), read in blocks."""
    n = values.shape[0]
    blocks = [(i, min(i + block, n)) for i in range(0, n, block)]
    low = min(float(np.min(values[a:b])) for a, b in blocks)
    high = max(float(np.max(values[a:b])) for a, b in blocks)
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    counts = sum(np.histogram(np.asarray(values[a:b]), bins=edges)[0] for a, b in blocks)
    return counts, edges


def loss_distribution(gross, summary: dict, path: Path) -> None:
    """Histogram of the annual gross payments (``gross``: an array or a lazily read variable)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    counts, edges = histogram(gross)
    ax.stairs(counts, edges, fill=True, color=OKABE_ITO[0], alpha=0.85)
    mean, var995 = summary["gross"]["mean"], summary["gross"]["var"]["0.995"]
    ax.axvline(mean, color=OKABE_ITO[1], lw=2, label=f"mean {mean / 1e6:,.1f}M")
    ax.axvline(var995, color=OKABE_ITO[3], lw=2, ls="--", label=f"99.5% VaR {var995 / 1e6:,.1f}M")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False)
    finding = (f"a 1-in-200 year costs {var995 / mean:,.1f}x the mean year" if mean > 0
               else "no payments in any simulated year")
    _style(ax, "annual gross payments (CNY million)", "simulated years", f"{summary['scenario']}: {finding}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curves(summary: dict, series) -> tuple:
    """Exceedance curves from summary["exceedance"] on a log return-period axis, with ±2 SE bands."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, key, colour in series:
        curve = summary["exceedance"][key]
        if not curve["return_period"]:
            continue
        loss, se = np.array(curve["loss"]), np.array(curve["se"])
        ax.plot(curve["return_period"], loss, marker="o", color=colour, label=label)
        ax.fill_between(curve["return_period"], loss - 2 * se, loss + 2 * se, color=colour, alpha=0.2)
    ax.set_xscale("log")
    ax.yaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False)
    return fig, ax


def exceedance(summary: dict, path: Path) -> None:
    fig, ax = _curves(summary, (("annual total (AEP)", "aep", OKABE_ITO[0]),
                                ("largest dispute (OEP)", "oep", OKABE_ITO[1])))
    aep = summary["exceedance"]["aep"]
    finding = ""
    if 200 in aep["return_period"]:
        finding = f": 1-in-200 annual payments reach {aep['loss'][aep['return_period'].index(200)] / 1e6:,.1f}M CNY"
    _style(ax, "return period (years)", "loss (CNY million)", f"Exceedance curves{finding} (bands: ±2 SE)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def country_contributions(summary: dict, path: Path) -> None:
    rows = sorted(summary["by_country"].items(), key=lambda kv: kv[1]["tvar_0.99_contribution"])
    names = [k for k, _ in rows]
    mean = np.array([v["mean"] for _, v in rows])
    tail = np.array([v["tvar_0.99_contribution"] for _, v in rows])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5), dpi=120)
    ax.barh(y - 0.2, mean, height=0.4, color=OKABE_ITO[0], label="mean year")
    ax.barh(y + 0.2, tail, height=0.4, color=OKABE_ITO[3], label="worst 1% of years (TVaR 99% share)")
    ax.set_yticks(y, names)
    ax.xaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False, loc="lower right")
    top = names[-1] if names else "-"
    share = tail[-1] / tail.sum() if tail.sum() > 0 else 0.0
    _style(ax, "gross payments (CNY million)", "country", f"{top} drives {share:.0%} of the tail")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gross_vs_net(summary: dict, path: Path) -> None:
    fig, ax = _curves(summary, (("gross", "aep", OKABE_ITO[0]), ("net of reinsurance", "aep_net", OKABE_ITO[2])))
    gross, net = summary["gross"]["var"]["0.995"], summary["net"]["var"]["0.995"]
    cut = 1.0 - net / gross if gross > 0 else 0.0
    _style(ax, "return period (years)", "annual loss (CNY million)",
           f"Reinsurance cuts the 1-in-200 year by {cut:.0%} (bands: ±2 SE)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def layer_usage(dataset, summary: dict, path: Path) -> None:
    """Each layer's annual recovery as a share of its aggregate cover, by return period (one scale: 0-1);
    proportional contracts, which have no cover, on a panel of their own (ceded CNY)."""
    contracts = summary["reinsurance"]["contracts"]
    layered = [i for i, c in enumerate(contracts) if c["aggregate_cover"] is not None]
    proportional = [i for i, c in enumerate(contracts) if c["aggregate_cover"] is None]
    panels = [p for p in (layered, proportional) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(8 if len(panels) == 1 else 12, 4.5), dpi=120, squeeze=False)
    years = dataset.sizes["year"]
    # At most 400 return periods from 2 years to the number of years (log-spaced): the i-th
    # smallest of n years is exceeded with probability (n - i) / n.
    rank = np.unique(np.round(years - years / np.geomspace(2.0, years, 400)).astype(np.int64))
    rank = rank[(rank >= 0) & (rank < years)]
    periods = years / (years - rank)
    for ax, indices in zip(axes[0], panels):
        for i in indices:
            due = np.sort(dataset["ceded_due_by_contract"][:, i].values)[rank]
            cover = contracts[i]["aggregate_cover"]
            ax.plot(periods, due / cover if cover is not None else due, color=OKABE_ITO[i % len(OKABE_ITO)],
                    label=contracts[i]["name"])
        ax.set_xscale("log")
        ax.legend(frameon=False, fontsize=8)
        if indices is layered:
            ax.set_ylim(0, 1.05)
            exhausted = [contracts[i] for i in layered if contracts[i]["probability_exhausted"]]
            finding = (f"{exhausted[0]['name']} is exhausted once in "
                       f"{1 / exhausted[0]['probability_exhausted']:,.0f} years" if exhausted
                       else "no layer is exhausted in the simulated years")
            _style(ax, "return period (years)", "annual ceded / aggregate cover", f"Layer usage: {finding}")
        else:
            ax.yaxis.set_major_formatter(MILLIONS)
            _style(ax, "return period (years)", "annual ceded (CNY million)", "Proportional cessions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def capital_allocation(summary: dict, path: Path) -> None:
    alloc = summary["capital"]["allocation"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    for ax, key, title in ((axes[0], "by_country", "by country"), (axes[1], "by_dispute_type", "by dispute type")):
        rows = sorted(alloc[key].items(), key=lambda kv: kv[1]["capital"])
        # Reinstatement premiums are a cost of the program, not a country or a dispute type: named as such.
        names = ["reinstatement premiums (program)" if k == "reinstatement_premiums" else k.replace("_", " ")
                 for k, _ in rows]
        value = np.array([v["capital"] for _, v in rows])
        se = np.array([v["se"] for _, v in rows])
        colours = [OKABE_ITO[1] if k == "reinstatement_premiums" else OKABE_ITO[0] for k, _ in rows]
        ax.barh(np.arange(len(names)), value, xerr=2 * se, color=colours, ecolor="0.3", capsize=2)
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.xaxis.set_major_formatter(MILLIONS)
        _style(ax, "capital (CNY million)", "", title)
    rows = alloc["by_country"]
    top = max(rows, key=lambda k: rows[k]["capital"]) if rows else None
    share = rows[top]["share"] if top is not None else None
    finding = (f"{top} takes {share:.0%}" if share is not None and summary["capital"]["required"] > 0
               else "nothing to allocate")
    fig.suptitle(f"Required capital {summary['capital']['required'] / 1e6:,.1f}M CNY: {finding} "
                 "(Euler TVaR allocation, bars ±2 SE)", fontsize=11, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def payment_pattern(summary: dict, path: Path) -> None:
    res = summary["reserves"]
    pattern = res["payment_pattern"]
    dev = np.array(res["development_year"])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.bar(dev, pattern["expected_payments"], color=OKABE_ITO[0], label="expected payments")
    ax.set_xticks(dev)
    ax.plot(dev, pattern["payments_q0.995"], color=OKABE_ITO[3], marker="o", ls="--", label="99.5% quantile")
    ax.yaxis.set_major_formatter(MILLIONS)
    ax2 = ax.twinx()
    ax2.plot(dev, np.array(pattern["cumulative_share"]) * 100, color=OKABE_ITO[2], marker="s", label="cumulative paid (%)")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("cumulative share paid (%)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], frameon=False, loc="center right")
    paid_first = pattern["cumulative_share"][0] if pattern["cumulative_share"] else 0.0
    _style(ax, "development year (0 = underwriting year)", "gross payments in the year (CNY million)",
           f"Only {paid_first:.0%} is paid in the underwriting year: reserve "
           f"{res['expected_outstanding'] / 1e6:,.1f}M CNY at its end")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(dataset, summary: dict, directory: Path) -> list[Path]:
    """Write every figure the run supports; returns their paths."""
    paths = []

    def add(name: str, draw, *args) -> None:
        path = directory / name
        draw(*args, path)
        paths.append(path)

    add("loss_distribution.png", loss_distribution, dataset["gross"].variable, summary)
    add("exceedance.png", exceedance, summary)
    add("country_contributions.png", country_contributions, summary)
    add("capital_allocation.png", capital_allocation, summary)
    if summary["reinsurance"]["applied"]:
        add("gross_vs_net.png", gross_vs_net, summary)
        add("layer_usage.png", layer_usage, dataset, summary)
    if summary["reserves"].get("expected_outstanding") is not None:
        add("payment_pattern.png", payment_pattern, summary)
    return paths


def tornado(stress: dict, path: Path) -> None:
    """Change in required capital and net VaR 99.5 from the baseline, per scenario (±2 SE of the difference)."""
    rows = [(name, entry["change_from_baseline"]) for name, entry in stress.items()
            if not name.startswith("_") and entry["change_from_baseline"].get("required_capital")
            and any(abs(v["difference"]) > 0 for v in [entry["change_from_baseline"]["required_capital"]])]
    rows.sort(key=lambda r: abs(r[1]["required_capital"]["difference"]))
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.8), dpi=120)
    y = np.arange(len(rows))
    for offset, key, label, colour in ((-0.2, "required_capital", "required capital", OKABE_ITO[3]),
                                       (0.2, "net_var_0.995", "net VaR 99.5%", OKABE_ITO[0])):
        value = np.array([r[1][key]["difference"] if r[1].get(key) else 0.0 for r in rows])
        se = np.array([r[1][key]["se"] if r[1].get(key) else 0.0 for r in rows])
        ax.barh(y + offset, value, height=0.4, xerr=2 * se, color=colour, ecolor="0.3", capsize=2, label=label)
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.xaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False, loc="lower right")
    top = rows[-1][0] if rows else "-"
    _style(ax, "change from baseline (CNY million)", "", f"{top} moves required capital most (±2 SE, same years)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sensitivities(sens: dict, path: Path) -> None:
    """Per country: change in net VaR 99.5 per +10% frequency and per +10% severity."""
    items = sorted(sens["by_country"].items(),
                   key=lambda kv: abs(kv[1]["frequency"]["net_var_0.995"]["difference"])
                   + abs(kv[1]["severity"]["net_var_0.995"]["difference"]))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.8), dpi=120)
    y = np.arange(len(items))
    for offset, kind, colour in ((-0.2, "frequency", OKABE_ITO[0]), (0.2, "severity", OKABE_ITO[1])):
        value = np.array([v[kind]["net_var_0.995"]["difference"] for _, v in items])
        se = np.array([v[kind]["net_var_0.995"]["se"] for _, v in items])
        ax.barh(y + offset, value, height=0.4, xerr=2 * se, color=colour, ecolor="0.3", capsize=2,
                label=f"+10% {kind}")
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yticks(y, [k for k, _ in items])
    ax.xaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False, loc="lower right")
    top = items[-1][0] if items else "-"
    _style(ax, "change in net VaR 99.5% (CNY million)", "country",
           f"Net VaR is most sensitive to {top} (±2 SE, common random numbers)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def waterfall(document: dict, path: Path, metrics: tuple[str, ...] = ("required_capital", "expected_result")) -> None:
    """Analysis of change: the first scenario's value, each step's contribution (±2 paired SE), the second's."""
    shown = [m for m in metrics if document["metrics"].get(m)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 3.6 * max(len(shown), 1)), dpi=120, squeeze=False)
    for ax, metric in zip(axes[:, 0], shown):
        block = document["metrics"][metric]
        labels = [document["from"]] + [r["step"] for r in block["steps"]] + [document["to"]]
        starts, heights, colours, errors = [0.0], [block["from"]], [OKABE_ITO[7]], [0.0]
        level = block["from"]
        for row in block["steps"]:
            starts.append(level)
            heights.append(row["contribution"])
            colours.append(OKABE_ITO[0] if row["contribution"] > 0 else OKABE_ITO[1])  # up blue, down orange
            errors.append(2 * row["se"])
            level += row["contribution"]
        starts.append(0.0)
        heights.append(block["to"])
        colours.append(OKABE_ITO[7])
        errors.append(0.0)
        x = np.arange(len(labels))
        ax.bar(x, heights, bottom=starts, color=colours, width=0.6)
        ax.errorbar(x, np.array(starts) + np.array(heights), yerr=errors, fmt="none", ecolor="0.3", capsize=3)
        ax.set_xticks(x, labels, fontsize=8, rotation=20)
        ax.legend(handles=[matplotlib.patches.Patch(color=OKABE_ITO[0], label="step raises it"),
                           matplotlib.patches.Patch(color=OKABE_ITO[1], label="step lowers it")],
                  frameon=False, fontsize=8, loc="best")
        money = metric not in ("solvency_ratio", "core_ratio", "exhaustion_probability")
        if money:
            ax.yaxis.set_major_formatter(MILLIONS)
        _style(ax, "", f"{metric.replace('_', ' ')}" + (" (CNY million)" if money else ""),
               f"{metric.replace('_', ' ')}: {document['from']} -> {document['to']}, step by step (±2 paired SE)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
