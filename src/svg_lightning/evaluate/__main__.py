"""`python -m svg_lightning.evaluate ckpt_path=...`: best-of-N SSIM/PSNR through Trainer.test."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import RichProgressBar

from svg_lightning.checkpoint import CheckpointError, load_model
from svg_lightning.config import ConfigError, config_dir
from svg_lightning.data.prepared import DataNotPreparedError
from svg_lightning.evaluate.report import report_run
from svg_lightning.module import EvalSettings

log = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def run_config(ckpt: Path, given: str | None) -> DictConfig:
    """The training config of the checkpoint's run."""
    path = Path(given) if given else ckpt.resolve().parent.parent / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no training config for checkpoint {ckpt}: expected {path} (written by every "
            "training run); pass train_config=PATH to point at it"
        )
    return OmegaConf.load(path)


def eval_settings(cfg: DictConfig, data_cls) -> EvalSettings:
    e, proto = cfg.eval, data_cls.protocol
    n_past = e.n_past if e.n_past is not None else proto["n_past"]
    n_future = e.n_future if e.n_future is not None else proto["n_future"]
    for key, value in (("n_past", n_past), ("n_future", n_future), ("num_samples", e.num_samples)):
        if value < 1:
            raise ConfigError(f"eval.{key}={value} must be >= 1")
    if data_cls.max_seq_len and n_past + n_future > data_cls.max_seq_len:
        raise ConfigError(
            f"eval.n_past + eval.n_future = {n_past + n_future} is longer than the dataset's "
            f"{data_cls.max_seq_len}-frame videos"
        )
    return EvalSettings(n_past, n_future, e.num_samples, e.sample_chunk, e.seed, e.reference_ssim)


def eval_loggers(cfg: DictConfig, train_cfg: DictConfig, out: Path) -> list:
    group = cfg.get("logger") or train_cfg.get("logger")
    loggers = []
    for name, lg in (group or {}).items():
        lg = OmegaConf.merge(lg, {"save_dir": str(out)})
        if name == "wandb":
            lg.name = f"{train_cfg.task_name}-eval"
        loggers.append(instantiate(lg))
    return loggers


def evaluate(cfg: DictConfig) -> dict:
    ckpt = Path(cfg.ckpt_path)
    model = load_model(ckpt)
    train_cfg = run_config(ckpt, cfg.train_config)
    data_cls = get_class(train_cfg.data._target_)
    settings = eval_settings(cfg, data_cls)
    num_videos = cfg.eval.num_videos or data_cls.protocol["num_videos"]
    data_cfg = OmegaConf.merge(
        train_cfg.data,
        {
            "n_past": settings.n_past,
            "n_future": settings.n_future,
            "batch_size": cfg.eval.batch_size,
            "test_videos": num_videos,
            "test_seq_len": settings.n_past + settings.n_future,
        },
    )
    if cfg.data_dir:
        with open_dict(data_cfg):
            data_cfg.data_dir = cfg.data_dir
    datamodule = instantiate(data_cfg)
    model.test_settings = settings

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    loggers = eval_loggers(cfg, train_cfg, out)
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[RichProgressBar()])
    trainer.test(model, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return {}
    return report_run(
        out, model, datamodule, loggers, ckpt, cfg.eval.grid_videos, cfg.eval.grid_samples,
        label=train_cfg.get("task_name", "model"),
    )  # fmt: skip


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except (CheckpointError, ConfigError, DataNotPreparedError) as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    finally:
        from svg_lightning.train import finish_wandb

        finish_wandb()


if __name__ == "__main__":
    main()
