"""Reading and writing checkpoints, with errors that name the file and what is wrong with it."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig

import svg_lightning
from svg_lightning import runs
from svg_lightning.errors import CheckpointError
from svg_lightning.files import atomic_path
from svg_lightning.models.config import SVGConfig
from svg_lightning.module import SVGModule
from svg_lightning.runs import CHECKPOINT_FORMAT, META_KEY

log = logging.getLogger(__name__)

SHA256 = "sha256_of_loaded_bytes"  # added by read_checkpoint; never stored in a file


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``; CheckpointError when it is
    missing, unreadable (truncated, corrupt) or not written by a compatible svg_lightning.
    ``ckpt[SHA256]`` is the checksum of the very bytes loaded (the file may be replaced while
    a command runs, e.g. last.ckpt by a training still going)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): a copy or a save that did not finish; use "
            "another checkpoint or copy it again"
        )
    check_zip_crcs(io.BytesIO(data), path)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged zip/pickle data
        # torch's own text may advise weights_only=False: never pass that on for a user's file.
        first = (str(err).splitlines() or [""])[0][:200]  # EOFError's text can be empty
        detail = "" if "weights_only" in str(err) or not first else f": {first}"
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a PyTorch checkpoint (truncated, corrupt or "
            f"another kind of file): {type(err).__name__}{detail}"
        ) from None
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if meta is None or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path} was not written by svg_lightning (no '{META_KEY}' entry, "
            "hyper-parameters and state dict)"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} was written by svg_lightning {meta.get('version')} (checkpoint "
            f"format {meta.get('format')}); this is svg_lightning {svg_lightning.__version__} "
            f"(format {CHECKPOINT_FORMAT}). Evaluate it with the version that wrote it."
        )
    ckpt[SHA256] = hashlib.sha256(data).hexdigest()
    return ckpt


def stored_config(ckpt: dict) -> dict | None:
    """The training config a checkpoint carries (training and the converter store it), if any."""
    config = ckpt[META_KEY].get("train_config")
    return config if isinstance(config, dict) else None


def describe(path: str | Path, ckpt: dict) -> dict:
    """What an output cites of the checkpoint it came from: path, checksum, training step."""
    return {"path": str(path), "sha256": ckpt[SHA256], "global_step": ckpt.get("global_step")}


def check_zip_crcs(data: io.BytesIO, path: Path) -> None:
    """torch's zip reader does not verify the stored CRC-32s, so a flipped byte inside a
    tensor's data would load as a silently different weight: check them here."""
    if not zipfile.is_zipfile(data):
        return
    try:
        with zipfile.ZipFile(data) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} is a damaged zip archive: {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: the data of {bad} does not match its CRC-32"
        )


def check_finite(model: SVGModule, path: Path) -> None:
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point()
           and not torch.isfinite(t).all()]  # fmt: skip
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite (NaN or inf) values in {len(bad)} tensor(s), "
            f"e.g. {bad[:3]}: training diverged before it was saved; use an earlier checkpoint"
        )


def load_model(path: str | Path) -> SVGModule:
    """The SVGModule stored in ``path``, in eval mode on the CPU; CheckpointError if it cannot
    be read, does not match its own hyper-parameters or holds non-finite weights."""
    return model_from(read_checkpoint(path), Path(path))


def model_from(ckpt: dict, path: Path) -> SVGModule:
    """The SVGModule of a checkpoint dict ``read_checkpoint`` returned (see ``load_model``)."""
    try:
        model = SVGModule(**ckpt["hyper_parameters"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path}: its hyper-parameters do not fit: {err}"
        ) from None
    try:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"checkpoint {path} does not match its architecture: {err}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match its architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    check_finite(model, path)
    return model.eval()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint straight into a temporary file in its folder, flushes it to disk
    and renames it into place, so a crash mid-write never leaves a truncated ``last.ckpt``
    behind. (Lightning's own writer goes through an in-memory copy and a second temporary file,
    in the system's temporary folder: twice the memory and a copy across file systems.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            try:
                torch.save(checkpoint, f)
            except RuntimeError as err:
                # torch reports a failed write (a full disk) as its own RuntimeError; the OSError
                # behind it, with the checkpoint's path, is what the command line can name.
                cause = err.__context__
                if isinstance(cause, OSError):
                    raise OSError(cause.errno, cause.strerror, str(path)) from err
                raise
            f.flush()
            os.fsync(f.fileno())


def check_resumable(path: str | Path, model_cfg) -> None:
    """CheckpointError naming every architecture field where ``path`` and the config differ, or
    when its weights do not fit its own hyper-parameters or are not finite (checked before the
    run folder exists)."""
    stored = load_model(path).hparams
    diff = [
        f"model.{k}: checkpoint {stored.get(k)!r}, config {model_cfg.get(k)!r}"
        for k in SVGConfig.names()
        if stored.get(k) != model_cfg.get(k, getattr(SVGConfig, k))
    ]
    if diff:
        raise CheckpointError(
            f"checkpoint {path} does not match the configured architecture:\n  "
            + "\n  ".join(diff)
            + "\nResume with the settings it was trained with (its run's config.yaml)."
        )


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint a training resumes (``ckpt_path``: a path or ``last``; none given, the
    newest one a requeued job left in its own run folder), checked before anything starts:
    readable, and of the configured architecture."""
    out = Path(cfg.paths.output_dir)
    if not cfg.get("ckpt_path"):
        ckpt = runs.requeued_checkpoint(out)
        if ckpt is None:
            return None
        log.info("This run folder already holds %s (a requeued job): resuming from it", ckpt)
    elif cfg.ckpt_path == "last":
        ckpt = runs.find_last_checkpoint(cfg.paths.log_dir, cfg.task_name, exclude=out)
        log.info("ckpt_path=last: the newest last.ckpt of task %s is %s", cfg.task_name, ckpt)
    else:
        ckpt = Path(cfg.ckpt_path)
    check_resumable(ckpt, cfg.model)
    log.info("Resuming from %s", ckpt)
    return ckpt
