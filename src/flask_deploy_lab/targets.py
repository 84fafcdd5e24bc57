"""The benchmark's targets: what each delay-bound cell of a run must show.

    from flask_deploy_lab import targets
    verdicts = targets.check(rows)   # report rows, or the "cells" of summary.json
    missed = [v for v in verdicts if not v.met]

Only delay-bound cells are judged: the endpoint has a ``delay_param`` in
catalogue.yml and the cell's ``delay_s`` is above 0. Each gets a verdict for
Locust, and one for hey when the cell holds a hey run.

validity
    A cell the report marks invalid (its ``valid`` column: report.model's
    validity rules, among them a saturated load generator, no ceiling and
    users / rate off the mean latency by more than IDENTITY_TOLERANCE, 5 %,
    Locust's or hey's) is not judged: its figures are not results, so both of
    its verdicts miss, their reasons the cell's ``invalid_reasons``, each
    after "invalid: ". A row of an older summary.json without the column has
    its validity worked out by the same rules from its other columns.

A valid cell's verdict is met when none of these rules is broken for its client:

throughput
    A server that holds one request at a time (the catalogue's ``processes:
    one`` and ``per_process: one``) serves 1 / delay whatever the users: its
    rate must lie within SERIAL_TOLERANCE (2 %) of 1 / delay, above or below.
    Any other server must reach TARGET_EFFICIENCY (0.95) of the cell's
    ceiling, min(users, slots, pool) / delay (users / delay on a server with
    no bound). Locust's rate is the report's steady-window ``rps``, hey's
    ``hey_rps``.
latency
    Other than on a one-at-a-time server: p99 <= TARGET_P99_FACTOR (1.2) x the
    ideal closed-loop latency, delay * max(1, users / slots).
failures
    None: Locust's failures; hey's non-2xx responses (hey's requests that
    failed below HTTP are not in its file and show as a broken identity).
agreement
    Locust's and hey's rates within CLIENTS_AGREE (5 %) of hey's: further
    apart, one of them is not measuring the server, and both verdicts miss.

The closed-loop identity ((users / rate) / mean latency within
IDENTITY_TOLERANCE of 1.0: each user is in a request all the time, so a ratio
off 1.0 is time the measurement does not see) is one of the validity rules,
whose tolerance is kept here.

Server names appear nowhere here: what a server is comes from its catalogue
entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flask_deploy_lab import catalogue
from flask_deploy_lab.report.summary import Row

TARGET_EFFICIENCY = 0.95
TARGET_P99_FACTOR = 1.2
SERIAL_TOLERANCE = 0.02
CLIENTS_AGREE = 0.05
IDENTITY_TOLERANCE = 0.05

# Figures at a target's limit meet it: the report rounds them (rps to 0.01,
# ratios to 0.001), and a rounded 1.05 minus 1 is a hair above 0.05 in binary.
# (The report's validity rules allow the same.)
ROUNDING_SLACK = 1e-9

LOCUST, HEY = "locust", "hey"
_NAMES = {LOCUST: "Locust", HEY: "hey"}
INVALID = "invalid: "


@dataclass(frozen=True)
class Verdict:
    """How one client's figures of one cell did against the targets.

    line: the cell, the client, its figures and "met", or "MISSED:" and each
    reason; reasons: the same reasons, one string each (empty when met).
    """

    cell: str
    client: str
    met: bool
    line: str
    reasons: tuple[str, ...] = ()


def serves_one_at_a_time(server: str) -> bool:
    """Whether the catalogue's server holds one request at a time in one process;
    False for a server it does not know, or for several ("a+b")."""
    entry = catalogue.load().servers.get(server)
    return entry is not None and entry.processes == "one" and entry.per_process == "one"


def delay_bound(row: Row) -> bool:
    """Whether the row is judged: a delay-bound endpoint, run with a delay above 0."""
    endpoint = catalogue.load().endpoints.get(row.endpoint)
    return endpoint is not None and endpoint.delay_bound and bool(row.delay_s and row.delay_s > 0)


def clients_agree(rps: float | None, hey_rps: float | None) -> bool | None:
    """|rps - hey_rps| / hey_rps <= CLIENTS_AGREE; None without both rates."""
    if rps is None or hey_rps is None:
        return None
    if hey_rps == 0:
        return rps == 0
    return abs(rps - hey_rps) / hey_rps <= CLIENTS_AGREE + ROUNDING_SLACK


def check(rows: Iterable[Row | Mapping]) -> list[Verdict]:
    """The verdicts of the delay-bound rows, in the rows' order: Locust's, then
    hey's when the row has a hey run."""
    verdicts = []
    for item in rows:
        row = Row.from_dict(item) if isinstance(item, Mapping) else item
        if not delay_bound(row):
            continue
        verdicts.append(_judge(row, LOCUST))
        if row.hey_rps is not None:
            verdicts.append(_judge(row, HEY))
    return verdicts


