"""Background tasks: started by one process, reported by any other."""

import json
import sys
import time
import uuid

import pytest
from labapp_support import ServerProcess, app_env, free_port, http_json


def poll_until_done(get_status, timeout=10.0):
    """Statuses seen while polling a task, ending with its first 200."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = get_status()
        seen.append(status)
        if status != 202:
            return seen, body
        time.sleep(0.1)
    pytest.fail(f"task still running after {timeout}s: {seen}")


def test_task_lifecycle_in_process(client):
    response = client.post("/tasks", json={"seconds": 0.3})
    assert response.status_code == 202
    location = response.headers["Location"]
    assert location == f"/tasks/{response.json['id']}"

    first = client.get(location)
    assert first.status_code == 202
    assert first.json["status"] == "running"
    assert first.headers["Retry-After"] == "1"

    seen, body = poll_until_done(
        lambda: (r := client.get(location)).status_code and (r.status_code, r.json)
    )
    assert seen[-1] == 200
    assert body["status"] == "done"
    assert body["result"]["elapsed"] >= 0.3
    assert body["finished_at"] is not None


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"seconds": "soon"}}, {"json": {"seconds": -1}}, {"json": {"seconds": 3600}},
     {"json": {"seconds": True}}, {"data": {"seconds": "x"}}, {"query_string": {"seconds": "1e9"}}],
)  # fmt: skip
def test_bad_seconds_are_400(client, kwargs):
    response = client.post("/tasks", **kwargs)
    assert response.status_code == 400
    assert response.json["parameter"] == "seconds"


def test_json_body_must_be_an_object(client):
    response = client.post("/tasks", data="[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json["parameter"] == "body"


def test_form_and_query_parameters_work_too(client):
    assert client.post("/tasks", data={"seconds": "0"}).status_code == 202
    assert client.post("/tasks?seconds=0").status_code == 202
    assert client.post("/tasks").status_code == 202


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "42"])
def test_unknown_task_is_404(client, task_id):
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 404
    assert response.is_json


def test_task_state_is_shared_between_processes(database_url, upstream):
    """POST to gunicorn, poll the gevent server: both read the task from PostgreSQL."""
    env = app_env(database_url, upstream.url, db_mode="pool")
    port_a, port_b = free_port(), free_port()
    starter = ServerProcess(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port_a}", "labapp.wsgi:app"],
        port_a,
        env,
    )
    reporter = ServerProcess(
        [sys.executable, "-m", "labapp.gevent_server", "--bind", f"127.0.0.1:{port_b}"],
        port_b,
        env,
    )
    with starter, reporter:
        body = json.dumps({"seconds": 0.5}).encode()
        status, headers, task = http_json(
            f"{starter.url}/tasks",
            method="POST",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert status == 202
        location = headers["Location"]

        def status_on_reporter():
            status, _, body = http_json(f"{reporter.url}{location}")
            return status, body

        seen, done = poll_until_done(status_on_reporter)
        assert seen[0] == 202
        assert seen[-1] == 200
        assert done["id"] == task["id"]
        assert done["status"] == "done"
        # The work ran in gunicorn's worker, not in the process that reported it.
        assert done["result"]["pid"] != reporter.proc.pid
        assert done["result"]["pid"] != starter.proc.pid
