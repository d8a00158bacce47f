"""roles/mysql/files/restore-check.py, the part of playbooks/restore.yml that says what a restore
loses and whether a study runs: it reads a dump as mysqldump writes it (a statement on one line, as
MySQL's does, or one row a line, as MariaDB 10.11's does; study names with quotes, backslashes,
commas and parentheses included), compares it with the database study by study and trial by trial,
and asks the Spark master for the runner's and the library's applications. The lab test
(tests/day2/test_3_backup_restore.py) runs it on a real dump and a real server."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import json
import threading
from pathlib import Path

from ansible_lib import REPO

SCRIPT = REPO / "roles" / "mysql" / "files" / "restore-check.py"

DUMP = r"""-- MariaDB dump 10.19  Distrib 10.11.14-MariaDB, for debian-linux-gnu (x86_64)
/*!40000 DROP DATABASE IF EXISTS `optuna`*/;
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `optuna` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin */;
USE `optuna`;
DROP TABLE IF EXISTS `studies`;
CREATE TABLE `studies` (
  `study_id` int(11) NOT NULL AUTO_INCREMENT,
  `study_name` varchar(512) NOT NULL,
  PRIMARY KEY (`study_id`),
  UNIQUE KEY `ix_studies_study_name` (`study_name`)
) ENGINE=InnoDB AUTO_INCREMENT=4 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
LOCK TABLES `studies` WRITE;
INSERT INTO `studies` VALUES
(1,'plain'),
(2,'it\'s (a), b\\c'),
(3,'gone later');
UNLOCK TABLES;
CREATE TABLE `trial_params` (
  `param_id` int(11) NOT NULL AUTO_INCREMENT,
  `param_name` varchar(512) DEFAULT NULL
) ENGINE=InnoDB;
INSERT INTO `trial_params` VALUES (1,'x'),(2,'y');
CREATE TABLE `trials` (
  `trial_id` int(11) NOT NULL AUTO_INCREMENT,
  `number` int(11) DEFAULT NULL,
  `study_id` int(11) DEFAULT NULL,
  `state` enum('RUNNING','COMPLETE','PRUNED','FAIL','WAITING') NOT NULL,
  `datetime_start` datetime(6) DEFAULT NULL,
  `datetime_complete` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`trial_id`)
) ENGINE=InnoDB AUTO_INCREMENT=6 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO `trials` VALUES (1,0,1,'COMPLETE','2026-12-01 10:00:00.000000','2026-12-01 10:00:01.000000'),\
(2,1,1,'RUNNING','2026-12-01 10:00:00.000000',NULL),(3,0,2,'FAIL',NULL,NULL),(4,0,3,'COMPLETE',NULL,NULL);
-- Dump completed on 2026-12-07 16:00:00
""".replace("\\\n", "")


def _module():
    spec = importlib.util.spec_from_file_location("restore_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dump_is_read_as_mysqldump_writes_it(tmp_path: Path) -> None:
    rc = _module()
    path = tmp_path / "optuna-20261207T160000Z.sql.gz"
    path.write_bytes(gzip.compress(DUMP.encode()))
    tables = rc.read_dump(str(path))
    assert [s["study_name"] for s in tables["studies"]] == ["plain", "it's (a), b\\c", "gone later"]
    assert rc.trials_by_study(tables["studies"], tables["trials"]) == {
        "plain": {0: "COMPLETE", 1: "RUNNING"}, "it's (a), b\\c": {0: "FAIL"}, "gone later": {0: "COMPLETE"}}


def test_what_a_restore_loses_study_by_study() -> None:
    rc = _module()
    dump = {"plain": {0: "COMPLETE", 1: "RUNNING"}, "it's (a), b\\c": {0: "FAIL"}, "gone later": {0: "COMPLETE"}}
    now = {"plain": {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE", 3: "RUNNING", 5: "FAIL"},
           "it's (a), b\\c": {0: "FAIL"},
           "new": {0: "COMPLETE", 1: "COMPLETE"}}
    assert rc.losses(now, dump) == [
        {"study": "new", "whole_study": True, "trials": 2, "numbers": "0-1", "reverted": 0, "reverted_numbers": ""},
        {"study": "plain", "whole_study": False, "trials": 3, "numbers": "2-3, 5", "reverted": 1,
         "reverted_numbers": "1"},
    ]
    assert rc.losses(dump, dump) == []


def test_the_spark_applications_of_the_runner_and_the_library_count_as_a_running_study() -> None:
    rc = _module()
    master = {"activeapps": [{"id": "app-1", "name": "optuna-spark:wine"}, {"id": "app-2", "name": "optuna-spark"},
                             {"id": "app-3", "name": "etl-nightly"}, {"id": "app-4", "name": "optuna-sparkle"}]}

    class Master(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(master if self.path == "/json/" else {}).encode()
            self.send_response(200 if self.path == "/json/" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Master)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert rc.applications(url) == ["optuna-spark:wine (app-1)", "optuna-spark (app-2)"]
        assert rc.applications(url + "/") == rc.applications(url)
    finally:
        server.shutdown()
        server.server_close()
    # no master answering (Spark stopped, or left to the site): no application of ours runs on it
    assert rc.applications(url) == []
    assert rc.applications("") == []
