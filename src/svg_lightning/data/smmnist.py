"""Stochastic Moving MNIST: the reference generator (spec section 4) and its DataModule.

Motion is simulated on the reference 64 x 64 grid (32 px digits, top-left positions in [0, 31],
integer velocities in [-4, 4], clamp at the wall and redraw the velocity there). Frames are drawn at
64 x 64 and, for ``image_size=32``, averaged 2 x 2, so 32 x 32 videos are an exact 2x downscale of
the 64 x 64 ones. Positions and velocities are reported in pixels of the output frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from svg_lightning.data.digits import Digits, load_digits
from svg_lightning.data.stream import VideoDataModule

log = logging.getLogger(__name__)

GRID = 64
DIGIT = 32
LIMIT = GRID - DIGIT - 1  # last valid top-left coordinate: 31
MAX_SPEED = 4
IMAGE_SIZES = (32, 64)


@dataclass
class Trajectory:
    """Per frame and digit: top-left ``positions`` (T, D, 2) as (x, y) on the 64 grid, the
    ``velocities`` (T, D, 2) applied after drawing that frame, and ``collisions`` (T, D): the
    velocity was redrawn at that frame because the digit reached a wall."""

    positions: np.ndarray
    velocities: np.ndarray
    collisions: np.ndarray


def simulate(rng: np.random.Generator, seq_len: int, num_digits: int) -> Trajectory:
    """The reference motion rules, digit by digit, frame by frame."""
    pos = np.zeros((seq_len, num_digits, 2), np.int64)
    vel = np.zeros((seq_len, num_digits, 2), np.int64)
    hit = np.zeros((seq_len, num_digits), bool)
    for d in range(num_digits):
        x, y = rng.integers(0, LIMIT + 1, size=2)
        dx, dy = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=2)
        for t in range(seq_len):
            # The y wall is checked first, then x; a corner redraws both in that order.
            if y < 0 or y > LIMIT:
                y = 0 if y < 0 else LIMIT
                dy = rng.integers(1, MAX_SPEED + 1) * (1 if y == 0 else -1)
                dx = rng.integers(-MAX_SPEED, MAX_SPEED + 1)
                hit[t, d] = True
            if x < 0 or x > LIMIT:
                x = 0 if x < 0 else LIMIT
                dx = rng.integers(1, MAX_SPEED + 1) * (1 if x == 0 else -1)
                dy = rng.integers(-MAX_SPEED, MAX_SPEED + 1)
                hit[t, d] = True
            pos[t, d] = x, y
            vel[t, d] = dx, dy
            x, y = x + dx, y + dy
    return Trajectory(pos, vel, hit)


def render(traj: Trajectory, digits: np.ndarray, image_size: int = GRID) -> np.ndarray:
    """Sum the 32 x 32 ``digits`` (D, 32, 32) at their positions, clip at 1 -> (T, S, S) float32."""
    seq_len, num_digits = traj.collisions.shape
    frames = np.zeros((seq_len, GRID, GRID), np.float32)
    for t in range(seq_len):
        for d in range(num_digits):
            x, y = traj.positions[t, d]
            frames[t, y : y + DIGIT, x : x + DIGIT] += digits[d]
    np.clip(frames, 0.0, 1.0, out=frames)
    f = GRID // image_size
    if f > 1:
        frames = frames.reshape(seq_len, image_size, f, image_size, f).mean(axis=(2, 4))
    return frames


def make_video(
    rng: np.random.Generator, digits: Digits, seq_len: int, num_digits: int, image_size: int
) -> dict[str, torch.Tensor]:
    """One video and its ground truth motion, as the tensors a batch carries."""
    which = rng.integers(0, len(digits.images), size=num_digits)
    traj = simulate(rng, seq_len, num_digits)
    scale = image_size / GRID
    return {
        "frames": torch.from_numpy(render(traj, digits.images[which], image_size))[:, None],
        "positions": torch.from_numpy(traj.positions * scale).float(),
        "velocities": torch.from_numpy(traj.velocities * scale).float(),
        "collisions": torch.from_numpy(traj.collisions),
        "labels": torch.from_numpy(digits.labels[which]),
    }


class MovingMNIST(Dataset):
    """Item ``i`` is the video drawn from ``seed`` and ``i``: always the same, in any process. The
    fixed validation and test sets are the first items of their seeds; training reads an endless
    stream of indices (``TrainStream``), so every training video is new."""

    def __init__(
        self,
        digits: Digits,
        length: int,
        seq_len: int,
        num_digits: int = 2,
        image_size: int = 64,
        seed: int = 0,
    ):
        self.digits, self.length, self.seq_len = digits, length, seq_len
        self.num_digits, self.image_size, self.seed = num_digits, image_size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        video = make_video(rng, self.digits, self.seq_len, self.num_digits, self.image_size)
        video["index"] = torch.tensor(index)
        return video


class SMMNISTDataModule(VideoDataModule):
    name = "smmnist"
    channels = 1
    image_sizes = IMAGE_SIZES
    # The evaluation protocol that papers compare SVG under (spec section 6).
    protocol = {"n_past": 5, "n_future": 20, "num_videos": 5000}
    max_seq_len = None  # the generator runs as long as asked

    def __init__(
        self,
        data_dir: str = "data",
        num_digits: int = 2,
        image_size: int = 64,
        n_past: int = 5,
        n_future: int = 10,
        batch_size: int = 100,
        num_workers: int = 0,
        train_length: int = 60_000,
        train_seed: int = 0,
        val_videos: int = 64,
        val_seed: int = 1,
        test_videos: int = 5000,
        test_seed: int = 42,
        test_seq_len: int | None = None,
        download: bool = False,
    ):
        super().__init__()
        if image_size not in IMAGE_SIZES:
            raise ValueError(
                f"data.image_size={image_size} is not supported for SM-MNIST; "
                f"allowed: {list(IMAGE_SIZES)}"
            )
        if num_digits < 1:
            raise ValueError(f"data.num_digits={num_digits} must be >= 1")
        # Clip lengths belong to the model's hparams; logging them twice makes Lightning refuse
        # an evaluation whose lengths differ from training.
        self.save_hyperparameters(ignore=["n_past", "n_future", "test_videos", "test_seq_len"])
        self.seq_len = n_past + n_future
        self.test_seq_len = test_seq_len or self.seq_len
        self.test_videos = test_videos

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        common = dict(num_digits=hp.num_digits, image_size=hp.image_size)
        if stage in (None, "fit"):
            train_digits = load_digits(hp.data_dir, train=True, download=hp.download)
            self.train_set = MovingMNIST(
                train_digits, hp.train_length, self.seq_len, seed=hp.train_seed, **common
            )
        test_digits = load_digits(hp.data_dir, train=False, download=hp.download)
        self.digit_source = test_digits.source
        self.val_set = MovingMNIST(
            test_digits, hp.val_videos, self.seq_len, seed=hp.val_seed, **common
        )
        self.test_set = MovingMNIST(
            test_digits, self.test_videos, self.test_seq_len, seed=hp.test_seed, **common
        )
