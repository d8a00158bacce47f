"""Real storage faults while objectives write to the study: a TCP proxy in front of a real MariaDB
cuts every connection for a while (an outage) or drops the answers to COMMITs (lost
acknowledgements). Each run ends at exactly its budget, or fails with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from faultproxy import FaultProxy
from optuna_spark.ledger import finished_trials

pytestmark = [pytest.mark.spark, pytest.mark.mysql]

BIN = Path(sys.executable).parent

# Ten intermediate values per trial, 0.1 s apart: an outage always hits objectives mid-report.
REPORTING = """
import time

def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    for step in range(10):
        trial.report(x * x + step, step)
        time.sleep(0.1)
    return x * x
"""


@pytest.fixture
def proxy(mariadb):
    p = FaultProxy(mariadb.port)
    yield p
    p.close()


def direct(mariadb) -> str:
    return f"mysql+pymysql://{mariadb.user}:{mariadb.password}@{mariadb.host}:{mariadb.port}/optuna"


def distinct_rows(mariadb, study: str) -> tuple[int, int]:
    """(trial rows, distinct trial numbers) of a study, read with SQL: Optuna's cached storage
    keys trials by number and would hide a duplicate."""
    out = mariadb.sql("SELECT COUNT(*), COUNT(DISTINCT number) FROM optuna.trials JOIN optuna.studies "
                      f"USING (study_id) WHERE study_name = '{study}'")
    rows, numbers = out.split()
    return int(rows), int(numbers)


def tune(tmp_path: Path, proxy: FaultProxy, mariadb, study: str, *extra: str,
         objective: str = "reporting:objective") -> subprocess.Popen:
    (tmp_path / "reporting.py").write_text(REPORTING)
    args = [str(BIN / "optuna-spark"), "tune", "--study", study, "--objective", objective,
            "--n-jobs", "2", "--master", "local[2]", "--output", "json",
            "--storage", f"mysql+pymysql://{mariadb.user}@127.0.0.1:{proxy.port}/optuna", *extra]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OPTUNA_SPARK_STORAGE_PASSWORD": mariadb.password}
    env.pop("OPTUNA_SPARK_CONFIG", None)
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_trials(mariadb, study: str, n: int, proc: subprocess.Popen) -> int:
    for _ in range(600):
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            got = len(optuna.load_study(study_name=study, storage=direct(mariadb)).trials)
        except Exception:
            continue
        if got >= n:
            return got
    pytest.fail("the study never got going")


def test_an_outage_while_objectives_report_is_waited_out(proxy, mariadb, tmp_path: Path) -> None:
    proc = tune(tmp_path, proxy, mariadb, "outage", "--n-trials", "24")
    before = wait_for_trials(mariadb, "outage", 4, proc)
    proxy.outage(15)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert proxy.outage_cuts > 0 and before < 24
    trials = optuna.load_study(study_name="outage", storage=direct(mariadb)).trials
    assert json.loads(out)["finished"] == 24 == len(trials) == finished_trials(trials)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 24 and distinct_rows(mariadb, "outage") == (24, 24)
    assert all(len(t.intermediate_values) == 10 for t in trials)


def test_an_outage_longer_than_the_timeout_fails_in_one_line_and_the_next_run_finishes(
        proxy, mariadb, tmp_path: Path) -> None:
    faults = ("--outage-timeout", "3", "--heartbeat-interval", "1", "--grace-period", "3")
    proc = tune(tmp_path, proxy, mariadb, "long-outage", "--n-trials", "24", *faults)
    wait_for_trials(mariadb, "long-outage", 4, proc)
    proxy.outage(12)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert "storage unavailable for 3 s" in last, last
    time.sleep(max(0.0, proxy.down_until - time.monotonic()))
    again = tune(tmp_path, proxy, mariadb, "long-outage", "--n-trials", "24", *faults)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="long-outage", storage=direct(mariadb)).trials
    assert json.loads(out)["finished"] == 24 == finished_trials(trials)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_lost_commit_acknowledgements_count_nothing_twice(proxy, mariadb, tmp_path: Path) -> None:
    """Every 4th COMMIT of the run is applied by the server but its answer is cut: claims,
    trial creations, releases, tells and the objective's own writes are all retried without
    knowing whether they happened. The study must still end at exactly its budget, with no
    orphan RUNNING trial, and the claim counter must match the claims."""
    proc = tune(tmp_path, proxy, mariadb, "lost-ack", "--n-trials", "30")
    wait_for_trials(mariadb, "lost-ack", 2, proc)
    proxy.cut_after_commit(4)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert proxy.cuts >= 10, f"only {proxy.cuts} acknowledgements were dropped"
    trials = optuna.load_study(study_name="lost-ack", storage=direct(mariadb)).trials
    assert json.loads(out)["finished"] == 30 == finished_trials(trials)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    rows, numbers = distinct_rows(mariadb, "lost-ack")
    assert rows == numbers == len(trials)
    study_id = mariadb.sql("SELECT study_id FROM optuna.studies WHERE study_name = 'lost-ack'").strip()
    counter = mariadb.sql(f"SELECT claimed FROM optuna.optuna_spark_budget WHERE study_id = {study_id}").strip()
    rows = mariadb.sql(f"SELECT COUNT(*) FROM optuna.optuna_spark_claims WHERE study_id = {study_id}").strip()
    assert counter == rows == "30"


def test_a_silent_partition_ends_a_storage_call_instead_of_blocking_it(mariadb, monkeypatch) -> None:
    """Packets dropped, not refused: without read/write timeouts a storage call waits forever and
    --outage-timeout never fires. With them, the call fails within STORAGE_IO_TIMEOUT and the
    outage guard gives up at its own timeout, with one clear error."""
    from sqlalchemy import create_engine, text

    from optuna_spark.outage import OutageGuard, StorageOutage, database_probe
    from optuna_spark.storage import IO_TIMEOUT_ENV, StorageTarget, storage_io_timeout

    monkeypatch.setenv(IO_TIMEOUT_ENV, "8")
    assert storage_io_timeout() == 8
    proxy = FaultProxy(mariadb.port)
    try:
        target = StorageTarget(f"mysql+pymysql://{mariadb.user}@127.0.0.1:{proxy.port}/optuna", mariadb.password)
        engine = create_engine(target.connect_url(), **target.engine_kwargs())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        proxy.blackhole(600)
        guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), 5)

        def query() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT 1")).scalar())

        started = time.monotonic()
        with pytest.raises(StorageOutage):
            guard.call(query, "reading")
        waited = time.monotonic() - started
        assert waited < 2 * 8 + 20, waited
        engine.dispose()
    finally:
        proxy.close()


# Each trial runs until the test lets it end (a file named after its number), without storage calls.
HELD = """
import os, time

