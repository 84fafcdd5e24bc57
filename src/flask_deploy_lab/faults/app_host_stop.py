"""app-host-stop: with two app hosts or more, the last one's app unit stopped
for 10 s under /slow load, then started: nginx fails over and takes it back.

Targets: no more requests fail (request log) than nginx had in flight to that
host the moment before the stop (its established connections to it, counted on
the proxy: an upper bound, idle kept-alive ones count too); while it is down
(from 2 s after its unit stopped to its start) nginx logs no answer from it and
some from the others (the access log's ``ua="..."``, the last address: the host
that answered); after its start it answers a 2xx again within MAX_REJOIN_S
(nginx's max_fails=3 fail_timeout=5s) and within the run. With fewer than two
app hosts there is no failover to see: NOT APPLICABLE, neither a pass nor a
failure (inventory/lab-two-app has two).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import STATUS, RequestLog, cannot_judge
from flask_deploy_lab.faults.stack import NGINX_ACCESS_LOG, Stack, deployment

NAME = "app-host-stop"
# Stop 8 s in, 10 s down, then at least MAX_REJOIN_S of run to see it back.
LOAD = LoadSpec("slow", users=20, duration=50, delay=0.5)
DOWN_S = 10
READY_TIMEOUT_S = 120
MAX_REJOIN_S = 30.0
# nginx may log the stopped host's last answers (its graceful stop) this long after.
DRAIN_S = 2
# The connections are counted this long before the stop.
COUNT_BEFORE_S = 0.05
TWO_APP = "inventory/lab-two-app"


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    victim: str
    unit: str
    at_s: float
    down_s: float


@dataclass(frozen=True)
class Observation:
    # the inventory's app hosts, and the one stopped (None: not applicable)
    app_hosts: tuple[str, ...]
    victim: str | None = None
    # where nginx reaches each app host (node_address)
    addresses: dict[str, str] | None = None
    # nginx's established connections to the victim the moment before the stop
    in_flight: int | None = None
    # Unix times: stop asked, stopped, start asked, active again (the victim's clock)
    stopping_at: float = 0.0
    down_at: float = 0.0
    starting_at: float = 0.0
    back_at: float = 0.0
    # nginx's access log since the run began: {second: {address: [requests, 2xx]}}
    upstreams: dict[int, dict[str, list[int]]] | None = None
    load: LoadFigures | None = None
    requests: RequestLog | None = None

    @property
    def applicable(self) -> bool:
        return len(self.app_hosts) >= 2

    @property
    def failures(self):
        return self.requests.failures() if self.requests else []

    @property
    def victim_address(self) -> str:
        return (self.addresses or {}).get(self.victim, "")

    @property
    def down_window(self) -> tuple[int, int]:
        """[first, last) whole seconds the victim is down and drained."""
        return int(self.down_at) + DRAIN_S, int(self.starting_at)

    def served(self, first: int, last: int) -> dict[str, int]:
        """{address: requests it answered} over the whole seconds [first, last)."""
        found: dict[str, int] = {}
        for second, hosts in (self.upstreams or {}).items():
            if first <= second < last:
                for address, (requests, _) in hosts.items():
                    found[address] = found.get(address, 0) + requests
        return found

    @property
    def served_while_down(self) -> dict[str, int]:
        return self.served(*self.down_window)

    @property
    def victim_while_down(self) -> int:
        return self.served_while_down.get(self.victim_address, 0)

    @property
    def others_while_down(self) -> int:
        skip = (self.victim_address, "-")
        return sum(n for a, n in self.served_while_down.items() if a not in skip)

    @property
    def rejoin_s(self) -> float | None:
        """Seconds from its start to the first second nginx logged a 2xx from it."""
        seconds = [
            s for s, hosts in (self.upstreams or {}).items()
            if s >= int(self.starting_at) and hosts.get(self.victim_address, [0, 0])[1] > 0
        ]  # fmt: skip
        return round(max(0.0, min(seconds) - self.starting_at), 1) if seconds else None


@dataclass(frozen=True)
class _Injected:
    load: object
    times: dict
    connections: object
    mark: int


class AppHostStop(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        app_hosts = tuple(stack.inventory.members("app"))
        if len(app_hosts) < 2:
            return self.judge(None, Observation(app_hosts))
        done, injected = self.inject(stack, app_hosts[-1])
        return self.judge(done, self.observe(stack, done, injected, app_hosts))

    def inject(self, stack: Stack, victim: str) -> tuple[Done, _Injected]:
        facts = stack.executor.local_facts([victim], label=f"{NAME}-deployment")
        unit = deployment(victim, facts[victim].get("labapp")).unit
        mark = stack.log_marks(stack.start_log_marks(label=f"{NAME}-mark"))[NGINX_ACCESS_LOG]
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        stop_at = t0 + FAULT_AT_S
        connections = stack.start_connections(
            stack.proxy, victim, stop_at - COUNT_BEFORE_S, label=f"{NAME}-connections"
        )
        times = stack.outage(
            victim, unit, at=stop_at, down_s=DOWN_S,
            ready_argv=["systemctl", "is-active", "--quiet", unit],
            ready_timeout=READY_TIMEOUT_S, what=f"{unit} on {victim}", label=NAME,
        )  # fmt: skip
        note(f"{unit} on {victim} stopped, started {times['starting_at'] - stop_at:.1f} s later")
        done = Done(LOAD, victim, unit, times.get("stopping_at", times["down_at"]) - t0, DOWN_S)
        return done, _Injected(load, times, connections, mark)

    def observe(self, stack: Stack, done: Done, injected: _Injected, app_hosts) -> Observation:
        load, times = injected.load, injected.times
        result = load.finish()
        counted = injected.connections.reply().json()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        # nginx writes its buffered lines within 5 s (flush=5s); the run ended longer ago
        upstreams = stack.upstreams(injected.mark, label=f"{NAME}-upstreams")
        return Observation(
            app_hosts=tuple(app_hosts),
            victim=done.victim,
            addresses={h: stack.inventory.hosts[h].address for h in app_hosts},
            in_flight=counted.get("established") if isinstance(counted, dict) else None,
            stopping_at=times.get("stopping_at", times["down_at"]),
            down_at=times["down_at"],
            starting_at=times["starting_at"],
            back_at=times.get("ready_at"),
            upstreams=upstreams,
            load=load.figures(),
            requests=load.requests(),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        if not seen.applicable:
            hosts = ", ".join(seen.app_hosts) or "none"
            return Outcome.not_applicable(
                NAME, seen,
                f"the inventory has {len(seen.app_hosts)} app host ({hosts}): no other to fail "
                f"over to; use one with two ({TWO_APP})",
            )  # fmt: skip
        missed = []
        why = cannot_judge(seen.requests, STATUS)
        if why:
            missed.append(why)
        elif seen.in_flight is None:
            missed.append(f"cannot judge: nginx's connections to {seen.victim} were not counted")
        elif len(seen.failures) > seen.in_flight:
            missed.append(
                f"{len(seen.failures)} requests failed, more than the {seen.in_flight} nginx "
                f"had in flight to {seen.victim} at the stop"
            )
        if seen.upstreams is None:
            missed.append("cannot judge: nginx's answers per app host were not counted")
        else:
            if seen.victim_while_down:
                missed.append(
                    f"nginx logged {seen.victim_while_down} answers from {seen.victim} while "
                    "it was stopped"
                )
            if not seen.others_while_down:
                missed.append(f"no other app host answered while {seen.victim} was stopped")
            rejoin = seen.rejoin_s
            if rejoin is None:
                missed.append(f"{seen.victim} got no traffic again within the run after its start")
            elif rejoin > MAX_REJOIN_S:
                missed.append(
                    f"{seen.victim} got traffic again {rejoin} s after its start, more than "
                    f"{MAX_REJOIN_S:g} s"
                )
        return Outcome.judged(NAME, done, seen, missed)
