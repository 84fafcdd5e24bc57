"""The nginx role alone: its site, named by the caller, proxies to the
upstream it was given, with the limits it was given."""

import pytest

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


@pytest.fixture()
def upstream(host):
    """A stand-in app on the upstream's port for the test's duration (bounded)."""
    host.run("timeout 60 python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &")
    host.run("for i in $(seq 50); do %s && break; sleep 0.1; done", CONNECTS)
    yield
    host.run("pkill -f 'http.server 8000'")


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


def test_the_proxy_host_reuses_ports_in_time_wait(host):
    # set now (the lab gives the container the value) and kept for boot
    assert host.sysctl("net.ipv4.tcp_tw_reuse") == 1
    conf = host.file("/etc/sysctl.d/60-nginx-proxy.conf")
    assert conf.contains("^net.ipv4.tcp_tw_reuse=1$")
