"""Where a proxied request's time goes inside the app host: a Server-Timing header.

nginx stamps each request it sends to the app (``X-Request-Start: t=$msec``,
Unix seconds to the millisecond, set by the nginx role: a client's own value
is replaced). The middleware takes the time it first sees the request and
answers with::

    Server-Timing: queue;dur=12.0, app;dur=503.4

``queue``: from nginx's stamp to the app's first look at the request, in ms:
the wait in the server's listen backlog or its own queue for a free worker,
thread or greenlet, with the network between the two hosts (on different
hosts the clocks' offset too: the lab's containers share one). ``app``: from
then to the response's status and headers, the view's own time. nginx logs
the header (``$upstream_http_server_timing``) and hides it from the client;
the report reads it from the proxy's log (report/proxy.py).

A view may add its own parts of ``app`` (`record`): /slow adds ``api``, its
call to the slow API from the request's send to the answer read, and
``api-sleep``, the sleep the slow API says it took (the rest of ``api`` is
the network, the slow API's own queue and the app's wait to run again).

A request without the stamp (the tests, the in-process cost, a request from
the app host itself) is passed through untouched: one dictionary lookup.
"""

import time

HEADER = "HTTP_X_REQUEST_START"
PREFIX = "t="
# the environ key of a view's own metrics: [(name, ms), ...]
METRICS = "labapp.server_timing"


def record(environ, name, ms):
    """Add a view's own metric (a part of its time, in ms) to its answer's header."""
    environ.setdefault(METRICS, []).append((name, ms))


def stamp_seconds(value):
    """nginx's ``t=1796171108.921`` as Unix seconds; None for anything else."""
    if not value.startswith(PREFIX):
        return None
    try:
        seconds = float(value[len(PREFIX) :])
    except ValueError:
        return None
    # Unix seconds, not the ms or µs other proxies send under the same name
    return seconds if 1e9 <= seconds < 1e10 else None


class ServerTiming:
    """WSGI middleware adding ``Server-Timing: queue;dur=…, app;dur=…`` to the
    answer of a request nginx stamped."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        stamp = environ.get(HEADER)
        if stamp is None:
            return self.wsgi_app(environ, start_response)
        seen, began = time.time(), time.perf_counter()
        sent = stamp_seconds(stamp)

        def timed(status, headers, exc_info=None):
            app_ms = (time.perf_counter() - began) * 1000
            timing = f"app;dur={app_ms:.1f}"
            if sent is not None:
                timing = f"queue;dur={(seen - sent) * 1000:.1f}, {timing}"
            for name, ms in environ.get(METRICS, ()):
                timing += f", {name};dur={ms:.1f}"
            headers.append(("Server-Timing", timing))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, timed)
