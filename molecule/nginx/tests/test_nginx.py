"""The nginx role alone: its site, named by the caller, proxies to the
upstream it was given, with the limits it was given, from a sandboxed unit.

`pytest -s` shows systemd-analyze's exposure of the unit."""

import json
import time

import pytest

from flask_deploy_lab.report.proxy import server_timing
from tests.nginx_log import logged
from tests.systemd_units import exposure, main_process, proc_status, show

CONNECTS = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null"
# status of a GET (or a POST of argv[2]) through nginx on the host
STATUS = (
    "import sys, urllib.request, urllib.error\n"
    "url, data = 'http://127.0.0.1' + sys.argv[1], sys.argv[2].encode() or None\n"
    "try:\n"
    "    print(urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5).status)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code)"
)

# A stand-in app that answers as labapp.timing does (a Server-Timing header)
# and sends back, as its body, the X-Request-Start it was sent.
TIMED_APP = (
    "import http.server\n"
    "class TimedApp(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = (self.headers.get('X-Request-Start') or '-').encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Server-Timing', 'queue;dur=1.5, app;dur=2.5')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.HTTPServer(('127.0.0.1', 8000), TimedApp).serve_forever()\n"
)
# a GET through nginx sending its own X-Request-Start (argv[2]): [status, headers, body]
ANSWER = (
    "import json, sys, urllib.request\n"
    "req = urllib.request.Request('http://127.0.0.1' + sys.argv[1],"
    " headers={'X-Request-Start': sys.argv[2]})\n"
    "r = urllib.request.urlopen(req, timeout=5)\n"
    "print(json.dumps([r.status, dict(r.headers), r.read().decode()]))"
)


@pytest.fixture()
def upstream(host):
    """A stand-in app on the upstream's port for the test's duration (bounded)."""
    host.run("timeout 60 python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &")
    host.run("for i in $(seq 50); do %s && break; sleep 0.1; done", CONNECTS)
    yield
    host.run("pkill -f 'http.server 8000'")


@pytest.fixture()
def timed_app(host):
    """The stand-in app that answers Server-Timing, for the test's duration (bounded)."""
    host.run("timeout 60 python3 -c %s >/dev/null 2>&1 &", TIMED_APP)
    host.run("for i in $(seq 50); do %s && break; sleep 0.1; done", CONNECTS)
    yield
    host.run("pkill -f TimedApp")


def status(host, path="/", body=""):
    return int(host.check_output("python3 -c %s %s %s", STATUS, path, body))


def test_the_configuration_is_valid_and_served(host):
    assert host.run("nginx -t").rc == 0
    assert host.service("nginx").is_running
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_the_site_has_the_callers_name(host):
    enabled = host.file("/etc/nginx/sites-enabled/shop.conf")
    assert enabled.is_symlink and enabled.linked_to == "/etc/nginx/sites-available/shop.conf"
    site = host.file("/etc/nginx/sites-available/shop.conf").content_string
    assert "upstream shop {" in site and "server 127.0.0.1:8000" in site
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_without_the_app_nginx_answers_502(host):
    assert status(host) == 502


def test_with_the_app_nginx_proxies_to_it(host, upstream):
    assert status(host) == 200


def test_a_body_over_the_limit_is_refused(host, upstream):
    assert status(host, "/", "x" * 4096) == 413


def test_nginx_stamps_the_request_and_logs_the_apps_timing_unseen(host, timed_app):
    path = f"/timed-{time.time_ns()}"
    before = time.time()
    # a client's own stamp (a valid one, from 2001) is replaced by nginx's
    got, headers, body = json.loads(
        host.check_output("python3 -c %s %s %s", ANSWER, path, "t=1000000000.000")
    )
    after = time.time()
    assert got == 200
    assert body.startswith("t="), body
    assert before - 1 <= float(body[2:]) <= after + 1, (before, body, after)
    # the app's split is nginx's to log, not the client's to see
    assert "server-timing" not in {name.lower() for name in headers}, headers
    match = logged(host, "GET", path)
    assert match["st"] == "queue;dur=1.5, app;dur=2.5", match.string
    assert server_timing(match) == {"queue": 1.5, "app": 2.5}


def test_the_proxy_host_reuses_ports_in_time_wait(host):
    # set now (the lab gives the container the value) and kept for boot
    assert host.sysctl("net.ipv4.tcp_tw_reuse") == 1
    conf = host.file("/etc/sysctl.d/60-nginx-proxy.conf")
    assert conf.contains("^net.ipv4.tcp_tw_reuse=1$")


# --- the sandbox: nginx.service.d/sandbox.conf --------------------------------

UNIT = "nginx.service"
DROP_IN = "/etc/systemd/system/nginx.service.d/sandbox.conf"
# What the master keeps (capability numbers of linux/capability.h).
CAPABILITIES = {
    "cap_chown": 0,
    "cap_dac_override": 1,
    "cap_setgid": 6,
    "cap_setuid": 7,
    "cap_net_bind_service": 10,
}
# systemd-analyze security: stock Debian nginx.service is 9.6; the sandbox
# reaches about 2.7 (root master, network, the capabilities above).
MAX_EXPOSURE = 3.5


def test_the_sandbox_drop_in_is_loaded(host):
    props = show(
        host,
        UNIT,
        "DropInPaths",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "NoNewPrivileges",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "SystemCallArchitectures",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "ReadWritePaths",
    )
    assert DROP_IN in props["DropInPaths"].split(), props["DropInPaths"]
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    for name in (
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "NoNewPrivileges",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert props[name] == "yes", name
    assert props["RestrictNamespaces"] == "yes"
    assert props["SystemCallArchitectures"]  # native: stock units allow any
    assert set(props["CapabilityBoundingSet"].split()) == set(CAPABILITIES)
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert set(props["ReadWritePaths"].split()) == {"/var/log/nginx", "/var/lib/nginx", "/run"}


def test_the_running_master_is_the_sandboxed_one(host):
    # started (or restarted) after the drop-in: the limits are on the process
    _, proc = main_process(host, UNIT)
    allowed = sum(1 << bit for bit in CAPABILITIES.values())
    bounding = int(proc["CapBnd"], 16)
    # nothing beyond the list (a container may hold fewer), and the port
    assert bounding & ~allowed == 0, hex(bounding)
    assert bounding & 1 << CAPABILITIES["cap_net_bind_service"]
    assert proc["NoNewPrivs"] == "1"
    # systemd's filters on top of the container's own (kernels >= 5.9 count them)
    if "Seccomp_filters" in proc:
        init = proc_status(host, "1")
        assert int(proc["Seccomp_filters"]) > int(init["Seccomp_filters"])


def test_the_sandboxed_master_starts_its_workers_as_www_data(host):
    pid, _ = main_process(host, UNIT)
    assert host.check_output("ps -o user= -p %s", pid).strip() == "root"
    workers = host.check_output("ps -o user= --ppid %s", pid).split()
    assert workers and set(workers) == {"www-data"}


def test_the_sandboxed_nginx_reloads_and_serves(host):
    host.check_output("systemctl reload %s", UNIT)
    assert host.service("nginx").is_running
    assert status(host) == 502


def test_the_sandbox_denied_nginx_nothing_it_needed(host):
    # what a missing capability, path or system call leaves in nginx's log
    denied = host.run(
        "grep -E %s /var/log/nginx/error.log",
        r"\((1: Operation not permitted|13: Permission denied|30: Read-only file system)\)",
    )
    assert denied.rc == 1, denied.stdout


def test_the_sandbox_lowers_the_exposure(host):
    assert exposure(host, UNIT) <= MAX_EXPOSURE
