"""`python -m svg_lightning`: train the configured model, then score and show held-out samples."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

import svg_lightning
from svg_lightning.config import ConfigError, config_dir, validate_config
from svg_lightning.data.prepared import DataNotPreparedError
from svg_lightning.viz import save_sample_gif, save_sample_grid

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
    model.test_num_samples = cfg.summary.num_samples
    trainer.test(model, datamodule=datamodule, verbose=False)
    _write_summary(cfg, trainer, model, datamodule, out)


@rank_zero_only
def _write_summary(cfg, trainer, model, datamodule, out: Path) -> None:
    res = model.test_results
    if not res:  # under ddp_spawn the results stay in the worker processes
        log.warning("No held-out results in this process; the summary is skipped.")
        return
    summary = {
        "num_videos": res["num_videos"],
        "num_samples": cfg.summary.num_samples,
        "n_past": model.hparams.n_past,
        "n_future": model.test_n_future,
        "step": trainer.global_step,
        "scores": {k: v for k, v in res.items() if k != "num_videos"},
        "version": svg_lightning.__version__,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))

    n, s = cfg.summary.grid_videos, cfg.summary.grid_samples
    batch = [datamodule.test_set[i]["frames"] for i in range(min(n, len(datamodule.test_set)))]
    x = torch.stack(batch).to(model.device)
    p = model.hparams.n_past
    samples = model.sample(x[:, :p], model.test_n_future, s).frames
    cond, future = x[:, :p], x[:, p : p + model.test_n_future]
    png = save_sample_grid(out / "samples.png", cond, future, samples)
    gif = save_sample_gif(out / "samples.gif", cond, future, samples)
    for lg in trainer.loggers:
        if hasattr(lg, "log_image"):
            lg.log_image("samples/grid", [str(png)])

    ckpt = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
    _print_summary(
        summary,
        {"checkpoint": ckpt, "metrics": out / "metrics.json", "grid": png, "animation": gif},
    )


def _print_summary(summary: dict, paths: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    sc = summary["scores"]
    table = Table(
        title=f"Held-out scores: {summary['num_videos']} videos, {summary['n_past']} -> "
        f"{summary['n_future']} frames, best of {summary['num_samples']} samples"
    )
    for col in ("predictor", "SSIM", "PSNR (dB)"):
        table.add_column(col)
    fmt = lambda k: f"{sc[k]['mean']:.4f} ± {sc[k]['ci95']:.4f}"  # noqa: E731
    table.add_row("model, best sample", fmt("ssim_best"), fmt("psnr_best"))
    table.add_row("model, mean over samples", fmt("ssim_mean"), fmt("psnr_mean"))
    table.add_row("copy last conditioning frame", fmt("copy_last_ssim"), fmt("copy_last_psnr"))
    table.add_row("all-black frame", fmt("black_ssim"), fmt("black_psnr"))
    console = Console()
    console.print(table)
    for name, path in paths.items():
        console.print(f"[bold]{name}[/bold]: {path}")


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
