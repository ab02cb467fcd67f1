"""What both analyses share: the checks on the checkpoint, test digits, outputs and loggers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

import svg_lightning
from svg_lightning import runs
from svg_lightning.checkpoint import describe, model_from, read_checkpoint, stored_config
from svg_lightning.data.datamodules import SMMNISTDataModule
from svg_lightning.data.digits import Digits, load_digits
from svg_lightning.data.smmnist import Trajectory, render
from svg_lightning.devices import pick_device
from svg_lightning.errors import ConfigError
from svg_lightning.loggers import instantiate_loggers, log_media, log_scalars
from svg_lightning.module import SVGModule


@dataclass(frozen=True)
class Analysed:
    """The model an analysis runs (on its device), its training config, and what the outputs
    cite of its checkpoint (``checkpoint.describe``: path, sha256 of the bytes loaded, step)."""

    model: SVGModule
    train_cfg: DictConfig
    checkpoint: dict


def load_for(cfg: DictConfig, command: str, variants=None, num_digits=None) -> Analysed:
    """The checkpoint's model, or ConfigError saying why ``command`` cannot analyse it: only
    SM-MNIST models have known trajectories."""
    ckpt = Path(cfg.ckpt_path)
    state = read_checkpoint(ckpt)
    model = model_from(state, ckpt)
    train_cfg = runs.training_config(ckpt, cfg.train_config, stored_config(state))
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
    return Analysed(model.to(pick_device(cfg.device)), train_cfg, describe(ckpt, state))


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


def protocol(cfg: DictConfig, loaded: Analysed, digits: Digits) -> dict:
    train_cfg = loaded.train_cfg
    return {
        "command": cfg.command,
        "checkpoint": loaded.checkpoint["path"],
        "checkpoint_sha256": loaded.checkpoint["sha256"],
        "step": loaded.checkpoint["global_step"],
        "model": train_cfg.model.get("variant"),
        "num_digits": int(train_cfg.data.num_digits),
        "image_size": int(train_cfg.data.image_size),
        "digits": digits.source,
        "seed": cfg.seed,
        "package_version": svg_lightning.__version__,
    }


def provenance(cfg: DictConfig, loaded: Analysed) -> dict:
    """What decided an analysis' numbers: its settings, the checkpoint, the model's
    architecture and training settings, and the config the model was trained with."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("paths", None)
    return {
        "analyze": settings,
        "checkpoint": loaded.checkpoint,
        "model": dict(loaded.model.hparams),
        "train_config": OmegaConf.to_container(loaded.train_cfg, resolve=True),
    }


def log_results(cfg: DictConfig, loaded: Analysed, out: Path, scalars: dict, images: dict) -> None:
    """Scalars, plots and the provenance to the loggers named by ``logger=...`` (none by
    default), at the optimizer step of the analysed checkpoint (``numbering``), grouped with
    the model's training run."""
    name = f"{loaded.train_cfg.get('task_name', 'model')}-analyze-{cfg.command}"
    loggers = instantiate_loggers(cfg.get("logger"), out, name, trained=loaded.train_cfg)
    if not loggers:
        return
    step = loaded.checkpoint["global_step"]
    for lg in loggers:
        lg.log_hyperparams(provenance(cfg, loaded))
    log_scalars(loggers, {k: v for k, v in scalars.items() if not math.isnan(v)}, step)
    for key, path in images.items():
        log_media(loggers, f"analyze/{key}", path, step)
