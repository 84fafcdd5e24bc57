"""Which app host served a cell's requests: the proxy's access log.

With more than one app host nginx spreads the load over them; the load-test
playbook keeps, for each proxy host, the lines nginx appended to its access
log from the start of the cell's measured Locust run to the end of the cell
(after a flush of nginx's log buffer), gzipped:

    <cell>/proxy/<proxy host>.log.gz

one request a line, in the role's ``timed`` format
(roles/nginx/templates/nginx.conf.j2)::

    $remote_addr [$time_local] "$request" $status $body_bytes_sent rt=... urt=...
    ua="$upstream_addr" ...

``$time_local`` is when nginx finished the request, to the second;
``$upstream_addr`` lists every app host nginx tried, comma-separated, and the
last one answered. A cell's requests per app host are the lines whose second
lies whole inside the measured window (its first whole second to its last),
``/healthz`` (the playbook's drain checks) left out, counted by the last
upstream address, divided by those seconds: 1-second resolution, so within a
request per second and window second of the exact rate. The addresses map to
host names through facts.json (each host's ``address``).
"""

from __future__ import annotations

import gzip
import math
import re
from datetime import datetime
from pathlib import Path

DIRECTORY = "proxy"
LINE = re.compile(
    r'^\S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)[^"]*" \d{3} .*?ua="(?P<ua>[^"]*)"'
)
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
HEALTH = "/healthz"


def served_by(lines, window_start: float, window_end: float) -> tuple[dict[str, int], int]:
    """({upstream address: requests it answered}, whole seconds counted) of the
    log lines that lie in the window's whole seconds."""
    first, last = math.ceil(window_start), math.floor(window_end)
    counts: dict[str, int] = {}
    for line in lines:
        match = LINE.match(line)
        if not match or match["path"].startswith(HEALTH):
            continue
        second = datetime.strptime(match["time"], TIME_FORMAT).timestamp()
        if not first <= second < last:
            continue
        answered = match["ua"].split(",")[-1].strip()
        if answered and answered != "-":
            counts[answered] = counts.get(answered, 0) + 1
    return counts, max(last - first, 0)


def read_lines(cell_dir: Path) -> list[str] | None:
    """Every proxy host's kept lines, or None for a cell without them (an older run)."""
    files = sorted((cell_dir / DIRECTORY).glob("*.log.gz"))
    if not files:
        return None
    lines: list[str] = []
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            lines.extend(handle.read().splitlines())
    return lines


def app_host_rps(
    cell_dir: Path, window: tuple[float, float] | None, addresses: dict[str, str]
) -> tuple[tuple[str, ...] | None, str | None]:
    """(("app1=195.3", "app2=196.0"), None): each app host's requests per second
    in the window, in host order; or (None, why not). `addresses` maps an app
    host's name to its address."""
    if window is None:
        return None, "no measured window"
    lines = read_lines(cell_dir)
    if lines is None:
        return None, None
    counts, seconds = served_by(lines, *window)
    if seconds <= 0:
        return None, "the measured window holds no whole second"
    by_address = {}
    for upstream, requests in counts.items():
        by_address[upstream.rsplit(":", 1)[0]] = by_address.get(upstream.rsplit(":", 1)[0], 0) + (
            requests
        )
    unknown = sorted(set(by_address) - set(addresses.values()))
    shares = tuple(
        f"{host}={by_address.get(address, 0) / seconds:.1f}"
        for host, address in sorted(addresses.items())
    )
    return shares, (
        f"requests answered by upstreams no app host has: {unknown}" if unknown else None
    )
