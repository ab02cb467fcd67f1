"""Choosing the torch device of the commands that run a model outside the Trainer."""

from __future__ import annotations

import os
from pathlib import Path

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


FLOAT_BYTES = 4  # every frame tensor the commands hold is float32


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device``: the GPU's free memory, or the system's
    MemAvailable (what it can give without swapping), else its physical memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(frames: int, frame_shape, device: torch.device, what: str, fix: str) -> None:
    """ConfigError before any allocation when ``frames`` float32 frames of ``frame_shape``
    (C, H, W), which a setting makes a command hold at once on ``device``, exceed the memory
    left there: a lower bound of what it needs (the networks' activations come on top), so a
    refusal is never wrong, and the allocator's traceback (or a crash) never comes."""
    need = int(frames) * FLOAT_BYTES
    for dim in frame_shape:
        need *= int(dim)
    have = available_memory(device)
    if need > have:
        raise ConfigError(
            f"{what} holds {frames} frames of {tuple(frame_shape)} floats at once: "
            f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of {device.type} "
            f"memory available; {fix}"
        )
