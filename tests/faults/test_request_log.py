"""The request log as the judges read it (request_log.py): columns by name, the
addition the faults need, what a request's outcome was for its client."""

from __future__ import annotations

import pytest

from flask_deploy_lab.faults.outcome import FaultError
from flask_deploy_lab.faults.request_log import (
    OK,
    SHORT_BODY,
    STATUS_ERROR,
    TRUNCATED_OK,
    cannot_judge,
    mean_and_sd,
    parse_request_log,
    per_second,
    percentile,
    read_request_log,
)
from tests.faults import fabricated as f

TODAY = "start,response_time_ms,failed,name,stopped_at\n"
WITH_ADDITION = (
    "start,response_time_ms,failed,name,stopped_at,status,content_length,body_bytes,"
    "retry_after,error\n"
)


def test_todays_log_is_read_and_lacks_the_addition(tmp_path):
    (tmp_path / "locust_requests.csv").write_text(
        TODAY + "1000.100000,4.000,0,/db,\n1000.200000,,,/db,1020.000000\n"
    )
    log = read_request_log(tmp_path)
    assert [r.finished for r in log.requests] == [True, False]
    assert log.requests[1].latency_ms == 19800.0
    assert log.lacks("status", "retry_after") == ["status", "retry_after"]
    assert cannot_judge(log, "status", "retry_after") == (
        "cannot judge: the request log lacks status, retry_after"
    )
    assert cannot_judge(log) is None
    assert read_request_log(tmp_path / "none") is None
    assert cannot_judge(None) == "cannot judge: the run left no locust_requests.csv"


def test_the_addition_is_read_by_name(tmp_path):
    path = tmp_path / "locust_requests.csv"
    path.write_text(
        WITH_ADDITION
        + "1000.1,4.0,0,/db,,200,32,32,,\n"
        + '1000.2,1.0,1,/db,,503,20,20,1,"HTTP 503, expected 200"\n'
        + "1000.3,2.0,1,/db,,200,32,12,,body is not a JSON row with an id\n"
        + "1000.4,2.0,1,/db,,200,,9,,body is not a JSON row with an id\n"
        + "1000.5,2.0,1,/db,,0,,0,,ConnectionResetError(104)\n"
    )
    log = parse_request_log(path)
    assert not log.lacks("status", "content_length", "body_bytes", "retry_after", "error")
    assert [r.outcome for r in log.requests] == [OK, STATUS_ERROR, SHORT_BODY, TRUNCATED_OK,
                                                 STATUS_ERROR]  # fmt: skip
    refused = log.requests[1]
    assert (refused.status, refused.retry_after, refused.error) == (
        503, "1", "HTTP 503, expected 200"
    )  # fmt: skip
    assert refused.refused_with_retry_after
    assert len(log.failures()) == 4


@pytest.mark.parametrize(
    "text",
    ["start,failed\n1,0\n", TODAY + "x,1,0,/db,\n", TODAY + ",1,0,/db,\n",
     TODAY + "1000,nan,0,/db,\n"],
    ids=["no columns", "not a number", "no start", "nan"],
)  # fmt: skip
def test_a_broken_log_is_an_error_that_names_it(tmp_path, text):
    path = tmp_path / "locust_requests.csv"
    path.write_text(text)
    with pytest.raises(FaultError, match=r"locust_requests\.csv"):
        parse_request_log(path)


def test_a_2xx_locust_passed_is_ok_unless_its_body_is_short():
    assert f.req(1.0).outcome == OK
    # /slow has no body check: a short body is still seen by its length
    assert f.req(1.0, failed=False, got=10).outcome == SHORT_BODY
    # a log without the status column: Locust's verdict alone
    assert f.Request(1.0, 1.0, True, "/db").outcome == STATUS_ERROR
    assert f.Request(1.0, 1.0, False, "/db").outcome == OK


def test_the_figures():
    requests = [f.req(10.2, 100.0), f.req(10.95, 100.0), f.req(11.5), f.req(11.6, status=503)]
    # by the second they completed in, OK ones only
    assert per_second(requests) == {10: 1, 11: 2}
    assert percentile([5, 1, 4, 2, 3], 0.99) == 5
    assert percentile([5, 1, 4, 2, 3], 0.5) == 3
    assert percentile([], 0.99) is None
    assert mean_and_sd([100, 98, 102, 100]) == (100.0, pytest.approx(1.633, abs=1e-3))
    assert mean_and_sd([7]) == (7.0, 0.0)
    log = f.log([f.req(1.0, 500.0), f.req(1.2, 100.0), f.waiting(1.4, 9.0)])
    assert log.in_flight_at(1.25) == 2
    assert log.in_flight_at(1.45) == 2
    assert log.in_flight_at(1.6) == 1
