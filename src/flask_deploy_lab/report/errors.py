"""The one error of the report: a run directory that breaks the layout."""

from __future__ import annotations


class ReportError(Exception):
    """The run directory does not follow the layout; the message says how."""
