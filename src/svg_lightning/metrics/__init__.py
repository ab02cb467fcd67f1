"""Frame-quality metrics and the best-of-N protocol used to compare video prediction models.

``ssim``/``psnr``/``lpips`` score frames (``frame``, ``perceptual``); ``best_of_n`` samples,
selects and baselines them the way SVG is compared (per-video noise, best sample by time-averaged
score) and draws the samples whose I3D features FVD compares (``fvd``); LPIPS and FVD are the two
further numbers later papers rank by. ``BestOfN`` is that protocol as a ``torchmetrics.Metric``
for any LightningModule.
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
from svg_lightning.metrics.fvd import (
    FVD_RULE,
    frechet_distance,
    i3d_features,
    i3d_file,
    load_i3d,
)
from svg_lightning.metrics.perceptual import LPIPS_RULE, load_lpips, lpips, lpips_files

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
    "i3d_file",
    "load_i3d",
    "load_lpips",
    "lpips",
    "lpips_files",
    "psnr",
    "ssim",
    "ssim_reference",
]
