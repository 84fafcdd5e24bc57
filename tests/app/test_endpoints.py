"""Every endpoint in-process (Flask test client) against the real test database."""

import html
import re
import time

import pytest
from labapp import views
from labapp.schema import FORTUNES, WORLD_ROWS
from labapp_support import connect

BAD_DELAYS = ["", "abc", "-1", "60.5", "1e9", "nan", "inf", "0x10"]


def assert_bad_parameter(response, parameter):
    assert response.status_code == 400
    assert response.is_json
    assert response.json["parameter"] == parameter
    assert parameter in response.json["error"]


def assert_world(row):
    assert set(row) == {"id", "randomNumber"}
    assert 1 <= row["id"] <= WORLD_ROWS
    assert 1 <= row["randomNumber"] <= WORLD_ROWS


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_json(client):
    response = client.get("/json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == {"message": "Hello, World!"}


def test_world_table_is_techempower_sized(database_url):
    with connect(database_url) as cur:
        cur.execute("SELECT count(*), min(id), max(id) FROM world")
        assert cur.fetchone() == (WORLD_ROWS, 1, WORLD_ROWS)
        cur.execute(
            "SELECT count(*) FROM world WHERE randomnumber NOT BETWEEN 1 AND %s", (WORLD_ROWS,)
        )
        assert cur.fetchone() == (0,)


def test_db_returns_one_random_row(client):
    rows = [client.get("/db").json for _ in range(20)]
    for row in rows:
        assert_world(row)
    assert len({row["id"] for row in rows}) > 1


@pytest.mark.parametrize(
    ("query", "count"),
    [("", 1), ("?n=", 1), ("?n=0", 1), ("?n=-7", 1), ("?n=1", 1), ("?n=20", 20),
     ("?n=500", 500), ("?n=501", 500), ("?n=100000", 500)],
)  # fmt: skip
def test_queries_are_clamped_to_1_through_500(client, query, count):
    response = client.get(f"/queries{query}")
    assert response.status_code == 200
    assert isinstance(response.json, list)
    assert len(response.json) == count
    for row in response.json:
        assert_world(row)


def world_index_scans(database_url):
    with connect(database_url) as cur:
        cur.execute("SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'world'")
        return cur.fetchone()[0]


def test_queries_run_one_query_per_row(client, database_url):
    before = world_index_scans(database_url)
    client.get("/queries?n=37")
    # The backend reports its statistics when it exits, just after the request.
    deadline = time.monotonic() + 5
    while (scans := world_index_scans(database_url) - before) < 37 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scans == 37


@pytest.mark.parametrize("value", ["abc", "1.5", "ten", "1e3"])
def test_queries_reject_non_numbers(client, value):
    assert_bad_parameter(client.get(f"/queries?n={value}"), "n")


def test_fortunes_follow_techempower(client):
    response = client.get("/fortunes")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    assert "フレームワークのベンチマーク".encode() in response.data
    assert "<script>" not in page
    assert "&lt;script&gt;alert(" in page

    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", page)
    fortunes = [(int(fortune_id), html.unescape(message)) for fortune_id, message in rows]
    expected = [*FORTUNES, (0, "Additional fortune added at request time.")]
    assert fortunes == sorted(expected, key=lambda row: row[1])
    assert len(fortunes) == 13


def test_sleep_holds_the_database_for_the_delay(client):
    started = time.monotonic()
    response = client.get("/sleep?delay=0.3")
    assert response.status_code == 200
    assert response.json == {"slept": 0.3}
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("path", ["/sleep", "/slow"])
@pytest.mark.parametrize("value", [None, *BAD_DELAYS])
def test_bad_delays_are_rejected(client, path, value):
    query = "" if value is None else f"?delay={value}"
    assert_bad_parameter(client.get(f"{path}{query}"), "delay")


def test_render_defaults_to_the_benchmark_post(client):
    response = client.get("/render")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>The benchmark post</h1>" in page
    assert '<h2 id="section-8">Section 8</h2>' in page
    assert "<table>" in page
    assert "<em>emphasis</em>" in page


def test_render_by_id(client):
    short = client.get("/render?id=2")
    long = client.get("/render?id=3")
    assert short.status_code == long.status_code == 200
    assert "A short note" in short.get_data(as_text=True)
    assert len(long.data) > 10 * len(short.data)


def test_render_bad_and_unknown_ids(client):
    assert_bad_parameter(client.get("/render?id=first"), "id")
    missing = client.get("/render?id=999")
    assert missing.status_code == 404
    assert missing.is_json
    assert "999" in missing.json["message"]


def test_slow_returns_the_upstream_answer(make_app, upstream):
    client = make_app(UPSTREAM_URL=upstream.url).test_client()
    started = time.monotonic()
    response = client.get("/slow?delay=0.2")
    assert response.status_code == 200
    assert response.json["delay"] == 0.2
    assert 0.2 <= time.monotonic() - started < 2


def test_slow_with_upstream_down_is_502(make_app):
    client = make_app(UPSTREAM_URL="http://127.0.0.1:9").test_client()
    response = client.get("/slow?delay=0")
    assert response.status_code == 502
    assert response.is_json
    assert "upstream" in response.json["error"]


def test_slow_with_upstream_too_slow_is_504(make_app, upstream, monkeypatch):
    # A negative grace makes the client give up before the upstream answers.
    monkeypatch.setattr(views, "UPSTREAM_GRACE", -0.4)
    client = make_app(UPSTREAM_URL=upstream.url).test_client()
    response = client.get("/slow?delay=0.5")
    assert response.status_code == 504
    assert response.json["error"] == "upstream timed out"


def test_unknown_route_is_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.is_json
    assert response.json["status"] == 404


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/json"), ("delete", "/db"), ("get", "/tasks")]
)
def test_wrong_method_is_json_405(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.is_json
    assert "Allow" in response.headers


def test_unexpected_errors_are_json_500_without_traceback(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json == {"error": "Internal Server Error", "status": 500}
    assert b"secret detail" not in response.data
    assert b"Traceback" not in response.data
