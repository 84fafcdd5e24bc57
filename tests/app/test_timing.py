"""The Server-Timing answer to a request nginx stamped (labapp.timing)."""

import re
import time

import pytest
from labapp import timing

TIMING = re.compile(r"^queue;dur=(-?\d+\.\d), app;dur=(\d+\.\d)$")


def test_a_stamped_request_is_answered_with_its_queue_and_app_time(client):
    sent = time.time() - 0.25
    response = client.get("/json", headers={"X-Request-Start": f"t={sent:.3f}"})
    assert response.status_code == 200
    queue, app = map(float, TIMING.match(response.headers["Server-Timing"]).groups())
    # stamped 250 ms ago (to the ms); the view itself takes far less than that
    assert 249 <= queue < 1000
    assert 0 <= app < 200


def test_the_app_time_is_the_views_own(client):
    response = client.get("/sleep?delay=0.2", headers={"X-Request-Start": f"t={time.time():.3f}"})
    assert response.status_code == 200
    queue, app = map(float, TIMING.match(response.headers["Server-Timing"]).groups())
    assert -2 <= queue < 100
    assert 200 <= app < 1000


def test_slow_adds_its_call_to_the_slow_api_and_the_sleep_it_took(make_app, upstream):
    client = make_app(UPSTREAM_URL=upstream.url).test_client()
    response = client.get("/slow?delay=0.2", headers={"X-Request-Start": f"t={time.time():.3f}"})
    assert response.status_code == 200
    parts = dict(
        (name, float(ms))
        for name, ms in re.findall(r"([\w-]+);dur=(-?\d+\.\d)", response.headers["Server-Timing"])
    )
    assert list(parts) == ["queue", "app", "api", "api-sleep"]
    # the sleep inside the call inside the view
    assert 200 <= parts["api-sleep"] <= parts["api"] <= parts["app"] < 1000
    assert parts["api-sleep"] == round(response.json["slept"] * 1000, 1)


def test_an_error_answer_is_timed_too(client):
    # no upstream where the test app looks for it: /slow answers 502
    response = client.get("/slow?delay=0", headers={"X-Request-Start": f"t={time.time():.3f}"})
    assert response.status_code == 502
    assert TIMING.match(response.headers["Server-Timing"])


def test_an_unstamped_request_is_passed_through_untouched(client):
    assert "Server-Timing" not in client.get("/json").headers


@pytest.mark.parametrize(
    "stamp", ["1796171108.921", "t=", "t=abc", "t=1796171108921", "t=1796171108921000", "t=nan"]
)
def test_a_stamp_that_is_not_nginxs_gives_the_app_time_alone(client, stamp):
    response = client.get("/json", headers={"X-Request-Start": stamp})
    assert re.match(r"^app;dur=\d+\.\d$", response.headers["Server-Timing"])


def test_the_stamp_is_unix_seconds():
    assert timing.stamp_seconds("t=1796171108.921") == 1796171108.921
    assert timing.stamp_seconds("t=1796171108") == 1796171108.0
    for other in ("1796171108.921", "t=1796171108921", "t=12", "t=", "t=x", "t=inf"):
        assert timing.stamp_seconds(other) is None


def test_the_timed_answer_keeps_the_apps_status_headers_and_body():
    def wsgi_app(environ, start_response):
        start_response("201 Created", [("X-Mine", "1")])
        return [b"body"]

    seen = []
    body = timing.ServerTiming(wsgi_app)(
        {"HTTP_X_REQUEST_START": f"t={time.time():.3f}"},
        lambda status, headers, exc_info=None: seen.append((status, headers)),
    )
    assert body == [b"body"]
    ((status, headers),) = seen
    assert status == "201 Created"
    assert headers[0] == ("X-Mine", "1") and headers[1][0] == "Server-Timing"
