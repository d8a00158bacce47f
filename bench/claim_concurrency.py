"""Cost as the cluster grows (issue 26, item 4): claims against MySQL (MariaDB) at 1-64 concurrent
tasks, the study's size held fixed, and a queueing model of the study-row lock fitted to them.

    .venv/bin/python bench/claim_concurrency.py [--workers 1,2,4,8,16,32,64] [--seconds 10]
                                                [--study-size 10000] [--rounds 1]
                                                [--modes processes,threads]

A private MariaDB server is started on this machine as tests/conftest.py's `mariadb` fixture starts
one (mariadb-install-db into a temporary datadir, mariadbd --no-defaults on 127.0.0.1 and a socket,
server defaults: InnoDB, REPEATABLE READ, a durable commit, innodb_flush_log_at_trx_commit=1). For
each point a fresh study is made and filled, in bulk SQL, with STUDY_SIZE finished trials as the
runner leaves them (claim rows, the claim attribute `optuna_spark.ledger.CLAIM_ATTR`, one value and
one param each), so every point starts from the same study size. N workers each hold their own
`optuna_spark.ledger.Ledger` (own engines and connections, the runner's engine settings) and loop
what a task does around a zero-length objective: `foreign_finished()` -> `claim_trial(...)` (the
one transaction under the study's row lock) -> `finish(..., COMPLETE, [value])`, for a fixed wall
time. Each claim's latency is split, client side, into the wait for the study-row lock (the call
that takes it, `SELECT ... FOR UPDATE`) and the hold (lock taken -> commit returned).

Tasks run two ways (--modes): as processes, one each (the default, and the one the model's
predictions use: on a cluster every task is a process of its own), and as threads spread over as
many processes as cores. Threads of one process share its GIL: a thread that holds the study's row
lock and gets its reply from the server may wait up to the interpreter's switch interval (5 ms)
for the GIL at each of the claim's round trips while a sibling runs, so the lock's hold grows with
the threads, an artifact of the client and not of the database; the threads sweep is kept to show
it. Sixty-four processes cost ~100 MB and a few CPU seconds each to start, outside the timed
window. The clients' CPU time, the server's (mariadbd's /proc/PID/stat) and the whole machine's
(/proc/stat) are read at the window's edges, so the reader can tell a CPU limit from a lock limit;
InnoDB's row-lock counters (SHOW GLOBAL STATUS LIKE 'Innodb_row_lock%', deadlocks, fsyncs) are
read from the server before and after each point. (MariaDB's performance_schema has no
data_lock_waits table; it is off, as the server's default, so as not to add its cost.)

The model (`mva`, `fit_lock_model`, `predict`; pure functions, tests/unit/test_bench_queueing.py):
a closed network of N tasks, each cycling through one FCFS queue, the study-row lock (service time
S per claim), and a delay P + Z (work done in parallel: the client's side of the three calls, the
round trips, the other queries, and the trial of length Z). Exact mean value analysis gives the
throughput X(N) and the lock's residence (wait + S); S and P are fitted to the measured X(N) by
least squares (relative error, a log grid then a finer one), and the model is evaluated at 256 and
1,000 executors with 1 s, 10 s and 60 s trials. Those are predictions, not measurements.

Writes bench/results/cost-cluster-growth.json (bench/report.py turns it into a BENCHMARKS.md table);
`--append` adds a run's rounds to the kept ones (the table shows each point's median round),
`--resummarize` re-derives the fit, predictions and tables from the kept runs. `--worker ...` is a
worker process's entry point.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import percentile  # noqa: E402  (the benchmarks' one percentile)

PASSWORD = "b3nch-Pa55-w0rd"
USER = "optuna_user"
STATUS_KEYS = ("Innodb_row_lock_waits", "Innodb_row_lock_time", "Innodb_row_lock_time_max",
               "Innodb_deadlocks", "Innodb_data_fsyncs", "Innodb_os_log_fsyncs", "Com_commit", "Questions")
LIMIT = 2**31 - 1  # optuna_spark.task.UNLIMITED: a run with only a time budget
GRACE = 30
PREDICT_EXECUTORS = (256, 1000)
PREDICT_TRIALS = (1.0, 10.0, 60.0)
# Round trips of a claim while it holds the study's row lock (Ledger.claim_trial, a new trial, one
# user attribute: the claim's row, the budget, the claim, the WAITING search, the newest number, the
# trial, the binding, Optuna's trial read and claim attribute, the host, the heartbeat, the commit),
# and the round trips of the rest of the cycle (the lock's own SELECT, foreign_finished, finish).
LOCK_ROUND_TRIPS = 12
OTHER_ROUND_TRIPS = 13
NETWORK_RTT_S = 0.0005  # a client and a server in one data centre, a few hops apart
HOLDS_AT = 0.5  # the lock "holds" while at most half busy: a claim then waits at most about S


# ------------------------------------------------------------------ the model (pure, unit-tested)

def mva(service: float, delay: float, n: int) -> tuple[float, float]:
    """Exact mean value analysis of a closed network: `n` customers, one FCFS queueing station of
    mean service time `service` (the study-row lock) and one delay station of mean `delay` (all
    the work done in parallel, the trial included). Returns (throughput, the mean residence at the
    queue = wait + service)."""
    if n < 1:
        return 0.0, service
    queue = 0.0
    throughput, residence = 0.0, service
    for k in range(1, n + 1):
        residence = service * (1.0 + queue)
        throughput = k / (residence + delay)
        queue = throughput * residence
    return throughput, residence


def _mva_grid(service: Any, delay: Any, n: int) -> Any:
    """mva's throughput for arrays of (service, delay) at once."""
    import numpy as np

    queue = np.zeros_like(service)
    throughput = np.zeros_like(service)
    for k in range(1, n + 1):
        residence = service * (1.0 + queue)
        throughput = k / (residence + delay)
        queue = throughput * residence
    return throughput


