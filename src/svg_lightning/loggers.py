"""Experiment loggers, written once for training, evaluation and analysis: instantiating the
``logger`` config group, sending scalars and media to each logger in the form it can show, and
a W&B logger that runs offline by itself when it cannot reach its server."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image, ImageSequence
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

from svg_lightning import runs

log = logging.getLogger(__name__)

PUBLIC_WANDB = "https://api.wandb.ai"
# W&B job types by Hydra job name (hydra.job.name of each command's primary config).
JOB_TYPES = {"train": "train", "evaluate": "eval", "analyze": "analyze"}


def wandb_server() -> tuple[str, int, str]:
    """(host, port, netloc) of the W&B server runs go to: ``WANDB_BASE_URL`` (a self-hosted
    server) when set, else the public service."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or PUBLIC_WANDB)
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or "", port, url.netloc


def _has_api_key() -> bool:
    """An API key in the environment, or in the netrc file (``$NETRC`` or ~/.netrc) for the
    server's host, where ``wandb login`` writes it (under host:port for a non-default port)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host, _, netloc = wandb_server()
    try:
        found = netrc.netrc(os.environ.get("NETRC") or None)
    except (OSError, netrc.NetrcParseError):
        return False
    return any(found.authenticators(machine) for machine in dict.fromkeys((netloc, host)))


def _reachable(timeout: float = 2.0) -> bool:
    host, port, _ = wandb_server()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_logger(offline: bool | None = None, **kwargs) -> WandbLogger | None:
    """``offline=None`` decides: online only with an API key and a reachable server (or
    ``WANDB_MODE=online``); offline otherwise, and says how to sync the run later.
    ``WANDB_MODE=disabled``: no logger at all (None), so no W&B run of any kind."""
    mode = os.environ.get("WANDB_MODE")
    if mode == "disabled":
        log.info("WANDB_MODE=disabled: no W&B logger and no W&B run")
        return None
    if offline is None:
        offline = mode == "offline" or (mode != "online" and not (_has_api_key() and _reachable()))
    if offline and kwargs.get("id") and kwargs.get("resume"):
        # W&B cannot continue a run offline: it would write a second offline copy of the run under
        # the same id, and syncing that copy replaces what the first one uploaded.
        log.warning(
            "W&B is offline and cannot continue run %s offline: this resumed training is logged "
            "as a new W&B run (same name and group)",
            kwargs["id"],
        )
        kwargs = {**kwargs, "id": None, "resume": None}
    logger = WandbLogger(offline=offline, **kwargs)
    if offline:
        save_dir = kwargs.get("save_dir", ".")
        log.warning(
            "W&B runs offline (no API key or no network). Upload later with: "
            "wandb sync %s/wandb/offline-run-*",
            save_dir,
        )
    return logger


def command_job_type() -> str | None:
    """The W&B job type of the running command (train, eval, analyze), or None outside a
    Hydra command (tests, notebooks)."""
    if not HydraConfig.initialized():
        return None
    return JOB_TYPES.get(HydraConfig.get().job.name)


def instantiate_loggers(
    group: DictConfig | None,
    save_dir: str | Path | None = None,
    wandb_name: str | None = None,
    job_type: str | None = None,
    trained: DictConfig | None = None,
) -> list[Logger]:
    """One logger per entry of the ``logger`` group; evaluation and analysis write into their own
    folder (``save_dir``) and name their W&B run (``wandb_name``). The W&B job type is
    ``job_type``, else the config's, else the command's. ``trained``: the training config of
    the model a command scores, whose task groups the W&B run and whose tags it carries where
    the logger config leaves them empty, so a model's evaluations sit next to its training."""
    loggers = []
    for name, lg in (group or {}).items():
        if lg is None:
            continue
        settings = {} if save_dir is None else {"save_dir": str(save_dir)}
        if name == "wandb":
            settings["job_type"] = job_type or lg.get("job_type") or command_job_type()
            if wandb_name:
                settings["name"] = wandb_name
            if trained is not None and not lg.get("group"):
                settings["group"] = trained.get("task_name")
            if trained is not None and not lg.get("tags"):
                settings["tags"] = list(trained.get("tags") or [])
        if settings:
            with open_dict(lg):  # a run's config.yaml may predate a key (job_type)
                lg = OmegaConf.merge(lg, settings)
        logger = instantiate(lg)
        if logger is not None:
            loggers.append(logger)
    return loggers


def log_scalars(loggers: list[Logger], scalars: dict[str, float], step: int | None = None) -> None:
    for lg in loggers:
        lg.log_metrics(scalars, step=step)
        lg.save()  # outside the fit loop nothing else flushes file loggers


