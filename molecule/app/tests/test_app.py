"""The app roles on one host: python_service gives the app and the slow API one
home, each unit gets the settings it was given, the app answers."""

import json

import pytest

UNIT = "labapp-gunicorn-gthread.service"


GET = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
)


def get(host, url):
    return json.loads(host.check_output("python3 -c %s %s", GET, url))


def test_both_services_run(host):
    assert host.service(UNIT).is_running and host.service(UNIT).is_enabled
    assert host.service("slow-api.service").is_running


@pytest.mark.parametrize("path", ["/healthz", "/db", "/slow?delay=0.1"])
def test_the_app_answers(host, path):
    assert get(host, f"http://127.0.0.1:8000{path}")


def test_one_home_one_virtualenv(host):
    for unit in (UNIT, "slow-api.service"):
        user = host.check_output("systemctl show -p User --value %s", unit)
        assert user == "labapp"
    assert host.file("/opt/labapp/venv/bin/python").exists
    assert host.file("/opt/labapp/app/labapp/__init__.py").exists
    assert host.file("/opt/labapp").user == "root" and host.file("/opt/labapp").group == "labapp"


def test_the_slow_apis_graceful_timeout_reaches_the_process(host):
    exec_start = host.check_output("systemctl show -p ExecStart --value slow-api.service")
    assert "--graceful-timeout 10" in exec_start
    assert host.check_output("systemctl show -p TimeoutStopUSec --value slow-api.service") == "15s"


def test_both_units_have_the_one_sandbox(host):
    for unit in (UNIT, "slow-api.service"):
        props = host.check_output(
            "systemctl show -p ProtectSystem -p RestrictAddressFamilies -p UMask %s", unit
        )
        assert "ProtectSystem=strict" in props and "UMask=0077" in props
        assert "AF_INET" in props and "AF_NETLINK" not in props


def test_psycopg2_was_built_against_the_hosts_libpq(host):
    ldd = host.check_output(
        "ldd $(/opt/labapp/venv/bin/python -c 'import psycopg2._psycopg as m; print(m.__file__)')"
    )
    assert "/lib/x86_64-linux-gnu/libpq.so.5" in ldd


def test_the_app_host_moves_queued_connections_off_a_closed_listener(host):
    # set now (the lab gives the container the value) and kept for boot
    assert host.sysctl("net.ipv4.tcp_migrate_req") == 1
    conf = host.file("/etc/sysctl.d/60-labapp.conf")
    assert conf.contains("^net.ipv4.tcp_migrate_req=1$")


def test_the_units_reload_is_the_rolling_one_and_its_workers_are_ready(host):
    # gunicorn-gthread: a rolling reload with Gunicorn's TTIN and TTOU (the stack
    # scenario's switch test reloads every server through systemd)
    assert host.check_output("systemctl show -p CanReload --value %s", UNIT) == "yes"
    exec_reload = host.check_output("systemctl show -p ExecReload --value %s", UNIT)
    assert "-m labapp.rolling_reload --master $MAINPID --run-dir /run/labapp-gunicorn-gthread" in (
        exec_reload
    )
    # every worker that has loaded the app has its ready file there
    main = host.check_output("systemctl show -p MainPID --value %s", UNIT)
    workers = host.check_output("cat /proc/%s/task/*/children", main).split()
    ready = host.check_output("ls /run/labapp-gunicorn-gthread").split()
    assert workers and sorted(ready) == sorted(f"ready.{pid}" for pid in workers)
