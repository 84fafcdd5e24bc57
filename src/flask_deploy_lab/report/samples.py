"""The sampler's output for one cell: ``samples/<host>.csv``, one file per host,
one row per interval (columns: see roles/sampler/files/sampler.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from flask_deploy_lab.report.csvfile import number, read_rows

Point = tuple[float, float]  # (Unix time, value)

# The fewest samples of a host inside the measured window that its figures are
# taken from: a counter's rate needs two, and one sample is one second of a run.
MIN_SAMPLES = 2


@dataclass
class HostSamples:
    host: str
    rows: list[dict[str, str]] = field(default_factory=list)

    def column(self, name: str) -> list[Point]:
        """(time, value) of the rows that have a value in `name`."""
        points = []
        for row in self.rows:
            t, v = number(row.get("time")), number(row.get(name))
            if t is not None and v is not None:
                points.append((t, v))
        return points

    def values(self, name: str) -> list[float]:
        return [value for _, value in self.column(name)]

    def has(self, name: str) -> bool:
        return bool(self.column(name))


def read_samples(cell_dir: Path) -> dict[str, HostSamples]:
    """{host: its samples} from the cell's samples/ directory, hosts in name order."""
    return {
        path.stem: HostSamples(path.stem, read_rows(path) or [])
        for path in sorted((cell_dir / "samples").glob("*.csv"))
    }


def in_window(samples: HostSamples, window: tuple[float, float] | None) -> HostSamples:
    """The samples whose time falls inside the window, both ends included: only
    those, however few (none without a window). A caller that needs two to take
    a rate or a mean says so (`MIN_SAMPLES`); rows outside the measured run
    never stand in for it."""
    if window is None:
        return HostSamples(samples.host, [])
    start, end = window
    inside = []
    for row in samples.rows:
        time = number(row.get("time"))
        if time is not None and start <= time <= end:
            inside.append(row)
    return HostSamples(samples.host, inside)


def counter_increase(points: list[Point]) -> float:
    """Increase of a cumulative counter; a drop (the unit restarted) restarts the count."""
    return sum(max(b - a, 0) for (_, a), (_, b) in itertools.pairwise(points))


def counter_rate(points: list[Point]) -> float | None:
    """Increase per second of a cumulative counter, or None with fewer than two points."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return counter_increase(points) / (points[-1][0] - points[0][0])
