"""Outcomes in words and on file: one line per fault (PASS, FAIL or SKIP, what
was done, what was measured), the figures kept in ``faults.json``, and the
run's last line. The only module of the faults that words anything.

    PASS  1 kill-worker      kill -9 of ... 10 s into /db x20 users, 20 s  =>  0 of 26317 ...
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flask_deploy_lab import catalogue
from flask_deploy_lab.faults import kill_worker, loadgen_stop, pg_restart, pool_exhaustion
from flask_deploy_lab.faults import reload as reload_fault
from flask_deploy_lab.faults import slow_clients as slow_fault
from flask_deploy_lab.faults.executor import PODMAN_STOP
from flask_deploy_lab.faults.load import LoadSpec
from flask_deploy_lab.faults.outcome import Outcome, Verdict
from flask_deploy_lab.faults.stack import with_retry_after

NOT_CARRIED_OUT = "could not be carried out"
NOT_MEASURED = "not measured"


@dataclass
class Result:
    """One fault's line and figures, as faults.json keeps them."""

    number: int
    name: str
    status: str
    did: str
    measured: str
    figures: dict = field(default_factory=dict)
    # each target missed (FAIL), or why it does not apply (SKIP)
    reasons: list[str] = field(default_factory=list)

    def line(self):
        return f"{self.status:<4}  {self.number} {self.name:<15}  {self.did}  =>  {self.measured}"


def clock(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def what(spec: LoadSpec) -> str:
    return f"/{spec.endpoint} x{spec.users} users, {spec.duration} s"


def path(spec: LoadSpec) -> str:
    return catalogue.load().endpoint(spec.endpoint).path


def with_delay(spec: LoadSpec) -> str:
    """/slow?delay=0.2: the endpoint's path with its delay, as the load asked for it."""
    return f"{path(spec)}?{catalogue.load().endpoint(spec.endpoint).delay_param}={spec.delay}"


def error_text(error):
    """A Locust error without its exception wrapper: CatchResponseError('x') -> "x"."""
    inner = re.fullmatch(r"\w+\((['\"])(.*)\1\)", error.strip())
    return f'"{inner.group(2) if inner else error.strip()}"'


def by_status(failures):
    """'503 x120, "body is not ..." x2' of LocustFailures: the status, else Locust's error."""
    counts = {}
    for f in failures:
        label = str(f.status) if f.status else error_text(f.error)
        counts[label] = counts.get(label, 0) + f.count
    return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items())) or "none"


def known(value):
    return "?" if value is None else value


def master(before, after):
    return "; master unchanged" if after == before else "; MASTER CHANGED"


# ---------------------------------------------------------------- each fault:
# (what was done, what was measured, its figures) of a judged outcome


def kill_worker_words(outcome: Outcome):
    done: kill_worker.Done = outcome.done
    seen: kill_worker.Observation = outcome.figures
    if outcome.verdict is Verdict.SKIP:
        multi = [n for n, s in catalogue.load().servers.items() if s.processes == "workers"]
        why = outcome.reasons[0]
        return f"{why}; use a multi-process server ({', '.join(multi)})", NOT_MEASURED, {}
    load, share = seen.load, seen.load.failed_share
    did = (
        f"kill -9 of {seen.server} worker pid {done.victim_pid} (the busiest of {seen.processes}, "
        f"{done.cpu_share_percent} % of their CPU) {done.at_s:.0f} s into {what(done.load)}"
    )
    measured = (
        f"{load.failures} of {load.requests} requests failed ({100 * share:.2f} %, "
        f"limit {100 * kill_worker.MAX_FAILED_SHARE:g} %; {by_status(load.errors)}); nginx "
        f"logged {known(seen.nginx_upstream_errors)} upstream errors from the kill on, retrying "
        f"what had no answer yet; workers {seen.processes} -> {seen.workers_after}"
        + (
            f", replaced in {seen.replaced_s} s"
            if seen.replaced_s is not None
            else ", NOT replaced"
        )
        + master(seen.main_pid_before, seen.main_pid_after)
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "failed_percent": round(100 * share, 3),
        "victim_cpu_share_percent": done.cpu_share_percent,
        "nginx_upstream_errors": seen.nginx_upstream_errors,
        "workers_before": seen.processes,
        "workers_after": seen.workers_after,
        "replaced_s": seen.replaced_s,
        "failures_by_status": by_status(load.errors),
    }
    return did, measured, figures


