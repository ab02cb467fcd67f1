"""`python -m svg_lightning`: train the configured model, then score and show held-out samples."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from svg_lightning.callbacks import NonFiniteLossError
from svg_lightning.checkpoint import AtomicCheckpointIO, CheckpointError, check_resumable
from svg_lightning.config import ConfigError, config_dir, validate_config
from svg_lightning.data.prepared import DataNotPreparedError
from svg_lightning.evaluate.report import report_run

log = logging.getLogger(__name__)
RUN_INFO = "run_info.json"
# Lightning 2.6 calls a torch pytree API that torch 2.10+ deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def find_last_checkpoint(cfg: DictConfig) -> Path:
    """``ckpt_path=last``: the newest ``checkpoints/last.ckpt`` among this task's earlier runs."""
    runs = Path(cfg.paths.log_dir) / cfg.task_name
    found = [p for p in runs.glob("*/*/checkpoints/last.ckpt") if out_dir(cfg) not in p.parents]
    if not found:
        raise CheckpointError(
            f"ckpt_path=last: no checkpoints/last.ckpt under {runs}; pass ckpt_path=PATH instead"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint to resume, checked before anything starts: readable, and of the configured
    architecture. Its run's W&B id is reused so the curves continue in the same W&B run."""
    if not cfg.get("ckpt_path"):
        return None
    ckpt = find_last_checkpoint(cfg) if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    check_resumable(ckpt, cfg.model)
    info = ckpt.parent.parent / RUN_INFO
    wandb_id = json.loads(info.read_text()).get("wandb_id") if info.is_file() else None
    if wandb_id and cfg.get("logger") and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.id = wandb_id
            cfg.logger.wandb.resume = "allow"
    log.info("Resuming from %s", ckpt)
    return ckpt


def train(cfg: DictConfig) -> float | None:
    try:
        return _train(cfg)
    finally:
        finish_wandb()


def _train(cfg: DictConfig) -> float | None:
    validate_config(cfg)
    ckpt = resume_from(cfg)
    out = out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_instantiate_all(cfg.get("callbacks")),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        write_run_info(out, loggers, ckpt)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    last = out / "checkpoints" / "last.ckpt"
    if not trainer.fast_dev_run:
        trainer.save_checkpoint(last)  # the final step, whatever the checkpoint interval
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if cfg.summary.enabled:
        summarize_run(cfg, trainer, model, datamodule, out, last)
    return None if metric is None else float(metric)


def write_run_info(out: Path, loggers: list, resumed_from: Path | None) -> None:
    """What a later ``ckpt_path=last`` needs to continue this run's W&B run."""
    from pytorch_lightning.loggers import WandbLogger

    ids = [lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger)]
    info = {"wandb_id": ids[0] if ids else None, "resumed_from": str(resumed_from or "")}
    (out / RUN_INFO).write_text(json.dumps(info))


def summarize_run(cfg, trainer: pl.Trainer, model, datamodule, out: Path, last: Path) -> None:
    """Held-out best-of-N scores next to the copy-last and all-black predictors, and samples."""
    model.test_settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
    trainer.test(model, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero or not model.test_curves:
        return  # under ddp_spawn the results stay in the worker processes
    report_run(
        out, model, datamodule, trainer.loggers, last, cfg.summary.grid_videos,
        cfg.summary.grid_samples, label=cfg.task_name, extra={"step": trainer.global_step},
    )  # fmt: skip


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except (ConfigError, DataNotPreparedError, CheckpointError) as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    except NonFiniteLossError as err:
        log.error("%s", err)
        raise SystemExit(3) from None


def finish_wandb() -> None:
    """Each job of a multirun must get its own W&B run."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
