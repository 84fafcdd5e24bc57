"""The faults without a lab: what they fabricate and serve to each other.

Ansible runs here only against this machine (``localhost`` with the local
connection), never against an inventory of the lab.
"""

from __future__ import annotations

import http.server
import sys
import threading

import pytest

from flask_deploy_lab.faults.executor import Executor

# The variables that make localhost a host Ansible reaches without a connection plugin.
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok: 200; /busy: 503 with Retry-After: 1; /bare: 503 without it."""

    def do_GET(self):
        status, headers = {"/ok": (200, {}), "/busy": (503, {"Retry-After": "1"})}.get(
            self.path.split("?")[0], (503, {})
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


@pytest.fixture
def http_server():
    """A loopback HTTP server; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def local(tmp_path):
    """An executor whose only host is this machine."""
    return Executor(tmp_path / "logs", inventory="localhost,", extra_vars=LOCAL)


@pytest.fixture
def two_hosts(tmp_path):
    """An inventory of two hosts, both this machine, in groups like the stack's."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"""
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {sys.executable}
  hosts:
    web1:
      node_address: 10.9.8.7
      nginx_status_port: 8081
      ansible_host: "fdl-{{{{ inventory_hostname }}}}"
      ansible_podman_executable: "{{{{ ansible_config_file | dirname }}}}/lab/podman"
    gen1:
  children:
    proxy:
      hosts:
        web1:
    loadgen:
      hosts:
        gen1:
        web1:
"""
    )
    return Executor(tmp_path / "logs", inventory=str(inventory))
