"""Two app hosts behind one nginx: both take traffic, one fails, it comes back.

The load is hey's (Debian's), from a load generator through nginx, on
``/slow?delay=`` so that each app host holds a known number of requests at
once. An app host's share is counted twice, independently: by nginx (the
upstream of each request in its access log) and by the app host's own kernel
(TCP passive opens: nginx opens a connection per request to the default
server, whose connections hold a slot).
"""

from __future__ import annotations

import subprocess
import threading
import time

from tests.conftest import PODMAN, podman
from tests.two_app.conftest import (
    APP_HOSTS,
    APP_PORT,
    LOADGEN,
    PROXY,
    address,
    container,
    exec_,
    hey,
    nginx_log_lines,
    parse_hey_csv,
    passive_opens,
    upstreams_of,
    wait_for_unit,
)

DELAY_S = 0.2
URL = f"http://{PROXY}/slow?delay={DELAY_S}"
# Concurrent clients: 20 per app host, far below either host's slots.
CLIENTS = 40
RUN_S = 30
KILL_AT_S = 10
HEY_RUN = ["-z", f"{RUN_S}s", "-c", str(CLIENTS)]
# After the kill nginx needs max_fails (3) errors to mark the host down; each
# costs a request its connect timeout at most (5 s), then it is retried.
SETTLE_S = 6


def test_nginx_sends_traffic_to_both_app_hosts(two_app_stack):
    before_kernel = {h: passive_opens(h) for h in APP_HOSTS}
    before_log = len(nginx_log_lines())
    rows = hey(URL, "-n", "400", "-c", "20")
    after_kernel = {h: passive_opens(h) for h in APP_HOSTS}
    by_upstream = upstreams_of(nginx_log_lines()[before_log:])

    assert len(rows) == 400 and all(r["status-code"] == "200" for r in rows)
    for host, addr in two_app_stack.items():
        served = by_upstream.get(f"{addr}:{APP_PORT}", 0)
        accepted = after_kernel[host] - before_kernel[host]
        # round robin over two: about 200 each; a third is far from chance
        assert served >= 130, f"nginx sent {host} {served} of 400: {by_upstream}"
        assert accepted >= served, f"{host} accepted {accepted} connections, nginx sent {served}"


def _in_flight_to(addr):
    """Connections from nginx to `addr`:APP_PORT established now, on the proxy: with a
    connection per request, the requests that host holds."""
    out = exec_(PROXY, "ss", "-Htn", "state", "established", "dst", f"{addr}:{APP_PORT}").stdout
    return len([line for line in out.splitlines() if line.strip()])


def _hey_in_background(result):
    def load():
        out = subprocess.run(
            [PODMAN, "exec", container(LOADGEN), "hey", *HEY_RUN, "-o", "csv", URL],
            capture_output=True,
            text=True,
            timeout=RUN_S + 120,
        )
        result["rows"] = parse_hey_csv(out.stdout) if out.returncode == 0 else None
        result["stderr"] = out.stderr

    runner = threading.Thread(target=load)
    runner.start()
    return runner


