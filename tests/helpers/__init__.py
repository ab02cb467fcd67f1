"""What the tests share: configs composed as the CLI composes them, tiny network settings,
running a command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from svg_lightning.config import config_dir

# A network small enough for a CPU test in seconds; same code paths as the paper sizes.
TINY = [
    "n_past=2",
    "n_future=3",
    "model.backbone=dcgan32",
    "model.nf=4",
    "model.g_dim=8",
    "model.z_dim=2",
    "model.rnn_size=8",
    "model.val_num_samples=2",
    "data.image_size=32",
    "data.num_digits=1",
    "data.batch_size=2",
    "data.val_videos=2",
    "data.test_videos=3",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "summary.num_samples=2",
    "summary.grid_videos=2",
    "summary.grid_samples=2",
    "logger=csv",
]


def compose_cfg(tmp_path: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """A config as the CLI builds it, with paths inside ``tmp_path``."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.data_dir = str(tmp_path / "data")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "out")
    return cfg


def run_cli(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` as a user runs it, with outputs under ``cwd``."""
    env = {**os.environ, "SVG_ROOT": str(cwd), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
