"""The page, index.html: templates/report.html.j2 rendered with Jinja2.

The template does the markup; this module hands it the rows, the schema's
table columns, the invalid cells under each validity rule that marks them, the
figures (one per endpoint, and one per concurrency ladder when the run has
ladders) and the environment in the shape the page shows them. An invalid
cell's row says why, and its figures are struck through: they are not results.
Everything is escaped (autoescape), except the figures, which are
matplotlib's own SVG.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from markupsafe import Markup

from flask_deploy_lab.report import locust, model
from flask_deploy_lab.report.plots import endpoint_plot, ladder_plot, ladders
from flask_deploy_lab.report.summary import TABLE_COLUMNS, Row

_TEMPLATES = jinja2.Environment(
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


def plain(value) -> str:
    """A value of environment.json as the page shows it."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


_TEMPLATES.filters["plain"] = plain


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


def render_html(run_dir: Path, environment: dict | None, rows: list[Row]) -> str:
    """index.html of the run, from model.summarize_run's environment and rows (in order)."""
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
    return _TEMPLATES.get_template("report.html.j2").render(
        title=f"Flask Deploy Lab — run {run_dir.name}",
        environment=environment_cards(environment) if environment else None,
        invalid=[r.cell for r in rows if r.valid is False],
        warnings=[(rule, cells) for rule, cells in marked if cells],
        failing=[r for r in rows if r.failures],
        endpoints=endpoints,
        ladders=ladder_figures,
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
