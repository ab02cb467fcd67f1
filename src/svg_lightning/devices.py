"""Choosing the torch device of the commands that run a model outside the Trainer."""

from __future__ import annotations

import torch

from svg_lightning.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``auto`` = cuda when available, else cpu; a bad or unavailable device is a ConfigError
    naming the setting, not a crash half-way through."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use device=cpu")
    return device
