"""Sample grids (PNG) and animations (GIF): ground truth next to sampled futures.

Conditioning frames get a green border, predicted frames a red one, ground-truth futures a grey
one, so a reader can tell at a glance which frames the model saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

COND, PRED, TRUTH = (0.1, 0.8, 0.1), (0.9, 0.15, 0.1), (0.5, 0.5, 0.5)
PAD = 2


def framed(frames: torch.Tensor, color: tuple[float, float, float]) -> torch.Tensor:
    """(..., C, H, W) in [0, 1] -> (..., 3, H+2P, W+2P) RGB with a coloured border."""
    frames = frames.detach().float().cpu().clamp(0, 1)
    if frames.shape[-3] == 1:
        frames = frames.expand(*frames.shape[:-3], 3, *frames.shape[-2:])
    lead, (h, w) = frames.shape[:-3], frames.shape[-2:]
    out = torch.tensor(color).view(3, 1, 1).repeat(1, h + 2 * PAD, w + 2 * PAD)
    out = out.expand(*lead, -1, -1, -1).clone()
    out[..., PAD : PAD + h, PAD : PAD + w] = frames
    return out


def _rows(cond: torch.Tensor, future: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """-> (B, 1 + S, P + T, 3, H', W'): per video a ground-truth row then one row per sample."""
    s = samples.shape[1]
    c = framed(cond, COND)[:, None].expand(-1, 1 + s, -1, -1, -1, -1)
    futures = torch.cat([framed(future, TRUTH)[:, None], framed(samples, PRED)], dim=1)
    return torch.cat([c, futures], dim=2)


def tile(rows: torch.Tensor) -> np.ndarray:
    """(R, K, 3, H, W) -> (R*H, K*W, 3) uint8."""
    r, k, _, h, w = rows.shape
    img = rows.permute(0, 3, 1, 4, 2).reshape(r * h, k * w, 3)
    return (img.numpy() * 255).round().astype(np.uint8)


def upscale(img: np.ndarray, min_height: int = 256) -> Image.Image:
    pil = Image.fromarray(img)
    factor = max(1, min_height // img.shape[0])
    return pil.resize((img.shape[1] * factor, img.shape[0] * factor), Image.NEAREST)


def with_row_labels(img: Image.Image, labels: list[str]) -> Image.Image:
    """``img`` with a white margin on the left naming its rows (evenly spaced, in order)."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    width = max(int(draw.textlength(label, font=font)) for label in labels) + 8
    out = Image.new("RGB", (img.width + width, img.height), "white")
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    row = img.height / len(labels)
    for i, label in enumerate(labels):
        draw.text((4, row * (i + 0.5)), label, fill="black", font=font, anchor="lm")
    return out


def save_sample_grid(path: str | Path, cond, future, samples, sample_labels=None) -> Path:
    """cond (B, P, C, H, W), future (B, T, C, H, W), samples (B, S, T, C, H, W) -> PNG with, per
    video, the ground truth row followed by one row per sample; ``sample_labels`` (S names)
    labels the rows, e.g. ["best", "sample 1", ...]."""
    rows = _rows(cond, future, samples).flatten(0, 1)
    path = Path(path)
    img = upscale(tile(rows))
    if sample_labels is not None:
        img = with_row_labels(img, ["ground truth", *sample_labels] * cond.shape[0])
    img.save(path)
    return path


def save_sample_gif(path: str | Path, cond, future, samples, fps: int = 4) -> Path:
    """One animation frame per time step; per video a row [ground truth, sample 1, ...]."""
    rows = _rows(cond, future, samples)  # (B, 1+S, P+T, 3, H, W)
    frames = [upscale(tile(rows[:, :, t]), 128) for t in range(rows.shape[2])]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path
