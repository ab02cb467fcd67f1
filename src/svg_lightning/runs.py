"""The layout of a training run's folder, in one place.

    <run>/config.yaml             the resolved config the run was started with
    <run>/run_info.json           what a resumed run needs (the W&B run id); the precision that
                                  ran; the torch version and thread count (CPU training is
                                  bit-exact only for the same ones)
    <run>/checkpoints/last.ckpt   periodically and at the end: what ``ckpt_path=last`` resumes
    <run>/checkpoints/step*.ckpt  the best checkpoint by the validation score
    <run>/media/                  sample GIFs and plots written during training
    <run>/training_curves.png
    <run>/scores.json             the scores logged last (the final validation): what a sweep's
                                  summary (sweep.py) ranks the runs of a multirun by
    <run>/job_status.json         multirun jobs only: whether the job finished or failed (sweep.py)
    <run>/.lock                   the claim of the process writing the folder (``claimed``)

A folder belongs to one run. The process writing it holds a lock on ``.lock`` (pid and host
inside, for the message) from before its first write to its end; the kernel drops the lock when
the process ends, however it ends, so there is nothing stale to clear. A second process given the
same folder (``hydra.run.dir``) is refused while the first runs, and afterwards when the folder
holds a finished evaluation or a training of other settings (``check_same_run``): the same
settings are the same run, resumed (a requeued job). Outputs of several files appear as a whole
(``files.staged_outputs``), so a killed command leaves nothing a later one trusts.

Runs live under ``<paths.log_dir>/<task_name>/runs/<time>/`` (multiruns: ``multiruns/<time>/<n>/``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from svg_lightning.devices import native_bf16
from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.files import atomic_path, write_json

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
MEDIA = "media"
TRAINING_CURVES = "training_curves.png"
SCORES = "scores.json"
LOCK = ".lock"
# The checkpoint format, declared here, the lowest layer that reads checkpoints: the entry of a
# checkpoint that holds what svg_lightning adds (version, format, the training config), and the
# format number, bumped whenever a checkpoint written before can no longer be loaded.
META_KEY = "svg_lightning"
CHECKPOINT_FORMAT = 1
# Where the DataModules of runs written by svg_lightning 0.1.0 (before the data package was
# re-layered) live now, so their config.yaml keeps working.
MOVED_TARGETS = {
    f"svg_lightning.data.{old}.{cls}": f"svg_lightning.data.datamodules.{cls}"
    for old, cls in (("smmnist", "SMMNISTDataModule"), ("prepared", "KTHDataModule"),
                     ("prepared", "BAIRDataModule"))
}  # fmt: skip


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / CHECKPOINTS


def last_checkpoint(run: Path) -> Path:
    return checkpoint_dir(run) / LAST


def media_dir(run: Path) -> Path:
    path = Path(run) / MEDIA
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_of(ckpt: Path) -> Path:
    """The run folder a checkpoint was written into."""
    return Path(ckpt).resolve().parent.parent


def _lock(folder: Path) -> int:
    """An open descriptor of ``folder``/.lock, locked by this process; raises BlockingIOError
    when another process holds it."""
    fd = os.open(Path(folder) / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError as err:  # a file system without locks (Lustre mounted without flock: ENOSYS)
        log.warning("cannot lock %s (%s): two runs in this folder would not be told apart",
                    Path(folder) / LOCK, err)  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def on_first_node() -> bool:
    """Whether this process runs on the job's first node. Lightning's rank-zero guess before the
    Trainer exists reads only the per-node and SLURM ranks, so on a node started by hand with
    NODE_RANK=1 (or torchrun's GROUP_RANK) its first process would also pass for rank 0."""
    return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0))) == 0


