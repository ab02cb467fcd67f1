"""``python -m svg_lightning.data.prepare {kth,bair,videos} --src PATH --out DATA_DIR``
(``svg prepare``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from svg_lightning.data.prepare import prepare
from svg_lightning.data.sources.storage import RESIZE
from svg_lightning.data.sources.videos import DEFAULT_SPLIT, MIN_FRAMES
from svg_lightning.runner import returning_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.data.prepare",
        description="Convert the official KTH or BAIR archives, or your own videos, into the "
        "memory-mapped arrays the DataModules read. Resumable: finished files are kept and "
        "skipped on a rerun; an interrupted run leaves no file that looks finished. Corrupt or "
        "truncated inputs are reported with their names and skipped.",
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    kth = sub.add_parser("kth", help="the six KTH action zips or their *_uncomp.avi files")
    kth.add_argument(
        "--src", type=Path, required=True, help="folder with boxing.zip ... walking.zip"
    )
    kth.add_argument("--out", type=Path, required=True, help="data folder (data.data_dir)")
    kth.add_argument("--size", type=int, choices=(64, 128), default=64)
    kth.add_argument("--resize", choices=RESIZE, default=RESIZE[0],
                     help="frame scaler: bicubic (libswscale, as the reference's ffmpeg -s) or "
                     "bilinear (PIL)")  # fmt: skip
    bair = sub.add_parser("bair", help="bair_robot_pushing_dataset_v0.tar or softmotion30_44k/")
    bair.add_argument("--src", type=Path, required=True, help="the tar, or the extracted folder")
    bair.add_argument("--out", type=Path, required=True, help="data folder (data.data_dir)")
    videos = sub.add_parser(
        "videos", help="your own videos: a folder, a glob or a list of video files / .npy arrays"
    )
    videos.add_argument(
        "--src",
        required=True,
        help="a folder (searched recursively), a glob, or a .txt list of paths",
    )
    videos.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the prepared folder (data.data_dir of data=videos), outside --src",
    )
    videos.add_argument(
        "--size",
        type=int,
        choices=(32, 64, 128),
        default=64,
        help="frames are squashed to size x size (default 64)",
    )
    videos.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=3,
        help="1: full-range grey (as KTH), 3: RGB (default)",
    )
    videos.add_argument("--every", type=int, default=1, metavar="K", help="keep every K-th frame")
    videos.add_argument(
        "--min-frames",
        type=int,
        default=MIN_FRAMES,
        metavar="N",
        help=f"skip videos shorter than N kept frames (default {MIN_FRAMES}: "
        "n_past + n_future of the videos_* experiments)",
    )
    how = videos.add_mutually_exclusive_group()
    how.add_argument(
        "--split",
        default=None,
        help=f"fractions of videos by a hash of their path (default {DEFAULT_SPLIT})",
    )
    how.add_argument(
        "--split-file",
        type=Path,
        default=None,
        help="lines 'relative/path split' (split: train, val or test)",
    )
    return parser


def prepare_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {"size": args.size, "resize": args.resize} if args.dataset == "kth" else {}
    if args.dataset == "videos":
        options = {"size": args.size, "channels": args.channels, "every": args.every,
                   "min_frames": args.min_frames, "split": args.split,
                   "split_file": args.split_file}  # fmt: skip
    try:
        code, summary = returning_code(prepare, args.dataset, args.src, args.out, options)
    except KeyboardInterrupt:
        print("interrupted: finished files are kept; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    if code == 0:
        print("\n".join(summary.lines()))
    return code
