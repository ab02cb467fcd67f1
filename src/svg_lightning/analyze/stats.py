"""Does a per-step score (the prior's sigma, the KL) single out the collision steps? See
``ALIGNMENT`` for which step is compared with which collision."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from svg_lightning.numbering import lag_name

ALIGNMENT = """Frames are numbered from 1. The prior's output for frame t (t = 2..T, one per step
of ``SVG.latents``) has seen frames 1..t-1. A collision flag at frame ``k`` means the velocity was
redrawn while drawing frame k: frame k shows the digit clamped at the wall (deterministic given the
past) and frame k+1 is the first whose position shows the new, random velocity. So the output that
should be uncertain is the one predicting frame k+1: it has just seen the digit at the wall.
Lag ``L`` compares the score of the output predicting frame k+1+L with the collision at frame k;
L = -1 and +1 are the control alignments one frame early and late.

The outputs predicting frames 2..``burn_in``+1 are left out: after one frame the velocity is
unknown, so sigma is high there for reasons that have nothing to do with walls."""


def lagged_labels(
    collisions: np.ndarray, num_steps: int, lag: int, burn_in: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """collisions (N, T, D) per frame -> labels (N, num_steps, D) per prior step and the
    (num_steps,) mask of steps that take part. Array positions: step s (which predicts frame
    position s + 1) gets the flags of frame position s - lag."""
    n, t, d = collisions.shape
    steps = np.arange(num_steps)
    frame = steps - lag
    valid = (steps >= burn_in) & (frame >= 0) & (frame < t)
    labels = np.zeros((n, num_steps, d), bool)
    labels[:, valid] = collisions[:, frame[valid]]
    return labels, valid


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties counting one half
    (Mann-Whitney U from average ranks). NaN without positives or negatives."""
    scores, labels = np.ravel(scores), np.ravel(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def point_biserial(scores: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation of the score with the 0/1 label. NaN when either is constant."""
    x, y = np.ravel(scores).astype(float), np.ravel(labels).astype(float)
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def local_peaks(x: np.ndarray) -> np.ndarray:
    """(N, S) -> bool (N, S): higher than the previous step and not lower than the next one (a
    sequence's ends compare with their one neighbour)."""
    left = np.ones_like(x, bool)
    right = np.ones_like(x, bool)
    left[:, 1:] = x[:, 1:] > x[:, :-1]
    right[:, :-1] = x[:, :-1] >= x[:, 1:]
    return left & right


def near_peak(x: np.ndarray, window: int = 1) -> np.ndarray:
    """(N, S) bool: a local peak of ``x`` lies within ``window`` steps."""
    peaks = local_peaks(x)
    near = peaks.copy()
    for w in range(1, window + 1):
        near[:, w:] |= peaks[:, :-w]
        near[:, :-w] |= peaks[:, w:]
    return near


def collision_statistics(
    score: np.ndarray, collisions: np.ndarray, lags=(-1, 0, 1), burn_in: int = 2
) -> dict:
    """score (N, S) per video and prior step, collisions (N, T, D) per frame ->
    {group: {lag: numbers}} for each digit (``digit1``, ``digit2``, ...) and ``any`` (a step is
    positive when any digit collides), lags named by ``lag_name``. Per lag: ``auroc``,
    ``point_biserial``, ``peak_within_1`` (fraction of positive steps with a local score peak
    within one step) next to ``peak_within_1_chance`` (the same over all steps taking part), and
    the counts."""
    n, s = score.shape
    near = near_peak(score)
    groups = {f"digit{d + 1}": collisions[..., d : d + 1] for d in range(collisions.shape[-1])}
    if collisions.shape[-1] > 1:
        groups["any"] = collisions.any(-1, keepdims=True)
    else:
        groups = {"any": collisions}
    out: dict = {}
    for name, flags in groups.items():
        out[name] = {}
        for lag in lags:
            labels, valid = lagged_labels(flags, s, lag, burn_in)
            y, x = labels[:, valid, 0], score[:, valid]
            out[name][lag_name(lag)] = {
                "auroc": auroc(x, y),
                "point_biserial": point_biserial(x, y),
                "peak_within_1": float(near[:, valid][y].mean()) if y.any() else float("nan"),
                "peak_within_1_chance": float(near[:, valid].mean()),
                "positives": int(y.sum()),
                "steps": int(y.size),
            }
    return out
