"""The Stochastic Moving MNIST generator (Denton & Fergus 2018): digits move at a constant velocity
until they hit a wall, then bounce off it with a random speed and direction.

Motion is simulated on a 64 x 64 grid (32 px digits, top-left positions in [0, 31], integer
velocities in [-4, 4]); a digit that leaves the grid is clamped at the wall and its velocity
redrawn there. Frames are drawn at 64 x 64 and, for ``image_size=32``, averaged 2 x 2, so 32 x 32
videos are an exact 2x downscale of the 64 x 64 ones. Positions are reported in pixels of the
output frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from svg_lightning.data.digits import Digits

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


def bounce(rng: np.random.Generator, x, y, dx, dy) -> tuple[int, int, int, int, bool]:
    """The wall rule of one frame, for a digit about to be drawn at (x, y) with velocity (dx, dy)
    -> (x, y, dx, dy, hit): a coordinate past a wall is clamped to it and the velocity redrawn,
    away from that wall at 1 to 4 px along its axis and -4 to 4 px along the other. The y wall is
    checked first, then x; at a corner both redraw in that order, so x's draw is the one kept."""
    hit = False
    if y < 0 or y > LIMIT:
        y = 0 if y < 0 else LIMIT
        dy = rng.integers(1, MAX_SPEED + 1) * (1 if y == 0 else -1)
        dx = rng.integers(-MAX_SPEED, MAX_SPEED + 1)
        hit = True
    if x < 0 or x > LIMIT:
        x = 0 if x < 0 else LIMIT
        dx = rng.integers(1, MAX_SPEED + 1) * (1 if x == 0 else -1)
        dy = rng.integers(-MAX_SPEED, MAX_SPEED + 1)
        hit = True
    return x, y, dx, dy, hit


def empty_trajectory(seq_len: int, num_digits: int) -> Trajectory:
    return Trajectory(
        np.zeros((seq_len, num_digits, 2), np.int64),
        np.zeros((seq_len, num_digits, 2), np.int64),
        np.zeros((seq_len, num_digits), bool),
    )


def move(rng: np.random.Generator, traj: Trajectory, digit: int, x, y, dx, dy) -> None:
    """Fills every frame of ``digit`` in ``traj``: it heads for (x, y) with velocity (dx, dy);
    each frame applies ``bounce``, is drawn, then moves by the velocity."""
    for t in range(len(traj.positions)):
        x, y, dx, dy, traj.collisions[t, digit] = bounce(rng, x, y, dx, dy)
        traj.positions[t, digit] = x, y
        traj.velocities[t, digit] = dx, dy
        x, y = x + dx, y + dy


def simulate(rng: np.random.Generator, seq_len: int, num_digits: int) -> Trajectory:
    """Digit by digit: a uniform start on the grid and a uniform velocity, then ``move``."""
    traj = empty_trajectory(seq_len, num_digits)
    for d in range(num_digits):
        x, y = rng.integers(0, LIMIT + 1, size=2)
        dx, dy = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=2)
        move(rng, traj, d, x, y, dx, dy)
    return traj


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
    """One video and the ground truth the analyses compare models with: ``frames`` (T, 1, S, S),
    the digits' top-left ``positions`` (T, D, 2) in output pixels and their wall ``collisions``
    (T, D)."""
    which = rng.integers(0, len(digits.images), size=num_digits)
    traj = simulate(rng, seq_len, num_digits)
    scale = image_size / GRID
    return {
        "frames": torch.from_numpy(render(traj, digits.images[which], image_size))[:, None],
        "positions": torch.from_numpy(traj.positions * scale).float(),
        "collisions": torch.from_numpy(traj.collisions),
    }


class MovingMNIST(Dataset):
    """Item ``i`` is the video drawn from ``seed`` and ``i``: always the same, in any process. The
    fixed validation and test sets are the first items of their seeds; training reads an endless
    stream of indices (``svg_lightning.data.base.TrainStream``), so every training video is new.
    Items are ``make_video``'s with their ``index``."""

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
