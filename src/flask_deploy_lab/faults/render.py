"""Outcomes in words and on file: one line per fault (PASS, FAIL or SKIP, what
was done, what was measured), the figures kept in ``faults.json``, and the
run's last line. The only module of the faults that words anything.

    PASS  1 kill-worker      kill -9 of ... 10 s into /db x20 users, 20 s  =>  0 of 26317 ...
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flask_deploy_lab import catalogue
from flask_deploy_lab.faults import (
    app_host_stop,
    celery_kill,
    kill_worker,
    loadgen_stop,
    pg_restart,
    pool_exhaustion,
    redis_restart,
    upstream_stop,
)
from flask_deploy_lab.faults import reload as reload_fault
from flask_deploy_lab.faults import slow_clients as slow_fault
from flask_deploy_lab.faults.executor import PODMAN_STOP
from flask_deploy_lab.faults.load import LoadSpec
from flask_deploy_lab.faults.outcome import Outcome, Verdict
from flask_deploy_lab.faults.request_log import SHORT_BODY, TRUNCATED_OK, RequestLog
from flask_deploy_lab.faults.stack import with_retry_after
from flask_deploy_lab.faults.task_rows import errors_text, status_text

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
    # the server of a matrix run (None: the one deployed)
    server: str | None = None

    def line(self):
        where = f"{self.server:<17} " if self.server else ""
        return (
            f"{self.status:<4}  {where}{self.number} {self.name:<15}  {self.did}  =>  "
            f"{self.measured}"
        )


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


def failures_text(log: RequestLog | None) -> str:
    """'3 of 26078 requests failed (502 x2, 200 shorter than its Content-Length x1)', from
    the request log: each failure by its status, or what was wrong with its body."""
    if log is None:
        return "no request log"
    failed = log.failures()
    labels = Counter()
    for r in failed:
        if r.outcome == TRUNCATED_OK:
            labels[f"{r.status} with a cut-off body"] += 1
        elif r.outcome == SHORT_BODY:
            labels[f"{r.status} shorter than its Content-Length"] += 1
        elif r.status:
            labels[str(r.status)] += 1
        else:
            labels[error_text(r.error) if r.error else "no answer"] += 1
    detail = ", ".join(f"{label} x{n}" for label, n in sorted(labels.items())) or "none"
    return f"{len(failed)} of {len(log.completed)} requests failed ({detail})"


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
    load = seen.load
    did = (
        f"kill -9 of {seen.server} worker pid {done.victim_pid} (the busiest of {seen.processes}, "
        f"{done.cpu_share_percent} % of their CPU, {known(seen.in_flight)} connections"
        + (
            f", stopped on look {done.looks} after {done.busy_waited_s:g} s"
            if done.looks and done.looks > 1 and done.busy_waited_s is not None
            else ""
        )
        + f") {done.at_s:.0f} s into {what(done.load)}"
    )
    retries = seen.nginx_retries or {}
    tries = ", ".join(f"{k} x{n}" for k, n in sorted((retries.get("tries") or {}).items()))
    retried = (
        f"nginx sent {retries['retried']} requests to the app again "
        f"({retries.get('retried_then_ok', 0)} then answered OK"
        + (f"; tries {tries}" if tries else "")
        + ")"
        if seen.nginx_retries is not None
        else "nginx's retries not counted"
    )
    measured = (
        f"{failures_text(seen.requests)}, limit {known(seen.in_flight)} (the killed worker's "
        f"connections; {known(seen.in_flight_stack)} requests in flight in all); "
        f"{seen.truncated} 200s with a cut-off body (limit {kill_worker.MAX_TRUNCATED_OK}); "
        f"{retried}, {known(seen.nginx_upstream_errors)} upstream errors logged; "
        f"workers {seen.processes} -> {seen.workers_after}"
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
        "failed": seen.failed,
        "failed_limit": seen.in_flight,
        "in_flight_stack": seen.in_flight_stack,
        "truncated_200": seen.truncated,
        "failures": failures_text(seen.requests),
        "victim_cpu_share_percent": done.cpu_share_percent,
        "victim_looks": done.looks,
        "victim_busy_waited_s": done.busy_waited_s,
        "nginx_retries": seen.nginx_retries,
        "nginx_upstream_errors": seen.nginx_upstream_errors,
        "workers_before": seen.processes,
        "workers_after": seen.workers_after,
        "replaced_s": seen.replaced_s,
        "key": f"{seen.failed}/{known(seen.in_flight)} failed, {seen.truncated} cut",
    }
    return did, measured, figures


def refusals_text(failures) -> str:
    """'5427 of 5427 503s with Retry-After (1)' of failed requests."""
    refused = [r for r in failures if r.status == 503]
    values = sorted({r.retry_after for r in refused if r.retry_after})
    with_header = sum(1 for r in refused if r.retry_after)
    return f"{with_header} of {len(refused)} 503s with Retry-After" + (
        f" ({', '.join(values)})" if values else ""
    )


def pg_restart_words(outcome: Outcome):
    done: pg_restart.Done = outcome.done
    seen: pg_restart.Observation = outcome.figures
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
    recovery, back_in = seen.recovery_s, seen.throughput_recovery_s
    did = (
        f"systemctl stop {done.pg_unit} {done.at_s:.0f} s into {what(done.load)}, start "
        f"{done.down_s:g} s later (accepting again {seen.back_at - seen.down_at:.1f} s "
        "after the stop)"
    )
    throughput = f"/db {seen.rps_before} req/s before; " + (
        f"{pg_restart.RECOVERED_SHARE:.0%} of it again {back_in} s after it was back "
        f"({pg_restart.RECOVERY_WINDOW_S} s window), {seen.rps_after} req/s from then on"
        if back_in is not None
        else f"NEVER {pg_restart.RECOVERED_SHARE:.0%} of it again within the run "
        f"({seen.rps_after} req/s after it was back)"
    )
    measured = "; ".join(
        [
            f"{failures_text(seen.requests)}, {refusals_text(seen.failures)}",
            f"probe while down: {len(refused)} of {len(down)} answers 503, "
            f"{len(with_header)} with Retry-After",
            (
                f"last failure {recovery} s after it was back (limit "
                f"{pg_restart.MAX_RECOVERY_S:g} s; probe: {seen.probe_recovery_s} s)"
                if recovery is not None
                else "no failure, so no recovery time"
            ),
            throughput,
            app_state,
        ]
    )
    figures = {
        "load": what(done.load),
        **seen.load.totals(),
        "failures": failures_text(seen.requests),
        "refusals": refusals_text(seen.failures),
        "down_s": round(seen.back_at - seen.down_at, 1),
        "recovery_s": recovery,
        "probe_recovery_s": seen.probe_recovery_s,
        "probe_while_down": {"answers": len(down), "503": len(refused)},
        "probe_retry_after": sorted({a.retry_after for a in refused}),
        "rps_before": seen.rps_before,
        "rps_after": seen.rps_after,
        "throughput_recovery_s": back_in,
        "app_restarted": seen.app_restarted,
        "key": f"back in {back_in} s" if back_in is not None else "never back",
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
        f"{failures_text(seen.requests)}, {refusals_text(seen.failures)}; "
        f"probe: {len(refused)} of {len(seen.answers)} were 503, {len(with_header)} with "
        f"Retry-After; afterwards {seen.total} client connections (limit {done.limit}), "
        f"{seen.stuck} not idle ({states})"
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "failures": failures_text(seen.requests),
        "refusals": refusals_text(seen.failures),
        "probe": {"answers": len(seen.answers), "503": len(refused)},
        "probe_retry_after": sorted({a.retry_after for a in refused}),
        "pg_connections_after": seen.connections,
        "pg_connections_limit": done.limit,
        "key": f"{len(seen.failures) - len(seen.wrong)} 503, "
        f"{len(seen.without_retry_after)} bare, {len(seen.wrong)} other",
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
    during, n_during = seen.p99_ms(seen.window)
    before, n_before = seen.p99_ms(seen.window_before)
    start, end = seen.window
    did = f"systemctl reload {done.unit} {done.at_s:.0f} s into {what(done.load)}"
    latency = (
        f"p99 {during:.0f} ms of the {n_during} requests started in the {end - start:.1f} s "
        f"reload window vs {before:.0f} ms of the {n_before} before (x{seen.p99_ratio}, "
        f"limit x{reload_fault.MAX_P99_RATIO:g})"
        if during is not None and before is not None
        else f"p99 not measured ({n_during} requests in the window, {n_before} before)"
    )
    measured = (
        failures_text(seen.requests)
        + f"; {latency}"
        + (
            f"; all {len(seen.workers_after)} workers replaced in {seen.replaced_s} s"
            if seen.replaced_s is not None
            else f"; workers NOT all replaced ({old} old left)"
        )
        + master(seen.main_pid_before, seen.main_pid_after)
        + f"; nginx logged {known(seen.nginx_upstream_errors)} upstream errors from the reload on"
        + cpu_text(seen)
    )
    cpu_before, cpu_during = seen.cpu(seen.window_before), seen.cpu(seen.window)
    figures = {
        "load": what(done.load),
        **load.totals(),
        "failed": seen.failed,
        "failures": failures_text(seen.requests),
        "p99_ms_window": during,
        "p99_ms_before": before,
        "p99_ratio": seen.p99_ratio,
        "window_s": round(end - start, 1),
        "replaced_s": seen.replaced_s,
        "server": seen.server,
        "nginx_upstream_errors": seen.nginx_upstream_errors,
        "key": f"{seen.failed} failed, p99 x{known(seen.p99_ratio)}",
        "cpu_before": asdict(cpu_before) if cpu_before else None,
        "cpu_window": asdict(cpu_during) if cpu_during else None,
    }
    return did, measured, figures


def cpu_text(seen: reload_fault.Observation) -> str:
    """Where the CPU went in the window before and in the reload window."""
    before, during = seen.cpu(seen.window_before), seen.cpu(seen.window)
    if before is None or during is None:
        return "; CPU not sampled on the app host"

    def pair(name, unit=""):
        a, b = (getattr(use, name) for use in (before, during))
        return " -> ".join(f"{known(v if v is None else round(v, 2))}{unit}" for v in (a, b))

    return (
        f"; CPU before -> in the window: app unit {pair('unit_cores')} CPUs, throttled by "
        f"its quota {pair('throttled', ' s/s')}; app host {pair('host_cores')} of "
        f"{known(during.host_limit)} CPUs; machine {pair('machine_cores')} CPUs busy"
    )


def slow_clients_words(outcome: Outcome):
    done: slow_fault.Done = outcome.done
    seen: slow_fault.Observation = outcome.figures
    load = seen.load
    mean, sd = seen.mean_sd
    rates = seen.rates
    backlog_wait = (
        f"; {done.queue_wait_s:g} s in the backlog behind the load's" if done.queue_wait_s else ""
    )
    did = (
        f"{done.bodies} slow POST /tasks bodies (a byte every {slow_fault.BODY_INTERVAL_S:g} s, "
        f"opened over {done.stagger_s:g} s{backlog_wait}) "
        f"and {done.readers} slow readers of /queries?n={slow_fault.READER_QUERIES} "
        f"({slow_fault.READER_BYTES} bytes every {slow_fault.READER_INTERVAL_S:g} s) from "
        f"{done.prober} in window {slow_fault.WITH_THEM + 1} of {len(rates)} ({done.window_s} s "
        f"each; the control's and theirs {done.window_s + slow_fault.DRAIN_S} s, for the tasks "
        f"they queued) of {what(done.load)} ({with_delay(done.load)}); the same requests at "
        f"full speed in window {slow_fault.CONTROL + 1}, and once before the first (a warm-up)"
    )
    bodies_held, readers_held = seen.held
    bodies_reached, readers_reached = seen.reached
    control_bodies, control_readers = seen.control_reached
    warmup_bodies, warmup_readers = seen.warmup_reached
    measured = (
        f"{path(done.load)} at {seen.with_them} req/s with them, limit {seen.bound} (baseline "
        f"{' '.join(f'{r:g}' for r in seen.baseline)}: mean {mean}, sd {sd}; "
        f"{100 * seen.change:+.1f} %; the same requests fast: {seen.control} req/s, "
        f"{100 * seen.control_change:+.1f} %); {failures_text(seen.requests)}; held "
        f"{bodies_held} bodies, {readers_held} readers; {bodies_reached} bodies answered by the "
        f"app, {readers_reached} readers saw a 2xx status (fast: {control_bodies}, "
        f"{control_readers}; the warm-up: {warmup_bodies}, {warmup_readers}); tasks queued at "
        "the end of the warm-up, the control's window and theirs: "
        f"{', '.join(str(known(q)) for q in seen.queued_at_end)}; nginx active connections "
        f"{known(seen.nginx_active_connections)}, app connections "
        f"{seen.app_established_connections}"
    )
    figures = {
        "load": what(done.load),
        **load.totals(),
        "rps_windows": rates,
        "rps_with": seen.with_them,
        "rps_control": seen.control,
        "baseline_mean": mean,
        "baseline_sd": sd,
        "baseline_limit": seen.baseline_bound,
        "control_limit": seen.control_bound,
        "windows": list(seen.windows),
        "queued_at_end": list(seen.queued_at_end),
        "control_change_percent": round(100 * seen.control_change, 1),
        "limit": seen.bound,
        "change_percent": round(100 * seen.change, 1),
        "bodies_stagger_s": done.stagger_s,
        "queue_wait_s": done.queue_wait_s,
        "slow_bodies": seen.bodies,
        "slow_readers": seen.readers,
        "control_bodies": seen.control_bodies,
        "control_readers": seen.control_readers,
        "warmup_bodies": seen.warmup_bodies,
        "warmup_readers": seen.warmup_readers,
        "nginx_active_connections": seen.nginx_active_connections,
        "app_established_connections": seen.app_established_connections,
        "key": f"{100 * seen.change:+.1f} % (limit {seen.bound})",
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
    figures["key"] = ("finished" if seen.finished else "failed") + (
        f", {sum(map(len, seen.leftovers.values()))} left" if seen.leftovers else ", none left"
    )
    return did, measured, figures


def tasks_text(rows) -> str:
    """'118 tasks: 116 done, 2 failed ("upstream timed out" x2)'."""
    errors = errors_text(rows)
    return f"{len(rows)} tasks: {status_text(rows)}" + (f" ({errors})" if errors else "")


def celery_kill_words(outcome: Outcome):
    done: celery_kill.Done = outcome.done
    seen: celery_kill.Observation = outcome.figures
    s = seen.settings
    did = (
        f"kill -9 of {done.unit}'s main process (pid {done.main_pid}) and its "
        f"{done.pool_processes} pool processes on {done.worker} {done.at_s:.1f} s into "
        f"{what(done.load)} ({done.load.task_kind} tasks of {done.load.delay:g} s)"
    )
    delays = seen.redelivery_s
    held = (
        f"{seen.held_at_kill} in flight at the kill (the pool's calls to the upstream)"
        if seen.held_at_kill is not None
        else "the tasks in flight not counted"
    )
    again = f"{len(seen.redelivered)} redelivered (attempts > 1)" + (
        f", done {delays[0]:g}-{delays[-1]:g} s after the kill" if delays else ""
    )
    restart = (
        (
            f"new MainPID {seen.main_pid_after} {seen.restarted_s} s after the kill (NRestarts "
            f"{seen.n_restarts_before} -> {seen.n_restarts_after})"
            if seen.restarted
            else f"NOT RESTARTED within {seen.restart_waited_s:g} s"
        )
        + f" (limit {seen.restart_limit_s:g} s"
        + (
            f": TimeoutStopSec {seen.stop_timeout_s:g} + {celery_kill.RESTART_LIMIT_S:g} s, as "
            "systemd in a container on cgroup v1 sees the killed pool leave only then)"
            if seen.restart_waits_stop_timeout
            else ")"
        )
    )
    measured = "; ".join(
        [
            f"{tasks_text(seen.rows)} (limit: done <= {seen.bound_s:g} s after the kill: "
            f"visibility {s.visibility_timeout_s:g} + time limit {s.time_limit_s:g} + "
            f"{celery_kill.SLACK_S:g} s)",
            f"{held}; {again}",
            restart,
            f"POST /tasks: {len(seen.failed_posts)} of {len(seen.posts)} failed; "
            f"{len(seen.failed_polls)} polls failed (a client gives up after 30 s)",
        ]
    )
    figures = {
        "load": what(done.load),
        **(seen.load.totals() if seen.load else {}),
        "tasks": len(seen.rows),
        "tasks_done": len(seen.done),
        "tasks_failed": len(seen.failed),
        "tasks_pending": len(seen.pending),
        "tasks_late": len(seen.late),
        "bound_s": seen.bound_s,
        "held_at_kill": seen.held_at_kill,
        "redelivered": len(seen.redelivered),
        "redelivery_s": delays,
        "restarted_s": seen.restarted_s,
        "restart_limit_s": seen.restart_limit_s,
        "posts_failed": len(seen.failed_posts),
        "key": f"{len(seen.done)}/{len(seen.rows)} done"
        + (f", redelivered in {delays[-1]:g} s" if delays else ""),
    }
    return did, measured, figures


def redis_restart_words(outcome: Outcome):
    done: redis_restart.Done = outcome.done
    seen: redis_restart.Observation = outcome.figures
    did = (
        f"systemctl stop {done.unit} on {done.broker} {done.at_s:.0f} s into "
        f"{what(done.load)} ({done.load.task_kind} tasks, n={done.load.task_n}), start "
        f"{done.down_s:g} s later (answering again {seen.back_at - seen.down_at:.1f} s after "
        "the stop)"
    )
    failed = seen.failed_posts
    p99, first, last = seen.p99_while_down_s, seen.first_accepted_s, seen.last_failure_s
    measured = "; ".join(
        [
            f"POST /tasks: {len(failed)} of {len(seen.posts)} failed "
            f"({refusals_text(failed)}, {len(seen.wrong)} other)",
            f"p99 {known(p99)} s of the {len(seen.while_down)} POSTs started while it was down "
            f"(limit {redis_restart.MAX_POST_P99_S:g} s)",
            (
                f"first 202 {first} s after it was back"
                if first is not None
                else "NO 202 after it was back"
            )
            + (f", last failure {last} s after" if last is not None else "")
            + f" (limit {redis_restart.MAX_RECOVERY_S:g} s)",
            f"{seen.accepted} answered 202; {tasks_text(seen.rows)}"
            + (f"; {seen.lost} LOST" if seen.lost else ""),
        ]
    )
    figures = {
        "load": what(done.load),
        **(seen.load.totals() if seen.load else {}),
        "posts": len(seen.posts),
        "posts_failed": len(failed),
        "refusals": refusals_text(failed),
        "p99_while_down_s": p99,
        "first_202_s": first,
        "last_failure_s": last,
        "accepted": seen.accepted,
        "tasks": len(seen.rows),
        "tasks_not_done": len(seen.not_done),
        "lost": seen.lost,
        "key": f"p99 {known(p99)} s, 202 in {known(first)} s, {len(seen.not_done)} not done",
    }
    return did, measured, figures


def upstream_stop_words(outcome: Outcome):
    done: upstream_stop.Done = outcome.done
    seen: upstream_stop.Observation = outcome.figures
    did = (
        f"systemctl stop {done.unit} on {done.upstream} {done.at_s:.0f} s into "
        f"{what(done.load)} ({with_delay(done.load)}), start {done.down_s:g} s later "
        f"(answering again {seen.back_at - seen.down_at:.1f} s after the stop)"
    )
    p99, resume = seen.failed_p99_s, seen.resume_s
    probe = seen.probe_failures
    measured = "; ".join(
        [
            failures_text(seen.requests),
            f"p99 {known(p99)} s of the failures (limit {upstream_stop.MAX_FAILED_P99_S:g} s)",
            f"{len(seen.outside)} outside the outage (+-{upstream_stop.WINDOW_SLACK_S:g} s)",
            f"in flight during it: at most {seen.in_flight_max}, {seen.stuck} for more than "
            f"{upstream_stop.STUCK_S:g} s of it (limit {upstream_stop.MAX_STUCK})",
            (
                f"first success {resume} s after it was back"
                if resume is not None
                else "NO success after it was back"
            )
            + f" (limit {upstream_stop.MAX_RESUME_S:g} s)",
            f"probe while down: {len(probe) - len(seen.probe_bare)} of {len(probe)} failures "
            "with a JSON error body",
        ]
    )
    figures = {
        "load": what(done.load),
        **(seen.load.totals() if seen.load else {}),
        "failures": failures_text(seen.requests),
        "failed_p99_s": p99,
        "outside_outage": len(seen.outside),
        "in_flight_max": seen.in_flight_max,
        "stuck_max": seen.stuck,
        "resume_s": resume,
        "probe_failures": len(probe),
        "probe_without_json": len(seen.probe_bare),
        "key": f"p99 {known(p99)} s, back in {known(resume)} s",
    }
    return did, measured, figures


def app_host_stop_words(outcome: Outcome):
    seen: app_host_stop.Observation = outcome.figures
    if outcome.verdict is Verdict.NOT_APPLICABLE:
        return (
            "systemctl stop of one app host's app unit",
            outcome.reasons[0],
            {"app_hosts": len(seen.app_hosts), "key": f"{len(seen.app_hosts)} app host"},
        )
    done: app_host_stop.Done = outcome.done
    first, last = seen.down_window
    rejoin = seen.rejoin_s
    served = ", ".join(f"{a} x{n}" for a, n in sorted(seen.served_while_down.items())) or "none"
    did = (
        f"systemctl stop {done.unit} on {done.victim} (of {len(seen.app_hosts)} app hosts) "
        f"{done.at_s:.0f} s into {what(done.load)} ({with_delay(done.load)}), start "
        f"{done.down_s:g} s later"
    )
    measured = "; ".join(
        [
            f"{failures_text(seen.requests)}, limit {known(seen.in_flight)} (nginx's "
            f"connections to {done.victim} at the stop)",
            f"while it was down ({last - first} s): answered by {served}",
            (
                f"{done.victim} answering again {rejoin} s after its start"
                if rejoin is not None
                else f"{done.victim} NOT answering again within the run"
            )
            + f" (limit {app_host_stop.MAX_REJOIN_S:g} s)",
        ]
    )
    figures = {
        "load": what(done.load),
        **(seen.load.totals() if seen.load else {}),
        "failed": len(seen.failures),
        "failed_limit": seen.in_flight,
        "served_while_down": seen.served_while_down,
        "rejoin_s": rejoin,
        "key": f"{len(seen.failures)}/{known(seen.in_flight)} failed, back in {known(rejoin)} s",
    }
    return did, measured, figures


WORDS = {
    kill_worker.NAME: kill_worker_words,
    pg_restart.NAME: pg_restart_words,
    pool_exhaustion.NAME: pool_exhaustion_words,
    reload_fault.NAME: reload_words,
    slow_fault.NAME: slow_clients_words,
    loadgen_stop.NAME: loadgen_stop_words,
    celery_kill.NAME: celery_kill_words,
    redis_restart.NAME: redis_restart_words,
    upstream_stop.NAME: upstream_stop_words,
    app_host_stop.NAME: app_host_stop_words,
}


def result(number: int, outcome: Outcome, server: str | None = None) -> Result:
    """The line and figures of an outcome (of a server of a matrix, if given)."""
    reasons = list(outcome.reasons)
    if outcome.figures is None:
        did, measured, figures = NOT_CARRIED_OUT, "; ".join(reasons), {}
    else:
        did, measured, figures = WORDS[outcome.fault](outcome)
    return Result(
        number, outcome.fault, outcome.verdict.value, did, measured, figures, reasons, server
    )


def write_results(path: Path, run_id: str, ansible_args, results: list[Result]):
    """reports/<run-id>/faults.json: every fault's line and figures so far."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "run_id": run_id,
        "ansible_args": list(ansible_args),
        "faults": [_without_server(asdict(r)) | {"line": r.line()} for r in results],
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


