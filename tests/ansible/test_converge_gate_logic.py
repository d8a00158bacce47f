"""The converge gate's decision (roles/converge_gate), on this machine through a local connection:
a role is skipped only after a full run recorded the same inputs and state, a changed file, mode
or variable runs it again, a variable that cannot be resolved runs it without a record, and
nothing is recorded in check mode or under tags. The lab test (tests/infra/test_converge_gate.py)
runs it through site.yml on real hosts."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    converge_gate_enabled: true
    converge_gate_dir: {records}
  tasks:
    - name: Probe
      ansible.builtin.include_role:
        name: converge_gate
        tasks_from: probe
      vars:
        converge_gate_state: {{name: demo, files: ["{managed}"], paths: ["{folder}"]}}
    - name: Decision
      ansible.builtin.debug:
        msg: "decision=[{{{{ __converge_gate_skip }}}}]"
    - name: Record
      ansible.builtin.include_role:
        name: converge_gate
        tasks_from: record
      vars:
        converge_gate_state: {{name: demo, files: ["{managed}"], paths: ["{folder}"]}}
"""


@pytest.fixture()
def gate(tmp_path: Path):
    managed, records = tmp_path / "managed.conf", tmp_path / "records"
    managed.write_text("a = 1\n")
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(records=records, managed=managed, folder=tmp_path))

    def run(*extra: str) -> str:
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
                   ANSIBLE_NOCOLOR="1")
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               "-e", f"ansible_python_interpreter={sys.executable}", str(play), *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        found = re.findall(r"decision=\[(\w*)\]", out)
        assert len(found) == 1, out[-3000:]
        return found[0]

    return run, managed, records


def test_skipped_only_when_inputs_and_state_are_as_recorded(gate) -> None:
    run, managed, records = gate
    assert run() == "", "a role without a record was skipped"
    assert (records / "demo").is_file() and oct((records).stat().st_mode & 0o777) == "0o700"
    assert run() == "demo", "an unchanged role was not skipped"
    managed.write_text("a = 2\n")
    assert run() == "", "a changed file did not run the role"
    assert run() == "demo"
    managed.chmod(0o666)
    assert run() == "", "a changed mode did not run the role"
    assert run() == "demo"
    assert run("-e", "optuna_gate_logic_test=1") == "", "a new variable did not run the role"
    assert run("-e", "optuna_gate_logic_test=1") == "demo"


def test_no_record_from_check_mode_tags_or_an_unresolvable_variable(gate) -> None:
    run, managed, records = gate
    assert run("--check") == ""
    assert not (records / "demo").exists(), "check mode wrote a record"
    assert run("--tags", "all,other") == ""
    assert not (records / "demo").exists(), "a run under --tags wrote a record"
    assert run("-e", '{"optuna_unresolvable": "{{ no_such_variable }}"}') == ""
    assert not (records / "demo").exists(), "a run whose inputs could not be hashed wrote a record"
    assert run() == ""
    assert run() == "demo"
    # The inputs' hash never reaches a command line or the output.
    record = (records / "demo").read_text().split()[0]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    play = managed.parent / "play.yml"
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert record not in proc.stdout + proc.stderr, "the inputs' hash was printed"