def fit_lock_model(points: list[tuple[int, float]], lo: float = 1e-5, hi: float = 1.0) -> dict[str, float]:
    """Least-squares fit of (S, P) of `mva` to measured (workers, claims per second) points, with no
    trial time (Z = 0): the sum of squared relative errors of X(N), minimized on a log grid over
    [lo, hi] seconds for both, then on a finer grid around the best cell. Returns S, P, the
    relative RMS error and the model's throughput at each measured N."""
    import numpy as np

    ns = [int(n) for n, _ in points]
    xs = [float(x) for _, x in points]

    def best(s_axis: Any, p_axis: Any) -> tuple[float, float, float]:
        s, p = np.meshgrid(s_axis, p_axis, indexing="ij")
        err = np.zeros_like(s)
        for n, x in zip(ns, xs, strict=True):
            err += ((_mva_grid(s, p, n) - x) / x) ** 2
        i, j = np.unravel_index(int(np.argmin(err)), err.shape)
        return float(s_axis[i]), float(p_axis[j]), float(err[i, j])

    coarse = np.geomspace(lo, hi, 241)
    s0, p0, _ = best(coarse, coarse)
    step = coarse[1] / coarse[0]
    s_fine = np.geomspace(max(lo, s0 / step), min(hi, s0 * step), 201)
    p_fine = np.geomspace(max(lo, p0 / step), min(hi, p0 * step), 201)
    s, p, err = best(s_fine, p_fine)
    return {"S_s": s, "P_s": p, "rel_rms": math.sqrt(err / len(ns)),
            "model_claims_per_s": {str(n): mva(s, p, n)[0] for n in ns}}


def predict(service: float, parallel: float, executors: int, trial_s: float) -> dict[str, float]:
    """The model at `executors` tasks running trials of `trial_s` seconds: offered lock utilization
    N*S/(S+P+Z) (> 1: more than the lock can serve), the utilization X*S it reaches, throughput,
    the mean wait for the lock per claim, the share of an executor's time spent in trials, and the
    saturation point N* = (S+P+Z)/S."""
    cycle = service + parallel + trial_s
    x, residence = mva(service, parallel + trial_s, executors)
    return {"executors": executors, "trial_s": trial_s, "offered_utilization": executors * service / cycle,
            "utilization": x * service, "claims_per_s": x, "claim_wait_s": residence - service,
            "trial_share": x * trial_s / executors, "saturation_executors": cycle / service}


