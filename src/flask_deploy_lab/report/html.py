"""The page, index.html: templates/report.html.j2 rendered with Jinja2.

The template does the markup; this module hands it the rows, the schema's
table columns, the invalid cells under each validity rule that marks them, the
figures (one per endpoint, and one per concurrency ladder when the run has
ladders) and the environment in the shape the page shows them. An invalid
cell's row says why, and its figures are struck through: they are not results.
A run with repeats (report.repeats) gets a "Repeats" section: each
configuration's mean, 95 % interval and coefficient of variation, and for
each endpoint, delay and users measured under more than one configuration
which of them are not distinguishable on req/s. Where the proxy's access log
timed a cell (report.proxy), a paragraph above the table says how its nginx
and upstream latencies split a request's time against the clients'.
Everything is escaped (autoescape), except the figures, which are
matplotlib's own SVG.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from markupsafe import Markup

from flask_deploy_lab.report import locust, model, repeats
from flask_deploy_lab.report.plots import endpoint_plot, ladder_plot, ladders
from flask_deploy_lab.report.summary import COLUMNS, TABLE_COLUMNS, Row

# the package's templates, for every page the report writes (report.compare too)
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("flask_deploy_lab.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# the keys of environment.json that make the Run card, in this order
_RUN_KEYS = ("run_id", "substrate", "started", "finished", "git_commit", "git_dirty")
# the keys with a card of their own
_CARD_KEYS = {"limits", "hosts", "versions"}
# the figures of the Repeats section's table, and the one its groups are compared on
REPEAT_FIGURES = ("rps", "p99_ms", "efficiency")
COMPARED_FIGURE = "rps"
_COLUMNS = {c.name: c for c in COLUMNS}


def plain(value) -> str:
    """A value of environment.json as the page shows it."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


TEMPLATES.filters["plain"] = plain


def _limits_verdict(limits: dict) -> str:
    enforced = limits.get("unit_limits_enforced")
    if enforced is True:
        return "Unit limits (CPUQuota/MemoryMax) were enforced."
    if enforced is False:
        return (
            "Unit limits were written but NOT enforced: the node limits (node_cpus, "
            "node_memory_mb) are the ones that applied."
        )
    return "Whether unit limits were enforced is not recorded."


def environment_cards(environment: dict) -> dict:
    """environment.json as the page's four cards: run, versions, limits, hosts."""
    run = {k: environment[k] for k in _RUN_KEYS if k in environment}
    # other plain keys (failed_cells, written by the bench) join the Run card
    extra = {
        k: v
        for k, v in environment.items()
        if k not in {*run, *_CARD_KEYS} and not isinstance(v, dict | list)
    }
    limits = environment.get("limits") or {}
    return {
        "run": {**run, **extra},
        "versions": environment.get("versions") or {},
        "limits": limits,
        "verdict": _limits_verdict(limits),
        "hosts": [
            {
                "name": host.get("name", "?"),
                "groups": ", ".join(host.get("groups") or []),
                "cpus": host.get("node_cpus"),
                "memory_mb": host.get("node_memory_mb"),
            }
            for host in environment.get("hosts") or []
        ],
    }


def _digits(figure: str) -> int:
    column = _COLUMNS.get(figure)
    return column.digits if column is not None and column.digits is not None else 1


def _mean_pm(interval: repeats.Interval, figure: str) -> str:
    """12.00 ± 4.97: the mean ± the half-width of its 95 % interval (the mean alone
    for a single value; n/a for none), in the figure's digits."""
    if not interval.n:
        return "n/a"
    digits = _digits(figure)
    text = f"{interval.mean:.{digits}f}"
    if interval.has_interval:
        text += f" ± {interval.half_width:.{digits}f}"
    return text


def _cov(interval: repeats.Interval) -> str:
    return "n/a" if interval.cov is None else f"{interval.cov:.1%}"


def _values(interval: repeats.Interval, figure: str) -> str:
    if not interval.n:
        return "not measured"
    values = ", ".join(f"{v:.{_digits(figure)}f}" for v in interval.values)
    low_high = (
        f"; 95 % interval {interval.low:.{_digits(figure)}f} to {interval.high:.{_digits(figure)}f}"
        if interval.has_interval
        else "; one value: no interval"
    )
    return f"n={interval.n}: {values}{low_high}"


def _point(point: tuple) -> dict:
    endpoint, delay, users = point
    anchor = f"repeats--{endpoint}{'' if delay is None else f'--d{delay:g}'}--u{users}"
    delay = "none" if delay is None else f"{delay:g} s"
    return {"endpoint": endpoint, "delay": delay, "users": users, "anchor": anchor}


