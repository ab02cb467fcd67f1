"""Training: the configured model on the configured data, then held-out scores and samples.

``train(cfg)`` reads top to bottom: check the config and the checkpoint it resumes, instantiate
the data, model, loggers and trainer, fit, test on the held-out videos, report. What surrounds
a run belongs to its entry point, the command line (``python -m svg_lightning``, through
``hydra_entry``) or the Python API (``api.train``): both silence the known warnings and finish
the W&B run."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from svg_lightning import runs
from svg_lightning.callbacks import stopped, stopped_by_signal, with_required_callbacks
from svg_lightning.checkpoint import AtomicCheckpointIO, resume_from
from svg_lightning.config import validate_config
from svg_lightning.console import print_config, print_table
from svg_lightning.evaluate.protocol import run_best_of_n
from svg_lightning.evaluate.report import report_run
from svg_lightning.files import sha256
from svg_lightning.loggers import (
    continue_wandb_run,
    instantiate_loggers,
    name_wandb_run,
    run_tags,
    wandb_run_id,
)
from svg_lightning.memory_checks import check_training_fits


def train(cfg: DictConfig) -> float | None:
    """Train, save ``last.ckpt``, and (``summary.enabled``) score the held-out videos. Returns
    ``cfg.optimized_metric`` (for a Hydra sweeper), or None when it was not logged."""
    # Every check comes before the first write: a refused run makes no folder.
    validate_config(cfg)
    ckpt = resume_from(cfg)
    continue_wandb_run(cfg, ckpt)
    datamodule = instantiate(cfg.data)
    datamodule.check_available("fit")
    check_training_fits(cfg)  # this machine's memory: after what any machine would refuse
    with open_dict(cfg):
        cfg.tags = run_tags(cfg)  # recorded in config.yaml and sent to W&B alike
    name_wandb_run(cfg)
    if (cfg.get("extras") or {}).get("print_config", True):
        print_config(cfg)

    out = Path(cfg.paths.output_dir)
    with ExitStack() as held:  # the run folder's claim (runs.claimed), to the very end
        # Rank 0 alone: a ddp job's other ranks are copies of this command writing into its folder.
        if rank_zero_only.rank == 0 and runs.on_first_node():
            held.enter_context(runs.claimed(out, "a training"))
            runs.check_same_run(out, cfg)
        out.mkdir(parents=True, exist_ok=True)
        runs.write_config(out, cfg)
        pl.seed_everything(cfg.seed, workers=True)

        model = instantiate(cfg.model)
        # The resolved config is logged once (instantiate_trainer); without this Lightning would
        # log the model's and the data's constructor arguments again, as a flat second copy.
        model._log_hyperparams = datamodule._log_hyperparams = False
        trainer = instantiate_trainer(cfg, ckpt)

        last = runs.last_checkpoint(out)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        except SIGTERMException:  # SaveOnSigterm has saved last.ckpt at the end of the batch
            raise stopped(trainer, last) from None
        metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
        if trainer.is_global_zero:  # before the summary: a sweep's table (sweep.py) reads them
            runs.write_scores(out, trainer.global_step, trainer.callback_metrics)

        score_held_out(cfg, trainer, model, datamodule, last)
    return None if metric is None else float(metric)


def instantiate_trainer(cfg: DictConfig, ckpt: Path | None) -> pl.Trainer:
    """The configured trainer with the callbacks no run goes without, checkpoints written
    atomically, and the loggers, which get the resolved config; run_info.json records the W&B
    run and the checkpoint resumed."""
    loggers = instantiate_loggers(cfg.get("logger"), job_type="train")
    configured = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=with_required_callbacks(configured, cfg),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        runs.write_run_info(
            Path(cfg.paths.output_dir), wandb_run_id(loggers), ckpt, str(trainer.precision)
        )
    return trainer


def score_held_out(cfg: DictConfig, trainer: pl.Trainer, model, datamodule, last: Path) -> None:
    """``summary.enabled``: the held-out videos scored best of N with the weights ``last`` holds,
    and the report (table, curves, sample grids) in the run folder and to the loggers. Else the
    run still says where everything went."""
    out = Path(cfg.paths.output_dir)
    if not cfg.summary.enabled:
        if trainer.is_global_zero:  # fast_dev_run (debug=fdr) writes no checkpoint
            written = {"checkpoint": last} if last.is_file() else {}
            print_table(f"{cfg.task_name}: step {trainer.global_step}", [], [],
                        {"run": out, **written})  # fmt: skip
        return
    settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
    with stopped_by_signal(
        f"the held-out summary (training finished and saved {last})",
        f"score it with python -m svg_lightning.evaluate ckpt_path={last}",
    ):
        # In float32 whatever the training precision: the published numbers are float32
        # (bf16 sampling moves them: docs/performance.md).
        result = run_best_of_n(trainer, model, datamodule, settings, float32=True)
    if not (trainer.is_global_zero and result):  # under ddp_spawn the results stay in the workers
        return
    # The model scored is the one last.ckpt holds (LastCheckpoint saved it at the end).
    source = {"path": str(last), "sha256": sha256(last) if last.is_file() else None,
              "global_step": trainer.global_step}  # fmt: skip
    provenance = {"summary": OmegaConf.to_container(cfg.summary),
                  "train_config": OmegaConf.to_container(cfg, resolve=True)}  # fmt: skip
    report_run(
        out, model, result, settings, datamodule, trainer.loggers, source,
        cfg.summary.grid_videos, cfg.summary.grid_samples, label=cfg.task_name,
        provenance=provenance,
    )  # fmt: skip
