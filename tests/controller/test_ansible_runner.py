"""The controller's Ansible runner: results read from the event stream, on a
playbook that runs on the controller itself."""

from __future__ import annotations

import json
import textwrap

import pytest

from flask_deploy_lab.ansible import read_events, run_playbook

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