def uncontended(claims_per_s: float, hold_s: float) -> dict[str, float]:
    """(S, P) from one task alone: S = the mean hold of the study-row lock (lock taken -> commit
    returned), P = the rest of the cycle 1/X(1) - S. What a cluster whose tasks have cores of their
    own and whose server has headroom would see, before any CPU contention inflates the hold."""
    return {"S_s": hold_s, "P_s": max(0.0, 1.0 / claims_per_s - hold_s)}


def with_network(params: dict[str, float], rtt: float) -> dict[str, float]:
    """(S, P) when every round trip costs `rtt` more than here (127.0.0.1): the lock is held across
    LOCK_ROUND_TRIPS of them, the rest of the cycle has OTHER_ROUND_TRIPS."""
    return {"S_s": params["S_s"] + LOCK_ROUND_TRIPS * rtt, "P_s": params["P_s"] + OTHER_ROUND_TRIPS * rtt}


def holds_up_to(service: float, parallel: float, trial_s: float, utilization: float = HOLDS_AT) -> int:
    """The most executors whose offered lock utilization N*S/(S+P+Z) stays at or below `utilization`."""
    return int(math.floor(utilization * (service + parallel + trial_s) / service + 1e-9))


# ------------------------------------------------------------------ the server

class Server:
    """A private mariadbd (the commands of tests/conftest.py's `mariadb` fixture)."""

    def __init__(self) -> None:
        server = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not server or not install:
            raise SystemExit("MariaDB is not installed: apt-get install mariadb-server mariadb-client")
        self.base = Path(tempfile.mkdtemp(prefix="claim-bench-"))
        data, self.socket = self.base / "data", str(self.base / "mysqld.sock")
        subprocess.run([install, "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.argv = [server, "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={self.socket}",
                     f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.base / 'pid'}",
                     f"--log-error={self.base / 'error.log'}", "--max-connections=500"]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(240):
            try:
                self.sql("SELECT 1")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.25)
        else:
            self.stop()
            raise SystemExit("MariaDB did not start")
        self.sql(f"CREATE DATABASE optuna; CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                 f"GRANT ALL PRIVILEGES ON optuna.* TO '{USER}'@'127.0.0.1';")
        self.version = self.sql("SELECT VERSION()").strip()
        self.settings = dict(line.split("\t", 1) for line in self.sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('innodb_flush_log_at_trx_commit', "
            "'transaction_isolation', 'tx_isolation', 'innodb_buffer_pool_size', 'innodb_lock_wait_timeout', "
            "'performance_schema', 'sync_binlog', 'log_bin')").splitlines())

    def sql(self, statement: str) -> str:
        return subprocess.run(["mariadb", "-uroot", f"--socket={self.socket}", "-N", "-B", "-e", statement],
                              capture_output=True, text=True, check=True).stdout

    def url(self) -> str:
        return f"mysql+pymysql://{USER}@127.0.0.1:{self.port}/optuna"

    def status(self) -> dict[str, int]:
        names = ", ".join(f"'{k}'" for k in STATUS_KEYS)
        rows = self.sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})").splitlines()
        return {k: int(v) for k, v in (r.split("\t", 1) for r in rows)}

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)


