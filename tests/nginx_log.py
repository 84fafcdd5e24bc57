"""What testinfra reads of nginx's access log on a lab host, for the Molecule
scenarios (their verifiers put the project on PYTHONPATH): a request's line,
in the nginx role's ``timed`` format, and the app's Server-Timing in it
(its st= is read with report.proxy.server_timing)."""

from __future__ import annotations

import time

from flask_deploy_lab.report.proxy import LINE

ACCESS_LOG = "/var/log/nginx/access.log"


def logged(host, method, path, timeout=15):
    """The last access-log line of `method path`, parsed (report.proxy.LINE).
    nginx writes its log from a buffer, at the latest every 5 s: waited for."""
    deadline = time.monotonic() + timeout
    while True:
        found = host.run("grep -F -- %s %s", f'"{method} {path} ', ACCESS_LOG)
        if found.rc == 0:
            line = found.stdout.splitlines()[-1]
            match = LINE.match(line)
            assert match, f"not the role's log format: {line}"
            return match
        assert time.monotonic() < deadline, f"no line of {method} {path} in {ACCESS_LOG}"
        time.sleep(0.5)
