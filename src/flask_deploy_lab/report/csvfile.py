"""The CSV files a run holds (Locust's and the sampler's), read as rows of text
whose fields become numbers on demand."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from flask_deploy_lab.report.errors import ReportError


def read_rows(path: Path) -> list[dict[str, str]] | None:
    """The rows of a CSV file with a header line; None when the file is missing."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def checked_rows(path: Path, header: tuple[str, ...], what: str) -> Iterator[tuple[int, list]]:
    """(line number, fields) of each non-empty row of a CSV file that must start with
    exactly this header and hold as many fields in every row; a ReportError naming
    the file (and the line) otherwise. ``what`` names the header in the message."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        found = next(reader, None)
        if found is None or tuple(field.strip() for field in found) != header:
            raise ReportError(
                f"{path}: expected {what} {','.join(header)}, got "
                + (",".join(found) if found else "an empty file")
            )
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise ReportError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields, "
                    f"got {len(fields)}"
                )
            yield reader.line_num, fields


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
