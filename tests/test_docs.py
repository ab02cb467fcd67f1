"""Every command in the README's and docs/'s ```bash blocks is one the package still accepts, with
no training paid: a Hydra command's overrides are composed and checked as the command line checks
them (``compose.checked_config``), an argparse command's arguments go through its own parser (its
action never runs), and the help pages run for real. A renamed key, option, flag or command in
the docs fails here. Commands of other programs (pip, make, git, a ``python -`` script on stdin)
are skipped by name."""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from svg_lightning.analyze import ANALYSES
from svg_lightning.cli import COMMANDS as SVG_COMMANDS
from svg_lightning.compose import checked_config
from svg_lightning.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# The Hydra commands and their primary configs; ``svg NAME`` is ``python -m MODULE``.
HYDRA = {
    "svg_lightning": "train",
    "svg_lightning.evaluate": "eval",
    "svg_lightning.sample": "sample",
    "svg_lightning.analyze": "analyze",
}
SVG = {name: command.module for name, command in SVG_COMMANDS.items()}  # svg NAME -> its module
PYTHON = {"python", "python3", ".venv/bin/python"}
# Other programs, and python runs that are not ours: set-up, the test suite, a script on stdin.
NOT_OURS = {"pip", ".venv/bin/pip", "make", "git", "nvidia-smi", "jupyter", "papermill", "ls"}
NOT_OUR_MODULES = {"venv", "pytest", "pip"}
LAUNCHERS = {"srun"}  # run the command that follows on every task
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str  # page:line
    line: str


def bash_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each ```bash block."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if current is None and re.match(r"^```(bash|sh|shell)\s*$", line):
            current, start = [], number + 1
        elif current is not None and line.startswith("```"):
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def split_block(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """(line number, command) of a block: ``\\`` continuations joined, a heredoc's body dropped
    (its command is kept), a ``for V in A B; do CMD; done`` loop unrolled, ``&&`` and ``;``
    split into their commands."""
    out, i = [], 0
    while i < len(lines):
        number, line = start + i, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if heredoc:  # skip the body, up to the delimiter line
            while i + 1 < len(lines) and lines[i + 1].strip() != heredoc.group(1):
                i += 1
            i += 1
        i += 1
        loop = re.match(r"^\s*for (\w+) in ([^;]+); do (.+); done\s*(#.*)?$", line)
        if loop:
            var, values, body = loop.groups()[:3]
            for value in values.split():
                out.append((number, re.sub(rf"\${{?{var}\b}}?", value, body)))
            continue
        for part in re.split(r"&&|;", strip_comment(line)):
            if part.strip():
                out.append((number, part.strip()))
    return out


def strip_comment(line: str) -> str:
    """The line without its ``# comment`` (a ``#`` at the start of a word, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def documented() -> list[Command]:
    found = []
    for page in PAGES:
        for start, lines in bash_blocks(page.read_text()):
            for number, line in split_block(start, lines):
                found.append(Command(f"{page.relative_to(ROOT)}:{number}", line))
    return found


def words(line: str) -> list[str]:
    """The command's words, placeholders made concrete: ``$(...)`` (a run folder found by a
    shell command) is ``RUN/``, ``<time>`` is ``time``, ``$VAR`` is ``VAR``; comments dropped."""
    line = re.sub(r"\$\([^)]*\)", "RUN/", line)
    line = re.sub(r"<([\w-]+)>", r"\1", line)
    line = re.sub(r"\$\{?(\w+)\}?", r"\1", line)
    return shlex.split(line, comments=True)


class Parsed(Exception):
    """Raised by an argparse parser once it has read a command line, before any action."""


def program(tokens: list[str]) -> tuple[str | None, list[str]]:
    """(module, arguments) of a command of ours, or (None, why) for one skipped by rule."""
    while tokens and (ENV.match(tokens[0]) or tokens[0] in LAUNCHERS):
        tokens = tokens[1:]
    head = tokens[0]
    if head == "svg":
        if len(tokens) == 1 or tokens[1] in ("-h", "--help"):
            return "svg", tokens[1:]
        if tokens[1] not in SVG:
            raise ValueError(f"svg has no command {tokens[1]!r}; it has {sorted(SVG)}")
        return SVG[tokens[1]], tokens[2:]
    if head in PYTHON:
        if tokens[1:2] == ["-"]:
            return None, ["a python script on stdin"]
        if tokens[1:2] != ["-m"]:
            raise ValueError(f"not a python -m command: {tokens}")
        if tokens[2] in NOT_OUR_MODULES:
            return None, [f"python -m {tokens[2]}"]
        return tokens[2], tokens[3:]
    if head in NOT_OURS or head.split("/")[-1] in NOT_OURS:
        return None, [head]
    raise ValueError(f"{head!r} is neither one of our commands nor a program skipped by rule")


def check(line: str) -> str:
    """Check one documented command line without running its work: what was checked, or why it
    was skipped. Raises on a command, option or setting the package does not have."""
    module, args = program(words(line))
    if module is None:
        return f"skipped: {args[0]}"
    if "-h" in args or "--help" in args or module == "svg":
        return "help"  # run for real by test_help_pages_run
    if module in HYDRA:
        multirun = "-m" in args or "--multirun" in args
        overrides = [a for a in args if a not in ("-m", "--multirun")]
        if module == "svg_lightning.analyze":  # its first word names the analysis
            if overrides[0] not in ANALYSES:
                raise ValueError(f"no analysis {overrides[0]!r}; analyses: {list(ANALYSES)}")
            overrides = [f"command={overrides[0]}", *overrides[1:]]
        checked_config(HYDRA[module], overrides, multirun=multirun)
        return f"composed: {HYDRA[module]}"
    return parse_with_own_parser(module, args)


def parse_with_own_parser(module: str, args: list[str]) -> str:
    """Run ``python -m module args`` up to its argparse parser: a parse error exits 2 with
    argparse's message; a parsed command line stops there."""
    plain, intermixed = (
        argparse.ArgumentParser.parse_args,
        argparse.ArgumentParser.parse_intermixed_args,
    )

    def stop(parse):
        def parsed(self, *a, **kw):
            raise Parsed(parse(self, *a, **kw))

        return parsed

    argv = sys.argv
    try:
        argparse.ArgumentParser.parse_args = stop(plain)
        argparse.ArgumentParser.parse_intermixed_args = stop(intermixed)
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except Parsed:
        return f"parsed: {module}"
    except SystemExit as exit_:
        raise ValueError(f"python -m {module} refused {args} (exit {exit_.code})") from None
    finally:
        argparse.ArgumentParser.parse_args = plain
        argparse.ArgumentParser.parse_intermixed_args = intermixed
        sys.argv = argv
    raise ValueError(f"python -m {module} finished without parsing a command line")


