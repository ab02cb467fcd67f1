"""The command line: every entry point composes its config, calls the library and goes through
``guarded``, which turns the package's errors into one-line messages and exit codes and
finishes the W&B run.

    svg train [overrides]          python -m svg_lightning [overrides]
    svg evaluate ckpt_path=...     python -m svg_lightning.evaluate ckpt_path=...
    svg sample ckpt_path=... input=... out=...
    svg analyze {prior,trajectories} ckpt_path=...
    svg prepare {kth,bair,videos} --src PATH --out DATA_DIR
    svg compare RUN ... [--out FILE]
    svg convert REFERENCE.pth --out FILE.ckpt
    svg reproduce [overrides] [--out DIR] [--seeds 1,2,3]   python -m svg_lightning.reproduce
    python -m svg_lightning.reproduce.quickstart [overrides] [--readme README.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from svg_lightning import runs
from svg_lightning.analyze import COMMANDS as ANALYSES
from svg_lightning.analyze import analyze
from svg_lightning.compose import checked_config
from svg_lightning.config import config_dir
from svg_lightning.convert import convert
from svg_lightning.data.prepare import prepare
from svg_lightning.data.sources.storage import RESIZE
from svg_lightning.data.sources.videos import DEFAULT_SPLIT, MIN_FRAMES
from svg_lightning.errors import SVGError
from svg_lightning.evaluate import evaluate
from svg_lightning.evaluate.compare import compare
from svg_lightning.files import check_writable, output_error
from svg_lightning.help import Command, analyses_section, command_help, svg_usage
from svg_lightning.loggers import finish_wandb
from svg_lightning.reproduce import study
from svg_lightning.reproduce.quickstart import SEEDS, quickstart_docs
from svg_lightning.reproduce.study import EXPERIMENT, MODELS
from svg_lightning.sample import sample
from svg_lightning.train import quiet_known_warnings, train

log = logging.getLogger("svg_lightning")

quiet_known_warnings()  # every command: the messages that are not true of this package


def guarded(command: Callable, *args, hydra_logging: bool = True):
    """Run ``command``; an SVGError becomes its one-line message and exit code (through the
    Hydra job log, or on stderr for the argparse commands), and so does a write that failed for
    lack of space or permission (``files.output_error``). W&B is finished either way."""
    try:
        return command(*args)
    except Exception as raised:
        err = raised if isinstance(raised, SVGError) else output_error(raised)
        if err is None:
            raise
        if hydra_logging:
            log.error("%s", err)
        else:
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    finally:
        finish_wandb()


def _returning_code(command: Callable, *args) -> tuple[int, object]:
    """For the argparse commands, which return their exit code: (0, result), or the error's
    code and None once ``guarded`` has printed its one line."""
    try:
        return 0, guarded(command, *args, hydra_logging=False)
    except SystemExit as stop:
        return stop.code, None


def output_places(cfg: DictConfig, overrides: list[str], multirun: bool) -> list[tuple]:
    """(setting, folder) of every place a Hydra command writes: its run folder (the job log
    goes there before the command starts, so it is checked before Hydra runs) and sample's
    ``out``. A run folder given with interpolations is Hydra's to resolve, and is not checked."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    if key in given:
        places = [] if "${" in given[key] else [(key, Path(given[key]))]
    else:  # the default run folder is under the log folder
        places = [("paths.log_dir", Path(cfg.paths.log_dir))]
    if "out" in cfg and isinstance(cfg.out, str):
        places.append(("out", Path(cfg.out)))
    return places


def precheck(config_name: str) -> None:
    """Refuse a bad command line (see ``compose.checked_config``) before Hydra makes a run
    folder: one line per problem on stderr, exit 2. Hydra's own flags (--help, --cfg, ...)
    pass through untouched."""
    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return
    try:
        cfg = checked_config(config_name, args.overrides, multirun=args.multirun)
        for setting, path in output_places(cfg, args.overrides, args.multirun):
            check_writable(path, setting)
    except SVGError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None


