#!/usr/bin/python3
"""Before playbooks/restore.yml drops Optuna's database: what runs, and what the restore loses.

Read only. Prints one JSON object:
- database_exists: whether the database is there now;
- now, dump: the number of studies and of trials in the database and in the dump;
- lost: per study of the database, what the dump does not bring back: its trials that the dump
  lacks (`trials`, their numbers in `numbers`), those whose state in the dump is an earlier one
  (`reverted`, e.g. COMPLETE now and RUNNING in the dump: their results are lost), and whether the
  dump lacks the study altogether (`whole_study`);
- running: what says that a study runs now:
  `processes`: processes of the runner account on this host (the runner's commands and the Spark
  driver each run starts), `applications`: applications the Spark master lists as running whose
  name is the runner's or the library's (`optuna-spark`, `optuna-spark:<study>`), `live_trials`:
  per study, trials in state RUNNING whose last heartbeat (or, before a first one, the time the
  runner bound them) is more recent than the staleness window stored with the runner's claim
  (`grace`: after it the runner itself takes the trial for dead; 60 s for a trial the runner did
  not claim), by the database's clock in UTC, as the runner reads it.
  A RUNNING trial with no heartbeat at all (Optuna without heartbeats) is not counted.

The dump is read as mysqldump writes it: `CREATE TABLE` gives each table's columns, and every
`INSERT INTO` statement its rows (on one line, or one row a line as MariaDB 10.11 writes them). Usage:
    restore-check.py --socket S --database D --dump FILE.sql.gz [--runner-user U] [--spark-ui URL]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import urllib.request

import pymysql

FINISHED = {"COMPLETE", "PRUNED", "FAIL"}
ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
CREATE = re.compile(r"^CREATE TABLE `([^`]+)` \(")
COLUMN = re.compile(r"^\s+`([^`]+)` ")
INSERT = re.compile(r"^INSERT INTO `([^`]+)` VALUES\s*")


def rows(values: str):
    """The rows of an INSERT's VALUES list: tuples of str (NULL as None)."""
    i, n = 0, len(values)
    while i < n:
        if values[i] != "(":
            i += 1
            continue
        i += 1
        row: list[str | None] = []
        while True:
            if values.startswith("_binary ", i):
                i += len("_binary ")
            if values[i] == "'":
                i += 1
                out = []
                while values[i] != "'":
                    if values[i] == "\\":
                        i += 1
                        out.append(ESCAPES.get(values[i], values[i]))
                    else:
                        out.append(values[i])
                    i += 1
                i += 1
                row.append("".join(out))
            else:
                j = i
                while values[j] not in ",)":
                    j += 1
                token = values[i:j]
                row.append(None if token == "NULL" else token)
                i = j
            if values[i] == ")":
                i += 1
                break
            i += 1  # the comma
        yield tuple(row)


def read_dump(path: str) -> dict[str, list[dict[str, str | None]]]:
    """The rows of the tables `studies` and `trials` in a mysqldump file (gzipped)."""
    wanted = {"studies", "trials"}
    columns: dict[str, list[str]] = {}
    tables: dict[str, list[dict[str, str | None]]] = {t: [] for t in wanted}
    current = None
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as dump:
        for line in dump:
            m = CREATE.match(line)
            if m:
                current = m.group(1) if m.group(1) in wanted else None
                if current:
                    columns[current] = []
                continue
            if current:
                c = COLUMN.match(line)
                if c:
                    columns[current].append(c.group(1))
                elif line.startswith(")"):
                    current = None
                continue
            m = INSERT.match(line)
            if m and m.group(1) in wanted:
                # One statement: on this line (MySQL), or one row a line up to the ";" (MariaDB 10.11).
                # A value never spans lines (mysqldump writes a newline in a value as \n).
                statement = [line[m.end():].rstrip("\n")]
                while not statement[-1].endswith(";"):
                    statement.append(next(dump).rstrip("\n"))
                names = columns[m.group(1)]
                tables[m.group(1)].extend(dict(zip(names, r, strict=True)) for r in rows("".join(statement)[:-1]))
    return tables


def trials_by_study(studies, trials) -> dict[str, dict[int, str]]:
    names = {str(s["study_id"]): s["study_name"] for s in studies}
    out: dict[str, dict[int, str]] = {name: {} for name in names.values()}
    for t in trials:
        study = names.get(str(t["study_id"]), f"<study {t['study_id']}>")
        out.setdefault(study, {})[int(t["number"])] = str(t["state"])
    return out


