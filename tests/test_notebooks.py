"""Execute every notebook end to end with its small default parameters.

Each notebook has one cell tagged ``parameters``; the test appends ``OUT = <tmp dir>`` to it,
runs the notebook in a fresh kernel (ipykernel's native ``python3`` spec resolves to this
interpreter), and checks what it printed, plotted and wrote.
"""

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(name: str, out: Path, monkeypatch, timeout: int = 180):
    """Execute notebooks/<name> with OUT=out; return (printed text, number of PNG outputs)."""
    # the kernel inherits this environment: find the packages, no progress bars, no GUI
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: extra threads only add overhead
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    params[0].source += f"\nOUT = {str(out)!r}"
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


def test_notebook_01_map_and_sweep(tmp_path, monkeypatch):
    text, images = run_notebook("01_map_and_sweep.ipynb", tmp_path, monkeypatch)
    assert "points computed" in text and "on crossbars" in text
    assert images == 2
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6


def test_notebook_02_correctnet(tmp_path, monkeypatch):
    text, images = run_notebook("02_correctnet.ipynb", tmp_path, monkeypatch)
    assert "fresh compensated net equals the original: True" in text
    assert "candidates:" in text, text
    assert "exhaustive: {'a': 1.0, 'b': 1.0}" in text, text
    assert images == 2
    report = json.loads((tmp_path / "run02" / "report.json").read_text())
    assert set(report["variants"]) == {"plain", "lipschitz", "variation_aware", "correctnet",
                                       "variation_aware_compensated", "digital_baseline",
                                       "digital_baseline_plain"}
