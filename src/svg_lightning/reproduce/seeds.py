"""Training runs of one setting for several seeds, each in a folder of its own that a rerun
reuses: the loop behind both the comparison study and the docs' quickstart table
(tools/quickstart_docs.py)."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from svg_lightning.api import train
from svg_lightning.compose import compose_config
from svg_lightning.errors import ConfigError, SVGError
from svg_lightning.files import write_json

RECORD = "reproduce.json"  # in each step's folder: its settings, and its wall time once finished


@dataclass(frozen=True)
class Done:
    """A finished step: its folder, wall time (of the invocation that finished it) and whether
    an earlier invocation of the command had already finished it."""

    folder: Path
    wall_s: float
    reused: bool


def once(folder: Path, settings: list[str], work: Callable[[], None]) -> Done:
    """Run ``work`` (which writes into ``folder``) unless ``folder`` records having finished it
    with the same ``settings``. A folder begun with other settings is an error, never reused."""
    record = folder / RECORD
    if record.is_file():
        found = json.loads(record.read_text())
        if found["settings"] != settings:
            raise ConfigError(
                f"{folder} was started with other settings than this command's:\n"
                f"  there: {found['settings']}\n  now:   {settings}\n"
                "(a different `config sha256` alone means the config files changed since)\n"
                "write the study to another folder, or delete that one"
            )
        if found.get("wall_s") is not None:
            return Done(folder, found["wall_s"], reused=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(record, {"settings": settings, "wall_s": None})
    start = time.perf_counter()
    work()
    wall = time.perf_counter() - start
    finished = datetime.now().isoformat(timespec="seconds")
    write_json(record, {"settings": settings, "wall_s": wall, "finished": finished})
    return Done(folder, wall, reused=False)


def train_seed(folder: Path, overrides: list[str], seed: int, fresh_process: bool = False) -> Done:
    """``python -m svg_lightning OVERRIDES seed=SEED`` with ``folder`` as its run folder. A run
    interrupted there continues from its last.ckpt (``runs.requeued_checkpoint``).
    ``fresh_process``: run the command itself, in a new Python process, so the wall time is the
    whole command's as a user types it (start-up included, nothing left from earlier runs)."""
    overrides = [*overrides, f"seed={seed}"]

    def work() -> None:
        cfg = compose_config("train", overrides)
        with open_dict(cfg):  # set here, not as an override: a path may hold any character
            cfg.paths.output_dir = str(folder)
        train(cfg)

    where = str(Path(folder).resolve())
    if fresh_process and ("'" in where or "\\" in where):  # before anything is written there
        raise ConfigError(f"{where}: a run folder for a fresh process may not hold ' or \\")

    def command() -> None:
        args = [sys.executable, "-m", "svg_lightning", *overrides, f"hydra.run.dir='{where}'"]
        if subprocess.run(args).returncode:
            raise SVGError(f"{shlex.join(args)} failed; its output is above and in {where}")

    # The composed config, not just the overrides, decides whether a finished run can be reused:
    # a retuned preset under the same command must train again.
    settings = [*overrides, f"config sha256 {config_digest(overrides)}"]
    return once(folder, settings, command if fresh_process else work)


def config_digest(overrides: list[str]) -> str:
    """A digest of the training config ``overrides`` compose, paths left out."""
    cfg = compose_config("train", overrides)
    with open_dict(cfg):
        cfg.pop("paths", None)
    return hashlib.sha256(OmegaConf.to_yaml(cfg).encode()).hexdigest()[:16]


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class Progress:
    """Prints which of ``total`` steps starts, and when each ends how long it took and about how
    long the rest will take (the mean of the steps run so far)."""

    def __init__(self, total: int):
        self.total, self.started, self.times = total, 0, []

    def start(self, what: str) -> None:
        self.started += 1
        print(f"[{self.started}/{self.total}] {what}", flush=True)

    def end(self, done: Done) -> None:
        if done.reused:
            print(f"[{self.started}/{self.total}] already done in {done.folder}", flush=True)
            return
        self.times.append(done.wall_s)
        left = sum(self.times) / len(self.times) * (self.total - self.started)
        print(f"[{self.started}/{self.total}] done in {duration(done.wall_s)}; about "
              f"{duration(left)} left", flush=True)  # fmt: skip
