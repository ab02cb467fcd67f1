"""Frame-quality metrics and the best-of-N protocol used to compare video prediction models.

``ssim``/``psnr`` score frames (``frame``); ``best_of_n`` samples, selects and baselines them the
way SVG is compared (per-video noise, best sample by time-averaged score).
"""

from svg_lightning.metrics.frame import (
    MSE_FLOOR,
    PSNR_RULE,
    SSIM_REFERENCE_RULE,
    SSIM_RULE,
    psnr,
    ssim,
    ssim_reference,
)

__all__ = [
    "MSE_FLOOR",
    "PSNR_RULE",
    "SSIM_REFERENCE_RULE",
    "SSIM_RULE",
    "psnr",
    "ssim",
    "ssim_reference",
]
