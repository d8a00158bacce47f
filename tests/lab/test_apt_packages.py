"""The apt_packages role on a real lab host: a package mirror that accepts connections and never
answers does not hang the play. Its network step is killed after apt_packages_network_timeout,
tried again, and then fails by name.

The stalled mirror is a real TCP listener inside the host; apt is pointed at it through
APT_CONFIG (its own source list and state folders under /tmp), so the host's real package
configuration is not touched."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PORT = 8999
UNIT = "optuna-test-stalled-mirror"
# Accept every connection, read the request, never answer; gone after 5 minutes at most.
STALL_SERVER = (
    "import socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('127.0.0.1', {PORT})); s.listen(16); held = []\n"
    "while True:\n"
    "    c, _ = s.accept(); held.append(c)\n"
)
APT_CONF = f"""\
Dir::Etc::sourcelist "/tmp/optuna-stall/sources.list";
Dir::Etc::sourceparts "/tmp/optuna-stall/sources.list.d";
Dir::State::lists "/tmp/optuna-stall/lists";
Dir::Cache::archives "/tmp/optuna-stall/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


@pytest.fixture
def stalled_mirror(lab):
    host = lab.workers[-1]
    lab.sh(host, "rm -rf /tmp/optuna-stall && mkdir -p /tmp/optuna-stall/sources.list.d "
                 "/tmp/optuna-stall/lists/partial /tmp/optuna-stall/archives/partial && "
                 f"echo 'deb http://127.0.0.1:{PORT}/debian bookworm main' > /tmp/optuna-stall/sources.list && "
                 f"cat > /tmp/optuna-stall/apt.conf <<'EOF'\n{APT_CONF}EOF\n"
                 f"systemd-run --quiet --unit={UNIT} --collect timeout 300 python3 -c \"{STALL_SERVER}\"")
    lab.sh(host, f"for i in $(seq 50); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)\" "
                 "2>/dev/null && exit 0; sleep 0.1; done; exit 1")
    yield host
    lab.sh(host, f"systemctl stop {UNIT} 2>/dev/null; rm -rf /tmp/optuna-stall", check=False)


def test_a_stalled_mirror_is_cut_off_retried_and_named(lab, stalled_mirror, tmp_path):
    host = stalled_mirror
    playbook = tmp_path / "stall.yml"
    playbook.write_text(textwrap.dedent(f"""\
        - name: apt_packages against a mirror that never answers
          hosts: {host}
          gather_facts: false
          become: true
          tasks:
            - name: Packages through the stalled mirror
              ansible.builtin.import_role:
                name: apt_packages
              environment:
                APT_CONFIG: /tmp/optuna-stall/apt.conf
              vars:
                apt_packages_names: [hello]
                apt_packages_cache_valid_time: 0
                apt_packages_network_timeout: 5
                apt_packages_network_retries: 1
                apt_packages_network_delay: 1
        """))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    # apt's own timeout is 120 s per connection: without the role's limit this takes minutes.
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(playbook)],
                          cwd=ROOT, text=True, capture_output=True, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the play passed against a mirror that never answers:\n{out[-3000:]}"
    failed_task = out[:out.find("fatal:")].rsplit("TASK [", 1)[-1].split("]", 1)[0]
    assert failed_task == "apt_packages : Refresh the package lists (time-limited, retried)", out[-3000:]
    # apt_packages_network_retries: 1 -> one retry announced, then the failure.
    assert out.count("FAILED - RETRYING") == 1, f"the stalled step was not tried again once:\n{out[-3000:]}"
    assert "msg: Timeout exceeded" in out, f"the step failed, but not by the role's time limit:\n{out[-3000:]}"
    # The killed attempts left no apt download running behind the play.
    left = lab.sh(host, "pgrep -f '^/usr/lib/apt/methods/http' || true").stdout.strip()
    assert not left, f"{host}: apt's http method still runs after the play: pids {left}"
