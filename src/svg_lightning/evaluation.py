"""Best-of-N scoring of sampled futures against ground truth, with two reference predictors.

Per video, every sample is scored on every predicted frame; per metric the sample with the best
time-averaged value is kept (spec section 6). The copy-last-conditioning-frame and all-black
predictors are scored on the same frames, because on sparse digits SSIM is dominated by the
background and a number without them misleads.
"""

from __future__ import annotations

import torch

from svg_lightning.metrics import psnr, ssim

METRICS = {"ssim": ssim, "psnr": psnr}


def select(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """scores (B, S, T) -> best, mean and worst (B, T): best/worst pick, per video, the sample whose
    time-averaged score is highest/lowest; mean averages over samples per time step."""
    avg = scores.mean(-1)
    pick = lambda i: scores.gather(1, i[:, None, None].expand(-1, 1, scores.shape[-1]))[:, 0]  # noqa: E731
    return {"best": pick(avg.argmax(1)), "mean": scores.mean(1), "worst": pick(avg.argmin(1))}


def score_predictions(
    samples: torch.Tensor, target: torch.Tensor, cond_last: torch.Tensor
) -> dict[str, torch.Tensor]:
    """samples (B, S, T, C, H, W), target (B, T, C, H, W), cond_last (B, C, H, W) -> per-video
    per-step curves (B, T) named ``{metric}_{best|mean|worst}``, ``copy_last_{metric}`` and
    ``black_{metric}``."""
    samples = samples.float().clamp(0, 1)
    target = target.float()
    copy_last = cond_last.float()[:, None].expand_as(target)
    out = {}
    for name, fn in METRICS.items():
        for how, curve in select(fn(samples, target[:, None].expand_as(samples))).items():
            out[f"{name}_{how}"] = curve
        out[f"copy_last_{name}"] = fn(copy_last, target)
        out[f"black_{name}"] = fn(torch.zeros_like(target), target)
    return out