def test_a_stopped_app_server_is_failed_over_and_taken_back(two_app_stack, app_units):
    """The app server of one host stopped under load, then started again: nginx
    sends its requests to the other meanwhile and to both again afterwards, with
    no reload or converge."""
    victim, survivor = "app2", "app1"
    result = {}
    started = time.monotonic()
    runner = _hey_in_background(result)
    time.sleep(KILL_AT_S)
    in_flight = _in_flight_to(two_app_stack[victim])
    exec_(victim, "systemctl", "stop", app_units[victim], timeout=120)
    stopped_at = time.monotonic() - started
    survivor_before = passive_opens(survivor)
    time.sleep(max(0.0, KILL_AT_S + 8 - (time.monotonic() - started)))
    survivor_alone = passive_opens(survivor) - survivor_before
    alone_s = time.monotonic() - started - stopped_at
    exec_(victim, "systemctl", "start", app_units[victim], timeout=120)
    back_at = time.monotonic() - started
    opens_back = passive_opens(victim)
    runner.join(RUN_S + 150)
    gained = passive_opens(victim) - opens_back
    rows = result.get("rows")
    assert rows, f"hey failed: {result.get('stderr')}"
    failed = [r for r in rows if not r["status-code"].startswith("2")]
    print(
        f"stop/start: {len(rows)} requests, {len(failed)} failed, {in_flight} in flight on "
        f"{victim} at the stop ({stopped_at:.1f} s), started at {back_at:.1f} s; "
        f"{gained} requests to {victim} from then on; {survivor} alone took "
        f"{survivor_alone / alone_s:.1f} req/s"
    )
    assert len(failed) <= in_flight, f"{len(failed)} failed, {in_flight} were in flight"
    # nginx tries it again after fail_timeout (5 s) and it takes its share: of
    # about 100 req/s each over the rest of the run, at least a fifth
    assert gained >= 0.2 * (CLIENTS / DELAY_S / 2) * (RUN_S - back_at - 6), (
        f"{victim} answered {gained} requests after its start"
    )
    # meanwhile the survivor took the whole load: the clients over the delay
    assert survivor_alone / alone_s >= 0.8 * CLIENTS / DELAY_S, (
        f"{survivor} took {survivor_alone / alone_s:.1f} req/s alone"
    )


def test_nginx_fails_over_when_an_app_host_dies(two_app_stack, app_units):
    """The whole host killed under load, then started again: nginx fails over to
    the other, and takes the host back once its app server is up, with no
    converge (a lab container keeps its address, as a VM or a real host does)."""
    victim, survivor = "app2", "app1"
    log_from = len(nginx_log_lines())
    result = {}

    started = time.monotonic()
    runner = _hey_in_background(result)
    time.sleep(KILL_AT_S)
    in_flight = _in_flight_to(two_app_stack[victim])
    killed_at = time.monotonic() - started
    podman("kill", container(victim))
    runner.join(RUN_S + 150)
    rows = result.get("rows")
    assert rows, f"hey failed: {result.get('stderr')}"

    failed = [r for r in rows if not r["status-code"].startswith("2")]
    window = (killed_at + SETTLE_S, RUN_S - 1)
    done_after = [
        r for r in rows if window[0] <= float(r["offset"]) + float(r["response-time"]) <= window[1]
    ]
    survivor_rps = len(done_after) / (window[1] - window[0])
    lines = nginx_log_lines()[log_from:]
    retried = sum(1 for line in lines if 'ua="' in line and "," in line.split('ua="')[1])
    print(
        f"failover: {len(rows)} requests, {len(failed)} failed, {in_flight} in flight on "
        f"{victim} at the kill, {retried} retried by nginx on another app host; "
        f"{survivor_rps:.1f} req/s on {survivor} alone afterwards"
    )
    assert in_flight > 0, "nothing was in flight on the victim: the fault was not under load"
    assert len(failed) <= in_flight, (
        f"{len(failed)} requests failed, more than the {in_flight} in flight on {victim}"
    )
    # the survivor carries the whole load on its own afterwards: the clients
    # over the delay (200 req/s), within its slots
    assert survivor_rps >= 0.8 * CLIENTS / DELAY_S, f"{survivor_rps:.1f} req/s after the kill"
    survivor_addr = f"{two_app_stack[survivor]}:{APP_PORT}"
    assert upstreams_of(lines).get(survivor_addr, 0) > len(rows) / 2

    # the host started again: same address, its app server up by itself, and
    # nginx sends it requests again once fail_timeout (5 s) has passed
    podman("start", container(victim))
    wait_for_unit(victim, app_units[victim])
    assert address(victim) == two_app_stack[victim], "the restarted host has another address"
    time.sleep(SETTLE_S)
    opens = passive_opens(victim)
    back = hey(URL, "-n", "400", "-c", "20")
    gained = passive_opens(victim) - opens
    print(f"rejoin: {victim} took {gained} of {len(back)} requests after its restart")
    assert all(r["status-code"] == "200" for r in back)
    assert gained >= 130, f"{victim} took {gained} of 400 requests after its restart"
