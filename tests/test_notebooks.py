"""Both notebooks run end to end in a Jupyter kernel of this interpreter, on a tiny model."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from tests.helpers import TINY

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 180  # seconds per cell; the whole file takes well under a minute


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A ``python3`` kernelspec that runs this interpreter (the venv's), first on JUPYTER_PATH so
    it shadows any other ``python3`` kernel of the machine."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    return "python3"


def run_notebook(name: str, kernel: str, cwd: Path, **params) -> nbformat.NotebookNode:
    """Execute notebook ``name`` with its ``parameters`` cell replaced by ``params``, plus a last
    cell that prints the kernel's interpreter."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    declared = {t.id for node in ast.parse(cell.source).body for t in node.targets}
    assert set(params) <= declared, f"{name} has no parameters {set(params) - declared}"
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in params.items())
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    cwd.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    assert stdout(nb.cells[-1]).strip() == sys.executable  # the kernel ran this venv's Python
    return nb


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs(nb))


@pytest.mark.slow
def test_quickstart_notebook(tmp_path, kernel):
    workdir = tmp_path / "runs"
    nb = run_notebook(
        "01_quickstart.ipynb",
        kernel,
        tmp_path,
        ckpt_path=None,
        train_steps=3,
        num_samples=3,
        workdir=str(workdir),
        eval_videos=4,
        eval_frames=3,
        extra_overrides=TINY,
    )
    assert (workdir / "train").is_dir() and list(workdir.rglob("last.ckpt"))
    html = [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]
    assert any("<script" in h and "anim" in h for h in html), "no animation in the outputs"
    assert (workdir / "quickstart_samples.png").stat().st_size > 0
    (curves,) = workdir.glob("eval/*/curves.png")
    assert curves.stat().st_size > 0
    metrics = json.loads((curves.parent / "metrics.json").read_text())
    assert (metrics["protocol"]["num_videos"], metrics["protocol"]["num_samples"]) == (4, 3)
    assert pngs(nb) >= 2  # the sample grid and the curves
    text = "".join(stdout(c) for c in nb.cells if c.cell_type == "code")
    assert "ssim_copy_last" in text and "ssim_black" in text


@pytest.mark.slow
def test_learned_prior_notebook(tmp_path, kernel):
    nb = run_notebook(
        "02_learned_prior.ipynb",
        kernel,
        tmp_path,
        ckpt_path=None,
        train_steps=3,
        num_videos=6,
        seq_len=20,
        workdir=str(tmp_path / "runs"),
        extra_overrides=TINY,
    )
    text = "".join(stdout(c) for c in nb.cells if c.cell_type == "code")
    assert "sigma: (6, 19)" in text
    # The event-triggered average ran (videos have collisions) and the analysis statistics too,
    # both numbering lags as `analyze prior` does (numbering.py): the expected peak is lag 0.
    assert "lag 0: sigma" in text and "lag +1: sigma" in text
    assert "lag 0: AUROC" in text and "lag -1: AUROC" in text and "lag +1: AUROC" in text
    assert "offset" not in text
    assert pngs(nb) >= 2  # per-video sigma curves and the event-triggered average