def pg_restart_words(outcome: Outcome):
    done: pg_restart.Done = outcome.done
    seen: pg_restart.Observation = outcome.figures
    load = seen.load
    down = seen.probe_while_down
    refused, with_header = with_retry_after(down)
    before, after = seen.app_before, seen.app_after
    if seen.app_restarted or before.n_restarts:
        app_state = (
            f"app MainPID {before.main_pid} -> {after.main_pid}, "
            f"NRestarts {before.n_restarts} -> {after.n_restarts}"
        )
    else:
        app_state = "app not restarted (same MainPID, NRestarts 0)"
    recovery = seen.recovery_s
    did = (
        f"systemctl stop {done.pg_unit} {done.at_s:.0f} s into {what(done.load)}, start "
        f"{done.down_s:g} s later (accepting again {seen.back_at - seen.down_at:.1f} s "
        "after the stop)"
    )
    measured = "; ".join(
        [
            f"Locust failures {by_status(load.errors)} ({load.failures} of {load.requests})",
            f"probe while down: {len(refused)} of {len(down)} answers 503, "
            f"{len(with_header)} with Retry-After",
            (
                f"last failure <= {recovery} s after it was back (limit "
                f"{pg_restart.MAX_RECOVERY_S:g} s; probe: {seen.probe_recovery_s} s)"
                if recovery is not None
                else "no failure, so no recovery time"
            ),
            f"/db answered {seen.rps_before} req/s before, {seen.rps_after} after",
            app_state,
        ]
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "failures_by_status": by_status(load.errors),
        "down_s": round(seen.back_at - seen.down_at, 1),
        "recovery_s": recovery,
        "probe_recovery_s": seen.probe_recovery_s,
        "probe_while_down": {"answers": len(down), "503": len(refused)},
        "probe_retry_after": sorted({a.retry_after for a in refused}),
        "rps_before": seen.rps_before,
        "rps_after": seen.rps_after,
        "app_restarted": seen.app_restarted,
    }
    return did, measured, figures


def pool_exhaustion_words(outcome: Outcome):
    done: pool_exhaustion.Done = outcome.done
    seen: pool_exhaustion.Observation = outcome.figures
    if outcome.verdict is Verdict.SKIP:
        return outcome.reasons[0], NOT_MEASURED, {}
    load = seen.load
    refused, with_header = with_retry_after(seen.answers)
    states = ", ".join(f"{s} {n}" for s, n in sorted(seen.connections.items()))
    did = (
        f"app converged with a pool of {done.pool_size} per process ({done.limit} connections "
        f"in all), {with_delay(done.load)} x{done.load.users} users for {done.load.duration} s, "
        "then converged back to the defaults"
    )
    measured = (
        f"{load.failures} of {load.requests} requests failed: {by_status(load.errors)}; "
        f"probe: {len(refused)} of {len(seen.answers)} were 503, {len(with_header)} with "
        f"Retry-After; afterwards {seen.total} client connections (limit {done.limit}), "
        f"{seen.stuck} not idle ({states})"
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "failures_by_status": by_status(load.errors),
        "probe": {"answers": len(seen.answers), "503": len(refused)},
        "probe_retry_after": sorted({a.retry_after for a in refused}),
        "pg_connections_after": seen.connections,
        "pg_connections_limit": done.limit,
    }
    return did, measured, figures


def reload_words(outcome: Outcome):
    done: reload_fault.Done = outcome.done
    seen: reload_fault.Observation = outcome.figures
    if outcome.verdict is Verdict.SKIP:
        return (
            f"systemctl reload {seen.unit}: {seen.server} cannot reload gracefully",
            outcome.reasons[0],
            {"server": seen.server},
        )
    load = seen.load
    old = len(set(seen.workers_after) & set(seen.workers_before))
    did = f"systemctl reload {done.unit} {done.at_s:.0f} s into {what(done.load)}"
    measured = (
        f"{load.failures} of {load.requests} requests failed"
        + (f" ({by_status(load.errors)})" if load.failures else "")
        + (
            f"; all {len(seen.workers_after)} workers replaced in {seen.replaced_s} s"
            if seen.replaced_s is not None
            else f"; workers NOT all replaced ({old} old left)"
        )
        + master(seen.main_pid_before, seen.main_pid_after)
        + f"; nginx logged {known(seen.nginx_upstream_errors)} upstream errors from the reload on"
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "replaced_s": seen.replaced_s,
        "server": seen.server,
        "nginx_upstream_errors": seen.nginx_upstream_errors,
    }
    return did, measured, figures


def slow_clients_words(outcome: Outcome):
    done: slow_fault.Done = outcome.done
    seen: slow_fault.Observation = outcome.figures
    load, summary = seen.load, seen.summary
    before, after = seen.without
    did = (
        f"{done.connections} connections from {done.prober} dribbling a header byte a second "
        f"to nginx for the middle {done.window_s} s of {what(done.load)} ({with_delay(done.load)})"
    )
    measured = (
        f"{path(done.load)} answered {seen.with_them:.1f} req/s with them vs "
        f"{before:.1f} before and {after:.1f} after ({100 * seen.change:+.1f} %, limit "
        f"-{100 * slow_fault.MAX_THROUGHPUT_DROP:g} %); {load.failures} of {load.requests} "
        f"requests failed; slow connections held {seen.held}, nginx timed out "
        f"{summary.get('closed_by_server', '?')} of them after "
        f"{summary.get('lifetime_s_avg', '?')} s; nginx active connections "
        f"{known(seen.nginx_active_connections)}, app connections "
        f"{seen.app_established_connections}"
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "rps_without_before": round(before, 1),
        "rps_with": round(seen.with_them, 1),
        "rps_without_after": round(after, 1),
        "change_percent": round(100 * seen.change, 1),
        "slow_clients": summary,
        "nginx_active_connections": seen.nginx_active_connections,
        "app_established_connections": seen.app_established_connections,
    }
    return did, measured, figures


