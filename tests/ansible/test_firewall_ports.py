"""The firewall role protects the ports the other roles open: each `X | default(N)` of
roles/optuna_firewall names a variable X whose own role default is N."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def test_firewall_defaults_follow_the_spark_and_mysql_roles() -> None:
    others = {**defaults("spark"), **defaults("mysql"), **defaults("optuna_dashboard")}
    fw = defaults("optuna_firewall")
    text = " ".join(str(v) for v in fw["optuna_firewall_tcp_ports"] + fw["optuna_firewall_tcp_range_starts"]
                    + [fw["optuna_firewall_range_length"]])
    pairs = re.findall(r"(\w+) \| default\((\d+)\)", text)
    assert len(pairs) == 11, pairs
    for name, value in pairs:
        assert name in others, f"the firewall names {name}, which no role defines"
        assert str(others[name]) == value, f"{name}: the firewall assumes {value}, its role says {others[name]}"
    # Every port variable of the spark role is protected (the dashboard's backend listens on
    # 127.0.0.1 only, behind its proxy on optuna_dashboard_port).
    for name in others:
        if (name.endswith("_port") and name.startswith(("spark_", "mysql_", "optuna_dashboard_"))
                and "_db_" not in name and name != "optuna_dashboard_backend_port"):
            assert name in dict(pairs), f"{name} is not protected by the firewall"
