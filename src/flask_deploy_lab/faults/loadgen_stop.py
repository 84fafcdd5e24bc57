"""loadgen-stop: the last load generator taken away 8 s into a run and brought
back (a lab container: podman stop, podman start; a VM or a host: a reboot).

Targets: the run finishes, or fails with a message that says why: it names
the load generator that went away (its inventory name or its container) and
says it was lost (unreachable, lost, quit, stopped, no heartbeat, ...), so
any other failure, however specific its message, is a FAIL; a run that
finished after losing a worker is marked in its cell.json (the report flags
the cell); no Locust, sampler or slow-client process is left on any host
(pgrep on each, load generators first); the host's systemd is running again
(or degraded). With one load generator, which runs
the master, there is none to take away: a SKIP.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask_deploy_lab.ansible import PlaybookResult
from flask_deploy_lab.faults.executor import HostRestart
from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import (
    LoadSpec,
    note,
    read_request_history,
    read_totals,
    sleep_until,
)
from flask_deploy_lab.faults.outcome import Outcome
from flask_deploy_lab.faults.stack import Stack

NAME = "loadgen-stop"
STOP_AT_S = 8
LOAD = LoadSpec("slow", duration=25, delay=0.1)
# What a process of a run looks like on any host: Locust, its sampler, the slow
# clients. Bracketed so that it does not match its own text, which is on the
# command line of the controller's ansible (a host may be the controller).
LEFTOVER_PATTERN = r"[l]ocust|[s]ampler\.py|[s]low_clients\.py"
# systemd's states of a host that is up
UP = ("running", "degraded")
RUN_TIME_REACHED = "--run-time limit reached"
SPAWN = re.compile(r"Sending spawn jobs of (\d+) users .* to (\d+) ready workers")
# What a failure's message must say of the load generator it lost.
LOSS = re.compile(
    r"unreachable|lost|quit|stopped|heartbeat|missing|went away|gone|no route|refused|"
    r"timed out|connection (?:reset|closed|error)|failed to connect",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    victim: str
    # how it went away and came back (podman stop, or reboot), and when
    restart: HostRestart
    # seconds into the measured run
    at_s: float
    container: str


@dataclass(frozen=True)
class Rebalance:
    """What Locust did when a worker went away: its master's log, its stats history
    and the cell.json loadtest.yml wrote."""

    requests: int
    failures: int
    rps: float
    worker_quit_logged: bool
    # (users, workers) of each spawn message during the run: one more per re-spawn
    spawns: tuple[tuple[int, int], ...]
    # when the stats restarted (the total request count fell), Unix times
    stats_reset_at: tuple[float, ...]
    # seconds of the run the CSVs cover after the last reset (None: no reset)
    stats_cover_s: float | None
    # cell.json's workers_lost names the victim's worker
    flagged_in_cell: bool

    @property
    def respawns(self) -> int:
        return len(self.spawns) - 1

    @property
    def worker_lost(self) -> bool:
        """The log shows that Locust lost a worker (it quit, or users were re-spawned)."""
        return bool(self.worker_quit_logged or self.respawns)


@dataclass(frozen=True)
class Observation:
    # load generators in the inventory
    loadgens: int
    # how the last one is taken away (Executor.restart_method)
    method: str
    finished: bool | None = None
    # the failed run's reason (None: it finished)
    message: str | None = None
    # a failed run named the task that failed (or was stopped past its time)
    said_why: bool = False
    rebalance: Rebalance | None = None
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    host_state: str = ""
    back_s: float | None = None


def names_the_loss(message: str | None, names) -> bool:
    """Whether a failed run's message names the lost host (any of `names`) and its loss."""
    text = message or ""
    # a name, or a Locust worker id of that host (<host>_<hex>), not a longer name
    named = any(
        n and re.search(rf"(?<![A-Za-z0-9.-]){re.escape(n)}(?![A-Za-z0-9.-])", text) for n in names
    )
    return named and bool(LOSS.search(text))