def _gif_strip(path: Path) -> np.ndarray:
    """A GIF's frames side by side (H, T*W, 3): what an image-only logger can show of a video."""
    with Image.open(path) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    return np.concatenate(frames, axis=1)


def log_media(loggers: list[Logger], key: str, path: Path, step: int | None = None) -> None:
    """Send a PNG or GIF already written to disk to every logger that takes media: W&B as an
    image or a video; TensorBoard as an image (a GIF as its frames side by side)."""
    path = Path(path)
    video = path.suffix.lower() == ".gif"
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            if video:
                lg.log_video(key, [str(path)], step=step)
            else:
                lg.log_image(key, [str(path)], step=step)
        elif isinstance(lg, TensorBoardLogger):
            with Image.open(path) as img:
                pixels = _gif_strip(path) if video else np.asarray(img.convert("RGB"))
            lg.experiment.add_image(key, pixels, step or 0, dataformats="HWC")


def swept_values(overrides: list[str], swept: set[str]) -> dict[str, str]:
    """This job's value of each swept key, by the key's shortest unambiguous name (its last
    part, unless two swept keys share it)."""
    values = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.key_or_group in swept and not o.is_sweep_override():
            values[o.key_or_group] = o.get_value_element_as_str()
    last = [k.rpartition(".")[2] for k in values]
    return {k.rpartition(".")[2] if last.count(k.rpartition(".")[2]) == 1 else k: v
            for k, v in values.items()}  # fmt: skip


def swept_keys(sweep_dir: Path) -> set[str]:
    """The keys a multirun sweeps: those given several values on its command line, and those
    its sweeper searches (hparams_search), read from the multirun.yaml Hydra writes first."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return set()
    hydra = OmegaConf.load(path).hydra
    parsed = OverridesParser.create().parse_overrides(list(hydra.overrides.task))
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    return keys | set(OmegaConf.select(hydra, "sweeper.params", default=None) or {})


def wandb_names(task: str, swept: dict[str, str], sweep: str | None = None) -> tuple[str, str]:
    """(run name, group) of a W&B run: the task, plus this job's swept values in a multirun
    (``sweep``: its folder's name), e.g. ``smmnist_lp[beta=0.001]``; the jobs of one multirun
    share a group of their own. The full list of overrides stays in the logged config."""
    values = ",".join(f"{k}={v}" for k, v in swept.items())
    name = f"{task}[{values}]" if values else task
    return name, f"{task}-sweep-{sweep}" if sweep else task


def run_tags(cfg: DictConfig) -> list[str]:
    """The dataset and the model variant of the resolved config, then the config's own tags
    (so ``model=svg_fp`` is never tagged ``lp`` by a preset)."""
    derived = [get_class(cfg.data._target_).name, cfg.model.get("variant", "lp")]
    return list(dict.fromkeys([*derived, *(cfg.get("tags") or [])]))


def name_wandb_run(cfg: DictConfig) -> None:
    """Fill the W&B settings left null in the config (name, group, job_type), from the Hydra
    job when there is one (the command line), else from the task alone (tests, notebooks)."""
    wandb = OmegaConf.select(cfg, "logger.wandb")
    if not wandb:
        return
    swept, sweep = {}, None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        swept = swept_values(list(hc.overrides.task), swept_keys(Path(hc.sweep.dir)))
        sweep = Path(hc.sweep.dir).name
    name, group = wandb_names(cfg.task_name, swept, sweep)
    with open_dict(wandb):
        for key, value in (("name", name), ("group", group), ("job_type", "train")):
            if wandb.get(key) is None:
                wandb[key] = value


def continue_wandb_run(cfg: DictConfig, ckpt: Path | None) -> None:
    """A resumed training reuses the W&B id of the run ``ckpt`` came from, so its curves go on
    in the same W&B run."""
    wandb_id = runs.read_run_info(runs.run_of(ckpt)).get("wandb_id") if ckpt else None
    if wandb_id and cfg.get("logger") and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.id = wandb_id
            cfg.logger.wandb.resume = "allow"


def wandb_run_id(loggers: list[Logger]) -> str | None:
    """The id of the W&B run among ``loggers`` (recorded in run_info.json), or None."""
    ids = [lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger)]
    return ids[0] if ids else None


def finish_wandb() -> None:
    """Each command, each job of a multirun and each in-process run gets its own W&B run. Called
    once per run by what started it from outside the library: the command runner
    (``runner.guarded``) and the Python API (``api.train``); ``train()`` itself does not."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
