"""``python -m svg_lightning.reproduce [overrides] [--out DIR] [--seeds 1,2,3]``
(``svg reproduce``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from svg_lightning.reproduce import study
from svg_lightning.reproduce.study import EXPERIMENT, MODELS
from svg_lightning.runner import returning_code


def default_out(name: str) -> Path:
    """Where a reproduction writes by default: logs/NAME under SVG_ROOT or the current folder,
    as the training runs (conf/paths/default.yaml)."""
    return Path(os.environ.get("SVG_ROOT", ".")) / "logs" / name


def seeds_arg(text: str) -> list[int]:
    """``--seeds 1,2,3``: one argument, so KEY=VALUE overrides may follow it."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 1,2,3") from None
    if len(set(seeds)) < len(seeds):  # a seed twice would train the same runs twice
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice; give each seed once")
    return seeds


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _models(text: str) -> list[str]:
    unknown = [m for m in text.split(",") if m not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; allowed: {','.join(MODELS)}")
    return text.split(",")


def reproduce_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.reproduce",
        description="The paper's comparison at CPU scale (Figs. 7 and 8): SVG-LP, SVG-FP and "
        "the deterministic model trained on conf/experiment/reproduce_cpu.yaml for every seed, "
        "each scored best of N on the same test videos (SM-MNIST's 5 -> 20 frames), and the "
        "study's table and figures in OUT/report/ (table.md, table.json, curves.png, "
        "samples.png; make reproduce also writes the prose report.md from them). Resumable: "
        "rerun the same command and finished runs are reused, an interrupted one continues.",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="overrides of every training run (e.g. trainer.max_steps=500); eval.* ones go to "
        "every evaluation (e.g. eval.num_videos=64)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=default_out("reproduce"),
                        help="the study's folder (default: logs/reproduce)")  # fmt: skip
    parser.add_argument("--seeds", type=seeds_arg, default=[1, 2, 3], help="default: 1,2,3")
    parser.add_argument("--models", type=_models, default=list(MODELS),
                        help=f"conf/model options (default: {','.join(MODELS)})")  # fmt: skip
    parser.add_argument("--strip-videos", type=positive, default=4,
                        help="test videos in the sample strips")  # fmt: skip
    parser.add_argument("--experiment", default=EXPERIMENT,
                        help="the training setting, a conf/experiment option (default: "
                        f"{EXPERIMENT}; the paper's: base/smmnist)")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    command = shlex.join(["python", "-m", "svg_lightning.reproduce", *argv])
    code, _ = returning_code(
        study, args.out, args.seeds, args.models, args.overrides, args.strip_videos, command,
        args.experiment,
    )  # fmt: skip
    if code == 0:
        print(f"table: {args.out / 'report' / 'table.md'}")
    return code
