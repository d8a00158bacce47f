"""`optuna-spark report` on the lab: run on the driver (as the runner account), the report comes
back as a tar on stdout (what `make report INVENTORY=...` does); its HTML renders with no network
in a real headless Chromium and shows its plots; the PNG files are valid images of a sensible
size; trials.csv has one row per trial with its host."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

from browser import dom, png_size, screenshot
from cluster_lib import on_driver_argv, runner


def test_a_report_of_a_cluster_study(study_name: str, tmp_path: Path) -> None:
    s = runner("tune", "--study", study_name, "--objective", "quadratic", "--n-trials", "24", "--output", "json")
    assert s.returncode == 0, s.stderr[-3000:]
    hosts = json.loads(s.stdout)["hosts"]
    proc = subprocess.run(on_driver_argv("optuna-spark", "report", "--study", study_name, "--output-dir", "-"),
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = tmp_path / "report"
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(out, filter="data")
    made = json.loads((out / "report.json").read_text())
    for plot in ("history", "importances", "parallel", "slice", "timeline-hosts"):
        assert plot in made["plots"], made
        width, height = png_size(out / f"{plot}.png")
        assert 300 <= width <= 3000 and 200 <= height <= 3000, (plot, width, height)
    with (out / "trials.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 24 and {r["state"] for r in table} == {"COMPLETE"}
    assert {r["host"] for r in table} == set(hosts), (set(r["host"] for r in table), hosts)
    assert all(float(r["duration_s"]) >= 0 for r in table)

    # Offline: every request Chromium would make off the file goes to a dead proxy.
    url = (out / "report.html").as_uri()
    page = dom(url, tmp_path / "profile", "--proxy-server=127.0.0.1:9")
    assert page.count('class="main-svg"') >= 5, "the report's plots did not render"
    # plotly.js itself names cdn.plot.ly (a topojson default): what matters is that nothing is loaded from it.
    assert not re.search(r"<(script|link)[^>]*\b(src|href)=[\"']?https?:", (out / "report.html").read_text())
    shot = screenshot(url, tmp_path / "profile2", "report.png", "--proxy-server=127.0.0.1:9", size="1300,2400")
    assert png_size(shot) == (1300, 2400)
