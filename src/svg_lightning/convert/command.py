"""``python -m svg_lightning.convert REFERENCE.pth --out FILE.ckpt`` (``svg convert``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from svg_lightning.convert import convert
from svg_lightning.runner import returning_code


def convert_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.convert",
        description="Convert a checkpoint released with the SVG reference code (e.g. "
        "pretrained_models/svglp_bair.pth, svglp_smmnist2.pth) into an svg_lightning checkpoint "
        "that evaluates, samples and resumes training like one of ours. The file is read without "
        "running its pickled code: any class or function outside the reference's networks is "
        "refused.",
    )
    parser.add_argument("path", type=Path, help="the reference's .pth file")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    args = parser.parse_args(argv)
    code, done = returning_code(convert, args.path, args.out)
    if code == 0:
        print("\n".join(done.lines()))
    return code
