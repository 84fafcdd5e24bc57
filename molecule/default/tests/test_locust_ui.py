"""Locust's web UI: published by nginx on the master with TLS and a password;
the master's own UI port is reached by no other host (test_firewall.py)."""

import os
from pathlib import Path

from tests.systemd_units import exposure

# GET a URL over TLS, trusting the certificate given as PEM text, with basic
# auth when "user:password" is given; prints the status.
UI_PROBE = """
import base64, ssl, sys, urllib.error, urllib.request
url, cadata, auth = sys.argv[1:4]
request = urllib.request.Request(url)
if auth:
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
try:
    context = ssl.create_default_context(cadata=cadata)
    print(urllib.request.urlopen(request, timeout=10, context=context).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def test_the_locust_ui_wants_its_password(inventory, group):
    # From another load generator, by the master's name, over TLS checked
    # against the certificate the master serves: 401 without the password or
    # with a wrong one; with it nginx passes the request on, to a master that
    # is not running its UI after a converge (502).
    master = sorted(inventory["loadgen"]["hosts"])[0]
    client = group("loadgen")[-1]
    cert = group("loadgen")[0].file("/etc/nginx/locust-ui/cert.pem").content_string
    password = (Path(os.environ["FDL_CREDENTIALS_DIR"]) / "locust_ui_password").read_text().strip()
    url = f"https://{master}:8443/stats/requests"

    def status(auth):
        return client.check_output("python3 -c %s %s %s %s", UI_PROBE, url, cert, auth).strip()

    assert status("") == "401"
    assert status("locust:wrong-" + password) == "401"
    assert status("locust:" + password) == "502"


def test_nginx_on_the_locust_master_is_sandboxed(group):
    score = exposure(group("loadgen")[0], "nginx.service")
    print(f"nginx.service on the Locust master: exposure {score}")
    assert score <= 3.5
