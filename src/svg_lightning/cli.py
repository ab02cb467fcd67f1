"""``svg COMMAND ...``: runs the command's ``python -m`` module, as if it had been run by that
name. Each command's entry point lives in its own package (its ``__main__``); the machinery they
share is ``runner`` (errors, exit codes, W&B) and ``hydra_entry`` (the Hydra commands).

    svg train [overrides]          python -m svg_lightning [overrides]
    svg evaluate ckpt_path=...     python -m svg_lightning.evaluate ckpt_path=...
    svg sample ckpt_path=... input=... out=...
    svg analyze {prior,trajectories} ckpt_path=...
    svg prepare {kth,bair,videos} --src PATH --out DATA_DIR
    svg compare RUN ... [--out FILE]
    svg convert REFERENCE.pth --out FILE.ckpt
    svg reproduce [overrides] [--out DIR] [--seeds 1,2,3]   python -m svg_lightning.reproduce
"""

from __future__ import annotations

import runpy
import sys

from svg_lightning.help import Command, svg_usage

# Every sub-command once: ``svg --help`` lists them from here, ``main`` runs the module.
COMMANDS = {
    "train": Command("svg_lightning", "train a model (SVG-LP, SVG-FP, deterministic)"),
    "evaluate": Command("svg_lightning.evaluate", "score a checkpoint: best-of-N SSIM/PSNR, FVD"),
    "sample": Command("svg_lightning.sample", "futures of your own video"),
    "analyze": Command("svg_lightning.analyze", "uncertainty analyses: prior, trajectories"),
    "prepare": Command(
        "svg_lightning.data.prepare", "KTH/BAIR archives or your own videos -> arrays"
    ),
    "compare": Command(
        "svg_lightning.evaluate.compare", "overlay the curves of several evaluations"
    ),
    "convert": Command("svg_lightning.convert", "a reference-code .pth -> an svg_lightning .ckpt"),
    "reproduce": Command("svg_lightning.reproduce", "the paper's comparison at CPU scale"),
}
USAGE = svg_usage(COMMANDS)


def main() -> None:
    """The ``svg`` console script: ``svg COMMAND ...`` runs ``python -m MODULE ...`` of the
    command in this process; ``svg --help`` lists the commands (on stdout, exit 0), as does a
    missing or unknown one (on stderr, exit 2)."""
    name = sys.argv[1] if len(sys.argv) > 1 else None
    if name in ("-h", "--help"):
        print(USAGE, end="")
        raise SystemExit(0)
    if name not in COMMANDS:
        unknown = f"error: unknown command {name!r}\n" if name is not None else ""
        print(unknown + USAGE, end="", file=sys.stderr)
        raise SystemExit(2)
    sys.argv.pop(1)
    sys.argv[0] = f"svg {name}"
    runpy.run_module(COMMANDS[name].module, run_name="__main__")