def _group(point: tuple, aggregates: list[repeats.Aggregate]) -> dict:
    """One endpoint, delay and users: its configurations by req/s, highest first, and
    each pair's verdict: not distinguishable (the 95 % intervals overlap),
    distinguishable, or not judged (an invalid configuration, or one without an
    interval)."""
    figure = COMPARED_FIGURE
    ranked = sorted(
        aggregates,
        key=lambda a: (a.figures[figure].mean is None, -(a.figures[figure].mean or 0)),
    )
    same, apart, unjudged = [], [], []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            pair = f"{a.first.get('config')} and {b.first.get('config')}"
            if not (a.valid and b.valid):
                unjudged.append(f"{pair} (invalid)")
                continue
            verdict = repeats.distinguishable(a.figures[figure], b.figures[figure])
            if verdict is None:
                unjudged.append(f"{pair} (fewer than two values)")
            elif verdict:
                apart.append(pair)
            else:
                same.append(pair)
    return {
        **_point(point),
        "ranking": [
            {
                "config": a.first.get("config"),
                "value": _mean_pm(a.figures[figure], figure),
                "invalid": not a.valid,
            }
            for a in ranked
        ],
        "same": same,
        "apart": apart,
        "unjudged": unjudged,
    }


def repeats_section(aggregates: list[repeats.Aggregate] | None) -> dict | None:
    """The Repeats section: a row per configuration, a group per endpoint, delay and
    users that more than one configuration measured; None without repeats."""
    if not aggregates:
        return None
    return {
        "figures": [
            {"name": f, "header": _COLUMNS[f].header, "title": _COLUMNS[f].title}
            for f in REPEAT_FIGURES
        ],
        "compared": _COLUMNS[COMPARED_FIGURE].header,
        "most": max(a.n for a in aggregates),
        "configurations": [
            {
                "base": a.base,
                "config": a.first.get("config"),
                **_point(tuple(a.first.get(name) for name in repeats.GROUP_FIELDS)),
                "n": a.n,
                "cells": ", ".join(a.cells),
                "invalid": not a.valid,
                "reasons": "; ".join(a.invalid_reasons),
                "figures": [
                    {
                        "value": _mean_pm(a.figures[f], f),
                        "cov": _cov(a.figures[f]),
                        "title": _values(a.figures[f], f),
                    }
                    for f in REPEAT_FIGURES
                ],
            }
            for a in aggregates
        ],
        "groups": [_group(point, aggs) for point, aggs in repeats.groups(aggregates)],
    }


def render_html(
    run_dir: Path,
    environment: dict | None,
    rows: list[Row],
    configurations: list[repeats.Aggregate] | None = None,
) -> str:
    """index.html of the run, from model.summarize_run's environment and rows (in order),
    and the configurations of a run with repeats (report.repeats.aggregate; None or
    empty: no Repeats section)."""
    run_dir = Path(run_dir)
    endpoints = []
    for endpoint in dict.fromkeys(r.endpoint for r in rows):
        endpoint_rows = [r for r in rows if r.endpoint == endpoint]
        endpoints.append(
            {
                "name": endpoint,
                "model": model.CEILING_MODELS.get(endpoint_rows[0].ceiling_model, ""),
                # matplotlib's own SVG: markup to insert, not text to escape
                "plot": Markup(endpoint_plot(endpoint_rows)),  # noqa: S704
            }
        )
    ladder_figures = [
        {
            "endpoint": endpoint,
            "delay": f"{delay:g}",
            "servers": ", ".join(dict.fromkeys(r.config for r in ladder_rows)),
            "users": ", ".join(str(u) for u in sorted({r.users for r in ladder_rows})),
            "plot": Markup(ladder_plot(ladder_rows)),  # noqa: S704
        }
        for endpoint, delay, ladder_rows in ladders(rows)
    ]
    marked = [(rule, rule.cells(rows)) for rule in model.VALIDITY_RULES]
    return TEMPLATES.get_template("report.html.j2").render(
        title=f"Flask Deploy Lab — run {run_dir.name}",
        environment=environment_cards(environment) if environment else None,
        invalid=[r.cell for r in rows if r.valid is False],
        warnings=[(rule, cells) for rule, cells in marked if cells],
        failing=[r for r in rows if r.failures],
        endpoints=endpoints,
        ladders=ladder_figures,
        repeats=repeats_section(configurations),
        # the proxy's access log timed some cell: the page says what its figures split
        proxy_timed=any(r.proxy_p99_ms is not None for r in rows),
        columns=TABLE_COLUMNS,
        rows=[
            {
                "row": r,
                "invalid": r.valid is False,
                "linked": locust.has_html_report(run_dir / r.cell),
            }
            for r in rows
        ],
        locust_report=locust.HTML_REPORT,
    )
