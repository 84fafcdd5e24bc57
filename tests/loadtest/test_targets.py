"""flask_deploy_lab.targets: report rows in, one verdict per cell and client out."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from flask_deploy_lab import catalogue, targets
from flask_deploy_lab.report import cli, model, summary
from tests.loadtest.conftest import FIXTURES

CATALOGUE = catalogue.load()
# servers and endpoints by what the catalogue says of them, never by name
SERIAL = next(
    n for n, s in CATALOGUE.servers.items() if s.processes == "one" and s.per_process == "one"
)
THREADED = next(
    n
    for n, s in CATALOGUE.servers.items()
    if s.processes == "workers" and s.per_process == "threads"
)
UNBOUNDED = next(n for n, s in CATALOGUE.servers.items() if s.per_process == "unbounded")
DELAY_BOUND = next(
    n for n, e in CATALOGUE.endpoints.items() if e.delay_bound and not e.holds_db_connection
)
CPU_BOUND = next(n for n, e in CATALOGUE.endpoints.items() if e.bound == "cpu")
# the first cell of the ladder fixture with a hey run
HEY_LADDER_CELL = next(
    p.name for p in sorted((FIXTURES / "ladder").iterdir()) if (p / "hey.json").is_file()
)


def _row(**values) -> summary.Row:
    """A delay-bound cell at 400 users, 1 s, 400 slots that met every target."""
    base = {
        **dict.fromkeys(c.name for c in summary.COLUMNS),
        "cell": "c",
        "config": THREADED,
        "server": THREADED,
        "endpoint": DELAY_BOUND,
        "users": 400,
        "delay_s": 1.0,
        "server_slots": 400,
        "requests": 7960,
        "failures": 0,
        "rps": 398.0,
        "mean_ms": 1004.0,
        "p99_ms": 1100,
        "ceiling_model": "littles_law",
        "ceiling_rps": 400.0,
        "ideal_latency_ms": 1000.0,
        # (400 / 398) / 1.004 s
        "identity_ratio": 1.001,
        "hey_requests": 7980,
        "hey_failures": 0,
        "hey_rps": 399.0,
        "hey_p99_ms": 1040.0,
        "hey_identity_ratio": 0.998,
        "clients_agree": True,
        "generator_saturated": False,
        "workers_lost": 0,
    }
    return summary.Row(**{**base, **values})


def _verdicts(**values) -> dict[str, targets.Verdict]:
    return {v.client: v for v in targets.check([_row(**values)])}


def test_a_cell_that_meets_every_target():
    verdicts = _verdicts()
    assert set(verdicts) == {"locust", "hey"}
    locust, hey = verdicts["locust"], verdicts["hey"]
    assert locust.met and hey.met
    assert locust.reasons == hey.reasons == ()
    assert locust.line == (
        "c [locust]: 398 req/s of 400, efficiency 0.995, p99 1100 ms (ideal 1000 ms), "
        "0 failures, hey 399 req/s, agree, identity 1.001: met"
    )
    assert hey.line == (
        "c [hey]: 399 req/s of 400, efficiency 0.998, p99 1040 ms (ideal 1000 ms), "
        "0 non-2xx, Locust 398 req/s, agree, identity 0.998: met"
    )


def test_low_throughput_is_missed():
    verdicts = _verdicts(rps=370.0, identity_ratio=1.0, hey_rps=372.0, hey_identity_ratio=1.0)
    assert verdicts["locust"].reasons == ("efficiency 0.925 < 0.95",)
    assert verdicts["locust"].line.endswith(": MISSED: efficiency 0.925 < 0.95")
    assert verdicts["hey"].reasons == ("efficiency 0.930 < 0.95",)


def test_a_missed_p99():
    # 1.2 x 1000 ms is the most; Locust's 1300 ms misses, hey's 1040 ms does not
    verdicts = _verdicts(p99_ms=1300)
    assert not verdicts["locust"].met
    assert verdicts["locust"].reasons == ("p99 1300 ms > 1.2 x ideal 1000 ms",)
    assert verdicts["hey"].met
    # at the limit it is met
    assert _verdicts(p99_ms=1200)["locust"].met


def test_failures_and_non_2xx_are_missed():
    verdicts = _verdicts(failures=3, hey_failures=2)
    assert verdicts["locust"].reasons == ("3 failures",)
    assert verdicts["hey"].reasons == ("2 non-2xx",)


def test_clients_that_disagree_miss_both_verdicts():
    # |398 - 360| / 360 = 10.6 %
    verdicts = _verdicts(hey_rps=360.0, clients_agree=False)
    reason = "Locust and hey disagree by 10.6 % (more than 5 %)"
    assert reason in verdicts["locust"].reasons
    assert reason in verdicts["hey"].reasons
    assert not verdicts["locust"].met and not verdicts["hey"].met
    # 5 % apart still agrees
    assert targets.clients_agree(105.0, 100.0) is True
    assert targets.clients_agree(105.1, 100.0) is False
    assert targets.clients_agree(1.0, 0.0) is False
    assert targets.clients_agree(None, 100.0) is None


def test_disagreement_is_judged_from_the_rates_not_the_stored_flag():
    # a summary.json of an older report has no clients_agree column
    verdicts = _verdicts(hey_rps=360.0, clients_agree=None)
    assert any("disagree" in r for r in verdicts["locust"].reasons)


def test_an_identity_that_is_off_makes_the_cell_invalid_and_both_verdicts_miss():
    """The identity is one of the report's validity rules: the cell is invalid, and
    neither client's figures are judged."""
    verdicts = _verdicts(identity_ratio=1.08)
    reason = "invalid: identity 1.08 off 1 by more than 5 %"
    assert verdicts["locust"].reasons == verdicts["hey"].reasons == (reason,)
    assert verdicts["locust"].line.endswith(f"identity 1.080: MISSED: {reason}")
    # hey losing requests below HTTP: its file holds less of the connections' time
    verdicts = _verdicts(hey_identity_ratio=0.9)
    reason = "invalid: hey identity 0.9 off 1 by more than 5 %"
    assert verdicts["locust"].reasons == verdicts["hey"].reasons == (reason,)
    assert _verdicts(identity_ratio=1.05)["locust"].met


