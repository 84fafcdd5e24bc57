"""fdl-faults without a lab: its arguments, what it passes to Ansible, and how a
run goes from the hosts' answers to the lines, faults.json and the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flask_deploy_lab.ansible import PlaybookResult, TaskFailure
from flask_deploy_lab.faults import NAMES, FaultError, Outcome, cli
from flask_deploy_lab.faults.executor import Executor, Inventory
from flask_deploy_lab.faults.kill_worker import KillWorker
from flask_deploy_lab.faults.reload import Observation as ReloadObservation
from flask_deploy_lab.faults.reload import Reload
from tests.faults import fabricated as f


def test_faults_are_chosen_by_name_or_number_in_their_order():
    args = cli.parse_args(["--only", "6", "kill-worker,2", "6"])
    assert args.faults == ["kill-worker", "pg-restart", "loadgen-stop"]
    assert cli.parse_args([]).faults == list(NAMES)


def test_an_unknown_fault_is_refused_with_the_valid_names(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "bogus"])
    assert "valid: kill-worker, pg-restart" in capsys.readouterr().err


def test_ansible_arguments_come_from_the_environment_and_after_the_double_dash(monkeypatch):
    monkeypatch.setenv("FAULTS_ANSIBLE_ARGS", "-e lab_name_prefix=fdl-x- -e 'a=b c'")
    monkeypatch.setenv("FAULTS", "3")
    args = cli.parse_args(["--no-converge", "--", "-e", "lab_network=fdl-x"])
    # the default first (kill-worker's sibling worker), then the environment's, then --
    assert args.passthrough == [
        "-e",
        "flask_app_workers=2",
        "-e",
        "lab_name_prefix=fdl-x-",
        "-e",
        "a=b c",
        "-e",
        "lab_network=fdl-x",
    ]
    assert args.faults == ["pool-exhaustion"]
    assert args.no_converge
    assert args.run_id.startswith("faults-")
    # as ansible reads them: key=value pairs (a bare word is its _raw_params)
    assert args.ansible.extra_vars == {
        "flask_app_workers": "2",
        "lab_name_prefix": "fdl-x-",
        "a": "b",
        "_raw_params": "c",
        "lab_network": "fdl-x",
    }
    assert args.ansible.inventory is None


def test_extra_vars_are_read_as_ansible_reads_them(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("server: uwsgi\nflask_app_workers: 4\n")
    parsed = cli.AnsibleArgs.parse(
        ["-i", "inventory/vagrant", "-e", f"@{path}", "-e", '{"flask_app_workers": 2}',
         "--extra-vars=db_mode=naive"]
    )  # fmt: skip
    assert parsed.inventory == "inventory/vagrant"
    # later ones win, and JSON keeps its types
    assert parsed.extra_vars == {"server": "uwsgi", "flask_app_workers": 2, "db_mode": "naive"}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["-v"], "only -e and -i go to Ansible, not -v"),
        (["-i", "a", "-i", "b"], "one -i at most"),
        (["-e", "./vars.yml"], "a file of variables is given as @./vars.yml"),
        (["-e", "[1, 2]"], "not a set of variables"),
    ],
)
def test_what_cannot_go_to_ansible_is_refused(words, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        cli.AnsibleArgs.parse(words)


def test_refused_ansible_arguments_stop_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--", "--become"])
    assert "ansible arguments: only -e and -i go to Ansible" in capsys.readouterr().err


class StubStack:
    """What run_fault and main touch of a Stack."""

    def __init__(self, executor):
        self.executor, self.loads = executor, []


class FinishedLoad:
    def __init__(self):
        self.finished = False

    def finish(self):
        self.finished = True


class Broken(KillWorker):
    def run(self, stack):
        stack.loads.append(FinishedLoad())
        raise FaultError("the load test failed: users=0 is not valid")


class Buggy(KillWorker):
    def run(self, stack):
        return {}["missing"]


def test_a_fault_that_cannot_be_carried_out_fails_and_leaves_nothing_running(tmp_path):
    stack = StubStack(Executor(tmp_path))
    outcome = cli.run_fault(Broken, stack)
    assert outcome == Outcome.not_carried_out(
        "kill-worker", "the load test failed: users=0 is not valid"
    )
    assert stack.loads == []
    assert cli.run_fault(Buggy, stack).reasons == ("KeyError: 'missing'",)


def test_a_run_prints_a_line_per_fault_and_writes_faults_json(tmp_path, monkeypatch, capsys):
    class Passing(KillWorker):
        def run(self, stack):
            return self.judge(f.KILL_DONE, f.kill_seen())

    class Skipping(Reload):
        def run(self, stack):
            return self.judge(None, ReloadObservation("flask", "labapp.service", False))

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "FAULTS", (Passing, Skipping))
    monkeypatch.setattr(cli, "NAMES", ("kill-worker", "reload"))
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(cli, "Stack", lambda executor, *_, **__: StubStack(executor))
    assert cli.main(["--no-converge", "--run-id", "faults-t", "--", "-e", "server=flask"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "faults faults-t: kill-worker, reload"
    assert out[1].startswith("PASS  1 kill-worker      kill -9 of gunicorn-gthread worker pid")
    assert out[2].startswith("SKIP  2 reload           systemctl reload labapp.service")
    assert out[3].startswith("faults faults-t: 1 passed, 0 failed, 1 skipped in 0m00s;")
    assert out[3].endswith("figures in reports/faults-t/faults.json")
    body = json.loads((tmp_path / "reports" / "faults-t" / "faults.json").read_text())
    assert [fault["status"] for fault in body["faults"]] == ["PASS", "SKIP"]
    assert body["ansible_args"] == ["-e", "flask_app_workers=2", "-e", "server=flask"]
    assert all("seconds" in fault["figures"] for fault in body["faults"])
    # make test's run: a fault it chose that measured nothing is a failure
    args = ["--no-converge", "--no-skip", "--run-id", "faults-u", "--", "-e", "server=flask"]
    assert cli.main(args) == 1


def test_a_run_fails_with_2_when_the_hosts_do_not_answer(tmp_path, monkeypatch, capsys):
    def down(self):
        raise FaultError("not answering: app1 (unreachable); is the lab up (make lab-up)?")

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(Executor, "discover", down)
    assert cli.main(["--run-id", "faults-t"]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == (
        "faults: not answering: app1 (unreachable); is the lab up (make lab-up)?"
    )


def test_a_failed_fault_makes_the_exit_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "FAULTS", (Broken,))
    monkeypatch.setattr(cli, "NAMES", ("kill-worker",))
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(cli, "Stack", lambda executor, *_, **__: StubStack(executor))
    assert cli.main(["--no-converge", "--run-id", "faults-t"]) == 1
    assert "FAIL  1 kill-worker      could not be carried out  =>  the load test failed" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "flask_deploy_lab.faults"],
        [str(Path(sys.executable).parent / "fdl-faults")],
    ],
    ids=["python -m", "fdl-faults"],
)
def test_fdl_faults_and_python_m_are_the_same_program(command):
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "one PASS/FAIL line per fault" in out.stdout
    assert "--no-converge" in out.stdout


def test_a_later_extra_var_overrides_the_default_workers(monkeypatch):
    monkeypatch.delenv("FAULTS_ANSIBLE_ARGS", raising=False)
    args = cli.parse_args(["--", "-e", "flask_app_workers=3"])
    assert args.ansible.extra_vars["flask_app_workers"] == "3"


# ---------------------------------------------------------------- the matrix


def test_all_servers_are_the_concurrent_ones_in_the_catalogues_order(monkeypatch):
    monkeypatch.delenv("SERVERS", raising=False)
    servers = cli.parse_args(["--servers", "all"]).servers
    assert servers == cli.concurrent_servers()
    assert "flask" not in servers and "gunicorn" not in servers  # serial
    assert servers[:2] == ["flask-threaded", "uwsgi"]
    assert "gunicorn-gthread" in servers
    assert cli.parse_args([]).servers is None


def test_servers_are_chosen_by_name_from_the_environment_in_the_catalogues_order(monkeypatch):
    monkeypatch.setenv("SERVERS", "granian uwsgi,uwsgi")
    assert cli.parse_args([]).servers == ["uwsgi", "granian"]
    # a serial server named is taken: only "all" leaves them out
    assert cli.parse_args(["--servers", "gunicorn"]).servers == ["gunicorn"]


def test_an_unknown_server_is_refused_with_the_valid_names(monkeypatch, capsys):
    monkeypatch.delenv("SERVERS", raising=False)
    with pytest.raises(SystemExit):
        cli.parse_args(["--servers", "bogus"])
    assert "unknown server 'bogus'; valid: all, flask, flask-threaded" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["--servers", "uwsgi", "granian", "--no-converge"])


class Recorded(KillWorker):
    """Passes on every server but uwsgi, where it fails."""

    def run(self, stack):
        seen = f.kill_seen()
        if stack.server == "uwsgi":
            seen = f.kill_seen(replaced_s=None)
        return self.judge(f.KILL_DONE, seen)


class Skipping(Reload):
    def run(self, stack):
        return self.judge(None, ReloadObservation("flask", "labapp.service", False))


def test_the_matrix_converges_each_server_once_then_runs_each_fault(tmp_path, monkeypatch, capsys):
    converged, stacks = [], []

    class Converged:
        ok, reason = True, ""

    def fake_converge(executor, logs, label):
        converged.append((executor.extra_vars["server"], logs.name, label))
        return Converged()

    def fake_stack(executor, inventory, run_dir, run_id, cell_prefix=""):
        stack = StubStack(executor)
        stack.server = executor.extra_vars["server"]
        stacks.append(cell_prefix)
        return stack

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "FAULTS", (Recorded, Skipping))
    monkeypatch.setattr(cli, "NAMES", ("kill-worker", "reload"))
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(cli, "converge", fake_converge)
    monkeypatch.setattr(cli, "Stack", fake_stack)
    status = cli.main(["--servers", "uwsgi", "gunicorn-gthread", "--run-id", "faults-m",
                       "--", "-e", "server=flask"])  # fmt: skip
    # a FAIL on one server makes the exit status 1
    assert status == 1
    # the catalogue's order; each converged once, -e server=NAME over the passthrough's
    assert converged == [
        ("uwsgi", "uwsgi", "converge"), ("gunicorn-gthread", "gunicorn-gthread", "converge")
    ]  # fmt: skip
    assert stacks == ["uwsgi-", "gunicorn-gthread-"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "faults faults-m: kill-worker, reload on uwsgi, gunicorn-gthread"
    assert out[1].startswith("FAIL  uwsgi             1 kill-worker      kill -9 of")
    assert out[2].startswith("SKIP  uwsgi             2 reload           systemctl reload")
    assert out[3].startswith("PASS  gunicorn-gthread  1 kill-worker      kill -9 of")
    assert out[4].startswith("SKIP  gunicorn-gthread  2 reload ")
    assert out[5:9] == [
        "server           | kill-worker            | reload",
        "-----------------+------------------------+-------",
        "uwsgi            | FAIL 0/7 failed, 0 cut | SKIP",
        "gunicorn-gthread | PASS 0/7 failed, 0 cut | SKIP",
    ]
    assert out[9].startswith("faults faults-m: 1 passed, 1 failed, 2 skipped in ")
    body = json.loads((tmp_path / "reports" / "faults-m" / "faults.json").read_text())
    assert [(r["server"], r["name"], r["status"]) for r in body["faults"]] == [
        ("uwsgi", "kill-worker", "FAIL"), ("uwsgi", "reload", "SKIP"),
        ("gunicorn-gthread", "kill-worker", "PASS"), ("gunicorn-gthread", "reload", "SKIP"),
    ]  # fmt: skip


def test_a_server_that_cannot_be_converged_fails_its_faults_and_the_next_runs(
    tmp_path, monkeypatch, capsys
):
    class Result:
        def __init__(self, ok):
            self.ok, self.reason = ok, "" if ok else "uwsgi did not start"

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "FAULTS", (Recorded,))
    monkeypatch.setattr(cli, "NAMES", ("kill-worker",))
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(
        cli, "converge", lambda executor, *_: Result(executor.extra_vars["server"] != "uwsgi")
    )

    def fake_stack(executor, *_, **__):
        stack = StubStack(executor)
        stack.server = executor.extra_vars["server"]
        return stack

    monkeypatch.setattr(cli, "Stack", fake_stack)
    assert cli.main(["--servers", "uwsgi,granian", "--run-id", "faults-m"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "FAIL  uwsgi             1 kill-worker      could not be carried out  =>  uwsgi could "
        "not be converged: the stack could not be converged: uwsgi did not start"
    )
    assert out[2].startswith("PASS  granian           1 kill-worker ")
    assert out[5] == "uwsgi   | FAIL could not be carried out"


def test_the_table_marks_a_fault_not_run_on_a_server():
    from flask_deploy_lab.faults import render

    results = [render.Result(1, "kill-worker", "PASS", "", "", {"key": "0/7 failed"}, [], "a")]
    assert render.matrix_table(results, ["a", "b"], ["kill-worker", "reload"]).splitlines() == [
        "server | kill-worker     | reload",
        "-------+-----------------+-------",
        "a      | PASS 0/7 failed | -",
        "b      | -               | -",
    ]


# ---------------------------------------------------------------- --converge-only


def test_converge_only_converges_with_the_runs_settings_and_runs_no_fault(
    tmp_path, monkeypatch, capsys
):
    seen = []

    def converged(executor, logs, label, extra=None, tags=None):
        seen.append((executor.inventory, executor.extra_vars, label))
        return PlaybookResult(["ansible-playbook"], 0)

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "converge", converged)
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(cli, "run_faults", lambda *a: pytest.fail("a fault ran"))
    argv = ["--converge-only", "--run-id", "faults-c", "--servers", "uwsgi", "--", "-i", "inv"]
    assert cli.main(argv) == 0
    assert seen == [("inv", {"flask_app_workers": "2", "server": "uwsgi"}, "converge")]
    assert capsys.readouterr().out.splitlines()[-1] == (
        "faults faults-c: the stack is converged; run the faults with --no-converge"
    )
    assert not (tmp_path / "reports" / "faults-c" / "faults.json").exists()


def test_converge_only_exits_2_naming_what_failed(tmp_path, monkeypatch, capsys):
    failed = PlaybookResult(
        ["ansible-playbook"], 2, failures=[TaskFailure("app1", "Start the server", "boom")]
    )
    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "converge", lambda *a, **k: failed)
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    assert cli.main(["--converge-only", "--run-id", "faults-c"]) == 2
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("faults: the stack could not be converged: ")
    assert "boom" in last
    assert last.endswith("faults-c/logs/converge.log)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--converge-only", "--no-converge"], "exclude each other"),
        (["--converge-only", "--servers", "uwsgi", "granian"], "takes one server"),
    ],
)
def test_converge_only_refuses_what_it_cannot_do(argv, message, monkeypatch, capsys):
    monkeypatch.delenv("SERVERS", raising=False)
    with pytest.raises(SystemExit):
        cli.parse_args(argv)
    assert message in capsys.readouterr().err
