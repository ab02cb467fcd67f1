"""`python -m svg_lightning.data.prepare {kth,bair} --src PATH --out DATA_DIR`: convert the official
archives into the memory-mapped arrays the KTH and BAIR DataModules read.

Resumable: finished files are kept and skipped on a rerun; an interrupted run leaves no file that
looks finished. Corrupt or truncated inputs are reported with their names and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from svg_lightning.data.storage import DataSourceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.data.prepare", description=__doc__
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    kth = sub.add_parser("kth", help="the six KTH action zips or their *_uncomp.avi files")
    kth.add_argument(
        "--src", type=Path, required=True, help="folder with boxing.zip ... walking.zip"
    )
    kth.add_argument("--out", type=Path, required=True, help="data folder (data.data_dir)")
    kth.add_argument("--size", type=int, choices=(64, 128), default=64)
    bair = sub.add_parser("bair", help="bair_robot_pushing_dataset_v0.tar or softmotion30_44k/")
    bair.add_argument("--src", type=Path, required=True, help="the tar, or the extracted folder")
    bair.add_argument("--out", type=Path, required=True, help="data folder (data.data_dir)")
    args = parser.parse_args(argv)
    try:
        if args.dataset == "kth":
            from svg_lightning.data.kth import prepare_kth

            summary = prepare_kth(args.src, args.out, size=args.size)
        else:
            from svg_lightning.data.bair import prepare_bair

            summary = prepare_bair(args.src, args.out)
    except DataSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished files are kept; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