def says_why(result: PlaybookResult) -> bool:
    """Whether a run ended well, or its failure says why: a failed (or unreachable)
    task's message, an error Ansible printed, or its stop past its timeout (a
    signal). Only a bare exit status says nothing."""
    return result.ok or bool(result.failures) or "[ERROR]" in result.stderr or result.returncode < 0


def read_rebalance(cell_dir: Path, victim: str) -> Rebalance:
    log = (cell_dir / "locust.log").read_text(errors="replace")
    run_end = log.find(RUN_TIME_REACHED)
    during = log[: run_end if run_end >= 0 else len(log)]
    quit_seen = bool(re.search(rf"Worker '{re.escape(victim)}_\w+' \(index \d+\) quit", during))
    spawns = tuple((int(u), int(w)) for u, w in SPAWN.findall(during))
    history = read_request_history(cell_dir)
    resets = tuple(
        history[i][0] for i in range(1, len(history)) if history[i][2] < history[i - 1][2]
    )
    cell_path = cell_dir / "cell.json"
    cell = json.loads(cell_path.read_text()) if cell_path.is_file() else {}
    figures = read_totals(cell_dir)
    return Rebalance(
        requests=figures.requests,
        failures=figures.failures,
        rps=figures.rps,
        worker_quit_logged=quit_seen,
        spawns=spawns,
        stats_reset_at=resets,
        stats_cover_s=history[-1][0] - resets[-1] if resets and history else None,
        flagged_in_cell=any(w.startswith(f"{victim}_") for w in cell.get("workers_lost") or []),
    )


class LoadgenStop(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        method = stack.executor.restart_method(stack.inventory.hosts[stack.prober])
        if len(stack.loadgens) < 2:
            return self.judge(None, Observation(len(stack.loadgens), method))
        done, load = self.inject(stack)
        return self.judge(done, self.observe(stack, done, load))

    def inject(self, stack: Stack):
        victim = stack.inventory.hosts[stack.prober]
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        sleep_until(t0 + STOP_AT_S)
        restart = stack.executor.restart_host(victim, label=f"{NAME}-host")
        note(f"{victim.name} went away ({restart.method}) and is coming back")
        done = Done(LOAD, victim.name, restart, restart.stopped_at - t0, victim.container)
        return done, load

    def observe(self, stack: Stack, done: Done, load) -> Observation:
        state = stack.executor.system_state(done.victim, label=f"{NAME}-systemd")
        back_s = round(time.time() - done.restart.stopped_at, 1)
        note(f"{done.victim} back, systemd {state}")
        result = load.finish()
        every = list(stack.inventory.hosts)
        left = stack.executor.processes(every, LEFTOVER_PATTERN, label=f"{NAME}-leftovers")
        if left:
            note("leftover processes: stopping Locust on every load generator")
            stack.stop_locust(label=f"{NAME}--cleanup")
        return Observation(
            loadgens=len(stack.loadgens),
            method=done.restart.method,
            finished=result.ok,
            message=None if result.ok else result.reason,
            said_why=says_why(result),
            rebalance=read_rebalance(load.cell_dir, done.victim) if result.ok else None,
            leftovers=left,
            host_state=state,
            back_s=back_s,
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        if seen.loadgens < 2:
            return Outcome.skipped(
                NAME, seen, "the inventory has one load generator, which runs the master"
            )
        missed = []
        if not seen.said_why:
            missed.append("the run failed without saying why")
        elif seen.finished is False and not names_the_loss(
            seen.message, (done.victim, done.container)
        ):
            missed.append(
                f"the run failed, but its message does not say that {done.victim} was lost: "
                f"{seen.message!r}"
            )
        # a run that finished after losing a worker must say so in its cell
        if seen.rebalance and seen.rebalance.worker_lost and not seen.rebalance.flagged_in_cell:
            missed.append("the lost worker is not named in cell.json (workers_lost)")
        if seen.leftovers:
            hosts = ", ".join(
                f"{h} ({len(lines)}: {lines[0]})" for h, lines in sorted(seen.leftovers.items())
            )
            missed.append(f"processes left running on {hosts}")
        if seen.host_state not in UP:
            missed.append(f"{done.victim}'s systemd is {seen.host_state or 'not answering'}")
        return Outcome.judged(NAME, done, seen, missed)
