"""Training: the configured model on the configured data, then held-out scores and samples."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from svg_lightning import runs
from svg_lightning.callbacks import SaveOnSigterm
from svg_lightning.checkpoint import AtomicCheckpointIO, check_resumable
from svg_lightning.config import config_dir, validate_config
from svg_lightning.errors import PreemptedError
from svg_lightning.evaluate.report import report_run
from svg_lightning.loggers import finish_wandb, instantiate_loggers
from svg_lightning.module import test_curves

log = logging.getLogger(__name__)


def requeued_checkpoint(out: Path) -> Path | None:
    """A job requeued into its own run folder (a SLURM sweep job keeps its folder) continues
    from the newest checkpoint it left there: our last.ckpt or Lightning's hpc_ckpt_*.ckpt."""
    found = [p for p in [runs.last_checkpoint(out), *out.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint to resume, checked before anything starts: readable, and of the configured
    architecture. Its run's W&B id is reused so the curves continue in the same W&B run."""
    out = Path(cfg.paths.output_dir)
    if not cfg.get("ckpt_path"):
        ckpt = requeued_checkpoint(out)
        if ckpt is None:
            return None
        log.info("This run folder already holds %s (a requeued job): resuming from it", ckpt)
    elif cfg.ckpt_path == "last":
        ckpt = runs.find_last_checkpoint(cfg.paths.log_dir, cfg.task_name, exclude=out)
    else:
        ckpt = Path(cfg.ckpt_path)
    check_resumable(ckpt, cfg.model)
    wandb_id = runs.read_run_info(runs.run_of(ckpt)).get("wandb_id")
    if wandb_id and cfg.get("logger") and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.id = wandb_id
            cfg.logger.wandb.resume = "allow"
    log.info("Resuming from %s", ckpt)
    return ckpt


def train(cfg: DictConfig) -> float | None:
    """Train, save ``last.ckpt``, and (``summary.enabled``) score the held-out videos. Returns
    ``cfg.optimized_metric`` (for a Hydra sweeper), or None when it was not logged."""
    try:
        return _train(cfg)
    finally:
        finish_wandb()  # so in-process runs (tests, notebooks, sweeps) never share a W&B run


def _train(cfg: DictConfig) -> float | None:
    validate_config(cfg)
    ckpt = resume_from(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_config(out, cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        # Saving on SIGTERM is not optional: a preempted job must never lose its work.
        callbacks=[
            *(instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c),
            SaveOnSigterm(),
        ],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        ids = [lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger)]
        runs.write_run_info(out, ids[0] if ids else None, ckpt)

    last = runs.last_checkpoint(out)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    except SIGTERMException:  # SaveOnSigterm has saved last.ckpt at the end of the batch
        raise PreemptedError(
            f"stopped by SIGTERM at step {trainer.global_step}; saved {last}. Resume with the same "
            "command plus ckpt_path=last (a job requeued into this run folder resumes by itself)"
        ) from None
    if not trainer.fast_dev_run:
        trainer.save_checkpoint(last)  # the final step, whatever the checkpoint interval
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if cfg.summary.enabled:
        settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
        curves = test_curves(trainer, model, datamodule, settings)
        if trainer.is_global_zero and curves:  # under ddp_spawn the results stay in the workers
            report_run(
                out, model, curves, settings, datamodule, trainer.loggers, last,
                cfg.summary.grid_videos, cfg.summary.grid_samples, label=cfg.task_name,
                extra={"step": trainer.global_step},
            )  # fmt: skip
    return None if metric is None else float(metric)


def last_wins(overrides: list[str]) -> list[str]:
    """Hydra overrides with only the last value of each key (Hydra refuses repeated keys)."""
    by_key = {o.split("=", 1)[0]: o for o in overrides}
    return list(by_key.values())


def train_in(root: str | Path, overrides: list[str] = (), progress_bar: bool = True) -> Path:
    """Train the config ``python -m svg_lightning OVERRIDES`` composes (a later override of a
    key wins), with every path under ``root`` and the run in ``root/train/<time>/`` (for
    notebooks and scripts); returns the run folder."""
    root = Path(root).resolve()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=last_wins(list(overrides)))
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
    ]
    return runs.last_checkpoint(train_in(root, [*base, *overrides], progress_bar=False))
