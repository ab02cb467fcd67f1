"""Checks of SVG's uncertainty claims on SM-MNIST (the paper's Sec. 4.1, Figs. 5 and 6), as
numbers and plots.

``python -m svg_lightning.analyze prior ckpt_path=...``: does the learned prior's sigma spike at
wall collisions (Fig. 6)? ``python -m svg_lightning.analyze trajectories ckpt_path=...``: do the
digit displacements in samples follow the true post-bounce distribution (Fig. 5)?
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from svg_lightning.analyze.prior import analyze_prior
from svg_lightning.analyze.trajectories import analyze_trajectories
from svg_lightning.config import check_analyze
from svg_lightning.errors import ConfigError

ANALYSES = {"prior": analyze_prior, "trajectories": analyze_trajectories}


def analyze(cfg: DictConfig) -> dict[str, Path]:
    """Run ``cfg.command``; returns the paths it wrote."""
    if cfg.command not in ANALYSES:
        raise ConfigError(f"command={cfg.command!r} is unknown; allowed: {list(ANALYSES)}")
    check_analyze(cfg)  # before the checkpoint is read
    return ANALYSES[cfg.command](cfg)
