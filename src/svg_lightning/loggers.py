"""Experiment loggers, written once for training, evaluation and analysis: instantiating the
``logger`` config group, sending scalars and media to each logger in the form it can show, and
a W&B logger that runs offline by itself when it cannot reach the service."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageSequence
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)

WANDB_HOST = ("api.wandb.ai", 443)


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(WANDB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def wandb_logger(offline: bool | None = None, **kwargs) -> WandbLogger:
    """``offline=None`` decides: online only with an API key and a reachable service (or
    ``WANDB_MODE=online``); offline otherwise, and says how to sync the run later."""
    if offline is None:
        mode = os.environ.get("WANDB_MODE")
        offline = mode in ("offline", "disabled") or (
            mode != "online" and not (_has_api_key() and _reachable())
        )
    logger = WandbLogger(offline=offline, **kwargs)
    if offline:
        save_dir = kwargs.get("save_dir", ".")
        log.warning(
            "W&B runs offline (no API key or no network). Upload later with: "
            "wandb sync %s/wandb/offline-run-*",
            save_dir,
        )
    return logger


def instantiate_loggers(
    group: DictConfig | None, save_dir: str | Path | None = None, wandb_name: str | None = None
) -> list[Logger]:
    """One logger per entry of the ``logger`` group; evaluation and analysis write into their own
    folder (``save_dir``) and name their W&B run (``wandb_name``)."""
    loggers = []
    for name, lg in (group or {}).items():
        if lg is None:
            continue
        if save_dir is not None:
            lg = OmegaConf.merge(lg, {"save_dir": str(save_dir)})
        if name == "wandb" and wandb_name:
            lg = OmegaConf.merge(lg, {"name": wandb_name})
        loggers.append(instantiate(lg))
    return loggers


def log_scalars(loggers: list[Logger], scalars: dict[str, float], step: int | None = None) -> None:
    for lg in loggers:
        lg.log_metrics(scalars, step=step)
        lg.save()  # outside the fit loop nothing else flushes file loggers


def _gif_strip(path: Path) -> np.ndarray:
    """A GIF's frames side by side (H, T*W, 3): what an image-only logger can show of a video."""
    with Image.open(path) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    return np.concatenate(frames, axis=1)


def log_media(loggers: list[Logger], key: str, path: Path, step: int | None = None) -> None:
    """Send a PNG or GIF already written to disk to every logger that takes media: W&B as an
    image or a video; TensorBoard as an image (a GIF as its frames side by side)."""
    path = Path(path)
    video = path.suffix.lower() == ".gif"
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            if video:
                lg.log_video(key, [str(path)], step=step)
            else:
                lg.log_image(key, [str(path)], step=step)
        elif isinstance(lg, TensorBoardLogger):
            with Image.open(path) as img:
                pixels = _gif_strip(path) if video else np.asarray(img.convert("RGB"))
            lg.experiment.add_image(key, pixels, step or 0, dataformats="HWC")


def finish_wandb() -> None:
    """Each command, and each job of a multirun, gets its own W&B run."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