def remove_refused_run_folder(cfg: DictConfig) -> None:
    """A command refused before it wrote anything leaves no run folder behind: Hydra creates it
    (its .hydra/ and the job log) before the command checks what it was given. Parents left
    empty go too, up to the log folder."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    made_before = {hc.output_subdir, f"{hc.job.name}.log", runs.LOCK}
    # A folder held by another live process is its, even before it has written anything there.
    if not out.is_dir() or runs.in_use(out) or {p.name for p in out.iterdir()} - made_before:
        return
    shutil.rmtree(out, ignore_errors=True)
    stop = Path(OmegaConf.select(cfg, "paths.log_dir", default="logs")).resolve().parent
    for parent in out.resolve().parents:
        if parent == stop or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def _hydra_command(config_name: str, command: Callable) -> Callable[[], object]:
    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def entry(cfg: DictConfig):
        try:
            return guarded(command, cfg)
        except SystemExit as stop:
            if stop.code not in (0, None):
                remove_refused_run_folder(cfg)
            raise

    def checked_entry():
        args, _ = get_args_parser().parse_known_args(sys.argv[1:])
        if args.help:  # ours: groups without their building blocks, every key described
            print(command_help(config_name, args.overrides), end="")
            raise SystemExit(0)
        precheck(config_name)
        return entry()

    return checked_entry


train_main = _hydra_command("train", train)
evaluate_main = _hydra_command("eval", evaluate)
sample_main = _hydra_command("sample", sample)
_analyze_entry = _hydra_command("analyze", analyze)

ANALYZE_USAGE = (
    f"usage: python -m svg_lightning.analyze {{{','.join(ANALYSES)}}} ckpt_path=PATH "
    "[key=value ...]"
)


def analyze_main() -> None:
    """Moves the analysis name from argv[1] into a ``command=`` override, then runs Hydra.
    ``--help`` anywhere (``analyze --help``, ``analyze prior --help``) prints the analyses and
    the config's keys, for the config as the ``key=value`` arguments given change it."""
    argv = sys.argv
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(command_help("analyze", [a for a in argv[1:] if "=" in a]), end="")
        raise SystemExit(0)
    if len(argv) < 2 or argv[1] not in ANALYSES:
        unknown = f"error: unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
        print(f"{unknown}{ANALYZE_USAGE}\n\n{analyses_section()}", file=sys.stderr)
        raise SystemExit(2)
    argv.append(f"command={argv.pop(1)}")
    _analyze_entry()


def prepare_main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    options = {"size": args.size, "resize": args.resize} if args.dataset == "kth" else {}
    if args.dataset == "videos":
        options = {"size": args.size, "channels": args.channels, "every": args.every,
                   "min_frames": args.min_frames, "split": args.split,
                   "split_file": args.split_file}  # fmt: skip
    try:
        code, summary = _returning_code(prepare, args.dataset, args.src, args.out, options)
    except KeyboardInterrupt:
        print("interrupted: finished files are kept; rerun the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    if code == 0:
        print("\n".join(summary.lines()))
    return code


def compare_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.evaluate.compare",
        description="Overlay the best-sample SSIM/PSNR curves of several evaluations and print "
        "their summary numbers.",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation folders or metrics.json")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    parser.add_argument(
        "--out", type=Path, default=None, help="the plot (default: compare.png next to the runs)"
    )
    args = parser.parse_args(argv)
    return _returning_code(compare, args.runs, args.labels, args.out)[0]


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
    code, done = _returning_code(convert, args.path, args.out)
    if code == 0:
        print("\n".join(done.lines()))
    return code


def _default_out(name: str) -> Path:
    """Where a reproduction writes by default: logs/NAME under SVG_ROOT or the current folder,
    as the training runs (conf/paths/default.yaml)."""
    return Path(os.environ.get("SVG_ROOT", ".")) / "logs" / name


