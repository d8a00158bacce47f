"""bench/claim_concurrency.py's queueing model: exact MVA, the least-squares fit of (S, P) and the
predictions (pure functions; no database, no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from claim_concurrency import (  # noqa: E402
    LOCK_ROUND_TRIPS,
    OTHER_ROUND_TRIPS,
    fit_lock_model,
    holds_up_to,
    mva,
    predict,
    uncontended,
    with_network,
)


def test_one_customer_cycles_through_service_and_delay_alone() -> None:
    x, residence = mva(0.005, 0.015, 1)
    assert x == pytest.approx(1 / 0.020)
    assert residence == pytest.approx(0.005)  # no wait


def test_mva_stays_under_both_asymptotic_bounds_and_reaches_the_lock_limit() -> None:
    s, p = 0.004, 0.012
    for n in (1, 2, 4, 8, 16, 64, 256):
        x, residence = mva(s, p, n)
        assert x <= min(n / (s + p), 1 / s) + 1e-12
        assert residence >= s
        assert n == pytest.approx(x * (residence + p))  # Little's law over the whole cycle
    assert mva(s, p, 1000)[0] == pytest.approx(1 / s, rel=1e-6)


def test_mva_matches_the_two_customer_closed_form() -> None:
    # n = 2: Q1 = S/(S+P); R2 = S(1+Q1); X2 = 2/(R2+P)
    s, p = 0.003, 0.007
    r2 = s * (1 + s / (s + p))
    assert mva(s, p, 2) == pytest.approx((2 / (r2 + p), r2))


def test_the_fit_recovers_the_parameters_of_points_the_model_made() -> None:
    s, p = 0.0042, 0.0061
    points = [(n, mva(s, p, n)[0]) for n in (1, 2, 4, 8, 16, 32, 64)]
    fit = fit_lock_model(points)
    assert fit["S_s"] == pytest.approx(s, rel=0.01)
    assert fit["P_s"] == pytest.approx(p, rel=0.01)
    assert fit["rel_rms"] < 0.005
    assert set(fit["model_claims_per_s"]) == {"1", "2", "4", "8", "16", "32", "64"}


def test_predictions_below_and_beyond_saturation() -> None:
    s, p = 0.005, 0.005
    light = predict(s, p, 256, 60.0)
    assert light["saturation_executors"] == pytest.approx((s + p + 60.0) / s)
    assert light["offered_utilization"] == pytest.approx(256 * s / (s + p + 60.0))
    assert light["utilization"] == pytest.approx(light["offered_utilization"], rel=0.01)
    assert light["trial_share"] > 0.999
    heavy = predict(s, p, 1000, 1.0)
    assert heavy["offered_utilization"] > 1
    assert heavy["utilization"] == pytest.approx(1.0, rel=1e-3)
    assert heavy["claims_per_s"] == pytest.approx(1 / s, rel=1e-3)
    # beyond N*, the cycle grows to N/X: the wait is about N*S - (S+P+Z)
    assert heavy["claim_wait_s"] == pytest.approx(1000 * s - (s + p + 1.0), rel=0.01)
    assert heavy["trial_share"] == pytest.approx(1.0 / (1000 * s), rel=0.01)


def test_uncontended_parameters_split_one_tasks_cycle() -> None:
    params = uncontended(100.0, 0.004)
    assert params["S_s"] == 0.004
    assert params["P_s"] == pytest.approx(0.006)
    assert uncontended(100.0, 0.02)["P_s"] == 0.0


def test_a_network_round_trip_lengthens_the_lock_and_the_rest_of_the_cycle() -> None:
    params = with_network({"S_s": 0.005, "P_s": 0.004}, 0.001)
    assert params["S_s"] == pytest.approx(0.005 + LOCK_ROUND_TRIPS * 0.001)
    assert params["P_s"] == pytest.approx(0.004 + OTHER_ROUND_TRIPS * 0.001)


def test_holds_up_to_is_the_largest_cluster_at_the_utilization() -> None:
    s, p, z = 0.005, 0.005, 10.0
    n = holds_up_to(s, p, z, 0.5)
    assert n * s / (s + p + z) <= 0.5 < (n + 1) * s / (s + p + z)
    assert holds_up_to(0.01, 0.0, 0.99, 1.0) == 100  # exactly at the edge counts