def code_version() -> dict[str, str]:
    """The commit and a hash of the claim path's source (the working tree is shared: a point's
    workers import the files as they are when the point starts)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("ledger.py", "optuna_internals.py", "storage.py"):
        digest.update((ROOT / "runner" / "optuna_spark" / name).read_bytes())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return {"commit": head, "claim_path_sha256": digest.hexdigest()[:16]}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


def target(url: str) -> Any:
    from optuna_spark.storage import StorageTarget

    return StorageTarget(url, PASSWORD)


def make_study(url: str, size: int) -> int:
    """A new study with `size` finished trials of this runner (bulk INSERTs); its id."""
    import optuna
    import sqlalchemy as sa

    from optuna_spark.ledger import CLAIM_ATTR, Ledger
    from optuna_spark.optuna_internals import rdb_models

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tgt = target(url)
    rdb = optuna.storages.RDBStorage(tgt.connect_url(), engine_kwargs=tgt.engine_kwargs())
    study = optuna.create_study(study_name=f"claims-{uuid.uuid4().hex[:8]}", storage=rdb)
    sid = int(study._study_id)
    ledger = Ledger(tgt.connect_url(), tgt.engine_kwargs(), sid, rdb)
    ledger.create()
    ledger.reconcile()
    m = rdb_models()
    trials, values, params = m.TrialModel.__table__, m.TrialValueModel.__table__, m.TrialParamModel.__table__
    attrs = m.TrialSystemAttributeModel.__table__
    claims, budget = ledger._claims, ledger._budget
    dist = json.dumps({"name": "FloatDistribution", "attributes": {"step": None, "low": -10.0, "high": 10.0,
                                                                   "log": False}})
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    engine = sa.create_engine(tgt.connect_url(), **tgt.engine_kwargs())
    with engine.begin() as c:
        base = int(c.execute(sa.select(sa.func.coalesce(sa.func.max(trials.c.trial_id), 0))).scalar_one()) + 1
        ids = list(enumerate(range(base, base + size)))
        c.execute(sa.insert(trials), [{"trial_id": i, "number": n, "study_id": sid, "state": "COMPLETE",
                                       "datetime_start": now, "datetime_complete": now} for n, i in ids])
        c.execute(sa.insert(values), [{"trial_id": i, "objective": 0, "value": float(n % 97), "value_type": "FINITE"}
                                      for n, i in ids])
        c.execute(sa.insert(params), [{"trial_id": i, "param_name": "x", "param_value": (n % 200) / 10 - 10,
                                       "distribution_json": dist} for n, i in ids])
        c.execute(sa.insert(attrs), [{"trial_id": i, "key": CLAIM_ATTR, "value_json": json.dumps(f"s{sid}t{n}")}
                                     for n, i in ids])
        c.execute(sa.insert(claims), [{"token": f"s{sid}t{n}", "study_id": sid, "trial_id": i, "grace": GRACE,
                                       "claimed_at": now, "bound_at": now, "finished": 1} for n, i in ids])
        c.execute(sa.update(budget).where(budget.c.study_id == sid).values(claimed=size))
    engine.dispose()
    ledger.dispose()
    rdb.engine.dispose()
    return sid


# ------------------------------------------------------------------ a worker process

def worker(url: str, study_id: int, threads: int) -> None:
    """`threads` tasks, each with its own Ledger; prints "ready", reads the window's start (epoch
    seconds) and length from stdin, runs, prints one JSON line."""
    import optuna
    from optuna.trial import TrialState

    from optuna_spark.ledger import Ledger

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tgt = target(url)
    host = socket.gethostname()
    ledgers = []
    for _ in range(threads):
        rdb = optuna.storages.RDBStorage(tgt.connect_url(), engine_kwargs=tgt.engine_kwargs())
        ledgers.append(Ledger(tgt.connect_url(), tgt.engine_kwargs(), study_id, rdb))
    marks: list[dict[str, float]] = [{} for _ in range(threads)]

    def timed_lock(ledger: Any, mark: dict[str, float]) -> None:
        inner = ledger._lock_study

        def lock(session: Any) -> None:
            mark["lock_call"] = time.perf_counter()
            inner(session)
            mark["locked"] = time.perf_counter()
        ledger._lock_study = lock

    for ledger, mark in zip(ledgers, marks, strict=True):
        timed_lock(ledger, mark)
        ledger.foreign_finished()  # the first call reads the whole study once (the frontier's start)
        token = uuid.uuid4().hex
        trial = ledger.claim_trial(token, LIMIT, GRACE, {"host": host})
        ledger.finish(token, trial, TrialState.COMPLETE, [0.0])
    print("ready", flush=True)
    start, seconds = (float(v) for v in sys.stdin.readline().split())
    end = start + seconds
    records: list[list[list[float]]] = [[] for _ in range(threads)]
    errors: list[dict[str, int]] = [{} for _ in range(threads)]

    def run(i: int) -> None:
        ledger, mark, out = ledgers[i], marks[i], records[i]
        time.sleep(max(0.0, start - time.time()))
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                ledger.foreign_finished()
                t1 = time.perf_counter()
                token = uuid.uuid4().hex
                trial = ledger.claim_trial(token, LIMIT, GRACE, {"host": host})
                t2 = time.perf_counter()
                ledger.finish(token, trial, TrialState.COMPLETE, [float(i)])
                t3 = time.perf_counter()
            except Exception as exc:  # a deadlock or lock-wait timeout: counted, and the loop goes on
                name = type(exc).__name__ + ": " + str(getattr(exc, "orig", exc)).split(",")[0][:40]
                errors[i][name] = errors[i].get(name, 0) + 1
                continue
            if time.time() <= end:
                # (cycle start on the wall clock, foreign, claim, lock wait, lock hold, finish)
                out.append([time.time() - (t3 - t0), t1 - t0, t2 - t1, mark["locked"] - mark["lock_call"],
                            t2 - mark["locked"], t3 - t2])

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(max(0.0, start - time.time()))
    cpu0 = time.process_time()
    time.sleep(max(0.0, end - time.time()))
    cpu1 = time.process_time()
    for t in pool:
        t.join()
    merged: dict[str, int] = {}
    for e in errors:
        for k, v in e.items():
            merged[k] = merged.get(k, 0) + v
    print(json.dumps({"cpu_s": cpu1 - cpu0, "records": [r for rs in records for r in rs], "errors": merged}),
          flush=True)
    for ledger in ledgers:
        ledger.dispose()
        ledger.rdb.engine.dispose()


# ------------------------------------------------------------------ one point

def measure(server: Server, n: int, seconds: float, size: int, mode: str) -> dict[str, Any]:
    from run import other_load

    url = server.url()
    t_fill = time.perf_counter()
    sid = make_study(url, size)
    fill_s = time.perf_counter() - t_fill
    code = code_version()
    procs = n if mode == "processes" else min(n, os.cpu_count() or 1)
    split = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    children = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", url, str(sid), str(t)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for t in split]
    for c in children:
        line = c.stdout.readline().strip() if c.stdout else ""
        if line != "ready":
            raise SystemExit(f"a worker did not start ({line!r})")
    load = other_load()
    start = time.time() + 0.3
    for c in children:
        assert c.stdin is not None
        c.stdin.write(f"{start} {seconds}\n")
        c.stdin.flush()
    time.sleep(max(0.0, start - time.time()))
    status0, srv0, (busy0, tot0) = server.status(), server.cpu_s(), machine_busy()
    time.sleep(max(0.0, start + seconds - time.time()))
    status1, srv1, (busy1, tot1) = server.status(), server.cpu_s(), machine_busy()
    outs = []
    for c in children:
        out, _ = c.communicate(timeout=300)
        if c.returncode != 0:
            raise SystemExit(f"a worker failed at N={n}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    recs = [r for o in outs for r in o["records"]]
    errors: dict[str, int] = {}
    for o in outs:
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
    claims = len(recs)
    ncpu = os.cpu_count() or 1
    client_cpu = sum(o["cpu_s"] for o in outs)
    delta = {k: status1.get(k, 0) - status0.get(k, 0) for k in STATUS_KEYS}
    delta["Innodb_row_lock_time_max"] = status1.get("Innodb_row_lock_time_max", 0)

    def ms(col: int, q: float) -> float | None:
        v = percentile([r[col] for r in recs], q)
        return None if v is None else round(1000 * v, 3)

    def mean_ms(col: int) -> float | None:
        return round(1000 * statistics.fmean(r[col] for r in recs), 3) if recs else None

    return {
        "workers": n, "mode": mode, "processes": procs, "threads_per_process": split, "seconds": seconds,
        "study_size": size,
        "fill_s": round(fill_s, 1), "claims": claims, "claims_per_s": round(claims / seconds, 2),
        "claim_ms": {"p50": ms(2, 0.5), "p99": ms(2, 0.99), "mean": mean_ms(2)},
        "lock_wait_ms": {"p50": ms(3, 0.5), "p99": ms(3, 0.99), "mean": mean_ms(3)},
        "lock_hold_ms": {"p50": ms(4, 0.5), "p99": ms(4, 0.99), "mean": mean_ms(4)},
        "foreign_ms": {"p50": ms(1, 0.5), "mean": mean_ms(1)},
        "finish_ms": {"p50": ms(5, 0.5), "mean": mean_ms(5)},
        "cycle_ms_mean": round(1000 * statistics.fmean(r[1] + r[2] + r[5] for r in recs), 3) if recs else None,
        "errors": errors,
        "server_status_delta": delta,
        "server_lock_waits_per_claim": round(delta["Innodb_row_lock_waits"] / claims, 3) if claims else None,
        "server_lock_wait_ms_per_claim": round(delta["Innodb_row_lock_time"] / claims, 3) if claims else None,
        "cpu": {"client_cores": round(client_cpu / seconds, 3), "server_cores": round((srv1 - srv0) / seconds, 3),
                "machine_busy_cores": round(ncpu * (busy1 - busy0) / (tot1 - tot0), 3) if tot1 > tot0 else None,
                "client_cpu_ms_per_claim": round(1000 * client_cpu / claims, 3) if claims else None,
                "server_cpu_ms_per_claim": round(1000 * (srv1 - srv0) / claims, 3) if claims else None},
        "load_before": load,
        "code": code,
        "at": datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S"),
    }


# ------------------------------------------------------------------ the tables

def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(points: list[dict[str, Any]], fits: dict[str, Any], alones: dict[str, Any], main_mode: str,
          preds: list[dict[str, Any]], ncpu: int) -> list[str]:
    rows = ["| tasks as | concurrent tasks | claims/s | claim p50 / p99 ms | of which lock wait p50 / p99 ms | "
            "lock hold p50 ms | InnoDB row-lock waits per claim (server) | InnoDB lock wait ms per claim (server) | "
            "client CPU ms per claim | server CPU ms per claim | cores busy: clients / server / whole machine | "
            "model claims/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in points:
        c = p["cpu"]
        model = fits[p["mode"]]["model_claims_per_s"].get(str(p["workers"]))
        rows.append(
            f"| {p['mode']} | {p['workers']} | {p['claims_per_s']:.0f} | {_f(p['claim_ms']['p50'])} / "
            f"{_f(p['claim_ms']['p99'])} | {_f(p['lock_wait_ms']['p50'])} / {_f(p['lock_wait_ms']['p99'])} | "
            f"{_f(p['lock_hold_ms']['p50'])} | {_f(p['server_lock_waits_per_claim'], 2)} | "
            f"{_f(p['server_lock_wait_ms_per_claim'])} | {_f(c['client_cpu_ms_per_claim'])} | "
            f"{_f(c['server_cpu_ms_per_claim'])} | {_f(c['client_cores'], 2)} / {_f(c['server_cores'], 2)} / "
            f"{_f(c['machine_busy_cores'], 2)} of {ncpu} | {_f(model, 0)} |")
    rows += [""]
    for mode, fit in fits.items():
        alone = alones[mode]
        rows += [f"Model fit, tasks as {mode} (least squares on claims/s, Z = 0): lock service time S = "
                 f"{1000 * fit['S_s']:.2f} ms per claim, parallel work P = {1000 * fit['P_s']:.2f} ms per cycle, "
                 f"relative RMS error {100 * fit['rel_rms']:.1f} %; 1/S = {1 / fit['S_s']:.0f} claims/s. One task "
                 f"alone: S = its mean lock hold = {1000 * alone['S_s']:.2f} ms, P = 1/X(1) - S = "
                 f"{1000 * alone['P_s']:.2f} ms; 1/S = {1 / alone['S_s']:.0f} claims/s.", ""]
    rows += [f"Model predictions (not measurements), from the {main_mode} sweep. *fit*: S and P as fitted here "
             "(this machine's CPU limit counted as the lock's); *uncontended*: S and P of one task alone (tasks "
             "on cores of their own, a server with headroom):", "",
             "| S, P | executors | trial length | offered lock utilization N·S/(S+P+Z) | lock utilization reached | "
             "claims/s | mean wait for the lock per claim | executors' time in trials | saturation N* = (S+P+Z)/S |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for q in preds:
        rows.append(f"| {q['params']} | {q['executors']:,} | {q['trial_s']:g} s | {q['offered_utilization']:.2f} | "
                    f"{q['utilization']:.2f} | {q['claims_per_s']:.0f} | {1000 * q['claim_wait_s']:.1f} ms | "
                    f"{100 * q['trial_share']:.1f} % | {q['saturation_executors']:,.0f} |")
    return rows


def sizing_table(sizing: list[dict[str, Any]]) -> list[str]:
    trials = sorted({q["trial_s"] for q in sizing})
    rows = ["", f"Up to which cluster the design holds (model): the most executors at which the study-row lock is at "
            f"most {HOLDS_AT:.0%} busy (a claim then waits about S or less), and the saturation point N* = "
            f"(S+P+Z)/S, by trial length Z. A network round trip (RTT) adds {LOCK_ROUND_TRIPS} RTT to S and "
            f"{OTHER_ROUND_TRIPS} RTT to P:", "",
            "| S, P | S ms | P ms | " + " | ".join(f"Z = {z:g} s: holds to / N*" for z in trials) + " |",
            "| --- | ---: | ---: | " + " | ".join("---:" for _ in trials) + " |"]
    for name in dict.fromkeys(q["params"] for q in sizing):
        qs = {q["trial_s"]: q for q in sizing if q["params"] == name}
        first = next(iter(qs.values()))
        rows.append(f"| {name} | {1000 * first['S_s']:.2f} | {1000 * first['P_s']:.2f} | " + " | ".join(
            f"{qs[z]['holds_up_to']:,} / {qs[z]['saturation_executors']:,.0f}" for z in trials) + " |")
    return rows


def derive(out: dict[str, Any]) -> None:
    """points (the median round of each mode and N), the fits, the predictions and the table, from
    out["runs"]. The predictions use the processes' fit (threads of one process share its GIL)."""
    runs = out["runs"]
    ncpu = int(out["machine"].get("nproc") or os.cpu_count() or 1)
    modes = [m for m in ("processes", "threads") if any(p.get("mode", "threads") == m for p in runs)]
    points, fits, alones = [], {}, {}
    for mode in modes:
        mine = [p for p in runs if p.get("mode", "threads") == mode]
        ns = sorted({p["workers"] for p in mine})
        group = []
        for n in ns:  # one point per N: the median round by claims/s
            rs = sorted((p for p in mine if p["workers"] == n), key=lambda p: p["claims_per_s"])
            point = dict(rs[len(rs) // 2], mode=mode)
            point["claims_per_s_rounds"] = [p["claims_per_s"] for p in rs]
            group.append(point)
        points += group
        fits[mode] = fit_lock_model([(p["workers"], p["claims_per_s"]) for p in group])
        one = group[0]
        alones[mode] = uncontended(one["claims_per_s"] / one["workers"], one["lock_hold_ms"]["mean"] / 1000)
    main_mode = modes[0]
    fit, alone = fits[main_mode], alones[main_mode]
    preds = [dict(predict(fit["S_s"], fit["P_s"], e, z), params="fit")
             for z in PREDICT_TRIALS for e in PREDICT_EXECUTORS]
    preds += [dict(predict(alone["S_s"], alone["P_s"], e, z), params="uncontended")
              for z in PREDICT_TRIALS for e in PREDICT_EXECUTORS]
    rtt = f"{1000 * NETWORK_RTT_S:g} ms RTT"
    variants = {"uncontended": alone, f"uncontended + {rtt}": with_network(alone, NETWORK_RTT_S),
                "fit": fit, f"fit + {rtt}": with_network(fit, NETWORK_RTT_S)}
    sizing = [{"params": name, "S_s": v["S_s"], "P_s": v["P_s"], "trial_s": z,
               "holds_up_to": holds_up_to(v["S_s"], v["P_s"], z),
               "saturation_executors": (v["S_s"] + v["P_s"] + z) / v["S_s"]}
              for name, v in variants.items() for z in PREDICT_TRIALS]
    out.update(points=points, fits=fits, uncontended=alones, model_mode=main_mode, predictions=preds, sizing=sizing)
    # Other work on the machine during a window: the whole machine's busy cores less this run's
    # (the load average before a point would count the previous point's own 64 processes).
    other = [p["cpu"]["machine_busy_cores"] - p["cpu"]["client_cores"] - p["cpu"]["server_cores"] for p in runs
             if p["cpu"]["machine_busy_cores"] is not None]
    ci = sum(1 for p in runs if p["load_before"]["ci_running"])
    versions = sorted({p["code"]["claim_path_sha256"] for p in runs if "code" in p})
    out["code_versions"] = versions
    if len(versions) > 1:
        out["warning"] = f"the claim path's source changed during the run: {len(versions)} versions measured"
    out["machine_line"] = (
        f"{ncpu} cores ({out['machine'].get('cpu') or '?'}), shared with another engineer's work; the clients and "
        f"MariaDB {out['server']['version']} on the same cores, over 127.0.0.1; other work during a point's window: "
        f"median {statistics.median(other):.2f} cores, max {max(other):.2f} (whole machine busy less the clients "
        f"and the server); a CI run during {ci} of {len(runs)} points"
        + (f"; the runner at {runs[-1]['code']['commit']}" if "code" in runs[-1] else "")
        + ("; WARNING: " + out["warning"] if "warning" in out else "")) if other else None
    out["table"] = table(points, fits, alones, main_mode, preds, ncpu) + sizing_table(sizing)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8,16,32,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed wall seconds per point")
    parser.add_argument("--study-size", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="processes,threads",
                        help="tasks as processes (one each) and/or threads (over as many processes as cores)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cost-cluster-growth.json")
    parser.add_argument("--append", action="store_true",
                        help="add this run's rounds to the kept runs of --out (its command gets this one appended)")
    parser.add_argument("--resummarize", action="store_true",
                        help="re-derive the fit, predictions and table of --out from its kept runs (no measuring)")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "STUDY_ID", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return 0
    if args.resummarize:
        kept = json.loads(args.out.read_text(encoding="utf-8"))
        derive(kept)
        args.out.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
        print("\n".join(kept["table"]))
        return 0

    from run import machine

    ns = [int(s) for s in args.workers.split(",")]
    modes = args.modes.split(",")
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    server = Server()
    kept = json.loads(args.out.read_text(encoding="utf-8")) if args.append and args.out.exists() else None
    runs: list[dict[str, Any]] = []
    first = 1 + max((p["round"] for p in kept["runs"]), default=-1) if kept else 0
    try:
        for r in range(first, first + args.rounds):
            order = [(mode, n) for mode in modes for n in ns]
            if r % 2:
                order.reverse()
            for mode, n in order:
                p = measure(server, n, args.seconds, args.study_size, mode)
                p["round"] = r
                runs.append(p)
                print(f"round {r}: {mode:9} N={n:3d} {p['claims_per_s']:7.1f} claims/s, claim p50 "
                      f"{p['claim_ms']['p50']} "
                      f"p99 {p['claim_ms']['p99']} ms, lock wait p50 {p['lock_wait_ms']['p50']} ms, hold p50 "
                      f"{p['lock_hold_ms']['p50']} ms, InnoDB waits/claim {p['server_lock_waits_per_claim']}, "
                      f"cores {p['cpu']}, errors {p['errors']}", flush=True)
        server_info = {"version": server.version, "settings": server.settings}
    finally:
        server.stop()
    m = machine()
    if kept:
        runs = kept["runs"] + runs
    out = {
        "workload": "cost-cluster-growth",
        "title": "Cost as the cluster grows: claims against MariaDB at 1-64 concurrent tasks, study size fixed, "
                 "and a queueing model of the study-row lock",
        "command": (f".venv/bin/python bench/claim_concurrency.py --workers {args.workers} --seconds {args.seconds:g} "
                    f"--study-size {args.study_size} --rounds {args.rounds} --modes {args.modes}"
                    + (" --append" if kept else "")),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "machine": m,
        "server": server_info,
        "runs": runs,
    }
    if kept:
        out.update(command=kept["command"] + " && " + out["command"], started=kept["started"],
                   duration_s=round(kept["duration_s"] + out["duration_s"], 1))
    derive(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("\n".join(out["table"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
