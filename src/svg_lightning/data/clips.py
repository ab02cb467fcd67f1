"""Clips read lazily from the memory-mapped ``.npy`` videos that ``svg_lightning.data.prepare``
writes: never the whole dataset in RAM, and each process opens its own maps.

A video is a (file, row, frames) triple: ``row`` is None for a (T, ...) file holding one video and
the row of an (N, T, ...) file holding several. Training clip ``i`` is drawn from
``(seed, i)``; validation and test clips are fixed (video, start) pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class Memmaps:
    """Opens each ``.npy`` file once per process; dropped when pickled so that DataLoader
    workers open their own maps instead of receiving copies of the data."""

    def __init__(self, root: Path):
        self.root, self.maps = root, {}

    def __getitem__(self, file: str) -> np.ndarray:
        if file not in self.maps:
            self.maps[file] = np.load(self.root / file, mmap_mode="r")
        return self.maps[file]

    def __getstate__(self):
        return {"root": self.root, "maps": {}}


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W) or (T, H, W, C) -> float (T, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.array(frames)).float().div_(255.0)  # copies out of the read-only map
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)


class Clips(Dataset):
    """Clips of ``seq_len`` frames from memory-mapped videos.

    ``videos``: (file, row, frames) per video. ``clips``: fixed (video, start) pairs, or None for
    clips drawn from ``(seed, index)``: uniform over videos, then over start frames
    (``random_start=False`` starts at frame 0). Items: ``frames`` (T, C, H, W) and ``index``.
    """

    def __init__(self, root, videos, seq_len, length, clips=None, random_start=True, seed=0):
        self.maps, self.videos, self.seq_len = Memmaps(Path(root)), videos, seq_len
        self.length, self.clips, self.random_start = length, clips, random_start
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.seed, index])
        video = int(rng.integers(len(self.videos)))
        last = self.videos[video][2] - self.seq_len
        return video, int(rng.integers(last + 1)) if self.random_start else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video, start = self.clips[index] if self.clips is not None else self._draw(index)
        file, row, _ = self.videos[video]
        array = self.maps[file]
        clip = (array if row is None else array[row])[start : start + self.seq_len]
        return {"frames": to_tensor(clip), "index": torch.tensor(index)}


def fixed_clips(videos, seq_len: int, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` seeded (video, start) pairs: a video uniformly, then a start frame uniformly."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        video = int(rng.integers(len(videos)))
        out.append((video, int(rng.integers(videos[video][2] - seq_len + 1))))
    return out
