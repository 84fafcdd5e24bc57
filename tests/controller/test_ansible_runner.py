"""The controller's Ansible runner: results read from the event stream, of a
playbook and of ad-hoc module runs on the controller itself."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from flask_deploy_lab.ansible import (
    PLAYBOOK_DIR,
    module_command,
    read_events,
    run_module,
    run_playbook,
    start_module,
)

PLAY = textwrap.dedent(
    """\
    - name: A play with every kind of result
      hosts: localhost
      gather_facts: false
      vars:
        ansible_connection: local
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
      tasks:
        - name: Say a number
          ansible.builtin.debug:
            msg: "n+1 = {{ n + 1 }}"
        - name: Change something
          ansible.builtin.copy:
            content: "x\\n"
            dest: "{{ target }}"
            mode: "0644"
        - name: Fail and be ignored
          ansible.builtin.fail:
            msg: ignored on purpose
          ignore_errors: true
        - name: Fail one item of a loop
          ansible.builtin.assert:
            that: item != 'b'
            fail_msg: "item {{ item }} is bad"
          loop: [a, b]
          when: fail_loop | bool
        - name: Fail for real
          ansible.builtin.fail:
            msg: "the   real reason"
          when: fail_end | bool
    """
)


@pytest.fixture()
def play(tmp_path):
    path = tmp_path / "play.yml"
    path.write_text(PLAY)
    return path


def run(play, tmp_path, **extra):
    extra = {
        "n": 41,
        "target": str(tmp_path / "out.txt"),
        "fail_loop": False,
        "fail_end": False,
        **extra,
    }
    return run_playbook(
        play, inventory="localhost,", extra_vars=extra, log_path=tmp_path / "log.jsonl", timeout=120
    )


def test_a_good_run_gives_stats_and_results(play, tmp_path):
    result = run(play, tmp_path)
    assert result.ok, result.reason
    assert result.stats["localhost"].changed == 1
    assert result.stats["localhost"].ignored == 1
    # extra vars keep their types: 41 + 1
    assert result.results["Say a number"]["localhost"]["msg"] == "n+1 = 42"
    again = run(play, tmp_path)
    assert again.changed("localhost") == 0


def test_the_reason_is_the_fatal_failure(play, tmp_path):
    result = run(play, tmp_path, fail_end=True)
    assert not result.ok
    assert result.reason == "the real reason"
    assert [f.task for f in result.failures] == ["Fail and be ignored", "Fail for real"]


def test_a_failed_loop_names_its_bad_items(play, tmp_path):
    result = run(play, tmp_path, fail_loop=True)
    assert result.reason == "item b is bad"


def test_the_log_is_the_event_stream(play, tmp_path):
    run(play, tmp_path)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert "ansible-playbook" in json.loads(lines[0])["_command"]
    events = [json.loads(line) for line in lines[1:] if line.startswith("{")]
    assert events[0]["_event"] == "v2_playbook_on_play_start"
    assert events[-1]["_event"] == "v2_playbook_on_stats"
    assert read_events(lines).stats["localhost"].ok >= 3


def test_a_run_past_its_timeout_is_stopped(tmp_path):
    path = tmp_path / "slow.yml"
    path.write_text(
        "- hosts: localhost\n  gather_facts: false\n  vars: {ansible_connection: local}\n"
        "  tasks:\n    - ansible.builtin.pause: {seconds: 30}\n"
    )
    result = run_playbook(path, inventory="localhost,", timeout=3)
    assert not result.ok
    assert "stopped after 3 s" in result.reason


# ad-hoc runs (run_module): the same events, one module on the hosts of a pattern

LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def test_an_ad_hoc_command_is_one_json_argument_and_one_json_document_of_vars(tmp_path):
    command = module_command(
        "app:proxy", "ansible.builtin.command", {"argv": ["echo", "a b"]},
        inventory="inventory/vagrant", extra_vars={"n": 1}, playbook_dir=tmp_path,
    )  # fmt: skip
    assert Path(command[0]).name == "ansible"
    assert command[1:4] == ["app:proxy", "-m", "ansible.builtin.command"]
    assert json.loads(command[command.index("-a") + 1]) == {"argv": ["echo", "a b"]}
    assert command[command.index("-i") + 1] == "inventory/vagrant"
    assert command[command.index("--playbook-dir") + 1] == str(tmp_path)
    assert json.loads(command[command.index("-e") + 1]) == {"n": 1}
    # the playbooks' variables by default; a string argument goes as it is
    assert module_command("all", "ansible.builtin.ping")[-2:] == [
        "--playbook-dir",
        str(PLAYBOOK_DIR),
    ]
    assert module_command("all", "ansible.builtin.debug", "msg=hi")[4:6] == ["-a", "msg=hi"]


def test_an_ad_hoc_run_is_read_from_its_events(tmp_path):
    result = run_module(
        "localhost", "ansible.builtin.command", {"argv": ["echo", "{{ n + 1 }}"]},
        inventory="localhost,", extra_vars={**LOCAL, "n": 41}, log_path=tmp_path / "log.jsonl",
        timeout=120,
    )  # fmt: skip
    assert result.ok, result.reason
    assert result.results["ansible.builtin.command"]["localhost"]["stdout"] == "42"
    assert result.stats["localhost"].changed == 1
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert " ansible.builtin.command " in json.loads(lines[0])["_command"]


def test_a_failed_ad_hoc_run_gives_the_host_result_and_the_reason():
    result = run_module(
        "localhost", "ansible.builtin.command", {"argv": ["sh", "-c", "echo out; exit 3"]},
        inventory="localhost,", extra_vars=LOCAL, timeout=120,
    )  # fmt: skip
    assert not result.ok
    body = result.results["ansible.builtin.command"]["localhost"]
    assert (body["rc"], body["stdout"]) == (3, "out")
    assert result.failures[-1].host == "localhost"
    assert result.reason == "non-zero return code"


def test_an_ad_hoc_run_sees_the_variables_of_its_playbook_dir(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "main.yml").write_text("greeting: hello from group_vars\n")
    result = run_module(
        "localhost", "ansible.builtin.debug", {"msg": "{{ greeting }}"},
        inventory="localhost,", extra_vars=LOCAL, playbook_dir=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.results["ansible.builtin.debug"]["localhost"]["msg"] == "hello from group_vars"


def test_a_background_ad_hoc_run_is_waited_for():
    running = start_module(
        "localhost", "ansible.builtin.command", {"argv": ["sleep", "1"]},
        inventory="localhost,", extra_vars=LOCAL, timeout=120,
    )  # fmt: skip
    assert running.running()
    assert running.wait().ok
    assert not running.running()