def _num(value) -> str:
    return "n/a" if value is None else f"{value:g}"


def invalid_reasons(row: Row) -> tuple[str, ...]:
    """Why the row's figures are not results (empty: they are): its
    invalid_reasons, or for a row that does not say (valid is None, an older
    summary.json) the report's validity rules applied to its columns."""
    if row.valid is not None:
        return tuple(row.invalid_reasons or ())
    # here, not at the top: report.model imports this module for its constants
    from flask_deploy_lab.report.model import invalid_reasons as rules

    return tuple(rules(row))


def _judge(row: Row, client: str) -> Verdict:
    if client == LOCUST:
        rps, p99_ms, identity = row.rps, row.p99_ms, row.identity_ratio
        failures, failure_word = row.failures, "failures"
        other, other_rps = HEY, row.hey_rps
    else:
        rps, p99_ms, identity = row.hey_rps, row.hey_p99_ms, row.hey_identity_ratio
        failures, failure_word = row.hey_failures, "non-2xx"
        other, other_rps = LOCUST, row.rps
    serial = serves_one_at_a_time(row.server)
    figures, reasons = [], []

    # throughput
    if rps is None:
        figures.append("no rate measured")
        reasons.append("no rate measured")
    elif serial:
        expected = 1 / row.delay_s
        off = (rps - expected) / expected
        figures.append(f"{_num(rps)} req/s, 1/delay = {expected:g} ({off * 100:+.1f} %)")
        if abs(off) > SERIAL_TOLERANCE + ROUNDING_SLACK:
            reasons.append(
                f"rate {off * 100:+.1f} % off 1/delay, beyond {SERIAL_TOLERANCE * 100:g} %"
            )
    elif row.ceiling_rps:
        efficiency = rps / row.ceiling_rps
        figures.append(f"{_num(rps)} req/s of {_num(row.ceiling_rps)}, efficiency {efficiency:.3f}")
        if efficiency < TARGET_EFFICIENCY - ROUNDING_SLACK:
            reasons.append(f"efficiency {efficiency:.3f} < {TARGET_EFFICIENCY:g}")
    else:
        # no ceiling makes the cell invalid (below)
        figures.append(f"{_num(rps)} req/s, no ceiling")

    # latency
    if not serial:
        ideal = row.ideal_latency_ms
        figures.append(f"p99 {_num(p99_ms)} ms (ideal {_num(ideal)} ms)")
        if p99_ms is None:
            reasons.append("no p99 measured")
        elif ideal is None:
            reasons.append("no ideal latency to judge p99 by (server slots unknown)")
        elif p99_ms > TARGET_P99_FACTOR * ideal + ROUNDING_SLACK:
            reasons.append(f"p99 {p99_ms:g} ms > {TARGET_P99_FACTOR:g} x ideal {ideal:g} ms")

    # failures
    figures.append(f"{_num(failures)} {failure_word}")
    if failures is None:
        reasons.append(f"{failure_word} not measured")
    elif failures:
        reasons.append(f"{failures} {failure_word}")

    # agreement between the clients
    agree = clients_agree(row.rps, row.hey_rps)
    if agree is True:
        figures.append(f"{_NAMES[other]} {other_rps:g} req/s, agree")
    elif agree is False:
        figures.append(f"{_NAMES[other]} {other_rps:g} req/s")
        if row.hey_rps:
            how_far = f"by {abs(row.rps - row.hey_rps) / row.hey_rps * 100:.1f} %"
        else:
            how_far = "(hey completed none)"
        reasons.append(f"Locust and hey disagree {how_far} (more than {CLIENTS_AGREE * 100:g} %)")

    # the closed-loop identity: a validity rule, shown here
    if identity is not None:
        figures.append(f"identity {identity:.3f}")

    if row.generator_saturated is None:
        figures.append("load generator not sampled")

    # an invalid cell is not judged: its figures are not results
    invalid = invalid_reasons(row)
    if invalid:
        reasons = [INVALID + reason for reason in invalid]

    verdict = ("MISSED: " + "; ".join(reasons)) if reasons else "met"
    line = f"{row.cell} [{client}]: {', '.join(figures)}: {verdict}"
    return Verdict(row.cell, client, not reasons, line, tuple(reasons))