COMMANDS = documented()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files(page):
    """Links between the pages (``docs/x.md``, ``../README.md``, figures) name files that exist."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which is missing"


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 30 and {c.where.split(":")[0] for c in COMMANDS} >= {
        "README.md", "docs/own_videos.md", "docs/reproduction.md", "docs/data.md"
    }  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_documented_command_is_accepted(command):
    check(command.line)


def is_help(command: Command) -> bool:
    tokens = words(command.line)
    try:
        ours = program(tokens)[0] is not None
    except ValueError:
        return False  # test_documented_command_is_accepted reports it
    return ours and (bool({"-h", "--help"} & set(tokens)) or tokens == ["svg"])


def executable(tokens: list[str]) -> list[str]:
    """The documented help command as this interpreter runs it."""
    if tokens[0] == "svg":
        return [str(Path(sys.executable).parent / "svg"), *tokens[1:]]
    return [sys.executable, *tokens[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if is_help(c)], ids=lambda c: c.where)
def test_help_pages_run(command):
    done = subprocess.run(
        executable(words(command.line)), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower() or "override" in done.stdout.lower(), done.stdout[:500]


@pytest.mark.parametrize(
    "line, error",
    [
        ("python -m svg_lightning +experiment=smmnist_lp model.betta=1e-4", "model.betta"),
        ("python -m svg_lightning -m trainer=gpux model.beta=1e-3,1e-4", "trainer=gpux"),
        ("python -m svg_lightning.evaluate ckpt_path=x eval.num_sample=20", "eval.num_sample"),
        ("python -m svg_lightning.analyze prio ckpt_path=x", "no analysis 'prio'"),
        ("python -m svg_lightning.data.prepare kth --src a --out b --sizes 64", "refused"),
        ("python -m svg_lightning.convert a.pth", "refused"),
        ("svg prepair videos --src a --out b", "no command 'prepair'"),
        ("python -m svg_lightning.evaluat ckpt_path=x", "svg_lightning.evaluat"),
        ("wget http://example.com", "neither"),
    ],
)
def test_a_wrong_command_in_the_docs_fails(line, error):
    with pytest.raises((ConfigError, ValueError, ImportError), match=re.escape(error)):
        check(line)


def test_blocks_are_split_as_a_shell_reads_them():
    block = [
        "A=1 python -m svg_lightning \\",
        "    trainer=cpu  # a comment",
        "python - <<'PY'",
        "print('body: not a command')",
        "PY",
        "for m in lp fp; do python -m svg_lightning +experiment=smmnist_$m; done",
        "python3 -m venv .venv && .venv/bin/pip install -e .",
    ]
    assert split_block(10, block) == [
        (10, "A=1 python -m svg_lightning  trainer=cpu"),
        (12, "python - <<'PY'"),
        (15, "python -m svg_lightning +experiment=smmnist_lp"),
        (15, "python -m svg_lightning +experiment=smmnist_fp"),
        (16, "python3 -m venv .venv"),
        (16, ".venv/bin/pip install -e ."),
    ]
    assert words("python -m svg_lightning.evaluate ckpt_path=$(ls -d a/*/ | tail -1)x.ckpt") == [
        "python", "-m", "svg_lightning.evaluate", "ckpt_path=RUN/x.ckpt"
    ]  # fmt: skip
    assert [check(line) for _, line in split_block(10, block)] == [
        "composed: train", "skipped: a python script on stdin", "composed: train",
        "composed: train", "skipped: python -m venv", "skipped: .venv/bin/pip",
    ]  # fmt: skip
