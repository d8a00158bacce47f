"""Cluster-wide: every node runs the same Spark and the same Python."""

from __future__ import annotations

import re

from infra_lib import Cluster, Node


def _nodes(cluster: Cluster) -> list[Node]:
    return [Node(name, cluster.host(name), cluster) for name in cluster.nodes]


def spark_version(node: Node) -> str:
    """The version of the spark-core jar under SPARK_HOME (tarball and PyPI installs alike)."""
    home = node.var("spark_home")
    out = node.run(f"ls {home}/jars/")
    jars = re.findall(r"^spark-core_[0-9.]+-(\S+)\.jar$", out.stdout, re.M)
    return jars[0] if out.rc == 0 and len(jars) == 1 else f"none under {home}/jars ({out.rc})"


def python_versions(node: Node) -> tuple[str, str]:
    system = node.run("python3 -c 'import sys; print(sys.version.split()[0])'").stdout.strip() or "missing"
    env = node.var("optuna_runtime_env_path")
    runtime = node.run(f"{env}/bin/python -c 'import sys; print(sys.version.split()[0])'").stdout.strip() or "missing"
    return system, runtime


def test_same_spark_version_everywhere(cluster: Cluster) -> None:
    versions = {node.name: spark_version(node) for node in _nodes(cluster)}
    expected = {node: cluster.var(node, "spark_version") for node in versions}
    wrong = {n: v for n, v in versions.items() if v != expected[n]}
    assert not wrong, "Spark versions differ: " + ", ".join(
        f"{n}: {v}, expected {expected[n]}" for n, v in sorted(wrong.items()))
    assert len(set(versions.values())) == 1, f"Spark versions differ across nodes: {versions}"


def test_same_python_version_everywhere(cluster: Cluster) -> None:
    versions = {node.name: python_versions(node) for node in _nodes(cluster)}
    for kind, index in (("system python3", 0), ("runtime python", 1)):
        seen = {name: v[index] for name, v in versions.items()}
        assert "missing" not in seen.values() and len(set(seen.values())) == 1, (
            f"{kind} versions differ across nodes: "
            + ", ".join(f"{n}: {v}" for n, v in sorted(seen.items())))
