"""The CSV files a run holds (Locust's and the sampler's), read as rows of text
whose fields become numbers on demand."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, str]] | None:
    """The rows of a CSV file with a header line; None when the file is missing."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: str | None) -> int | float | None:
    """A CSV field as int or float; '', 'N/A' and the like -> None.

    A field written without a decimal point ("24") stays an int, so the summary
    shows a percentile or a count as Locust wrote it ("24", not "24.0").
    """
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and "." not in text else value
