"""Whether this machine has the memory a command's settings need, checked before any work: a
lower bound of what they hold at once (frames, samples, and for training what a step keeps for
its backward pass), so that a refusal is never wrong and the allocator's traceback, or on a CPU
the kernel killing the process with nothing saved, never comes. ``config`` checks that the
settings are valid at all; these checks depend on the machine."""

from __future__ import annotations

import functools
import json
import logging

import torch
from omegaconf import DictConfig, OmegaConf

from svg_lightning.config import architecture, frame_shape, trainer_device
from svg_lightning.devices import check_bytes, check_memory
from svg_lightning.module import SVGModule

log = logging.getLogger(__name__)


def check_training_fits(cfg: DictConfig) -> None:
    """A valid training config (``validate_config``) against this machine's memory: a batch's
    frames, or its samples in validation and the summary, are held at once, and so is what a
    step keeps for its backward pass (``check_training_memory``)."""
    m, t = OmegaConf.to_container(cfg.model, resolve=True), cfg.trainer
    summary = cfg.get("summary") or {}
    summary_samples = summary.get("num_samples") if summary.get("enabled") else 0
    batch, samples = cfg.data.batch_size, max(m.get("val_num_samples"), summary_samples or 0)
    check_memory(
        batch * max(cfg.n_past + cfg.n_future, samples * cfg.n_future),
        frame_shape(architecture(m)), trainer_device(t), f"training with data.batch_size={batch}"
        f" (x {samples} samples in validation and the summary)", "lower data.batch_size, "
        "model.val_num_samples or summary.num_samples",
    )  # fmt: skip
    check_training_memory(m, batch, cfg.n_past + cfg.n_future, t)


def backward_bytes(model_cfg: dict, device: str = "meta") -> tuple[int, int] | None:
    """(bytes autograd keeps per video and time step, bytes of the weights) of a training
    forward pass of the network ``model_cfg`` (the ``model`` config, resolved) describes: the
    tensors saved for the backward pass of 2 videos of 3 frames, less those of 2 frames,
    halved. Measured on the real network rather than by a formula kept beside it, on the meta
    device by default (shapes only: no memory, no arithmetic), once per network and device.
    None if the network cannot run there."""
    model = {k: v for k, v in model_cfg.items() if k != "_target_"}
    return _measured(json.dumps(model, sort_keys=True, default=str), device)


@functools.cache
def _measured(model_json: str, device: str) -> tuple[int, int] | None:
    m = json.loads(model_json)
    params: set[int] = set()

    def saved(frames: int) -> int:
        storages = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            # Keyed by the storage itself (_cdata, its C++ address): views share one, and on
            # the meta device every data_ptr() is 0.
            storage = t.untyped_storage()
            storages[storage._cdata] = storage.nbytes()
            return t

        x = torch.zeros(2, frames, module.hparams.channels, *[module.hparams.image_size] * 2,
                        device=device)  # fmt: skip
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module.svg(x, 1, module.hparams.bn_stats, module.hparams.time_chunk).loss(x, 1.0)
        return sum(n for key, n in storages.items() if key not in params)

    try:
        with torch.device(device):
            module = SVGModule(**{**m, "n_past": 1, "n_future": 2}).train()
        params |= {p.untyped_storage()._cdata for p in module.parameters()}
        per_step = (saved(3) - saved(2)) // 2
    except Exception:  # an op without a meta kernel: the check is skipped, not the training
        log.debug("no measure of the training memory of %s", m, exc_info=True)
        return None
    return per_step, sum(p.numel() * p.element_size() for p in module.parameters())


def check_training_memory(m: dict, batch: int, seq_len: int, trainer_cfg) -> None:
    """What one training step keeps for its backward pass: each video's activations for each
    of its seq_len - 1 steps, and the weights with their gradients and Adam's two moments.
    A lower bound (workspaces and the pass's temporaries come on top), so a refusal is never
    wrong; it catches a batch or horizon that would otherwise end in the allocator's
    traceback, or on a CPU in the kernel killing the process with nothing saved."""
    measured = backward_bytes(m)
    if measured is None:
        return
    per_step, weights = measured
    # Half-precision activations (and weights, under *-true) take 2 bytes where float32 takes 4;
    # and the meta device's count may differ from a real device's by a few bytes (tested
    # within 5%), so 95% of it is what a refusal relies on.
    half = str(trainer_cfg.get("precision")).startswith(("16", "bf16"))
    need = int(0.95 * (batch * (seq_len - 1) * per_step + 4 * weights)) // (2 if half else 1)
    check_bytes(
        need, trainer_device(trainer_cfg),
        f"training keeps at least {per_step / 2**20:.1f} MiB per video and time step for the "
        "backward pass (this network's activations, measured) for data.batch_size="
        f"{batch} videos of n_past + n_future = {seq_len} frames, and the weights with their "
        "gradients and Adam's moments",
        "lower data.batch_size, or n_future (model.time_chunk does not lower it)",
    )  # fmt: skip


def check_eval_memory(e, settings, hparams, trainer_cfg) -> None:
    """An evaluation batch holds its videos' num_samples futures at once (best of N)."""
    check_memory(
        e.batch_size * settings.num_samples * (settings.n_past + settings.n_future),
        frame_shape(architecture(hparams)), trainer_device(trainer_cfg),
        f"eval.batch_size={e.batch_size} x eval.num_samples={settings.num_samples}",
        "lower eval.batch_size (eval.num_samples is the protocol's N)",
    )  # fmt: skip


def check_analysis_memory(cfg, hparams, device: torch.device) -> None:
    """The analyses render all their videos on the CPU, and hold every sample drawn."""
    shape, cpu = frame_shape(architecture(hparams)), torch.device("cpu")
    if cfg.command == "prior":
        videos = cfg.num_videos + cfg.num_test_videos
        check_memory(videos * cfg.seq_len, shape, cpu, f"analyze prior's {videos} videos "
                     f"(num_videos + num_test_videos) of seq_len={cfg.seq_len} frames",
                     "lower num_videos, num_test_videos or seq_len")  # fmt: skip
        check_memory(cfg.batch_size * cfg.seq_len, shape, device, f"batch_size={cfg.batch_size}",
                     "lower batch_size")  # fmt: skip
        return
    n_future = hparams["n_future"] if cfg.n_future is None else cfg.n_future
    drawn = cfg.num_videos * cfg.num_samples * n_future
    for where in dict.fromkeys((device, cpu)):
        check_memory(drawn, shape, where, f"analyze trajectories' num_videos={cfg.num_videos} x "
                     f"num_samples={cfg.num_samples} futures of {n_future} frames",
                     "lower num_videos, num_samples or n_future")  # fmt: skip
