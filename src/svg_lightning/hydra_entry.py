"""The entry point of a Hydra command (train, evaluate, sample, analyze): ``--help`` written
from ``conf/``, the command line checked before Hydra makes a run folder, the command run through
``runner.guarded``, and the run folder of a command refused before it wrote anything removed
(a multirun keeps a failed job's folder: its log and its row in the sweep summary)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from svg_lightning import runs
from svg_lightning.compose import checked_config
from svg_lightning.config import config_dir
from svg_lightning.errors import PreemptedError, StoppedByUserError, SVGError
from svg_lightning.files import check_writable
from svg_lightning.help import command_help
from svg_lightning.runner import MEMORY_FIX, guarded


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


def job_log(hc) -> Path:
    """The job log Hydra's job_logging writes (the command's errors are logged there too)."""
    return Path(hc.runtime.output_dir) / f"{hc.job.name}.log"


def remove_refused_run_folder(cfg: DictConfig) -> None:
    """A command refused before it wrote anything leaves no run folder behind: Hydra creates it
    (its .hydra/ and the job log) before the command checks what it was given. Parents left
    empty go too, up to the log folder."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    made_before = {hc.output_subdir, job_log(hc).name, runs.LOCK}
    # A folder held by another live process is its, even before it has written anything there.
    if not out.is_dir() or runs.in_use(out) or {p.name for p in out.iterdir()} - made_before:
        return
    shutil.rmtree(out, ignore_errors=True)
    stop = Path(OmegaConf.select(cfg, "paths.log_dir", default="logs")).resolve().parent
    for parent in out.resolve().parents:
        if parent == stop or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


_SIGNAL_EXITS = (PreemptedError.exit_code, StoppedByUserError.exit_code)


class JobFailed(CompactHydraException):
    """A job of a multirun that stopped with an error (logged, as a single run logs it): the
    launcher records it as failed and goes on with the next job; the sweeper then ends the
    multirun with this line and exit code 1. Its only argument is the message, so it pickles
    (submitit sends a job's exception back to the sweep)."""


def hydra_command(config_name: str, command: Callable) -> Callable[[], object]:
    """The entry point that runs ``command(cfg)`` on the config ``conf/<config_name>.yaml``
    composes with the command line, once per job of a multirun."""

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def entry(cfg: DictConfig):
        try:
            return guarded(command, cfg, memory_fix=MEMORY_FIX.get(config_name))
        except SystemExit as stop:
            if stop.code in (0, None):
                raise
            hc = HydraConfig.get()
            if hc.mode != RunMode.MULTIRUN or stop.code in _SIGNAL_EXITS:
                remove_refused_run_folder(cfg)
                raise  # SIGTERM and Ctrl-C stop the whole multirun
            # A SystemExit would end the whole multirun here; an exception is what Hydra's
            # launchers record as this job's failure before they run the next job. Its folder
            # stays, even when the job was refused at once: it holds the job's log with the
            # error and gives the job its "failed" row in the sweep summary.
            raise JobFailed(
                f"job {hc.job.num} of this multirun failed with exit code {stop.code}; its "
                f"error is in its log, {job_log(hc)}"
            ) from None

    def checked_entry():
        args, _ = get_args_parser().parse_known_args(sys.argv[1:])
        if args.help:  # ours: groups without their building blocks, every key described
            print(command_help(config_name, args.overrides), end="")
            raise SystemExit(0)
        precheck(config_name)
        return entry()

    return checked_entry
