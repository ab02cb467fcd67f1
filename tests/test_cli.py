"""The command-line layer: one wrapper maps the package's errors to one-line messages and exit
codes; the ``svg`` console script dispatches to every command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from svg_lightning.cli import guarded
from svg_lightning.errors import CheckpointError, ConfigError, NonFiniteLossError
from tests.helpers import TINY, run_cli


@pytest.mark.parametrize("error,code", [(ConfigError, 2), (CheckpointError, 2),
                                        (NonFiniteLossError, 3)])  # fmt: skip
def test_guarded_maps_errors_to_exit_codes(error, code, capsys):
    def fail():
        raise error("checkpoint x.ckpt: what is wrong")

    with pytest.raises(SystemExit) as stop:
        guarded(fail, hydra_logging=False)
    assert stop.value.code == code
    assert capsys.readouterr().err.strip() == "error: checkpoint x.ckpt: what is wrong"


def test_guarded_lets_bugs_through():
    def bug():
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        guarded(bug)


def svg(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("svg") or str(Path(sys.executable).parent / "svg")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_svg_console_script(tmp_path):
    usage = svg(tmp_path)
    assert usage.returncode == 2 and "svg {train,evaluate" in usage.stderr
    missing = svg(tmp_path, "evaluate", f"ckpt_path={tmp_path / 'nope.ckpt'}")
    assert missing.returncode == 2
    assert "nope.ckpt does not exist" in missing.stdout + missing.stderr
    assert "Traceback" not in missing.stdout + missing.stderr
    compare = svg(tmp_path, "compare", str(tmp_path / "no_run"))
    assert compare.returncode == 2 and "no_run" in compare.stderr


@pytest.mark.slow
def test_a_run_without_summary_still_says_where_it_wrote(tmp_path):
    r = run_cli(
        "svg_lightning", tmp_path, *TINY, "summary.enabled=false", "extras.print_config=false"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (ckpt,) = tmp_path.glob("logs/quickstart/runs/*/checkpoints/last.ckpt")
    assert f"checkpoint: {ckpt}" in " ".join(r.stdout.split())