def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    while not os.path.exists(os.path.join({folder!r}, f"release-{{trial.number}}")):
        time.sleep(0.1)
    return x
"""


def test_a_live_task_cut_off_longer_than_the_grace_period_keeps_its_trial(proxy, mariadb, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """Grace period 2 s, outage timeout 20 s. While each trial runs, the run's storage is cut
    (connections refused: a restart), then dropped (a silent partition), for 4 s each, and another
    task's sweep (the ledger's, on a direct connection) runs throughout: the task waits such an
    outage out, so its trial must never be failed as stale; its heartbeats resume after each."""
    from optuna_spark.ledger import Ledger, staleness_window
    from optuna_spark.storage import IO_TIMEOUT_ENV, StorageTarget, open_rdb_storage

    # The proxy drops what it read during the partition (a real network would resend it): a call
    # caught in it ends at the I/O timeout, here 5 s, instead of the default 60 s.
    monkeypatch.setenv(IO_TIMEOUT_ENV, "5")
    (tmp_path / "held.py").write_text(HELD.format(folder=str(tmp_path)))
    proc = tune(tmp_path, proxy, mariadb, "held", "--n-trials", "2", "--n-jobs", "1", "--heartbeat-interval", "1",
                "--grace-period", "2", "--outage-timeout", "20", objective="held:objective")
    wait_for_trials(mariadb, "held", 1, proc)
    target = StorageTarget(f"mysql+pymysql://{mariadb.user}@{mariadb.host}:{mariadb.port}/optuna", mariadb.password)
    rdb = open_rdb_storage(target)
    sweeper = Ledger(target.connect_url(), target.engine_kwargs(), rdb.get_study_id_from_name("held"), rdb)

    windows: set[float] = set()  # what the trials' claims carry (optuna_spark.ledger.staleness_window)

    def sweep_through(fault_seconds: float) -> list[int]:
        """Sweep as the run's other tasks would, until the trial's heartbeats are back."""
        failed: list[int] = []
        fault_end = time.monotonic() + fault_seconds
        while not failed and time.monotonic() < fault_end + 30:
            failed += sweeper.sweep(max_retry=2)
            now, running = sweeper.running()
            windows.update(r.grace for r in running)
            if time.monotonic() > fault_end and running and all(
                    r.heartbeat is not None and (now - r.heartbeat).total_seconds() < 2 for r in running):
                return failed
            time.sleep(0.25)
        return failed or [-1]  # -1: the heartbeats never came back

    try:
        proxy.outage(4)
        assert sweep_through(4) == []
        (tmp_path / "release-0").touch()
        wait_for_trials(mariadb, "held", 2, proc)
        proxy.blackhole(4)
        assert sweep_through(4) == []
        (tmp_path / "release-1").touch()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    finally:
        sweeper.dispose()
        rdb.engine.dispose()
        if proc.poll() is None:
            proc.kill()
    trials = optuna.load_study(study_name="held", storage=direct(mariadb)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert json.loads(out)["retried_stale"] == 0
    assert proxy.outage_cuts > 0 and windows == {staleness_window(2, 1, 20)} == {27}
