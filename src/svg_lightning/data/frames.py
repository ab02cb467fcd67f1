"""The arrays a user may give as a video (to ``sample``, or to ``prepare videos``): their layouts
and value ranges, and their conversion to float (T, C, H, W) in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from svg_lightning.errors import InputError

ACCEPTED = "(T, H, W), (T, H, W, C) or (T, C, H, W) with C = 1 or 3, uint8 or float in [0, 1]"


def to_tchw(arr: np.ndarray, path: Path) -> np.ndarray:
    """Layout by shape: channels-last wins when both dim 1 and the last dim could be channels
    (e.g. (T, 3, W, 3)), matching how images and videos are usually stored."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4 and arr.shape[-1] in (1, 3):
        return arr.transpose(0, 3, 1, 2)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        return arr
    raise InputError(f"input {path} has shape {arr.shape}; accepted arrays: {ACCEPTED}")


def unit_float(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255
    if np.issubdtype(arr.dtype, np.floating):
        dtype, arr = arr.dtype, np.array(arr, dtype=np.float32)  # reads the mapped slice
        if arr.size and not np.isfinite(arr).all():
            bad = sorted({int(t) for t in np.argwhere(~np.isfinite(arr))[:, 0]})
            raise InputError(
                f"input {path} holds NaN or inf values in frame(s) {bad[:5]} (from 0) of those "
                f"used; accepted arrays: {ACCEPTED}"
            )
        if arr.size and not (arr.min() >= 0 and arr.max() <= 1):
            raise InputError(
                f"input {path} is {dtype} with values outside [0, 1] (range "
                f"{arr.min():g}..{arr.max():g}); accepted arrays: {ACCEPTED}"
            )
        return arr
    raise InputError(f"input {path} has dtype {arr.dtype}; accepted arrays: {ACCEPTED}")