def test_an_invalid_cell_is_not_judged_on_its_figures_and_does_not_pass():
    # a load generator above 90 % in a sample: these are the generator's figures
    verdicts = _verdicts(
        loadgen_cpu_peak_pct=95.0, generator_saturated=True, rps=300.0, identity_ratio=1.0,
        hey_rps=340.0, clients_agree=False, failures=4, p99_ms=2000,
    )  # fmt: skip
    locust = verdicts["locust"]
    assert not locust.met
    assert locust.reasons == ("invalid: load generator at 95 % CPU in a sample (above 90 %)",)
    # the figures are shown, none judged: no efficiency, p99, failures or disagreement
    assert "efficiency 0.750" in locust.line
    assert "p99 2000 ms" in locust.line
    assert "4 failures" in locust.line
    assert "hey 340 req/s" in locust.line
    assert verdicts["hey"].reasons == locust.reasons


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"workers_lost": 1}, "1 Locust worker(s) lost mid-run"),
        (
            {
                "unfinished_requests": 400,
                "unfinished_oldest_ms": 4000.0,
                "cutoff_requests": 70,
                "requests": 6000,
            },
            "70 request(s) in flight at the stop had waited longer than p99 1100 ms "
            "(oldest 4000 ms), more than 1% of the 6000 measured",
        ),
        # a ceiling too low: 398 / 380
        ({"ceiling_rps": 380.0, "efficiency": 1.047}, "efficiency 1.047 above 1.02"),
        ({"locust_cpu_warning": True}, "Locust's CPU warning in locust.log"),
        (
            {"loadgen_process_peak_cores": 0.95},
            "a Locust process at 0.95 cores in a sample (above 0.9)",
        ),
    ],
)
def test_each_validity_rule_misses_both_verdicts(values, reason):
    verdicts = _verdicts(**values)
    assert verdicts["locust"].reasons == verdicts["hey"].reasons == (f"invalid: {reason}",)


def test_the_rows_own_validity_is_the_verdicts():
    # a row the report marked: its reasons, not worked out again
    row = _row(valid=False, invalid_reasons=("a reason of the report",))
    assert [v.reasons for v in targets.check([row])] == [("invalid: a reason of the report",)] * 2
    assert targets.check([_row(valid=True, invalid_reasons=(), identity_ratio=1.0)])[0].met


@pytest.mark.parametrize(
    ("rps", "met"),
    [(1.0, True), (0.99, True), (1.02, True), (0.98, True), (0.97, False), (1.03, False)],
)
def test_a_one_at_a_time_server_must_serve_one_over_delay(rps, met):
    """The catalogue's one process holding one request: 1 / delay within 2 %,
    both ways, and its p99 is not judged."""
    verdicts = _verdicts(
        server=SERIAL, config=SERIAL, users=1, server_slots=1, ceiling_rps=1.0,
        rps=rps, identity_ratio=1.0, hey_rps=rps, hey_identity_ratio=1.0, p99_ms=5000,
        hey_p99_ms=5000.0, ideal_latency_ms=1000.0,
    )  # fmt: skip
    for verdict in verdicts.values():
        assert verdict.met is met, verdict.line
        assert f"1/delay = 1 ({(rps - 1) * 100:+.1f} %)" in verdict.line
    if not met:
        assert verdicts["locust"].reasons == (
            f"rate {(rps - 1) * 100:+.1f} % off 1/delay, beyond 2 %",
        )


