"""examples/assignment.ipynb: committed executed (QUICK mode on the real MNIST, small outputs,
no timing metadata), and it runs top to bottom.

The execution test starts a real Jupyter kernel (ipykernel's ``python3``) with
``NUMNET_NOTEBOOK_QUICK=1 NUMNET_NOTEBOOK_DATA=synthetic``, so the notebook uses synthetic
digits (no download) and finishes in seconds; it clears the committed outputs first and reads
only the ones it makes. After the notebook's own cells, the test appends one probe cell that
prints the notebook's results as JSON, and checks them: every run made, learning above chance,
the runner reproducing the notebook's loop, the Q1 formulas matching numnet's backward pass.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "assignment.ipynb"

PROBE = """
import json
print("PROBE" + json.dumps({
    "quick": QUICK,
    "runs": {f"{m}-setting{k}": {"status": r["status"], "updates": r["updates"],
                                 "evaluations": len(r["test_accuracy"]),
                                 "train": r["train_accuracy"], "test": r["test_accuracy"]}
             for (m, k), r in runs.items()},
    "results_models": sorted(results),
    "runner_agrees": runner_agrees,
    "q1_errors": q1_errors,
    "verdicts": {f"{m}-setting{k}": v for (m, k), v in verdicts.items()},
    "summary_table": summary_table,
}))
"""


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


#: The most a committed notebook and one of its images may weigh (readable on GitHub).
MAX_NOTEBOOK_BYTES = 1_500_000
MAX_IMAGE_BASE64 = 300_000


def test_notebook_is_valid_and_committed_executed_with_small_outputs() -> None:
    nb = read_notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.nbformat_minor >= 5  # "nbformat 5": cells carry ids
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert NOTEBOOK.stat().st_size < MAX_NOTEBOOK_BYTES
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # executed top to bottom, in order, without errors, in QUICK mode on the real MNIST
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    for cell in code:
        assert "execution" not in cell.metadata, f"cell {cell.id}: strip the timing metadata"
        for output in cell.outputs:
            assert output.output_type != "error", cell.id
            png = output.get("data", {}).get("image/png", "")
            assert len(png) < MAX_IMAGE_BASE64, f"cell {cell.id}: image too large"
    printed = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "QUICK = True, SYNTHETIC = False" in printed
    assert "train      images (55000, 784)" in printed  # the real MNIST split
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "NUMNET_NOTEBOOK_QUICK" in tagged[0].source


def test_notebook_links_resolve() -> None:
    nb = read_notebook()
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert "../docs/derivations.md" in targets  # Q1's answer
    assert "numnet compare" in text  # Q2's answer
    for target in targets:
        if not target.startswith(("http://", "https://", "#")):
            assert (NOTEBOOK.parent / target).resolve().exists(), f"dead link {target}"


def test_notebook_runs_top_to_bottom_in_quick_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("NUMNET_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("NUMNET_NOTEBOOK_DATA", "synthetic")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernelspec says "python": make it this interpreter (the venv's in CI).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    nb = read_notebook()
    for cell in nb.cells:  # what it checks below is what this run makes, not what is committed
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="test-probe"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    outputs = {cell.id: cell.outputs for cell in nb.cells if cell.cell_type == "code"}
    stream = "".join(o.get("text", "") for o in outputs["test-probe"] if o.output_type == "stream")
    probe = json.loads(stream.split("PROBE", 1)[1])
    assert probe["quick"] is True

    # Every run of the protocol was made, in the assignment's format as well.
    runs = probe["runs"]
    assert sorted(runs) == sorted(f"model{m}-setting{k}" for m in range(1, 5) for k in range(1, 4))
    assert probe["results_models"] == ["model1", "model2", "model3", "model4"]
    # QUICK: 2,000 synthetic train examples and one epoch per run, so 21 updates (the 21st
    # completes the epoch and still trains) and an evaluation every 5 updates.
    for run_id, run in runs.items():
        assert run["status"] == "ok", run_id
        assert run["updates"] == 21 and run["evaluations"] == 4, run_id
    # Learning: far above chance (0.1) on the synthetic digits after these 21 updates.
    for run_id in ("model1-setting2", "model2-setting2", "model3-setting1"):
        assert runs[run_id]["test"][-1] > 0.5, (run_id, runs[run_id]["test"])
    assert runs["model4-setting3"]["test"][-1] > 0.3, runs["model4-setting3"]["test"]
    # The library's runner reproduces the notebook's loop; Q1's formulas match numnet.
    assert probe["runner_agrees"] is True
    assert set(probe["q1_errors"]) == {"dL/dW", "dL/db", "dL/dx"}
    assert max(probe["q1_errors"].values()) < 1e-12
    assert set(probe["verdicts"]) == set(runs)
    assert "| Model 4 |" in probe["summary_table"]

    # The figures were drawn: the sample digits and the 3 x 4 learning curves.
    for cell_id in ("data-show", "curves"):
        assert any("image/png" in o.get("data", {}) for o in outputs[cell_id]), cell_id
    summary = [o for o in outputs["summary"] if "text/markdown" in o.get("data", {})]
    assert summary and "Final test accuracy" in summary[0]["data"]["text/markdown"]
