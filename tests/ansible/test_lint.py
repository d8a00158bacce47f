"""The playbooks and roles pass the linters the project promises (real runs, no skips)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_lib import REPO, run_tool, tool

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def _output(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_yamllint_strict() -> None:
    proc = run_tool(tool("yamllint"), "--strict", ".")
    assert proc.returncode == 0, _output(proc)


def test_ansible_lint_production_profile() -> None:
    proc = run_tool(tool("ansible-lint"), "--profile", "production", "--nocolor")
    assert proc.returncode == 0, _output(proc)
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr, _output(proc)


def test_ruff_on_the_package() -> None:
    proc = run_tool(tool("ruff"), "check", "--no-cache", "runner/optuna_spark")
    assert proc.returncode == 0, _output(proc)


def test_mypy_strict_on_the_package() -> None:
    proc = run_tool(tool("mypy"), "--no-incremental", "--cache-dir=/dev/null")
    assert proc.returncode == 0 and "Success: no issues found" in proc.stdout, _output(proc)


def test_syntax_check_site_and_each_playbook() -> None:
    playbooks = ["site.yml"] + sorted(
        str(p.relative_to(REPO)) for p in (REPO / "playbooks").glob("*.yml")
    )
    for playbook in playbooks:
        proc = run_tool(tool("ansible-playbook"), "-i", "localhost,", "--syntax-check", playbook)
        assert proc.returncode == 0, f"{playbook}: {_output(proc)}"


def test_site_imports_one_playbook_per_concern() -> None:
    site = yaml.safe_load((REPO / "site.yml").read_text())
    imported = [play["ansible.builtin.import_playbook"] for play in site]
    assert imported == [
        "playbooks/preflight.yml",
        "playbooks/mysql.yml",
        "playbooks/access.yml",
        "playbooks/spark.yml",
        "playbooks/runtime.yml",
        "playbooks/studies.yml",
        "playbooks/dashboard.yml",
    ]


def test_every_role_has_typed_argument_specs_and_an_assert() -> None:
    assert {"preflight", "mysql", "spark", "optuna_runtime", "optuna_runner", "optuna_studies"} <= set(ROLES)
    for role in ROLES:
        specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        options = specs["argument_specs"]["main"]["options"]
        assert options, role
        defaults_file = REPO / "roles" / role / "defaults" / "main.yml"
        defaults = yaml.safe_load(defaults_file.read_text()) or {}
        for name, spec in options.items():
            assert "type" in spec, f"{role}: {name} has no type"
            assert name.startswith(f"{role}_"), f"{role}: {name} lacks the role prefix"
        for name in defaults:
            assert name in options, f"{role}: default {name} is not in meta/argument_specs.yml"
        tasks = "\n".join(p.read_text() for p in (REPO / "roles" / role / "tasks").glob("*.yml"))
        assert "ansible.builtin.assert" in tasks, f"{role} has no assert"


def test_templates_start_with_ansible_managed() -> None:
    for template in (REPO / "roles").glob("*/templates/*.j2"):
        lines = template.read_text().splitlines()
        head = lines[1] if lines[0].startswith("#!") else lines[0]
        assert head == "{{ ansible_managed | comment }}", template


def test_credential_tasks_are_no_log() -> None:
    """Every task that mentions a password variable hides its output (asserts print no value)."""
    for path in (REPO / "roles").glob("*/tasks/*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            text = yaml.safe_dump(task)
            module = next((k for k in task if k.startswith(("ansible.", "community."))), "")
            if module == "ansible.builtin.assert" or module.endswith("include_tasks"):
                continue
            if "_password }}" in text or "storage_url_secret" in text:
                assert task.get("no_log") is True, f"{path}: {task.get('name')}"


def _tasks(items: list) -> list[dict]:
    out: list[dict] = []
    for item in items:
        if "block" in item:
            out.extend(_tasks(item["block"]))
        else:
            out.append(item)
    return out


def test_example_inventory_ships_no_secret() -> None:
    example = REPO / "inventory" / "example"
    assert (example / "group_vars" / "all" / "vault.yml.example").is_file()
    assert not (example / "group_vars" / "all" / "vault.yml").exists()
    for path in example.rglob("*.yml"):
        assert "mysql_optuna_password" not in path.read_text(), f"{path} sets the password in clear"


def test_example_inventory_parses(tmp_path: Path) -> None:
    proc = run_tool(tool("ansible-inventory"), "-i", "inventory/example", "--list")
    assert proc.returncode == 0, _output(proc)
    assert "spark-driver" in proc.stdout and "spark-worker-2" in proc.stdout