def rebalance_words(rebalance: loadgen_stop.Rebalance, victim: str, duration: int):
    """What Locust did when the victim's worker went away, and its figures."""
    text = f"{rebalance.requests} requests, {rebalance.failures} failed"
    if len(rebalance.spawns) > 1:
        users, workers = rebalance.spawns[-1]
        text += f"; Locust sent all {users} users to the {workers} worker(s) left"
    elif rebalance.worker_quit_logged:
        text += f"; {victim}'s worker quit and its users were not replaced"
    figures = {
        "worker_quit_logged": rebalance.worker_quit_logged,
        "respawns": rebalance.respawns,
        "stats_reset_at": list(rebalance.stats_reset_at),
        "requests": rebalance.requests,
        "failures": rebalance.failures,
        "rps": rebalance.rps,
    }
    if rebalance.stats_cover_s is not None:
        figures["stats_cover_s"] = round(rebalance.stats_cover_s)
        text += (
            " and, with --reset-stats, restarted its statistics then: the CSVs cover only "
            f"the last {rebalance.stats_cover_s:.0f} of {duration} s"
        )
    figures["flagged_in_cell"] = rebalance.flagged_in_cell
    if rebalance.worker_quit_logged or len(rebalance.spawns) > 1:
        text += (
            "; cell.json names the lost worker, so the report marks the cell"
            if rebalance.flagged_in_cell
            else "; NOT flagged in cell.json (workers_lost)"
        )
    return text, figures


def loadgen_stop_words(outcome: Outcome):
    done: loadgen_stop.Done = outcome.done
    seen: loadgen_stop.Observation = outcome.figures
    if outcome.verdict is Verdict.SKIP:
        return f"{seen.method} of a load generator", outcome.reasons[0], {}
    restart, state, back = done.restart, seen.host_state, seen.back_s
    if restart.method == PODMAN_STOP:
        did = (
            f"{restart.method} {done.container} {done.at_s:.0f} s into {what(done.load)} "
            f"(stopped in {restart.stop_s:.1f} s), podman start, systemd {state} "
            f"{back:.0f} s after the stop"
        )
    else:
        did = (
            f"{restart.method} of {done.victim} {done.at_s:.0f} s into {what(done.load)}, "
            f"systemd {state} {back:.0f} s after it was asked"
        )
    figures = {"load": what(done.load), "finished": seen.finished, "message": seen.message}
    if seen.finished:
        text, rebalance = rebalance_words(seen.rebalance, done.victim, done.load.duration)
        ending = "the run finished: " + text
        figures |= rebalance
    else:
        ending = f"the run failed: {seen.message}"
    measured = ending + (
        "; no Locust or sampler process left on any host"
        if not seen.leftovers
        else f"; LEFT RUNNING: {json.dumps(seen.leftovers)}"
    )
    figures |= {"leftovers": seen.leftovers, "host_state": state, "back_s": back}
    return did, measured, figures


WORDS = {
    kill_worker.NAME: kill_worker_words,
    pg_restart.NAME: pg_restart_words,
    pool_exhaustion.NAME: pool_exhaustion_words,
    reload_fault.NAME: reload_words,
    slow_fault.NAME: slow_clients_words,
    loadgen_stop.NAME: loadgen_stop_words,
}


def result(number: int, outcome: Outcome) -> Result:
    """The line and figures of an outcome."""
    reasons = list(outcome.reasons)
    if outcome.figures is None:
        did, measured, figures = NOT_CARRIED_OUT, "; ".join(reasons), {}
    else:
        did, measured, figures = WORDS[outcome.fault](outcome)
    return Result(number, outcome.fault, outcome.verdict.value, did, measured, figures, reasons)


def write_results(path: Path, run_id: str, ansible_args, results: list[Result]):
    """reports/<run-id>/faults.json: every fault's line and figures so far."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "run_id": run_id,
        "ansible_args": list(ansible_args),
        "faults": [asdict(r) | {"line": r.line()} for r in results],
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


def summary_line(run_id: str, results: list[Result], seconds: float, path: str) -> str:
    failed = sum(r.status == Verdict.FAIL.value for r in results)
    skipped = sum(r.status == Verdict.SKIP.value for r in results)
    return (
        f"faults {run_id}: {len(results) - failed - skipped} passed, {failed} failed, "
        f"{skipped} skipped in {clock(seconds)}; figures in {path}"
    )
