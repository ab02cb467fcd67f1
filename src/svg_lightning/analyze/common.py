"""What both analyses share: the checks on the checkpoint, test digits, outputs and loggers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig

import svg_lightning
from svg_lightning import runs
from svg_lightning.checkpoint import load_model
from svg_lightning.data.datamodules import SMMNISTDataModule
from svg_lightning.data.digits import Digits, load_digits
from svg_lightning.data.smmnist import Trajectory, render
from svg_lightning.devices import pick_device
from svg_lightning.errors import ConfigError
from svg_lightning.files import sha256
from svg_lightning.loggers import instantiate_loggers, log_media, log_scalars


def load_for(cfg: DictConfig, command: str, variants=None, num_digits=None):
    """The checkpoint's model (on ``cfg.device``) and training config, or ConfigError saying why
    ``command`` cannot analyse it: only SM-MNIST models have known trajectories."""
    ckpt = Path(cfg.ckpt_path)
    model = load_model(ckpt)
    train_cfg = runs.training_config(ckpt, cfg.train_config)
    target = train_cfg.get("data", {}).get("_target_")
    try:
        is_smmnist = target is not None and issubclass(get_class(target), SMMNISTDataModule)
    except Exception:
        is_smmnist = False
    if not is_smmnist:
        raise ConfigError(
            f"analyze {command} needs a Stochastic Moving MNIST model; checkpoint {ckpt} was "
            f"trained on data._target_={target}"
        )
    variant = model.hparams.variant
    if variants and variant not in variants:
        raise ConfigError(
            f"analyze {command} needs a model with a learned prior (model.variant=lp, SVG-LP); "
            f"checkpoint {ckpt} is model.variant={variant}"
        )
    digits = int(train_cfg.data.num_digits)
    if num_digits and digits != num_digits:
        raise ConfigError(
            f"analyze {command} tracks a single digit; checkpoint {ckpt} was trained with "
            f"data.num_digits={digits} (train one with data.num_digits=1)"
        )
    return model.to(pick_device(cfg.device)), train_cfg


def test_digits(cfg: DictConfig, train_cfg: DictConfig) -> Digits:
    return load_digits(cfg.data_dir or train_cfg.data.data_dir, train=False)


def render_synchronised(
    rng: np.random.Generator, traj: Trajectory, digits: Digits, num_videos: int, size: int
) -> torch.Tensor:
    """One trajectory drawn with ``num_videos`` different sets of test digits (the paper's
    Fig. 6 batch) -> (N, T, S, S)."""
    num_digits = traj.collisions.shape[1]
    replace = num_videos * num_digits > len(digits.images)
    which = rng.choice(len(digits.images), (num_videos, num_digits), replace=replace)
    return torch.from_numpy(np.stack([render(traj, digits.images[w], size) for w in which]))


def protocol(cfg: DictConfig, train_cfg: DictConfig, digits: Digits) -> dict:
    ckpt = str(cfg.ckpt_path)
    return {
        "command": cfg.command,
        "checkpoint": ckpt,
        "checkpoint_sha256": sha256(ckpt),
        "model": train_cfg.model.get("variant"),
        "num_digits": int(train_cfg.data.num_digits),
        "image_size": int(train_cfg.data.image_size),
        "digits": digits.source,
        "seed": cfg.seed,
        "package_version": svg_lightning.__version__,
    }


def log_results(cfg: DictConfig, train_cfg, out: Path, scalars: dict, images: dict) -> None:
    """Scalars and plots to the loggers named by ``logger=...`` (none by default)."""
    name = f"{train_cfg.get('task_name', 'model')}-analyze-{cfg.command}"
    loggers = instantiate_loggers(cfg.get("logger"), save_dir=out, wandb_name=name)
    log_scalars(loggers, {k: v for k, v in scalars.items() if not math.isnan(v)})
    for key, path in images.items():
        log_media(loggers, f"analyze/{key}", path)
