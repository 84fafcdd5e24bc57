"""A stdlib stand-in for the app's endpoints, for driving the locustfile in tests.

    python loadtest_fake_app.py --log requests.log [--broken]

Listens on a free port of 127.0.0.1 only, prints its URL as the first line of
stdout, appends one JSON line per request ([path, query]) to the log, and runs
until SIGTERM. It answers the way app/README.md describes the real app, with canned
bodies and no database; `--broken` serves bodies that break each endpoint's
contract, to check that the locustfile marks them failed. Each instance is its
own process so that several Locust runs at once do not queue behind one GIL.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

POLLS_UNTIL_DONE = 2


class _Handler(BaseHTTPRequestHandler):
    # keep-alive, like the real servers behind nginx: one thread per Locust user
    protocol_version = "HTTP/1.1"
    server: FakeApp

    def log_message(self, *_args):
        pass

    def _send(self, status, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.record(url.path, query)
        broken = self.server.broken
        if url.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif url.path == "/json":
            self._send(200, {} if broken else {"message": "Hello, World!"})
        elif url.path in ("/slow", "/sleep"):
            time.sleep(float(query.get("delay", 0)))
            self._send(200, {"delay": float(query.get("delay", 0))})
        elif url.path == "/db":
            self._send(200, {"randomNumber": 1} if broken else {"id": 7, "randomNumber": 1})
        elif url.path == "/queries":
            n = min(max(int(query.get("n", 1)), 1), 500)
            self._send(200, [{"id": i, "randomNumber": i} for i in range(n - broken)])
        elif url.path == "/fortunes":
            html = b"<!DOCTYPE html><html><table><tr><td>fortune</td></tr></table></html>"
            self._send(200, html, "application/json" if broken else "text/html; charset=utf-8")
        elif url.path == "/render":
            self._send(200, b"" if broken else b"<h1>post</h1>", "text/html; charset=utf-8")
        elif url.path.startswith("/tasks/"):
            if self.server.poll(url.path) >= POLLS_UNTIL_DONE:
                self._send(200, {"status": "done", "result": {"html_length": 1}})
            else:
                self._send(202, {"status": "running"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.record(url.path, json.loads(body) if body else {})
        if url.path == "/tasks":
            task_path = f"/tasks/{self.server.new_task()}"
            # absolute and pointing elsewhere: the locustfile must keep to --host
            location = f"http://elsewhere.invalid{task_path}"
            headers = {} if self.server.broken else {"Location": location}
            self._send(202, {"id": task_path}, headers=headers)
        else:
            self._send(404, {"error": "not found"})


class FakeApp(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, log, broken=False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.broken = broken
        self.lock = threading.Lock()
        self.log = log
        self._polls = {}
        self._ids = itertools.count(1)

    def handle_error(self, request, client_address):
        # Locust drops its connections when a run ends; that is not an error here
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, path, query):
        with self.lock:
            self.log.write(json.dumps([path, query]) + "\n")

    def new_task(self):
        with self.lock:
            return next(self._ids)

    def poll(self, path):
        with self.lock:
            self._polls[path] = self._polls.get(path, 0) + 1
            return self._polls[path]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--broken", action="store_true")
    args = parser.parse_args()
    with open(args.log, "a", buffering=1) as log:
        server = FakeApp(log, broken=args.broken)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(server.url, flush=True)
        server.serve_forever()
        server.server_close()


if __name__ == "__main__":
    main()
