"""Frame-quality metrics and the best-of-N protocol used to compare video prediction models.

``ssim``/``psnr`` score frames (``frame``); ``best_of_n`` samples, selects and baselines them the
way SVG is compared (per-video noise, best sample by time-averaged score). ``BestOfN`` is that
protocol as a ``torchmetrics.Metric`` for any LightningModule. ``lpips`` (``perceptual``) and the
Frechet distance of I3D features (``fvd``) are the two further numbers later papers rank by.
"""

from svg_lightning.metrics.best_of_n import BestOfN, BestOfNResult
from svg_lightning.metrics.frame import (
    MSE_FLOOR,
    PSNR_RULE,
    SSIM_REFERENCE_RULE,
    SSIM_RULE,
    psnr,
    ssim,
    ssim_reference,
)
from svg_lightning.metrics.fvd import FVD_RULE, frechet_distance, i3d_features, load_i3d
from svg_lightning.metrics.perceptual import LPIPS_RULE, load_lpips, lpips

__all__ = [
    "BestOfN",
    "BestOfNResult",
    "FVD_RULE",
    "LPIPS_RULE",
    "MSE_FLOOR",
    "PSNR_RULE",
    "SSIM_REFERENCE_RULE",
    "SSIM_RULE",
    "frechet_distance",
    "i3d_features",
    "load_i3d",
    "load_lpips",
    "lpips",
    "psnr",
    "ssim",
    "ssim_reference",
]
