"""A vault-encrypted inventory works end to end (marker: converge).

A copy of the inventory has every group_vars file that holds mysql_optuna_password encrypted
with ansible-vault. With the vault password file, testinfra's view of the inventory and a
`site.yml --check` run on the converged cluster read the same password (the MySQL account is
found unchanged); without it, or with a wrong one, Ansible stops with a clear error and changes
nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra_lib import BIN, ROOT, Cluster, random_token
from test_converge import RECAP

pytestmark = pytest.mark.converge

SECRET_KEY = "mysql_optuna_password"
VAULT_HEADER = "$ANSIBLE_VAULT;"


def plain_files_with_secret(inventory: Path) -> list[Path]:
    found = []
    for path in sorted(inventory.rglob("*.yml")) + sorted(inventory.rglob("*.yaml")):
        text = path.read_text(errors="replace")
        if text.startswith(VAULT_HEADER):
            continue
        data = yaml.safe_load(text)
        if isinstance(data, dict) and SECRET_KEY in data:
            found.append(path)
    return found


@pytest.fixture
def vaulted(cluster: Cluster, tmp_path: Path):
    """(inventory copy with the secret encrypted, vault password file, files encrypted)."""
    inventory = tmp_path / "inventory"
    shutil.copytree(cluster.inventory, inventory, symlinks=False)
    password_file = tmp_path / "vault-pass"
    password_file.write_text(random_token() + "\n")
    password_file.chmod(0o600)
    encrypted = plain_files_with_secret(inventory)
    for path in encrypted:
        subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
                        str(path)], check=True, capture_output=True, text=True, cwd=ROOT)
        assert path.read_text().startswith(VAULT_HEADER), f"{path}: not encrypted"
    return inventory, password_file, encrypted


def playbook(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "site.yml", "--check",
                           "--tags", "mysql", *extra], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=900)


def test_vaulted_inventory_reads_the_same_password(cluster: Cluster, vaulted, monkeypatch) -> None:
    inventory, password_file, encrypted = vaulted
    expected = str(cluster.var(cluster.drivers[0], SECRET_KEY))
    if encrypted:
        assert expected not in "".join(p.read_text() for p in encrypted), "the vaulted copy holds the password in clear"
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password_file))
    seen = Cluster(inventory, cluster.force_ansible).var(cluster.drivers[0], SECRET_KEY)
    assert seen == expected, f"{cluster.drivers[0]}: the vaulted inventory resolves another {SECRET_KEY}"

    proc = playbook(inventory, "--vault-password-file", str(password_file))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"--check with the vaulted inventory failed (rc {proc.returncode}): {out[-3000:]}"
    recap = {m["host"]: int(m["changed"]) for m in RECAP.finditer(out[out.rfind("PLAY RECAP"):])}
    driver = cluster.drivers[0]
    assert recap.get(driver) == 0, (f"{driver}: --check with the vaulted password predicts changes "
                                    f"(recap {recap}): the vaulted password differs from the live one")
    assert expected not in out, "the playbook printed the vaulted password"


def test_vaulted_inventory_without_or_with_a_wrong_password_stops_cleanly(cluster: Cluster, vaulted,
                                                                          tmp_path: Path) -> None:
    inventory, _, encrypted = vaulted
    if not encrypted:
        pytest.fail(f"{cluster.inventory}: {SECRET_KEY} is already vaulted or set outside group_vars; "
                    "this test needs it in a plain group_vars file to encrypt", pytrace=False)
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    for extra, message in (((), "no vault secrets"), (("--vault-password-file", str(wrong)), "Decryption failed")):
        proc = playbook(inventory, *extra)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{extra or 'no vault password'}: the play ran anyway"
        assert message in out, f"{extra or 'no vault password'}: expected {message!r}, got: {out[-1500:]}"
        assert "PLAY RECAP" not in out, f"{extra or 'no vault password'}: a play started: {out[-1500:]}"
