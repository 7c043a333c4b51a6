"""Figures for a run (matplotlib, at the edge): one consistent, colour-blind-safe style."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
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


def loss_distribution(gross: np.ndarray, summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.hist(gross, bins=120, color=OKABE_ITO[0], alpha=0.85)
    mean, var995 = summary["gross"]["mean"], summary["gross"]["var"]["0.995"]
    ax.axvline(mean, color=OKABE_ITO[1], lw=2, label=f"mean {mean / 1e6:,.1f}M")
    ax.axvline(var995, color=OKABE_ITO[3], lw=2, ls="--", label=f"99.5% VaR {var995 / 1e6:,.1f}M")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False)
    _style(ax, "annual gross payments (CNY million)", "simulated years",
           f"{summary['scenario']}: a 1-in-200 year costs {var995 / mean:,.1f}x the mean year")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def exceedance(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, key, colour in (("annual total (AEP)", "aep", OKABE_ITO[0]), ("largest dispute (OEP)", "oep", OKABE_ITO[1])):
        curve = summary["exceedance"][key]
        if not curve["return_period"]:
            continue
        loss, se = np.array(curve["loss"]), np.array(curve["se"])
        ax.plot(curve["return_period"], loss, marker="o", color=colour, label=label)
        ax.fill_between(curve["return_period"], loss - 2 * se, loss + 2 * se, color=colour, alpha=0.2)
    ax.set_xscale("log")
    ax.yaxis.set_major_formatter(MILLIONS)
    ax.legend(frameon=False)
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


def write_all(gross: np.ndarray, summary: dict, directory: Path) -> list[Path]:
    paths = [directory / "loss_distribution.png", directory / "exceedance.png", directory / "country_contributions.png"]
    loss_distribution(gross, summary, paths[0])
    exceedance(summary, paths[1])
    country_contributions(summary, paths[2])
    return paths
