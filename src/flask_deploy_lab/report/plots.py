"""The page's figures: matplotlib, written as inline SVG.

endpoint_plot: one figure per endpoint, a bar per cell. ladder_plot: one figure
per concurrency ladder (`ladders`), throughput and latency against users. An
invalid cell (Row.valid false) is drawn so it does not pass for a result:
its bars hatched and faded, its points boxed in red.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from flask_deploy_lab.report.model import concurrency_limit
from flask_deploy_lab.report.summary import Row

# Text stays text (smaller, searchable), and the ids matplotlib writes into the
# SVG come from a fixed salt, so the same run gives the same page.
_RC = {"svg.fonttype": "none", "svg.hashsalt": "flask-deploy-lab"}

# the bars of an invalid cell, whose figures are not results ("Hatched bars" on the page)
_INVALID_HATCH, _INVALID_EDGE, _INVALID_ALPHA = "//", "#b00020", 0.35

# latency markers: column, marker, colour (light to dark as the percentile rises)
_PERCENTILES = (("p50_ms", "o", "#9ecae1"), ("p95_ms", "s", "#4292c6"), ("p99_ms", "^", "#08519c"))


# the clients of a ladder: (label, line style, marker); one colour per configuration
_LOCUST_STYLE, _HEY_STYLE = ("Locust", "-", "o"), ("hey", "--", "x")
# the bounds a perfect server gives: the ceiling and the ideal latency
_BOUND_COLOUR, _BOUND_STYLE = "black", ":"


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

    def hatch_invalid(bars):
        for bar, row in zip(bars, rows, strict=True):
            if row.valid is False:
                bar.set_hatch(_INVALID_HATCH)
                bar.set_edgecolor(_INVALID_EDGE)
                bar.set_alpha(_INVALID_ALPHA)

    top.set_title("Throughput, requests/s (black line: ceiling)", fontsize=10, loc="left")
    throughput = [r.rps or 0 for r in rows]
    hatch_invalid(top.bar(positions, throughput, width=0.6, color=colours))
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
    hatch_invalid(bottom.bar(positions, efficiencies, width=0.6, color=colours))
    for position, row in zip(positions, rows, strict=True):
        if row.efficiency is None:
            bottom.text(position, 0.03, "n/a", ha="center", va="bottom", fontsize=9)
    bottom.axhline(1.0, color="black", linewidth=1, linestyle="--")
    bottom.set_ylim(0, max([1.15, *[e * 1.1 for e in efficiencies]]))
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- ladders


def ladders(rows: list[Row]) -> list[tuple[str, float, list[Row]]]:
    """(endpoint, delay, its rows) of each concurrency ladder of the run: the
    delay-bound cells of one endpoint and delay, when they hold more than one
    users value. In the order the rows come in."""
    groups: dict[tuple[str, float], list[Row]] = {}
    for row in rows:
        if row.ceiling_model == "littles_law" and row.delay_s:
            groups.setdefault((row.endpoint, row.delay_s), []).append(row)
    return [
        (endpoint, delay, group)
        for (endpoint, delay), group in groups.items()
        if len({row.users for row in group}) > 1
    ]


def ladder_plot(rows: list[Row]) -> str:
    """One inline SVG for one ladder (cells of one endpoint and delay): throughput,
    p50 and p99 latency against users, a line per configuration (Locust solid,
    hey dashed, one colour), with the ceiling min(users, slots) / delay and the
    ideal latency delay * max(1, users / slots) dotted, one per slots value."""
    with matplotlib.rc_context(_RC):
        return _svg(_ladder_figure(rows))


def _limit_label(limit: float) -> str:
    return "no bound" if math.isinf(limit) else f"{limit:g} slots"


def _ladder_figure(rows: list[Row]) -> Figure:
    delay = rows[0].delay_s
    users = sorted({r.users for r in rows})
    configs = list(dict.fromkeys(r.config for r in rows))
    palette = matplotlib.colormaps["tab10"]
    limits = sorted({limit for r in rows if (limit := concurrency_limit(r)) is not None})
    # the bounds drawn as curves: many points, and each kink (users = slots) exactly
    span = np.geomspace(users[0], users[-1], 200)
    figure = Figure(figsize=(7.5, 10.2))
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
    if users[-1] / users[0] >= 8:
        bottom.set_xscale("log")
    bottom.xaxis.set_major_locator(FixedLocator(users))
    bottom.xaxis.set_minor_locator(NullLocator())
    bottom.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    bottom.set_xlabel("concurrent users", fontsize=9)

    top.set_title(
        "Throughput, requests/s (dotted: ceiling min(users, slots) / delay)",
        fontsize=10,
        loc="left",
    )
    middle.set_title(
        "p50 latency, ms, log scale (dotted: ideal delay x max(1, users / slots))",
        fontsize=10,
        loc="left",
    )
    bottom.set_title("p99 latency, ms, log scale (dotted: ideal)", fontsize=10, loc="left")
    # bounds that end at the same height share one label
    ceiling_labels: dict[float, list[str]] = {}
    ideal_labels: dict[float, list[str]] = {}
    for limit in limits:
        x = np.unique(np.append(span, [limit] if users[0] < limit < users[-1] else []))
        ceiling = np.minimum(x, limit) / delay
        ideal_ms = delay * np.maximum(1.0, x / limit) * 1000
        top.plot(x, ceiling, _BOUND_STYLE, color=_BOUND_COLOUR, lw=1.2)
        ceiling_labels.setdefault(float(ceiling[-1]), []).append(_limit_label(limit))
        for ax in (middle, bottom):
            ax.plot(x, ideal_ms, _BOUND_STYLE, color=_BOUND_COLOUR, lw=1.2)
        ideal_labels.setdefault(float(ideal_ms[-1]), []).append(_limit_label(limit))
    for ax, labels in ((top, ceiling_labels), (middle, ideal_labels), (bottom, ideal_labels)):
        for y, names in labels.items():
            _label_end(ax, users[-1], y, ", ".join(names))

    for index, config in enumerate(configs):
        colour = palette(index % 10)
        series = sorted((r for r in rows if r.config == config), key=lambda r: r.users)
        x = [r.users for r in series]
        for ax, locust_key, hey_key in (
            (top, "rps", "hey_rps"),
            (middle, "p50_ms", "hey_p50_ms"),
            (bottom, "p99_ms", "hey_p99_ms"),
        ):
            for (_label, style, marker), key in (
                (_LOCUST_STYLE, locust_key),
                (_HEY_STYLE, hey_key),
            ):
                # NaN leaves a cell without the figure out of the line
                y = [_value(getattr(r, key)) for r in series]
                if not all(math.isnan(v) for v in y):
                    ax.plot(x, y, style, marker=marker, color=colour, lw=1.6, ms=5)
        invalid = [r for r in series if r.valid is False]
        for ax, locust_key, hey_key in (
            (top, "rps", "hey_rps"),
            (middle, "p50_ms", "hey_p50_ms"),
            (bottom, "p99_ms", "hey_p99_ms"),
        ):
            marked = [
                (r.users, value)
                for r in invalid
                for value in (_value(getattr(r, locust_key)), _value(getattr(r, hey_key)))
                if not math.isnan(value)
            ]
            if marked:
                ax.scatter(
                    *zip(*marked, strict=True),
                    marker="s",
                    s=120,
                    facecolors="none",
                    edgecolors=_INVALID_EDGE,
                    zorder=4,
                )

    top.set_ylim(0, None)
    known = [
        v
        for r in rows
        for v in (r.p50_ms, r.p99_ms, r.hey_p50_ms, r.hey_p99_ms, r.ideal_latency_ms)
        if v
    ]
    for ax in (middle, bottom):
        if known:
            ax.set_yscale("log")
            plain = FuncFormatter(lambda value, _pos: f"{value:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=7)

    handles = [
        Line2D([], [], color=palette(i % 10), lw=1.6, label=config)
        for i, config in enumerate(configs)
    ]
    handles += [
        Line2D([], [], color="#5f6368", linestyle=style, marker=marker, label=label)
        for label, style, marker in (_LOCUST_STYLE, _HEY_STYLE)
    ]
    handles.append(
        Line2D([], [], color=_BOUND_COLOUR, linestyle=_BOUND_STYLE, label="ceiling / ideal")
    )
    if any(r.valid is False for r in rows):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker="s",
                markerfacecolor="none",
                markeredgecolor=_INVALID_EDGE,
                label="invalid cell: not a result",
            )
        )
    top.legend(handles=handles, fontsize=8, loc="best", frameon=False)
    figure.tight_layout()
    return figure


def _value(value) -> float:
    return math.nan if value is None else float(value)


def _label_end(ax: Axes, x: float, y: float, text: str) -> None:
    """Names a bound at its right end."""
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 0), va="center", fontsize=7)
