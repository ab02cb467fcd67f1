"""Best-of-N SSIM/PSNR/LPIPS and FVD evaluation of a checkpoint under its dataset's protocol,
through ``Trainer.test`` (``python -m svg_lightning.evaluate ckpt_path=...``)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities import rank_zero_only

from svg_lightning import runs
from svg_lightning.callbacks import stopped_by_signal
from svg_lightning.checkpoint import describe, model_from, read_checkpoint, stored_config
from svg_lightning.config import (
    Checks,
    check_accelerator,
    check_eval,
    check_model_fits_data,
    trainer_device,
)
from svg_lightning.devices import sample_chunk
from svg_lightning.errors import ConfigError, InputError
from svg_lightning.evaluate.protocol import run_best_of_n
from svg_lightning.evaluate.report import FVD_SELECTION_RULE, METRICS, report_run
from svg_lightning.files import sha256
from svg_lightning.loggers import instantiate_loggers
from svg_lightning.memory_checks import check_eval_memory
from svg_lightning.metrics import FVD_RULE, LPIPS_RULE, i3d_file, load_i3d, load_lpips, lpips_files
from svg_lightning.metrics.best_of_n import EvalSettings
from svg_lightning.metrics.fvd import I3D, MIN_FRAMES
from svg_lightning.metrics.perceptual import (
    MIN_SIZE,
    LPIPSAlex,
    MissingWeightsError,
    WeightsFileError,
)
from svg_lightning.module import SVGModule

PROTOCOL = "protocol"  # eval.n_past/n_future: the dataset's protocol value


def length(cfg_value, protocol_value: int, trained_value: int) -> int:
    """``protocol``: the dataset's evaluation protocol; null: the model's training value."""
    if cfg_value == PROTOCOL:
        return protocol_value
    return trained_value if cfg_value is None else cfg_value


def eval_settings(cfg: DictConfig, data_cls, hparams, num_videos) -> EvalSettings:
    """The checked ``eval`` settings, lengths resolved (see ``length``)."""
    e, proto = cfg.eval, data_cls.protocol
    check_eval(e, PROTOCOL, num_videos)
    n_past = length(e.n_past, proto["n_past"], hparams["n_past"])
    n_future = length(e.n_future, proto["n_future"], hparams["n_future"])
    if data_cls.max_seq_len and n_past + n_future > data_cls.max_seq_len:
        raise ConfigError(
            f"eval.n_past + eval.n_future = {n_past + n_future} is longer than the dataset's "
            f"{data_cls.max_seq_len}-frame videos"
        )
    chunk = sample_chunk(e.sample_chunk, trainer_device(cfg.trainer))
    return EvalSettings(
        n_past, n_future, e.num_samples, chunk, e.seed, e.reference_ssim, e.bn, e.fvd_draws
    )


# The eval settings that give the weight files' paths, by (metric, the loader's argument).
WEIGHT_SETTINGS = {
    ("LPIPS", "backbone"): "eval.lpips_backbone",
    ("LPIPS", "linear"): "eval.lpips_linear",
    ("FVD", "path"): "eval.i3d",
}


def weight_files(asked: bool | None, default: bool, name: str, locate, unfit: str | None):
    """The weight files of metric ``name`` (LPIPS or FVD) when it is on, else None.

    ``asked`` is eval.<name>: null follows the dataset's protocol (``default``) and quietly
    skips a metric whose files are not found; true requires the files, and a missing one is an
    error here, before any sampling. ``unfit``: why these videos cannot be scored by it."""
    if asked is False or (asked is None and not default):
        return None
    key = f"eval.{name.lower()}"
    try:
        if unfit:
            raise ConfigError(unfit)
        return locate()
    except (ConfigError, MissingWeightsError) as err:
        if isinstance(err, MissingWeightsError):  # the loader's argument -> this command's key
            err = err.hint(WEIGHT_SETTINGS.get((name, err.argument)))
        if asked:
            raise ConfigError(f"{key}=true, but {err}") from None
        print(f"note: {name} not computed ({key}=null): {err}", file=sys.stderr)
        return None


def described(paths) -> list[dict]:
    """File and sha256 of each weight file, for metrics.json."""
    return [{"file": str(p), "sha256": sha256(p)} for p in paths]


def perceptual_networks(
    e: DictConfig, protocol: dict, settings: EvalSettings, image_size: int, num_videos: int
) -> tuple[LPIPSAlex | None, I3D | None, dict]:
    """The LPIPS and I3D networks ``eval.lpips``/``eval.fvd`` switch on (see ``weight_files``),
    and what metrics.json records of them (rules, weight files and their sha256)."""
    frames = settings.n_past + settings.n_future
    small = f"LPIPS needs frames of at least {MIN_SIZE}x{MIN_SIZE}; these are {image_size}x"
    lpips_paths = weight_files(
        e.lpips, protocol.get("lpips", False), "LPIPS",
        lambda: lpips_files(e.lpips_backbone, e.lpips_linear),
        f"{small}{image_size}" if image_size < MIN_SIZE else None,
    )  # fmt: skip
    unfit = None
    if frames < MIN_FRAMES:
        unfit = f"FVD's I3D needs videos of at least {MIN_FRAMES} frames; these have {frames}"
    elif num_videos < 2:
        unfit = "FVD fits a Gaussian to the test videos' features and needs at least 2 videos"
    i3d_path = weight_files(
        e.fvd, protocol.get("fvd", False), "FVD", lambda: i3d_file(e.i3d), unfit
    )
    try:
        lpips_net = load_lpips(*lpips_paths) if lpips_paths else None
        i3d_net = load_i3d(i3d_path) if i3d_path else None
    except WeightsFileError as err:
        raise InputError(str(err)) from None
    record = {
        "lpips": {"rule": LPIPS_RULE, "weights": described(lpips_paths)} if lpips_net else None,
        "fvd": None if i3d_net is None else {
            "rule": FVD_RULE, "selection": FVD_SELECTION_RULE, "draws": settings.fvd_draws,
            "weights": described([i3d_path]),
        },
    }  # fmt: skip
    return lpips_net, i3d_net, record


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


def trained_with(cfg: DictConfig, ckpt: Path, state: dict, model: SVGModule):
    """The config the checkpoint was trained with and its DataModule class, checked to describe
    frames the model takes."""
    train_cfg = runs.training_config(ckpt, cfg.train_config, stored_config(state))
    data_cls = data_class(train_cfg, cfg.train_config)
    source = f"train_config={cfg.train_config}" if cfg.train_config else "its training config"
    check_model_fits_data(model.hparams, train_cfg.data, data_cls, source, stored_config(state))
    return train_cfg, data_cls


def check_trainer(cfg: DictConfig, settings: EvalSettings, hparams) -> None:
    """The machine can run ``cfg.trainer`` and hold an evaluation batch."""
    check_eval_memory(cfg.eval, settings, hparams, cfg.trainer)
    c = Checks()
    check_accelerator(c, cfg.trainer)
    c.raise_if_any("trainer settings")


def eval_data_config(
    train_cfg: DictConfig, settings: EvalSettings, cfg: DictConfig, num_videos: int
) -> DictConfig:
    """The training run's data config, set to the evaluation's videos, lengths and batch size
    (and ``data_dir`` when given)."""
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
    return data_cfg


def eval_datamodule(data_cfg: DictConfig):
    """The DataModule of ``data_cfg``, its test videos checked to be there."""
    datamodule = instantiate(data_cfg)
    datamodule.check_available("test")
    return datamodule


def provenance_of(
    cfg: DictConfig, settings: EvalSettings, num_videos: int, checkpoint: dict,
    model: SVGModule, data_cfg: DictConfig, train_cfg: DictConfig,
) -> dict:  # fmt: skip
    """The settings that decided the numbers, for metrics.json and the loggers."""
    return {
        "eval": {
            **OmegaConf.to_container(cfg.eval, resolve=True),
            **asdict(settings),
            "num_videos": num_videos,
        },  # fmt: skip
        "checkpoint": checkpoint,
        "model": dict(model.hparams),
        "data": OmegaConf.to_container(data_cfg, resolve=True),
        "train_config": OmegaConf.to_container(train_cfg, resolve=True),
    }


def claim_output(out: Path, held: ExitStack) -> Path:
    """The evaluation folder, claimed by rank 0 until ``held`` closes; a ConfigError when it
    holds a finished evaluation."""
    out.mkdir(parents=True, exist_ok=True)
    # Rank 0 alone: a ddp job's other ranks are copies of this command writing into its folder.
    if rank_zero_only.rank == 0 and runs.on_first_node():
        held.enter_context(runs.claimed(out, "an evaluation"))
        if (out / METRICS).is_file():
            raise ConfigError(
                f"{out} holds a finished evaluation ({METRICS}); give this one another "
                "hydra.run.dir, or none (every evaluation gets a new folder)"
            )
    return out


def eval_loggers(
    cfg: DictConfig, train_cfg: DictConfig, out: Path, task: str, provenance: dict
) -> list:
    """The loggers of ``cfg`` (else the training run's), the provenance logged to each."""
    loggers = instantiate_loggers(
        cfg.get("logger") or train_cfg.get("logger"), out, f"{task}-eval", "eval", train_cfg
    )
    for lg in loggers:
        lg.log_hyperparams(provenance)
    return loggers


def evaluate(cfg: DictConfig) -> tuple[dict, dict[str, Path]]:
    """Score ``cfg.ckpt_path``; returns the metrics document and the written paths (both empty
    on processes other than rank 0). Everything that can be checked is checked before the
    evaluation folder or a logger exists."""
    ckpt = Path(cfg.ckpt_path)
    state = read_checkpoint(ckpt)
    model = model_from(state, ckpt)
    train_cfg, data_cls = trained_with(cfg, ckpt, state, model)
    num_videos = cfg.eval.num_videos or data_cls.protocol["num_videos"]
    settings = eval_settings(cfg, data_cls, model.hparams, num_videos)
    check_trainer(cfg, settings, model.hparams)
    data_cfg = eval_data_config(train_cfg, settings, cfg, num_videos)
    datamodule = eval_datamodule(data_cfg)
    lpips_net, i3d_net, perceptual = perceptual_networks(
        cfg.eval, data_cls.protocol, settings, model.hparams.image_size, num_videos
    )
    checkpoint = describe(ckpt, state)
    provenance = provenance_of(cfg, settings, num_videos, checkpoint, model, data_cfg, train_cfg)
    task = train_cfg.get("task_name", "model")
    with ExitStack() as held:  # the folder's claim (runs.claimed), to the very end
        out = claim_output(Path(cfg.paths.output_dir), held)
        loggers = eval_loggers(cfg, train_cfg, out, task, provenance)
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[RichProgressBar()])
        with stopped_by_signal(f"the evaluation of {ckpt}"):
            result = run_best_of_n(trainer, model, datamodule, settings, lpips_net, i3d_net)
        if not trainer.is_global_zero or result is None:
            return {}, {}
        return report_run(
            out, model, result, settings, datamodule, loggers, checkpoint, cfg.eval.grid_videos,
            cfg.eval.grid_samples, label=task, extra=perceptual, provenance=provenance,
        )  # fmt: skip
