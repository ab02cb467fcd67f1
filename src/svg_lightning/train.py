"""Training: the configured model on the configured data, then held-out scores and samples."""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from svg_lightning import runs
from svg_lightning.callbacks import SaveOnSigterm
from svg_lightning.checkpoint import AtomicCheckpointIO, check_resumable
from svg_lightning.config import config_dir, validate_config
from svg_lightning.console import print_table
from svg_lightning.errors import PreemptedError
from svg_lightning.evaluate.report import report_run
from svg_lightning.loggers import finish_wandb, instantiate_loggers
from svg_lightning.module import run_best_of_n

log = logging.getLogger(__name__)

# Lightning's log line each time a checkpoint is saved without an explicit weights_only.
WEIGHTS_ONLY_NOTE = "`weights_only` was not set, defaulting to `False`."
NOT_RESUMABLE = (
    "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is "
    "not resumable"
)


class _DropMessage(logging.Filter):
    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


_WEIGHTS_ONLY_FILTER = _DropMessage(WEIGHTS_ONLY_NOTE)


def quiet_known_warnings() -> None:
    """Silence the messages of Lightning and torch that are not true of this package, and only
    those. Called by every command (cli.py) and by ``train()``, which tests and notebooks call
    directly; calling it again puts the filters back in front of any added since."""
    # Lightning 2.6 calls a torch pytree API that torch 2.10+ deprecates; nothing to act on.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Resuming is exact by design: training item i is a pure function of (seed, i) and the
    # sampler starts at step * batch size * world size (data/base.py), so a checkpoint taken in
    # the middle of an "epoch" continues with the very batches an uninterrupted run would see.
    warnings.filterwarnings(
        "ignore", message=re.escape(NOT_RESUMABLE), category=PossibleUserWarning
    )
    # Our checkpoints are full on purpose (optimizer and loop state, for an exact resume) and
    # hold only plain values: they load with weights_only=True.
    connector = logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector")
    if _WEIGHTS_ONLY_FILTER not in connector.filters:
        connector.addFilter(_WEIGHTS_ONLY_FILTER)


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


