"""`optuna-spark report` on studies that real spark-submit runs made: the files, the table, the
PNGs, an HTML page that renders offline in a real headless Chromium, the tar on stdout (what
`make report` extracts), a multi-objective study's Pareto front, and bad inputs in one line."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

VENV_BIN = Path(sys.executable).parent
PLOTS = ("history", "importances", "parallel", "slice", "timeline-hosts")
# Chromium headless with no network of its own; every request off the file goes to a dead proxy.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--proxy-server=127.0.0.1:9"]


def cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    env.pop("OPTUNA_SPARK_CONFIG", None)
    env.pop("OPTUNA_SPARK_STORAGE_PASSWORD", None)
    return subprocess.run([str(VENV_BIN / "optuna-spark"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with two studies that `tune` ran: `one` (the seed's quadratic, 24 trials) and
    `two` (two objectives, 16 trials)."""
    home = tmp_path_factory.mktemp("report-studies")
    done = cli(home, "tune", "--study", "one", "--n-trials", "24", "--n-jobs", "2", "--seed", "3", "--output", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    (home / "two_obj.py").write_text(
        "def objective(trial):\n"
        "    x = trial.suggest_float('x', 0, 5)\n"
        "    y = trial.suggest_float('y', 0, 3)\n"
        "    return 4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2\n")
    done = cli(home, "tune", "--study", "two", "--objective", "two_obj.py:objective", "--direction", "minimize",
               "--direction", "minimize", "--n-trials", "16", "--sampler", "nsga2", "--seed", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is None or len(colours) > 20, f"{path} is (nearly) blank"
        return image.size


def render(page: Path, profile: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("Chromium is not installed: apt-get install chromium (make system-deps)", pytrace=False)
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def plots_drawn(dom: str) -> dict[str, int]:
    """How many plotly SVG layers each plot's div holds in the rendered page."""
    out = {}
    for chunk in dom.split('id="plot-')[1:]:
        stem = chunk.split('"', 1)[0]
        out[stem] = chunk.split("<section", 1)[0].count('class="main-svg"')
    return out


def no_remote_resources(text: str) -> None:
    """No element of the page loads anything from a network: every src/href is local or inline.
    (plotly.js itself, embedded, holds CDN addresses as defaults of features these plots do not
    use, such as map tiles; they are strings in a script, not requests: the render below proves it.)"""
    from html.parser import HTMLParser

    found: list[tuple[str, str]] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in ("src", "href", "data") and value and re.match(r"\s*(https?:)?//", value):
                    found.append((tag, value))

    Links().feed(text)
    assert found == [], found
    assert not re.search(r"<script[^>]*\ssrc=", text, re.I), "a script is loaded from elsewhere"


def test_a_local_studys_report(studies: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = cli(studies, "report", "--study", "one", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("report of study 'one': 24 trials, 5 plots") and str(out / "report.html") in proc.stdout
    made = json.loads((out / "report.json").read_text())
    assert made["plots"] == list(PLOTS) and made["skipped"] == {}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.html", "report.json", "trials.csv", *(f"{p}.png" for p in PLOTS)])

    import optuna

    trials = optuna.load_study(study_name="one", storage=f"sqlite:///{studies / 'work' / 'optuna.db'}").trials
    with (out / "trials.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 24 == len(trials)
    for row, trial in zip(table, trials):
        assert int(row["number"]) == trial.number and row["state"] == "COMPLETE"
        assert float(row["value"]) == pytest.approx(trial.value)
        assert float(row["param_x"]) == pytest.approx(trial.params["x"])
        assert float(row["param_y"]) == pytest.approx(trial.params["y"])
        assert row["host"] == trial.user_attrs["host"] and row["host"]
        assert float(row["duration_s"]) >= 0

    for plot in PLOTS:
        width, height = png_size(out / f"{plot}.png")
        assert 300 <= width <= 3000 and 200 <= height <= 3000, (plot, width, height)

    page = (out / "report.html").read_text()
    no_remote_resources(page)
    assert page.count("<script") >= len(PLOTS) and len(page) > 1_000_000  # plotly.js is in the page
    drawn = plots_drawn(render(out / "report.html", tmp_path / "profile"))
    assert set(drawn) == set(PLOTS) and all(n >= 1 for n in drawn.values()), drawn


def test_the_report_as_a_tar_on_stdout_is_what_make_report_extracts(studies: Path, tmp_path: Path) -> None:
    raw = subprocess.run([str(VENV_BIN / "optuna-spark"), "report", "--study", "one", "--output-dir", "-"],
                         cwd=studies, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert raw.returncode == 0, raw.stderr.decode()[-3000:]
    with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:  # stdout is a tar, nothing else
        names = sorted(m.name for m in tar.getmembers())
        assert all(m.isfile() and "/" not in m.name for m in tar.getmembers())
    assert names == sorted(["report.html", "report.json", "trials.csv", *(f"{p}.png" for p in PLOTS)])
    assert raw.stderr.decode().strip().splitlines() == [
        "optuna-spark: report of study 'one': 24 trials, 5 plots (history, importances, parallel, slice, "
        "timeline-hosts) in stdout (tar)"]

    # The Makefile's pipeline, through a shell as make runs it.
    target = tmp_path / "extracted"
    target.mkdir()
    piped = subprocess.run(["bash", "-c", 'set -o pipefail; "$0" report --study one --output-dir - | tar -x -C "$1"',
                            str(VENV_BIN / "optuna-spark"), str(target)], cwd=studies, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert sorted(p.name for p in target.iterdir()) == names
    assert len(list(csv.DictReader((target / "trials.csv").open()))) == 24


def test_a_multi_objective_study_gets_its_pareto_front(studies: Path, tmp_path: Path) -> None:
    out = tmp_path / "mo"
    proc = cli(studies, "report", "--study", "two", "--output-dir", str(out), "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = json.loads(proc.stdout)
    assert "pareto-front" in made["plots"], made
    for stem in ("history-0", "history-1", "importances-0", "importances-1", "pareto-front", "timeline-hosts"):
        assert stem in made["plots"], made
        width, height = png_size(out / f"{stem}.png")
        assert 300 <= width <= 3000 and 200 <= height <= 3000, (stem, width, height)
    with (out / "trials.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 16 and {"value_0", "value_1"} <= set(table[0])
    page = (out / "report.html").read_text()
    no_remote_resources(page)
    drawn = plots_drawn(render(out / "report.html", tmp_path / "profile"))
    assert drawn.get("pareto-front", 0) >= 1, drawn


def one_line(proc: subprocess.CompletedProcess[str], status: int, *fragments: str) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert proc.stdout == ""


def test_bad_inputs_are_one_line(studies: Path, tmp_path: Path) -> None:
    one_line(cli(studies, "report", "--study", "ghost", "--output-dir", str(tmp_path / "g")), 1,
             "optuna-spark: no study named 'ghost' in this storage")
    assert not (tmp_path / "g").exists()
    (tmp_path / "a-file").write_text("x")
    one_line(cli(studies, "report", "--study", "one", "--output-dir", str(tmp_path / "a-file" / "r")), 2,
             "optuna-spark: error: --output-dir", "a-file is not a directory")
    one_line(cli(studies, "report", "--study", "one", "--output-dir", str(tmp_path / "a-file")), 2,
             "exists and is not a directory")
    # A folder the system will not let anyone create (root included).
    one_line(cli(studies, "report", "--study", "one", "--output-dir", "/proc/optuna-spark-report"), 1,
             "optuna-spark: cannot write the report to /proc/optuna-spark-report")
    # No storage at all: nothing is created, not even an empty SQLite file.
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(cli(empty, "report", "--study", "one", "--output-dir", "-"), 1, "does not exist (no file")
    assert list(empty.iterdir()) == []
