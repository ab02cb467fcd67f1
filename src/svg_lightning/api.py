"""The Python API, for notebooks, scripts and tests: a command's config composed as its command
line composes it, and training in this process.

A run started here is set up as a command sets up its own (``runner``): the messages of
Lightning and torch that are not true of this package are silenced, and its W&B run is finished
when it ends, so two runs in one process (a notebook, a test session) never share a W&B run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, open_dict

from svg_lightning import runs
from svg_lightning import train as training
from svg_lightning.compose import compose_config
from svg_lightning.loggers import finish_wandb
from svg_lightning.runner import quiet_known_warnings

__all__ = ["compose_config", "train", "train_in", "train_quickstart"]


def train(cfg: DictConfig) -> float | None:
    """``train.train(cfg)`` in this process, as ``python -m svg_lightning`` runs it: returns
    ``cfg.optimized_metric``, or None when it was not logged."""
    quiet_known_warnings()
    try:
        return training.train(cfg)
    finally:
        finish_wandb()


def train_in(root: str | Path, overrides: list[str] = (), progress_bar: bool = True) -> Path:
    """Train the config ``python -m svg_lightning OVERRIDES`` composes (a later override of a
    key wins), with every path under ``root`` and the run in ``root/train/<time>/``; returns
    the run folder."""
    root = Path(root).resolve()
    cfg = compose_config("train", list(overrides))
    run = root / "train" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    while run.exists():  # two runs within one second
        run = run.with_name(run.name + "_")
    with open_dict(cfg):  # set here, not as overrides: paths may hold any character
        if not progress_bar and cfg.get("callbacks") and "rich_progress_bar" in cfg.callbacks:
            cfg.callbacks.rich_progress_bar = None  # Lightning's plain bar, e.g. in notebooks
        cfg.paths.root_dir = str(root)
        cfg.paths.data_dir = str(root / "data")
        cfg.paths.log_dir = str(root / "logs")
        cfg.paths.output_dir = str(run)
    train(cfg)
    return run


def train_quickstart(root: str | Path, steps: int, overrides: list[str] = ()) -> Path:
    """The notebooks' model: the quickstart preset (SVG-LP, one digit, 32 x 32) trained for
    ``steps`` steps on the CPU with one validation at the end and no held-out summary, then
    ``overrides``. Returns the path of its last checkpoint."""
    base = [
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.accelerator=cpu",
        "logger=csv",
        "summary.enabled=false",
        "data.val_videos=16",
        "model.val_num_samples=4",
        "extras.print_config=false",
    ]
    return runs.last_checkpoint(train_in(root, [*base, *overrides], progress_bar=False))