def _seeds(text: str) -> list[int]:
    """``--seeds 1,2,3``: one argument, so KEY=VALUE overrides may follow it."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 1,2,3") from None


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
        "each scored best of N on the same test videos (SM-MNIST's 5 -> 20 frames), and a "
        "report in OUT/report/ (curves, table, sample strips, report.md). Resumable: rerun the "
        "same command and finished runs are reused, an interrupted one continues.",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="overrides of every training run (e.g. trainer.max_steps=500); eval.* ones go to "
        "every evaluation (e.g. eval.num_videos=64)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=_default_out("reproduce"),
                        help="the study's folder (default: logs/reproduce)")  # fmt: skip
    parser.add_argument("--seeds", type=_seeds, default=[1, 2, 3], help="default: 1,2,3")
    parser.add_argument("--models", type=_models, default=list(MODELS),
                        help=f"conf/model options (default: {','.join(MODELS)})")  # fmt: skip
    parser.add_argument("--strip-videos", type=int, default=4,
                        help="test videos in the sample strips")  # fmt: skip
    parser.add_argument("--experiment", default=EXPERIMENT,
                        help="the training setting, a conf/experiment option (default: "
                        f"{EXPERIMENT}; the paper's: base/smmnist)")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    command = shlex.join(["python", "-m", "svg_lightning.reproduce", *argv])
    code, _ = _returning_code(
        study, args.out, args.seeds, args.models, args.overrides, args.strip_videos, command,
        args.experiment,
    )  # fmt: skip
    if code == 0:
        print(f"report: {args.out / 'report' / 'report.md'}")
    return code


def quickstart_docs_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.reproduce.quickstart",
        description="The quickstart (python -m svg_lightning) for several seeds: writes "
        "DOCS/quickstart.md (the seeds' table, wall times, machine), copies the default seed's "
        "curves and samples into DOCS/figures/, analyses the default seed's checkpoint (prior, "
        "trajectories) and scores it under the dataset's protocol (500 test videos) and, with "
        "--readme, rewrites the README's marked quickstart blocks. Resumable: finished runs "
        "are reused.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of every run (none: the quickstart itself)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=_default_out("docs_figures"),
                        help="the runs' folder (default: logs/docs_figures)")  # fmt: skip
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--readme", type=Path, default=None,
                        help="README.md whose quickstart block to update")  # fmt: skip
    parser.add_argument("--seeds", type=_seeds, default=list(SEEDS),
                        help=f"default: {','.join(map(str, SEEDS))}")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    command = shlex.join(["python", "-m", "svg_lightning.reproduce.quickstart", *argv])
    return _returning_code(
        quickstart_docs, args.out, args.docs, args.readme, args.seeds, args.overrides, command
    )[0]


# Every sub-command once: ``svg --help`` lists them from here, ``main`` dispatches on it.
COMMANDS = {
    "train": Command(
        train_main, "svg_lightning", "train a model (SVG-LP, SVG-FP, deterministic)"
    ),
    "evaluate": Command(
        evaluate_main, "svg_lightning.evaluate", "score a checkpoint: best-of-N SSIM/PSNR, FVD"
    ),
    "sample": Command(sample_main, "svg_lightning.sample", "futures of your own video"),
    "analyze": Command(
        analyze_main, "svg_lightning.analyze", "uncertainty analyses: prior, trajectories"
    ),
    "prepare": Command(
        lambda: sys.exit(prepare_main()), "svg_lightning.data.prepare",
        "KTH or BAIR archives -> the training arrays",
    ),
    "compare": Command(
        lambda: sys.exit(compare_main()), "svg_lightning.evaluate.compare",
        "overlay the curves of several evaluations",
    ),
    "convert": Command(
        lambda: sys.exit(convert_main()), "svg_lightning.convert",
        "a reference-code .pth -> an svg_lightning .ckpt",
    ),
    "reproduce": Command(
        lambda: sys.exit(reproduce_main()), "svg_lightning.reproduce",
        "the paper's comparison at CPU scale",
    ),
}  # fmt: skip
USAGE = svg_usage(COMMANDS)


def main() -> None:
    """The ``svg`` console script: ``svg COMMAND ...`` runs the command's own entry point;
    ``svg --help`` lists the commands (on stdout, exit 0), as does a missing or unknown one (on
    stderr, exit 2)."""
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
    COMMANDS[name].run()
