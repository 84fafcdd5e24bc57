"""labapp.rolling_reload without Gunicorn: a fake /proc whose master answers
TTIN and TTOU as Gunicorn's does (test_wsgi_servers.py reloads the real one)."""

import signal

import pytest
from labapp import rolling_reload


class FakeMaster:
    """Workers in /proc/<master>/task/<master>/children; TTIN starts one (ready at
    once unless `loads` is False), TTOU stops the oldest unless `stops` is False."""

    def __init__(self, tmp_path, workers, loads=True, stops=True):
        self.proc, self.run_dir, self.pid = tmp_path / "proc", tmp_path / "run", 100
        self.run_dir.mkdir()
        self.workers, self.next_pid, self.loads, self.stops = list(workers), 200, loads, stops
        self.signals = []
        for pid in self.workers:
            rolling_reload.ready_file(self.run_dir, pid).touch()
        self.write()

    def write(self):
        task = self.proc / str(self.pid) / "task" / str(self.pid)
        task.mkdir(parents=True, exist_ok=True)
        (task / "children").write_text(" ".join(map(str, self.workers)) + " ")

    def send(self, pid, sig):
        assert pid == self.pid
        self.signals.append(sig)
        if sig == signal.SIGTTIN:
            self.next_pid += 1
            self.workers.append(self.next_pid)
            if self.loads:
                rolling_reload.ready_file(self.run_dir, self.next_pid).touch()
        elif sig == signal.SIGTTOU and self.stops:
            self.workers.pop(0)  # the oldest
        self.write()

    def roll(self, timeout=1.0):
        return rolling_reload.roll(self.pid, self.run_dir, timeout, self.proc, self.send)


def test_each_worker_is_replaced_once_its_successor_is_ready(tmp_path):
    master = FakeMaster(tmp_path, [11, 12, 13])
    assert master.roll() == {201, 202, 203}
    ttin, ttou = signal.SIGTTIN, signal.SIGTTOU
    assert master.signals == [ttin, ttou, ttin, ttou, ttin, ttou]


def test_no_old_worker_is_stopped_while_no_new_one_is_ready(tmp_path):
    master = FakeMaster(tmp_path, [11, 12], loads=False)
    with pytest.raises(SystemExit, match=r"no new worker was ready within 0\.2 s"):
        master.roll(timeout=0.2)
    assert master.signals == [signal.SIGTTIN]
    assert master.workers == [11, 12, 201]


def test_an_old_worker_that_does_not_stop_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(rolling_reload, "STOP_SLACK_S", 0.1)
    master = FakeMaster(tmp_path, [11, 12], stops=False)
    with pytest.raises(SystemExit, match=r"the oldest worker did not stop within 0\.3 s"):
        master.roll(timeout=0.2)


def test_a_master_without_workers_is_refused(tmp_path):
    master = FakeMaster(tmp_path, [])
    with pytest.raises(SystemExit, match="process 100 has no workers"):
        master.roll()


def test_the_graceful_timeout_is_required_and_positive(capsys):
    with pytest.raises(SystemExit):
        rolling_reload.parse_args(["--master", "1", "--run-dir", "/run/x"])
    with pytest.raises(SystemExit):
        rolling_reload.parse_args(["--master", "1", "--run-dir", "/x", "--graceful-timeout", "0"])
    assert "--graceful-timeout must be above 0" in capsys.readouterr().err
