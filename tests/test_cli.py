"""The command-line layer: one wrapper maps the package's errors to one-line messages and exit
codes; the ``svg`` console script dispatches to every command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from svg_lightning.analyze.command import analyze_main
from svg_lightning.cli import main
from svg_lightning.errors import CheckpointError, ConfigError, NonFiniteLossError
from svg_lightning.runner import guarded
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


def exit_and_output(monkeypatch, capsys, entry, *argv: str) -> tuple[int, str, str]:
    """Run a console entry point in this process with ``argv``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", list(argv))
    with pytest.raises(SystemExit) as stop:
        entry()
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


SUBCOMMANDS = {
    "train": "svg_lightning",
    "evaluate": "svg_lightning.evaluate",
    "sample": "svg_lightning.sample",
    "analyze": "svg_lightning.analyze",
    "prepare": "svg_lightning.data.prepare",
    "compare": "svg_lightning.evaluate.compare",
    "convert": "svg_lightning.convert",
    "reproduce": "svg_lightning.reproduce",
}


def test_svg_help_lists_every_command(monkeypatch, capsys):
    code, out, _ = exit_and_output(monkeypatch, capsys, main, "svg", "--help")
    assert code == 0
    for name, module in SUBCOMMANDS.items():  # its line, then its python -m form
        assert re.search(rf"^  {name} +\S.*\S +python -m {re.escape(module)}$", out, re.M), name
    code, _, err = exit_and_output(monkeypatch, capsys, main, "svg")
    assert code == 2 and err == out  # no command: the same list, on stderr


def test_svg_unknown_command(monkeypatch, capsys):
    code, out, err = exit_and_output(monkeypatch, capsys, main, "svg", "foo")
    assert code == 2 and not out
    assert err.startswith("error: unknown command 'foo'\n")
    assert all(f"python -m {module}" in err for module in SUBCOMMANDS.values())


@pytest.mark.parametrize("argv", [["--help"], ["prior", "--help"]])
def test_analyze_help_names_the_analyses(monkeypatch, capsys, argv):
    code, out, _ = exit_and_output(monkeypatch, capsys, analyze_main, "svg analyze", *argv)
    assert code == 0
    assert re.search(r"^prior +\S", out, re.M) and re.search(r"^trajectories +\S", out, re.M)
    assert re.search(r"^num_videos: 500 +# \S", out, re.M)  # then the keys, described
    code, _, err = exit_and_output(monkeypatch, capsys, analyze_main, "svg analyze", "foo")
    assert code == 2 and "unknown command 'foo'" in err and "trajectories" in err


def svg(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("svg") or str(Path(sys.executable).parent / "svg")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_svg_console_script(tmp_path):
    usage = svg(tmp_path)
    assert usage.returncode == 2 and "svg {train,evaluate" in usage.stderr
    listing = svg(tmp_path, "--help")
    assert listing.returncode == 0 and "python -m svg_lightning.evaluate.compare" in listing.stdout
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
