"""Best-of-N SSIM/PSNR evaluation of a checkpoint under its dataset's protocol, through
``Trainer.test`` (``python -m svg_lightning.evaluate ckpt_path=...``)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import RichProgressBar

from svg_lightning import runs
from svg_lightning.checkpoint import load_model
from svg_lightning.config import check_eval, check_model_fits_data
from svg_lightning.errors import ConfigError
from svg_lightning.evaluate.report import report_run
from svg_lightning.loggers import instantiate_loggers
from svg_lightning.module import EvalSettings, test_curves

PROTOCOL = "protocol"  # eval.n_past/n_future: the dataset's protocol value
EVAL_BN = ("running", "batch")


def length(cfg_value, protocol_value: int, trained_value: int) -> int:
    """``protocol``: the dataset's evaluation protocol; null: the model's training value."""
    if cfg_value == PROTOCOL:
        return protocol_value
    return trained_value if cfg_value is None else cfg_value


def eval_settings(cfg: DictConfig, data_cls, hparams) -> EvalSettings:
    e, proto = cfg.eval, data_cls.protocol
    check_eval(e, PROTOCOL)
    n_past = length(e.n_past, proto["n_past"], hparams["n_past"])
    n_future = length(e.n_future, proto["n_future"], hparams["n_future"])
    if data_cls.max_seq_len and n_past + n_future > data_cls.max_seq_len:
        raise ConfigError(
            f"eval.n_past + eval.n_future = {n_past + n_future} is longer than the dataset's "
            f"{data_cls.max_seq_len}-frame videos"
        )
    if e.bn not in EVAL_BN:
        raise ConfigError(f"eval.bn={e.bn!r} is unknown; allowed: {list(EVAL_BN)}")
    return EvalSettings(
        n_past, n_future, e.num_samples, e.sample_chunk, e.seed, e.reference_ssim, e.bn
    )


def data_class(train_cfg: DictConfig, given: str | None):
    """The DataModule class a training config names, or a ConfigError naming the config."""
    target = OmegaConf.select(train_cfg, "data._target_")
    try:
        return get_class(target)
    except Exception:  # hydra raises several types for a missing or bad path
        where = f"train_config={given}" if given else "the checkpoint's training config"
        raise ConfigError(
            f"{where} names data._target_={target!r}, which is not a DataModule of this "
            "package; point train_config= at the config.yaml of the checkpoint's run"
        ) from None


def evaluate(cfg: DictConfig) -> tuple[dict, dict[str, Path]]:
    """Score ``cfg.ckpt_path``; returns the metrics document and the written paths (both empty
    on processes other than rank 0)."""
    ckpt = Path(cfg.ckpt_path)
    model = load_model(ckpt)
    train_cfg = runs.training_config(ckpt, cfg.train_config)
    data_cls = data_class(train_cfg, cfg.train_config)
    source = f"train_config={cfg.train_config}" if cfg.train_config else "its training config"
    check_model_fits_data(model.hparams, train_cfg.data, data_cls, source)
    settings = eval_settings(cfg, data_cls, model.hparams)
    num_videos = cfg.eval.num_videos or data_cls.protocol["num_videos"]
    if settings.bn == "batch" and (
        cfg.eval.batch_size == 1 or num_videos % cfg.eval.batch_size == 1
    ):
        raise ConfigError(
            f"eval.bn=batch normalises over the videos of a batch, but with "
            f"eval.num_videos={num_videos} and eval.batch_size={cfg.eval.batch_size} a batch "
            "holds a single video; pick a batch size that leaves at least 2 in the last batch"
        )
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

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = train_cfg.get("task_name", "model")
    loggers = instantiate_loggers(
        cfg.get("logger") or train_cfg.get("logger"), out, f"{task}-eval", job_type="eval"
    )
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[RichProgressBar()])
    curves = test_curves(trainer, model, datamodule, settings)
    if not trainer.is_global_zero:
        return {}, {}
    return report_run(
        out, model, curves, settings, datamodule, loggers, ckpt, cfg.eval.grid_videos,
        cfg.eval.grid_samples, label=task,
    )  # fmt: skip
