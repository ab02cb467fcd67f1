"""The layout of a training run's folder, in one place.

    <run>/config.yaml             the resolved config the run was started with
    <run>/run_info.json           what a resumed run needs (the W&B run id); the torch version and
                                  thread count (CPU training is bit-exact only for the same ones)
    <run>/checkpoints/last.ckpt   periodically and at the end: what ``ckpt_path=last`` resumes
    <run>/checkpoints/step*.ckpt  the best checkpoint by the validation score
    <run>/media/                  sample GIFs and plots written during training
    <run>/training_curves.png
    <run>/scores.json             the scores logged last (the final validation): what a sweep's
                                  summary (sweep.py) ranks the runs of a multirun by
    <run>/job_status.json         multirun jobs only: whether the job finished or failed (sweep.py)

Runs live under ``<paths.log_dir>/<task_name>/runs/<time>/`` (multiruns: ``multiruns/<time>/<n>/``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.files import write_json

CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
MEDIA = "media"
TRAINING_CURVES = "training_curves.png"
SCORES = "scores.json"
# The checkpoint entry svg_lightning.module.META_KEY names. Spelled out here because this module
# sits below module.py in the layering (tests/test_layering.py) and must not import it;
# tests/test_convert.py checks that the two agree.
_META_KEY = "svg_lightning"
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


def write_config(run: Path, cfg: DictConfig) -> Path:
    path = Path(run) / CONFIG
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def _stored_training_config(ckpt: Path) -> dict | None:
    """The ``train_config`` a checkpoint carries in its svg_lightning entry (converted
    checkpoints do: they have no run folder), or None."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable here; loading the model reports what is wrong with it
        return None
    meta = state.get(_META_KEY) if isinstance(state, dict) else None
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


def read_run_info(run: Path) -> dict:
    path = Path(run) / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_info(run: Path, wandb_id: str | None, resumed_from: Path | None) -> None:
    info = {
        "wandb_id": wandb_id,
        "resumed_from": str(resumed_from or ""),
        # Parallel reductions in the backward pass split their sums by thread, and the CPU's
        # vector instructions pick the kernels: another thread count or ISA gives other low bits
        # (README, "Reproducibility").
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    (Path(run) / RUN_INFO).write_text(json.dumps(info))


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
