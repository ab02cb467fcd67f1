"""``python -m svg_lightning.analyze NAME ckpt_path=...`` (``svg analyze``): the analysis named
first, then Hydra's ``key=value`` arguments."""

from __future__ import annotations

import sys

from svg_lightning.analyze import ANALYSES, analyze
from svg_lightning.help import analyses_section, command_help
from svg_lightning.hydra_entry import hydra_command

USAGE = (
    f"usage: python -m svg_lightning.analyze {{{','.join(ANALYSES)}}} ckpt_path=PATH "
    "[key=value ...]"
)
_entry = hydra_command("analyze", analyze)


def analyze_main() -> None:
    """Moves the analysis name from argv[1] into a ``command=`` override, then runs Hydra.
    ``--help`` anywhere (``analyze --help``, ``analyze prior --help``) prints the analyses and
    the config's keys, for the config as the ``key=value`` arguments given change it."""
    argv = sys.argv
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(command_help("analyze", [a for a in argv[1:] if "=" in a], ANALYSES), end="")
        raise SystemExit(0)
    if len(argv) < 2 or argv[1] not in ANALYSES:
        unknown = f"error: unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
        print(f"{unknown}{USAGE}\n\n{analyses_section(ANALYSES)}", file=sys.stderr)
        raise SystemExit(2)
    argv.append(f"command={argv.pop(1)}")
    _entry()
