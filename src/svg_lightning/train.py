"""Training: the configured model on the configured data, then held-out scores and samples."""

from __future__ import annotations

import logging
import re
import signal
import warnings
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
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
from svg_lightning.callbacks import (
    LastCheckpoint,
    RecordTrainingConfig,
    SaveOnSigterm,
    stopped_by_sigterm,
)
from svg_lightning.checkpoint import AtomicCheckpointIO, check_resumable
from svg_lightning.compose import compose_config
from svg_lightning.config import validate_config
from svg_lightning.console import print_table
from svg_lightning.errors import PreemptedError, StoppedByUserError
from svg_lightning.evaluate.report import report_run
from svg_lightning.files import sha256
from svg_lightning.loggers import finish_wandb, instantiate_loggers, name_wandb_run, run_tags
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
        log.info("ckpt_path=last: the newest last.ckpt of task %s is %s", cfg.task_name, ckpt)
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


def with_required_callbacks(callbacks: list[pl.Callback], cfg: DictConfig) -> list[pl.Callback]:
    """The configured callbacks, plus what no run goes without: ``last.ckpt`` at the end (what
    ``ckpt_path=last`` resumes), saving on SIGTERM (a preempted job loses nothing), and the
    training config inside every checkpoint (a copied checkpoint is self-contained)."""
    if not any(isinstance(c, LastCheckpoint) for c in callbacks):
        callbacks.append(LastCheckpoint())
    config = OmegaConf.to_container(cfg, resolve=True)
    return [*callbacks, SaveOnSigterm(), RecordTrainingConfig(config)]


def stopped(trainer: pl.Trainer, last: Path) -> PreemptedError:
    """The error of a fit that SIGTERM or a first Ctrl-C stopped once ``SaveOnSigterm`` had
    saved ``last`` at the end of the batch under way: exit 143 or 130, and how to resume."""
    (saver,) = [c for c in trainer.callbacks if isinstance(c, SaveOnSigterm)]
    by_user = saver.signal == signal.SIGINT
    error = StoppedByUserError if by_user else PreemptedError
    return error(
        f"stopped by {'Ctrl-C (SIGINT)' if by_user else 'SIGTERM'} at step "
        f"{trainer.global_step}; saved {last}. Resume with the same command plus ckpt_path=last "
        "(a job requeued into this run folder resumes by itself)"
    )


def train(cfg: DictConfig) -> float | None:
    """Train, save ``last.ckpt``, and (``summary.enabled``) score the held-out videos. Returns
    ``cfg.optimized_metric`` (for a Hydra sweeper), or None when it was not logged."""
    quiet_known_warnings()
    try:
        with ExitStack() as held:  # the run folder's claim (runs.claimed), to the very end
            return _train(cfg, held)
    finally:
        finish_wandb()  # so in-process runs (tests, notebooks, sweeps) never share a W&B run


def _train(cfg: DictConfig, held: ExitStack) -> float | None:
    validate_config(cfg)
    out = Path(cfg.paths.output_dir)
    ckpt = resume_from(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.check_available("fit")  # before the run writes anything
    with open_dict(cfg):
        cfg.tags = run_tags(cfg)  # recorded in config.yaml and sent to W&B alike
    name_wandb_run(cfg)
    if (cfg.get("extras") or {}).get("print_config", True):
        print_config(cfg)
    # Before the first write, after every check (a refused run makes no folder). Rank 0 alone:
    # a ddp job's other ranks are copies of this command writing into its folder.
    if rank_zero_only.rank == 0 and runs.on_first_node():
        held.enter_context(runs.claimed(out, "a training"))
        runs.check_same_run(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_config(out, cfg)
    pl.seed_everything(cfg.seed, workers=True)

    model = instantiate(cfg.model)
    # The resolved config is logged once, below; without this Lightning would log the model's
    # and the data's constructor arguments again, as a second, flat set of hyper-parameters.
    model._log_hyperparams = datamodule._log_hyperparams = False
    loggers = instantiate_loggers(cfg.get("logger"), job_type="train")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        # Saving on SIGTERM is not optional: a preempted job must never lose its work.
        callbacks=with_required_callbacks(
            [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c], cfg
        ),
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
        raise stopped(trainer, last) from None
    metric = trainer.callback_metrics.get(cfg.get("optimized_metric") or "")
    if trainer.is_global_zero:  # before the summary: a sweep's table (sweep.py) reads them
        runs.write_scores(out, trainer.global_step, trainer.callback_metrics)
    if cfg.summary.enabled:
        settings = replace(model.val_settings, num_samples=cfg.summary.num_samples)
        with stopped_by_sigterm(
            f"the held-out summary (training finished and saved {last})",
            f"score it with python -m svg_lightning.evaluate ckpt_path={last}",
        ):
            result = run_best_of_n(trainer, model, datamodule, settings)
        if trainer.is_global_zero and result:  # under ddp_spawn the results stay in the workers
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
    elif trainer.is_global_zero:  # no summary table: still say where everything went
        print_table(f"{cfg.task_name}: step {trainer.global_step}", [], [],
                    {"run": out, "checkpoint": last})  # fmt: skip
    return None if metric is None else float(metric)


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
