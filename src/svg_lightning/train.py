"""`python -m svg_lightning`: train the configured model, then score and show held-out samples."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from svg_lightning.config import ConfigError, config_dir, validate_config
from svg_lightning.data.prepared import DataNotPreparedError
from svg_lightning.evaluate.report import report_run

log = logging.getLogger(__name__)
# Lightning 2.6 calls a torch pytree API that torch 2.10+ deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def train(cfg: DictConfig) -> float | None:
    validate_config(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=loggers or False
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if cfg.summary.enabled:
        summarize_run(cfg, trainer, model, datamodule, out)
    return None if metric is None else float(metric)


def summarize_run(cfg, trainer: pl.Trainer, model, datamodule, out: Path) -> None:
    """Held-out best-of-N scores next to the copy-last and all-black predictors, and samples."""
    model.test_settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
    trainer.test(model, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero or not model.test_curves:
        return  # under ddp_spawn the results stay in the worker processes
    ckpt = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
    report_run(
        out, model, datamodule, trainer.loggers, ckpt, cfg.summary.grid_videos,
        cfg.summary.grid_samples, label=cfg.task_name, extra={"step": trainer.global_step},
    )  # fmt: skip


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except (ConfigError, DataNotPreparedError) as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    """Each job of a multirun must get its own W&B run."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