def _without_server(fields: dict) -> dict:
    """A result's fields, its server only when it has one (a matrix)."""
    if fields.get("server") is None:
        fields.pop("server", None)
    return fields


def cell_text(result: Result | None) -> str:
    """A verdict and its key figure, for the matrix's table."""
    if result is None:
        return "-"
    key = result.figures.get("key")
    if result.status == Verdict.FAIL.value and not result.figures:
        key = NOT_CARRIED_OUT
    return f"{result.status} {key}" if key else result.status


def matrix_table(results: list[Result], servers, faults) -> str:
    """server x fault: each verdict with its key figure, one row per server."""
    found = {(r.server, r.name): r for r in results}
    header = ["server", *faults]
    rows = [[server, *(cell_text(found.get((server, f))) for f in faults)] for server in servers]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def summary_line(run_id: str, results: list[Result], seconds: float, path: str) -> str:
    failed = sum(r.status == Verdict.FAIL.value for r in results)
    skipped = sum(r.status == Verdict.SKIP.value for r in results)
    # not applicable to the inventory: neither passed nor failed, and said apart
    na = sum(r.status == Verdict.NOT_APPLICABLE.value for r in results)
    return (
        f"faults {run_id}: {len(results) - failed - skipped - na} passed, {failed} failed, "
        f"{skipped} skipped"
        + (f", {na} not applicable" if na else "")
        + f" in {clock(seconds)}; figures in {path}"
    )
