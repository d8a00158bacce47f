"""The example notebooks (examples/*.ipynb) run headless, top to bottom, in a real Jupyter kernel
of this venv: each runs its study on a local Spark session, and leaves the result table, a plot
and the trials it asked for in its SQLite study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import optuna
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

pytestmark = pytest.mark.spark

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N_TRIALS = 12


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `python3` kernelspec that runs this interpreter (the venv's), first on JUPYTER_PATH so
    that no user or system spec of the same name shadows it, and a clean IPython profile. The
    kernel inherits this process's environment: the notebooks' settings go there too."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (optuna-spark tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the plot
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    monkeypatch.setenv("OPTUNA_SPARK_EXAMPLE_MASTER", "local[2]")
    monkeypatch.setenv("OPTUNA_SPARK_EXAMPLE_TRIALS", str(N_TRIALS))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    work = tmp_path / "work"
    work.mkdir()
    return work


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


@pytest.mark.parametrize(("notebook", "study_name"), [
    ("optuna-spark-xgboost.ipynb", "xgboost-wine"),
    ("optuna-spark-dataframe.ipynb", "xgboost-wine-dataframe"),
])
def test_the_notebook_runs_its_study(notebook: str, study_name: str, kernel_env: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    storage = f"sqlite:///{kernel_env / 'study.db'}"
    monkeypatch.setenv("OPTUNA_SPARK_EXAMPLE_STORAGE", storage)
    nb = nbformat.read(EXAMPLES / notebook, as_version=4)
    assert not outputs(nb), f"{notebook} is committed with outputs: clear them"
    assert nb.metadata.kernelspec.name == "python3"

    # Raises CellExecutionError (the cell's traceback) on the first cell that fails.
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(kernel_env)}}).execute()

    study = optuna.load_study(study_name=study_name, storage=storage)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.COMPLETE] * N_TRIALS, states
    assert sorted(p.name for p in kernel_env.glob("*.db")) == ["study.db"]  # OPTUNA_SPARK_EXAMPLE_STORAGE's

    outs = outputs(nb)
    html = [o.data["text/html"] for o in outs if o.output_type in ("execute_result", "display_data")
            and "text/html" in o.get("data", {})]
    assert any("optuna-spark-result" in h for h in html), html
    table = next(h for h in html if "optuna-spark-result" in h)
    assert f"<td style='text-align:left'>{N_TRIALS}</td>" in table  # trials run by this call
    assert any("image/png" in o.get("data", {}) for o in outs if o.output_type == "display_data"), \
        [o.output_type for o in outs]
    printed = "".join(o.text for o in outs if o.output_type == "stream" and o.name == "stdout")
    assert "best RMSE" in printed and "learning_rate" in printed, printed
