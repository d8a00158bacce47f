"""Fixtures of the end-to-end tests; the helpers are in cluster_lib.py."""

from cluster_lib import converged_cluster, study_name  # noqa: F401