@contextmanager
def claimed(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder`` for this process's ``what`` ("a training", "an evaluation") for the block;
    ConfigError when another live process holds it (see the module's notes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = _lock(folder)
    except BlockingIOError:
        holder = (folder / LOCK).read_text(errors="replace").strip() or "another process"
        raise ConfigError(
            f"run folder {folder} is in use by {holder}; give {what} a folder of its own: another "
            "hydra.run.dir, or none (every run gets a new folder)"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{what}, pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def in_use(folder: Path) -> bool:
    """Whether another live process holds ``folder`` (``claimed``)."""
    if not (Path(folder) / LOCK).is_file():
        return False
    try:
        os.close(_lock(folder))
    except BlockingIOError:
        return True
    return False


# What resuming a run changes in its config by design: the checkpoint it goes on from, and the
# W&B run it continues (checkpoint.resume_from).
RESUME_KEYS = ("ckpt_path", "logger.wandb.id", "logger.wandb.resume")


def _differences(a, b, prefix: str = "") -> list[str]:
    """``key: a -> b`` for each dotted key whose values differ between two plain config trees,
    RESUME_KEYS left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in dict.fromkeys([*a, *b])
                for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]  # fmt: skip
    key = prefix[:-1]
    return [] if a == b or key in RESUME_KEYS else [f"{key}: {a!r} -> {b!r}"]


def check_same_run(run: Path, cfg: DictConfig) -> None:
    """A run folder that holds config.yaml (a training started there) takes only the same
    settings again (the run resumed from its own last.ckpt); ConfigError naming the differences
    otherwise, before config.yaml or last.ckpt is touched."""
    path = Path(run) / CONFIG
    if not path.is_file():
        return
    before = OmegaConf.to_container(OmegaConf.load(path))
    changed = _differences(before, OmegaConf.to_container(cfg, resolve=True))
    if changed:
        raise ConfigError(
            f"run folder {run} holds a training of other settings ({'; '.join(changed[:5])}); "
            "a folder holds one run: give another hydra.run.dir, or none (every run gets a new "
            f"folder), and pass ckpt_path={last_checkpoint(run)} to go on from its weights"
        )


def write_config(run: Path, cfg: DictConfig) -> Path:
    path = Path(run) / CONFIG
    with atomic_path(path) as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def _stored_training_config(ckpt: Path) -> dict | None:
    """The ``train_config`` a checkpoint carries in its svg_lightning entry (converted
    checkpoints do: they have no run folder), or None."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable here; loading the model reports what is wrong with it
        return None
    meta = state.get(META_KEY) if isinstance(state, dict) else None
    config = meta.get("train_config") if isinstance(meta, dict) else None
    return config if isinstance(config, dict) else None


def training_config(
    ckpt: Path, given: str | Path | None = None, stored: dict | None = None
) -> DictConfig:
    """The config a checkpoint was trained with: ``given``, else its run's config.yaml, else the
    one the checkpoint carries (``stored``, when the caller has read the checkpoint already;
    else ``_stored_training_config``), so a checkpoint copied on its own still works."""
    path = Path(given) if given else run_of(ckpt) / CONFIG
    if given or path.is_file():
        stored = None
    elif stored is None:
        stored = _stored_training_config(ckpt)
    if not path.is_file() and stored is None:
        raise ConfigError(
            f"no training config for checkpoint {ckpt}: expected {path} (written by every "
            "training run); pass train_config=PATH to point at it"
        )
    cfg = OmegaConf.create(stored) if stored is not None else OmegaConf.load(path)
    target = OmegaConf.select(cfg, "data._target_")
    if target in MOVED_TARGETS:
        cfg.data._target_ = MOVED_TARGETS[target]
    return cfg


def find_last_checkpoint(log_dir: str | Path, task_name: str, exclude: Path) -> Path:
    """``ckpt_path=last``: the newest last.ckpt among the task's runs other than ``exclude``,
    single runs and multirun jobs alike."""
    runs = Path(log_dir) / task_name
    found = [p for p in runs.glob(f"**/{CHECKPOINTS}/{LAST}") if Path(exclude) not in p.parents]
    if not found:
        raise CheckpointError(
            f"ckpt_path=last: no {CHECKPOINTS}/{LAST} under {runs}; pass ckpt_path=PATH instead"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def requeued_checkpoint(run: Path) -> Path | None:
    """A job requeued into its own run folder (a SLURM sweep job keeps its folder) continues
    from the newest checkpoint it left there: our last.ckpt or Lightning's hpc_ckpt_*.ckpt."""
    found = [p for p in [last_checkpoint(run), *Path(run).glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def read_run_info(run: Path) -> dict:
    path = Path(run) / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_info(
    run: Path, wandb_id: str | None, resumed_from: Path | None, precision: str
) -> None:
    """``precision``: the Trainer's (``32-true``, ``bf16-mixed``, ...), the one that ran."""
    info = {
        "wandb_id": wandb_id,
        "resumed_from": str(resumed_from or ""),
        "precision": precision,
        # Parallel reductions in the backward pass split their sums by thread, and the CPU's
        # vector instructions pick the kernels: another thread count or ISA gives other low bits
        # (README, "Reproducibility").
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(),  # whether bf16-mixed was fast here (devices.py)
    }
    write_json(Path(run) / RUN_INFO, info, indent=None)


def write_scores(run: Path, step: int, metrics: Mapping) -> Path:
    """The scalar ``metrics`` (e.g. a trainer's callback_metrics, tensors included) at ``step``,
    written atomically: a sweep's summary, run in another process, may read it at any time."""
    scores = {str(k): float(v) for k, v in metrics.items() if _is_scalar(v)}
    return write_json(Path(run) / SCORES, {"step": int(step), "scores": scores})


def read_scores(run: Path) -> dict[str, float | None]:
    """The scores ``write_scores`` wrote (NaN as None); empty when there are none or the file
    cannot be read, so one broken run never stops the summary of the others."""
    try:
        doc = json.loads((Path(run) / SCORES).read_text())
        return {str(k): v for k, v in doc["scores"].items() if v is None or _is_scalar(v)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _is_scalar(v) -> bool:
    if isinstance(v, torch.Tensor):
        return v.numel() == 1
    return isinstance(v, (int, float)) and not isinstance(v, bool)