class SaveLastAtEnd(pl.Callback):
    """``last.ckpt`` at the final step, whatever the checkpoint interval. Saved where training
    ran: under ddp_spawn (trainer=ddp_sim) the processes that trained hold the step and the
    optimizer state, not the one that started them."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.fast_dev_run:
            # Full (optimizer and loop state too), so that training can go on from it.
            trainer.save_checkpoint(self.path, weights_only=False)


def wandb_names(task: str, overrides: str = "", sweep: str | None = None) -> tuple[str, str]:
    """(run name, group) of a W&B run: the task, plus the overridden values when there are any
    (Hydra's override_dirname, e.g. ``smmnist_lp[model.beta=0.001]``); the jobs of one multirun
    (``sweep``: its folder's name) share a group of their own."""
    name = f"{task}[{overrides}]" if overrides else task
    return name, f"{task}-sweep-{sweep}" if sweep else task


def name_wandb_run(cfg: DictConfig) -> None:
    """Fill the W&B settings left null in the config (name, group, job_type), from the Hydra
    job when there is one (the command line), else from the task alone (tests, notebooks)."""
    wandb = OmegaConf.select(cfg, "logger.wandb")
    if not wandb:
        return
    overrides, sweep = "", None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        overrides = hc.job.override_dirname or ""
        sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    name, group = wandb_names(cfg.task_name, overrides, sweep)
    with open_dict(wandb):
        for key, value in (("name", name), ("group", group), ("job_type", "train")):
            if wandb.get(key) is None:
                wandb[key] = value


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """The resolved config as a tree: one branch per group, the rest at the end."""
    tree = Tree("[bold]config[/bold]", guide_style="dim")
    groups = {k: v for k, v in cfg.items() if isinstance(v, DictConfig)}
    rest = {k: v for k, v in cfg.items() if k not in groups}
    for key, node in groups.items():
        text = OmegaConf.to_yaml(node, resolve=True).rstrip() or "{}"
        tree.add(f"[bold]{key}[/bold]").add(Syntax(text, "yaml", background_color="default"))
    if rest:
        text = OmegaConf.to_yaml(OmegaConf.create(rest)).rstrip()
        tree.add("[bold]other[/bold]").add(Syntax(text, "yaml", background_color="default"))
    Console().print(tree)


def remove_untouched_run_folder(cfg: DictConfig) -> None:
    """A command refused before it wrote anything leaves no run folder behind: Hydra creates it
    (its .hydra/ and the job log) before the config is checked."""
    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    out = OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=False)
    if not out or not Path(out).is_dir():
        return
    out = Path(out)
    if out.resolve() != Path(hc.runtime.output_dir).resolve():
        return  # not the folder Hydra made for this job
    hydra_files = {hc.output_subdir, f"{hc.job.name}.log"}
    if {p.name for p in out.iterdir()} <= hydra_files:
        shutil.rmtree(out, ignore_errors=True)


def train(cfg: DictConfig) -> float | None:
    """Train, save ``last.ckpt``, and (``summary.enabled``) score the held-out videos. Returns
    ``cfg.optimized_metric`` (for a Hydra sweeper), or None when it was not logged."""
    quiet_known_warnings()
    try:
        return _train(cfg)
    except Exception:
        remove_untouched_run_folder(cfg)
        raise
    finally:
        finish_wandb()  # so in-process runs (tests, notebooks, sweeps) never share a W&B run


def _train(cfg: DictConfig) -> float | None:
    validate_config(cfg)
    ckpt = resume_from(cfg)
    name_wandb_run(cfg)
    if (cfg.get("extras") or {}).get("print_config", True):
        print_config(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_config(out, cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    # The resolved config is logged once, below; without this Lightning would log the model's
    # and the data's constructor arguments again, as a second, flat set of hyper-parameters.
    model._log_hyperparams = datamodule._log_hyperparams = False
    loggers = instantiate_loggers(cfg.get("logger"), job_type="train")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        # Saving on SIGTERM is not optional: a preempted job must never lose its work.
        callbacks=[
            *(instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c),
            SaveOnSigterm(),
            SaveLastAtEnd(runs.last_checkpoint(out)),
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
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except SIGTERMException:  # SaveOnSigterm has saved last.ckpt at the end of the batch
        raise PreemptedError(
            f"stopped by SIGTERM at step {trainer.global_step}; saved {last}. Resume with the same "
            "command plus ckpt_path=last (a job requeued into this run folder resumes by itself)"
        ) from None
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if cfg.summary.enabled:
        settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
        result = run_best_of_n(trainer, model, datamodule, settings)
        if trainer.is_global_zero and result:  # under ddp_spawn the results stay in the workers
            report_run(
                out, model, result, settings, datamodule, trainer.loggers, last,
                cfg.summary.grid_videos, cfg.summary.grid_samples, label=cfg.task_name,
                extra={"step": trainer.global_step},
            )  # fmt: skip
    elif trainer.is_global_zero:  # no summary table: still say where everything went
        print_table(f"{cfg.task_name}: step {trainer.global_step}", [], [],
                    {"run": out, "checkpoint": last})  # fmt: skip
    return None if metric is None else float(metric)


def last_wins(overrides: list[str]) -> list[str]:
    """Hydra overrides with only the last value of each key (Hydra refuses repeated keys)."""
    by_key = {o.split("=", 1)[0]: o for o in overrides}
    return list(by_key.values())


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """The config ``python -m svg_lightning[.evaluate] OVERRIDES`` builds (a later override of a
    key wins); ``name`` is the primary config: ``train``, ``eval`` or ``analyze``."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=last_wins(overrides))


def train_in(root: str | Path, overrides: list[str] = (), progress_bar: bool = True) -> Path:
    """Train the config ``python -m svg_lightning OVERRIDES`` composes (a later override of a
    key wins), with every path under ``root`` and the run in ``root/train/<time>/`` (for
    notebooks and scripts); returns the run folder."""
    root = Path(root).resolve()
    cfg = compose_config("train", list(overrides))
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
        "extras.print_config=false",
    ]
    return runs.last_checkpoint(train_in(root, [*base, *overrides], progress_bar=False))
