"""The page's figures: matplotlib, written as inline SVG."""

from __future__ import annotations

import io
import math

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from flask_deploy_lab.report.summary import Row

# Text stays text (smaller, searchable), and the ids matplotlib writes into the
# SVG come from a fixed salt, so the same run gives the same page.
_RC = {"svg.fonttype": "none", "svg.hashsalt": "flask-deploy-lab"}

# the bars of a cell whose load generator was saturated ("Hatched bars" on the page)
_SATURATED_HATCH, _SATURATED_EDGE = "//", "#b00020"

# latency markers: column, marker, colour (light to dark as the percentile rises)
_PERCENTILES = (("p50_ms", "o", "#9ecae1"), ("p95_ms", "s", "#4292c6"), ("p99_ms", "^", "#08519c"))


def _svg(figure: Figure) -> str:
    """A figure as an inline <svg> element (no XML declaration or doctype)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def endpoint_plot(rows: list[Row]) -> str:
    """One inline SVG for one endpoint: throughput, latency and efficiency of each cell."""
    with matplotlib.rc_context(_RC):
        return _svg(_endpoint_figure(rows))


def _endpoint_figure(rows: list[Row]) -> Figure:
    configs = list(dict.fromkeys(r.config for r in rows))
    palette = matplotlib.colormaps["tab10"]
    colours = [palette(configs.index(r.config) % 10) for r in rows]
    positions = list(range(len(rows)))
    figure = Figure(figsize=(max(6.5, 0.8 * len(rows) + 2.5), 8.4))
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    for ax in (top, middle, bottom):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_xlim(-0.6, len(rows) - 0.4)
    bottom.set_xticks(positions)
    bottom.set_xticklabels([f"{r.config}\nu{r.users}" for r in rows], fontsize=8)

    def hatch_saturated(bars):
        for bar, row in zip(bars, rows, strict=True):
            if row.generator_saturated:
                bar.set_hatch(_SATURATED_HATCH)
                bar.set_edgecolor(_SATURATED_EDGE)

    top.set_title("Throughput, requests/s (black line: ceiling)", fontsize=10, loc="left")
    throughput = [r.rps or 0 for r in rows]
    hatch_saturated(top.bar(positions, throughput, width=0.6, color=colours))
    highest = max(throughput, default=0)
    for position, row in zip(positions, rows, strict=True):
        if row.ceiling_rps is not None:
            top.hlines(row.ceiling_rps, position - 0.4, position + 0.4, color="black", lw=2)
            top.annotate(
                f"{row.ceiling_rps:g}",
                (position, row.ceiling_rps),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=7,
            )
            highest = max(highest, row.ceiling_rps)
    top.set_ylim(0, highest * 1.18 or 1)

    middle.set_title("Latency, ms (log scale)", fontsize=10, loc="left")
    # NaN leaves a cell without a percentile out of the drawing
    p50 = [r.p50_ms or math.nan for r in rows]
    p99 = [r.p99_ms or math.nan for r in rows]
    middle.vlines(positions, p50, p99, color="#9aa0a6", lw=2)
    for key, marker, colour in _PERCENTILES:
        values = [getattr(r, key) or math.nan for r in rows]
        middle.scatter(positions, values, marker=marker, color=colour, s=36, zorder=3)
        middle.scatter([], [], marker=marker, color=colour, label=key.removesuffix("_ms"))
    known = [v for r in rows for v in (r.p50_ms, r.p99_ms) if v]
    if known:
        middle.set_yscale("log")
        middle.set_ylim(min(known) / 1.6, max(known) * 1.6)
        plain = FuncFormatter(lambda value, _pos: f"{value:g}")
        middle.yaxis.set_major_formatter(plain)
        middle.yaxis.set_minor_formatter(plain)
        middle.tick_params(axis="y", which="minor", labelsize=7)
    middle.legend(fontsize=8, loc="upper left", ncols=3, frameon=False)

    bottom.set_title("Efficiency = throughput / ceiling", fontsize=10, loc="left")
    efficiencies = [r.efficiency or 0 for r in rows]
    hatch_saturated(bottom.bar(positions, efficiencies, width=0.6, color=colours))
    for position, row in zip(positions, rows, strict=True):
        if row.efficiency is None:
            bottom.text(position, 0.03, "n/a", ha="center", va="bottom", fontsize=9)
    bottom.axhline(1.0, color="black", linewidth=1, linestyle="--")
    bottom.set_ylim(0, max([1.15, *[e * 1.1 for e in efficiencies]]))
    figure.tight_layout()
    return figure