def spans(numbers: list[int]) -> str:
    """1, 2, 3, 7 -> '1-3, 7'."""
    out, start, prev = [], None, None
    for n in sorted(numbers) + [None]:
        if start is not None and (n is None or n != prev + 1):
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(out)


def losses(now: dict[str, dict[int, str]], dump: dict[str, dict[int, str]]) -> list[dict]:
    """Per study of the database now, what restoring `dump` loses (see the module's docstring)."""
    out = []
    for study, now_trials in sorted(now.items()):
        then = dump.get(study)
        missing = [n for n in now_trials if then is None or n not in then]
        reverted = [n for n, state in now_trials.items()
                    if then is not None and n in then and state in FINISHED and then[n] not in FINISHED]
        if then is None or missing or reverted:
            out.append({"study": study, "whole_study": then is None, "trials": len(missing),
                        "numbers": spans(missing), "reverted": len(reverted), "reverted_numbers": spans(reverted)})
    return out


def database_now(socket: str, database: str):
    conn = pymysql.connect(unix_socket=socket, user="root", charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
            tables = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (database,))
            exists = cur.fetchone() is not None
            if not {"studies", "trials"} <= tables:
                return exists, [], [], {}
            q = f"`{database.replace('`', '``')}`"
            cur.execute(f"SELECT study_id, study_name FROM {q}.studies")
            studies = [{"study_id": str(a), "study_name": b} for a, b in cur.fetchall()]
            cur.execute(f"SELECT study_id, number, state FROM {q}.trials")
            trials = [{"study_id": str(a), "number": b, "state": c} for a, b, c in cur.fetchall()]
            live: dict[str, int] = {}
            if "trial_heartbeats" in tables:
                claims = "optuna_spark_claims" in tables
                cur.execute(
                    f"SELECT s.study_name, COUNT(*) FROM {q}.trials t JOIN {q}.studies s ON s.study_id = t.study_id "
                    f"LEFT JOIN {q}.trial_heartbeats h ON h.trial_id = t.trial_id "
                    + (f"LEFT JOIN {q}.optuna_spark_claims c ON c.trial_id = t.trial_id " if claims else "")
                    + "WHERE t.state = 'RUNNING' AND TIMESTAMPDIFF(SECOND, "
                    + ("COALESCE(h.heartbeat, c.bound_at)" if claims else "h.heartbeat")
                    + ", NOW()) <= " + ("COALESCE(c.grace, 60)" if claims else "60")
                    + " GROUP BY s.study_name")
                live = {name: int(n) for name, n in cur.fetchall()}
            return exists, studies, trials, live
    finally:
        conn.close()


def processes(user: str) -> list[str]:
    if not user:
        return []
    proc = subprocess.run(["pgrep", "-a", "-u", user], capture_output=True, text=True)
    # 1: none; an account that does not exist (pgrep says "invalid user name") runs nothing either
    lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    return [line if len(line) <= 80 else line[:77] + "..." for line in lines]  # pid and command line


def applications(url: str) -> list[str]:
    if not url:
        return []
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/json/", timeout=10) as resp:
            data = json.load(resp)
    except (OSError, ValueError):
        return []  # no master answering: no application runs on it
    return [f"{a.get('name')} ({a.get('id')})" for a in data.get("activeapps", [])
            if str(a.get("name", "")) == "optuna-spark" or str(a.get("name", "")).startswith("optuna-spark:")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--runner-user", default="")
    p.add_argument("--spark-ui", default="")
    a = p.parse_args()

    exists, studies, trials, live = database_now(a.socket, a.database)
    dump = read_dump(a.dump)
    print(json.dumps({
        "database_exists": exists,
        "now": {"studies": len(studies), "trials": len(trials)},
        "dump": {"studies": len(dump["studies"]), "trials": len(dump["trials"])},
        "lost": losses(trials_by_study(studies, trials), trials_by_study(dump["studies"], dump["trials"])),
        "running": {"processes": processes(a.runner_user), "applications": applications(a.spark_ui),
                    "live_trials": [{"study": s, "trials": n} for s, n in sorted(live.items())]},
    }))


if __name__ == "__main__":
    main()