def test_what_a_server_is_comes_from_the_catalogue(monkeypatch):
    row = _row(server=SERIAL, rps=2.0, hey_rps=2.0, ceiling_rps=2.0, users=2, server_slots=1)
    # one at a time: 2 req/s at a 1 s delay is 100 % off
    assert not targets.check([row])[0].met
    real = catalogue.load()
    servers = {
        **real.servers,
        SERIAL: dataclasses.replace(real.servers[SERIAL], per_process="threads"),
    }
    monkeypatch.setattr(catalogue, "load", lambda: dataclasses.replace(real, servers=servers))
    # the same server holding threads: judged against its ceiling, and met
    assert targets.check([row])[0].met


def test_only_delay_bound_cells_are_judged():
    assert targets.check([_row(endpoint=CPU_BOUND, delay_s=None)]) == []
    assert targets.check([_row(delay_s=0.0)]) == []
    assert targets.check([_row(endpoint="no-such-endpoint")]) == []


def test_without_hey_only_locust_is_judged():
    (verdict,) = targets.check([_row(hey_rps=None, clients_agree=None)])
    assert verdict.client == "locust"
    assert verdict.met
    assert "hey" not in verdict.line


def test_missing_figures_are_missed_not_passed():
    verdicts = _verdicts(rps=None, p99_ms=None, identity_ratio=None)
    assert verdicts["locust"].reasons == ("no rate measured", "no p99 measured")
    # no ceiling makes the cell invalid
    verdicts = _verdicts(ceiling_rps=None, ideal_latency_ms=None)
    assert verdicts["locust"].reasons == ("invalid: no ceiling",)
    assert "req/s, no ceiling" in verdicts["locust"].line


def test_an_unsampled_generator_is_said():
    verdicts = _verdicts(generator_saturated=None)
    assert verdicts["locust"].met
    assert "load generator not sampled" in verdicts["locust"].line


def test_the_ladder_fixture_meets_every_target_and_summary_json_gives_the_same(tmp_path):
    """A server without a bound is judged against users / delay. Every cell is valid."""
    run_dir = tmp_path / "ladder"
    shutil.copytree(FIXTURES / "ladder", run_dir)
    assert cli.main([str(run_dir)]) == 0
    rows = model.summarize_run(run_dir)[1]
    verdicts = targets.check(rows)
    # four Locust verdicts, two hey ones (the bounded server's cells)
    assert [v.client for v in verdicts].count("locust") == 4
    assert [v.client for v in verdicts].count("hey") == 2
    unbounded = [v for v in verdicts if v.cell.startswith(f"{UNBOUNDED}--")]
    assert [v.line.split(": ", 1)[1].split(",")[0] for v in unbounded] == [
        "2 req/s of 2",
        "8 req/s of 8",
    ]
    for verdict in verdicts:
        assert verdict.met, verdict.line
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert targets.check(cells) == verdicts
    # an older summary.json, without the validity columns: the same verdicts, by the
    # report's rules applied to the other columns
    older = [{k: v for k, v in c.items() if k not in ("valid", "invalid_reasons")} for c in cells]
    assert targets.check(older) == verdicts


def test_an_invalid_cell_of_summary_json_misses_with_its_reasons(tmp_path):
    run_dir = tmp_path / "ladder"
    shutil.copytree(FIXTURES / "ladder", run_dir)
    cell_dir = run_dir / f"{HEY_LADDER_CELL}"
    meta = json.loads((cell_dir / "hey.json").read_text())
    (cell_dir / "hey.json").write_text(json.dumps({**meta, "connections": 3}))
    assert cli.main([str(run_dir)]) == 0
    cells = json.loads((run_dir / "summary.json").read_text())["cells"]
    (marked,) = [c for c in cells if c["valid"] is False]
    assert marked["invalid_reasons"] == ["hey identity 1.5 off 1 by more than 5 %"]
    missed = [v for v in targets.check(cells) if not v.met]
    assert [(v.cell, v.client) for v in missed] == [
        (HEY_LADDER_CELL, "locust"),
        (HEY_LADDER_CELL, "hey"),
    ]
    assert missed[0].reasons == ("invalid: hey identity 1.5 off 1 by more than 5 %",)


def test_the_constants():
    assert targets.TARGET_EFFICIENCY == 0.95
    assert targets.TARGET_P99_FACTOR == 1.2
    assert targets.SERIAL_TOLERANCE == 0.02
    assert targets.CLIENTS_AGREE == 0.05
    assert targets.IDENTITY_TOLERANCE == 0.05
    for constant in (
        "TARGET_EFFICIENCY", "TARGET_P99_FACTOR", "SERIAL_TOLERANCE", "CLIENTS_AGREE",
        "IDENTITY_TOLERANCE",
    ):  # fmt: skip
        assert constant in targets.__doc__
