"""Best-of-N scoring of sampled futures against ground truth, with two reference predictors.

Per video, every sample is scored on every predicted frame; per metric the sample with the best
time-averaged value is kept (the paper's Sec. 4 protocol, kept by later comparisons). The
copy-last-conditioning-frame and all-black predictors are scored on the same frames, because on
sparse digits SSIM is dominated by the background and a number without them misleads. Only
per-video, per-step scores are kept.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from svg_lightning.metrics.frame import psnr, ssim, ssim_reference

METRICS = {"ssim": ssim, "psnr": psnr}
# Opt-in: the reference code's ranking SSIM, reported beside (never instead of) ``ssim``.
REFERENCE_METRICS = METRICS | {"ssim_ref": ssim_reference}
NOISE_SEED_STRIDE = 1_000_003  # keeps (seed, video) pairs apart for any realistic test set


def select(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """scores (B, S, T) -> bestofN, meanofN and worstofN (B, T): best/worst pick, per video, the
    sample whose time-averaged score is highest/lowest; mean averages over samples per step."""
    avg = scores.mean(-1)
    pick = lambda i: scores.gather(1, i[:, None, None].expand(-1, 1, scores.shape[-1]))[:, 0]
    return {
        "bestofN": pick(avg.argmax(1)),
        "meanofN": scores.mean(1),
        "worstofN": pick(avg.argmin(1)),
    }


def video_noise(
    index: torch.Tensor, num_samples: int, steps: int, z_dim: int, seed: int = 0
) -> torch.Tensor:
    """Standard-normal draws (B, S, steps, z) that depend only on (seed, video index): a video gets
    the same samples whatever its batch, the number of processes or the chunk size."""
    out = torch.empty(len(index), num_samples, steps, z_dim)
    for row, video in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(seed * NOISE_SEED_STRIDE + int(video))
        out[row] = torch.randn(num_samples, steps, z_dim, generator=g)
    return out


def baseline_scores(
    cond: torch.Tensor, target: torch.Tensor, metrics: dict = METRICS
) -> dict[str, torch.Tensor]:
    """Copy-last-conditioning-frame and all-black predictions, (B, T) per metric."""
    copy_last = cond[:, -1:].float().expand_as(target)
    black = torch.zeros_like(target, dtype=torch.float32)
    out = {}
    for name, fn in metrics.items():
        out[f"{name}_copy_last"] = fn(copy_last, target.float())
        out[f"{name}_black"] = fn(black, target.float())
    return out


@torch.no_grad()
def score_chunks(
    chunks: Iterable,
    cond: torch.Tensor,
    target: torch.Tensor,
    num_samples: int,
    metrics: dict = METRICS,
) -> dict[str, torch.Tensor]:
    """Score sampled futures of ``target`` (B, T, ...) chunk by chunk, dropping frames once scored
    -> per-video per-step curves (B, T) named ``{metric}_{bestofN|meanofN|worstofN}``,
    ``{metric}_copy_last`` and ``{metric}_black``. ``chunks`` yield ``rows`` (indices into the
    B * num_samples (video, sample) pairs, row ``b * num_samples + s``) and ``frames``."""
    b, t = target.shape[:2]
    scores = {name: torch.empty(b * num_samples, t, device=target.device) for name in metrics}
    for chunk in chunks:
        pred = chunk.frames.float().clamp(0, 1)
        truth = target[chunk.rows // num_samples].float()
        for name, fn in metrics.items():
            scores[name][chunk.rows] = fn(pred, truth)
    out = {}
    for name in metrics:
        for how, curve in select(scores[name].view(b, num_samples, t)).items():
            out[f"{name}_{how}"] = curve
    return out | baseline_scores(cond, target, metrics)
