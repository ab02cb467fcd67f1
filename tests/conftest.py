from __future__ import annotations

import os
from pathlib import Path

import pytest

from svg_lightning.api import train
from tests.helpers import TINY, compose_cfg

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def tiny_cfg(tmp_path):
    return lambda *overrides: compose_cfg(tmp_path, *TINY, *overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny one-digit 32 x 32 SVG-LP run (3 steps, CSV logger), shared by every test that
    needs a checkpoint: its folder holds config.yaml and checkpoints/last.ckpt. Read it, never
    write into it."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_cfg(root, *TINY, "summary.enabled=false", "trainer.max_steps=3")
    train(cfg)
    return Path(cfg.paths.output_dir)
