"""Where is the digit? Template tracking of one-digit frames, and the generator's true futures.

Positions are top-left corners on the generator's 64 x 64 grid (integers), whatever the frame
size, so displacements compare directly with the generator's velocities in [-4, 4].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from svg_lightning.data.smmnist import DIGIT, GRID, Trajectory, empty_trajectory, move


def _templates(first: torch.Tensor, start: torch.Tensor, f: int, pad: int):
    """Per video, the digit patch of the (padded) first frame at the known start, and for 32 px
    frames (f = 2) its versions one 64-grid pixel further right/down: a half-pixel shift at 32 px,
    approximated by averaging the patch with its one-pixel shift (no exact version exists: 2x2
    pooling loses the odd-pixel detail). -> bank (N, f*f, Q, Q), offsets (f*f, 2) as (x, y)."""
    q = DIGIT // f + 2 * (f - 1)  # room for the half-pixel overhang and the shifted copy
    anchor = torch.div(start, f, rounding_mode="floor") + pad
    rows = anchor[:, 1, None] + torch.arange(q)
    cols = anchor[:, 0, None] + torch.arange(q)
    patch = first[torch.arange(len(first))[:, None, None], rows[:, :, None], cols[:, None, :]]
    bank, offsets = [], []
    for oy in range(f):
        for ox in range(f):
            t = patch
            if ox:
                t = (t + F.pad(t, (1, 0))[..., :, :-1]) / 2
            if oy:
                t = (t + F.pad(t, (0, 0, 1, 0))[..., :-1, :]) / 2
            bank.append(t)
            offsets.append((ox, oy))
    return torch.stack(bank, 1), torch.tensor(offsets), anchor


@torch.no_grad()
def track(frames: torch.Tensor, first: torch.Tensor, start) -> torch.Tensor:
    """frames (N, T, S, S) of one digit, ``first`` (N, S, S) the frame the digit template is cut
    from, ``start`` (N, 2) or (2,) its (x, y) on the 64 grid -> (N, T, 2) int64 positions.

    Minimises the sum of squared differences between the template and every window (FFT
    cross-correlation, float64, batched over videos and frames): exact on generator output at
    64 px, where every frame is a translate of the template; at 32 px exact for positions of the
    start's parity and, for the others, the best half-pixel match (see ``_templates``)."""
    n, t, s, _ = frames.shape
    f = GRID // s
    pad = 2 * (f - 1)
    start = torch.as_tensor(np.asarray(start), dtype=torch.long).reshape(-1, 2).expand(n, 2)
    frames = F.pad(frames.double().cpu(), (pad,) * 4)
    first = F.pad(first.double().cpu(), (pad,) * 4)
    bank, offsets, anchor = _templates(first, start, f, pad)
    q, size = bank.shape[-1], frames.shape[-1]
    spec = torch.fft.rfft2(frames)  # (N, T, L, L/2+1); windows never wrap for valid shifts
    tspec = torch.fft.rfft2(bank, s=(size, size))  # (N, K, ...)
    cross = torch.fft.irfft2(spec[:, :, None] * tspec[:, None].conj(), s=(size, size))
    box = torch.fft.rfft2(torch.ones(q, q, dtype=torch.float64), s=(size, size))
    energy = torch.fft.irfft2(torch.fft.rfft2(frames**2) * box.conj(), s=(size, size))
    u = size - q + 1
    ssd = energy[:, :, None, :u, :u] - 2 * cross[..., :u, :u]
    ssd = ssd + bank.pow(2).sum((-1, -2))[:, None, :, None, None]
    best = ssd.flatten(2).argmin(-1)  # (N, T) over (template, y, x)
    which, rest = best // (u * u), best % (u * u)
    shift = torch.stack([rest % u, rest // u], -1) - anchor[:, None]  # window moves, (x, y)
    return start[:, None] + offsets[which] + f * shift


def continue_trajectory(
    rng: np.random.Generator, pos: np.ndarray, vel: np.ndarray, steps: int
) -> Trajectory:
    """The ``steps`` frames after one drawn at ``pos`` (D, 2) whose velocity for the next frame
    is ``vel`` (D, 2): the generator's motion (``smmnist.move``) with fresh draws from ``rng``.
    Same 64-grid units; digits in order."""
    out = empty_trajectory(steps, len(pos))
    for d in range(len(pos)):
        dx, dy = (int(v) for v in vel[d])
        move(rng, out, d, int(pos[d][0]) + dx, int(pos[d][1]) + dy, dx, dy)
    return out


def true_displacements(
    rng: np.random.Generator, pos: np.ndarray, vel: np.ndarray, steps: int, count: int
) -> np.ndarray:
    """(count, steps, 2) frame-to-frame displacements of one digit in ``count`` independent
    continuations from (pos, vel): the true distribution a model's samples should match."""
    out = np.empty((count, steps, 2), np.int64)
    for i in range(count):
        p = continue_trajectory(rng, pos[None], vel[None], steps).positions[:, 0]
        out[i] = np.diff(np.concatenate([pos[None], p]), axis=0)
    return out
