"""report.tasks: a tasks cell's time from POST to done, from the database's rows."""

import pytest

from flask_deploy_lab.report import tasks
from flask_deploy_lab.report.errors import ReportError

T = 1_800_000_000.0


def write(tmp_path, body, header="id,status,created,finished"):
    (tmp_path / tasks.TASKS).write_text(f"{header}\n{body}")
    return tmp_path


def test_read_tasks_keeps_status_and_times(tmp_path):
    cell = write(tmp_path, f"a,done,{T},{T + 1.5}\nb,queued,{T + 2},\n")
    assert tasks.read_tasks(cell) == [("done", T, T + 1.5), ("queued", T + 2, None)]
    assert tasks.read_tasks(tmp_path / "nowhere") is None


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        ("a,done,1,2\n", "id,status,created", "expected the header"),
        ("a,lost,1,2\n", "id,status,created,finished", ":2: status 'lost'"),
        ("a,done,soon,2\n", "id,status,created,finished", ":2: could not convert"),
        ("a,done,1\n", "id,status,created,finished", ":2: not enough values"),
    ],
)
def test_a_file_that_breaks_the_layout_is_named(tmp_path, body, header, message):
    write(tmp_path, body, header)
    with pytest.raises(ReportError, match=message):
        tasks.read_tasks(tmp_path)


def test_figures_count_the_tasks_created_in_the_window():
    rows = [
        ("done", T - 1, T + 0.5),  # created before the window: left out
        ("done", T + 1, T + 1.1),  # 100 ms
        ("done", T + 2, T + 2.3),  # 300 ms
        ("done", T + 3, T + 3.2),  # 200 ms
        ("failed", T + 4, T + 9),
        ("running", T + 5, None),
        ("queued", T + 6, None),
        ("done", T + 11, T + 11.1),  # created after the window: left out
    ]
    figures = tasks.figures(rows, (T, T + 10))
    assert (figures.done, figures.failed, figures.unfinished) == (3, 1, 2)
    # nearest rank over [100, 200, 300]: p50 the 2nd, p99 the 3rd
    assert figures.p50_ms == pytest.approx(200)
    assert figures.p99_ms == pytest.approx(300)
    assert figures.max_ms == pytest.approx(300)


def test_no_done_task_gives_no_latency():
    figures = tasks.figures([("queued", T + 1, None)], (T, T + 10))
    assert (figures.done, figures.unfinished, figures.p50_ms, figures.p99_ms) == (0, 1, None, None)
