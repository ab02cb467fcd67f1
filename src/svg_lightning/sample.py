"""Condition a trained model on frames of your own video or array and write the sampled futures.

Input: any video PyAV opens (mp4, avi, gif, webm, ...) or a ``.npy`` array of shape (T, H, W),
(T, H, W, C) or (T, C, H, W), uint8 (0-255) or float in [0, 1]. A 4-d array is channels-last
when its last dim is 1 or 3, else channels-first when dim 1 is 1 or 3. Frames are converted to
the model's channels (RGB -> BT.601 luma, gray -> repeated) and squashed to image_size x
image_size without cropping, as the training data was, with an area-aware bilinear filter (like
PIL's, used to prepare KTH). Frames ``start .. start+n_past-1`` condition the model.

Outputs in ``out``: ``samples.npy`` float32 (S, n_future, C, H, W) in [0, 1] (S = 1 for the
deterministic model), ``conditioning.npy`` (n_past, C, H, W), ``samples.gif`` (per time step
the samples side by side: conditioning frames in green, then each sample's future in red) and
``sample_NN.mp4`` per sample (conditioning frames then that future), numbered from 1 as
everything a person reads (``numbering``): ``sample_01.mp4`` is ``samples.npy[0]``; and
``sample_info.json``, what produced them: the checkpoint (path, checksum, training step), the
input and which of its frames conditioned the model, and the sampling settings.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

import svg_lightning
from svg_lightning.checkpoint import describe, model_from, read_checkpoint
from svg_lightning.config import architecture, check_sample, frame_shape
from svg_lightning.console import progress
from svg_lightning.data.frames import to_tchw, unit_float
from svg_lightning.devices import check_memory, pick_device
from svg_lightning.errors import ConfigError, InputError
from svg_lightning.files import check_writable, staged_outputs, write_json
from svg_lightning.hydra_entry import hydra_command
from svg_lightning.metrics.best_of_n import EvalSettings
from svg_lightning.numbering import sample_file
from svg_lightning.viz import COND, PRED, framed, tile, upscale

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what PIL's "L" mode and ffmpeg's gray use
MIN_VIDEO_SIZE = 128
SAMPLES = "samples.npy"  # written last (files.staged_outputs): its presence means a finished run
INFO = "sample_info.json"


# ---- reading ---------------------------------------------------------------------------------


def read_frames(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Frames of a video or .npy file as float32 (T, C, H, W) in [0, 1], C = 1 or 3; only the
    first ``limit`` frames (the conditioning frames and those before them) are decoded, or, of
    an array, mapped from disk, checked and converted, so a long input costs no memory and a
    bad value in a frame never read is no error."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a video file or a .npy array")
    if not path.is_file():
        raise InputError(f"input {path} does not exist")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, limit)
    return _read_video(path, limit)


def _read_npy(path: Path, limit: int | None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"input {path} cannot be read as a .npy array: {err}") from None
    return unit_float(to_tchw(arr, path)[:limit], path)


def _read_video(path: Path, limit: int | None) -> np.ndarray:
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"input {path} has no video stream")
            for frame in container.decode(container.streams.video[0]):
                frames.append(frame.to_ndarray(format="rgb24"))
                if limit is not None and len(frames) >= limit:
                    break
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise InputError(
            f"input {path} cannot be decoded (corrupt or not a video?): {err}"
        ) from None
    if not frames:
        raise InputError(f"input {path}: no video frame decodes")
    return np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 255


# ---- preparing -------------------------------------------------------------------------------


def to_model_frames(frames: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """(T, C, H, W) in [0, 1] -> (T, channels, size, size) tensor, prepared like training data."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()
    if x.shape[1] == 3 and channels == 1:
        x = torch.einsum("tchw,c->thw", x, torch.tensor(LUMA))[:, None]
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):  # antialias: bilinear that widens its support when shrinking
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x.clamp(0, 1)


def conditioning(frames: np.ndarray, start: int, n_past: int, path) -> np.ndarray:
    """Frames start..start+n_past-1, or InputError saying how to fix a too-short input."""
    kind = "array" if str(path).lower().endswith(".npy") else "video"
    if len(frames) < start + n_past:
        raise InputError(
            f"input {path}: needs n_past={n_past} frames from frame start={start}, the {kind} "
            f"has {len(frames)}; lower n_past or start"
        )
    return frames[start : start + n_past]


def settings(cfg: DictConfig, hparams: dict) -> dict:
    """n_past, n_future, num_samples (the model's training values by default), checked."""
    n_past = hparams["n_past"] if cfg.n_past is None else cfg.n_past
    n_future = hparams["n_future"] if cfg.n_future is None else cfg.n_future
    check_sample(cfg, n_past, n_future)
    # The futures are drawn on the device, then all copied to the CPU and written.
    shape = frame_shape(architecture(hparams))
    for device in dict.fromkeys((pick_device(cfg.device), torch.device("cpu"))):
        check_memory(cfg.num_samples * n_future, shape, device,
                     f"num_samples={cfg.num_samples} x n_future={n_future}",
                     "lower num_samples or n_future")  # fmt: skip
    return {"n_past": n_past, "n_future": n_future, "num_samples": cfg.num_samples}


# ---- writing ---------------------------------------------------------------------------------


def save_gif(path: Path, cond: torch.Tensor, samples: torch.Tensor, fps: int) -> Path:
    """cond (P, C, H, W), samples (S, T, C, H, W) -> GIF of P + T frames, samples side by side:
    the conditioning frames (green border) in every panel, then each sample's future (red)."""
    s = samples.shape[0]
    c = framed(cond, COND)[None].expand(s, -1, -1, -1, -1)
    rows = torch.cat([c, framed(samples, PRED)], dim=1)[None]  # (1, S, P+T, 3, H', W')
    frames = [upscale(tile(rows[:, :, t]), MIN_VIDEO_SIZE) for t in range(rows.shape[2])]
    delay = 10 * max(1, round(100 / fps))  # GIF delays are whole 1/100 s
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delay, loop=0)
    return path


def _video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def save_mp4(path: Path, frames: torch.Tensor, fps: int) -> Path:
    """(T, C, H, W) in [0, 1] -> MP4 (h264, else mpeg4), nearest-upscaled to >= 128 px so players
    show it at a useful size; yuv420p needs even sides, which integer upscaling of 32/64 px keeps
    and padding by one pixel guarantees otherwise."""
    x = frames.detach().float().cpu().clamp(0, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    factor = max(1, -(-MIN_VIDEO_SIZE // min(x.shape[-2:])))
    x = F.interpolate(x, scale_factor=factor, mode="nearest")
    x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")
    rgb = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_video_codec(), rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        for img in rgb:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_outputs(
    out: Path, cond: torch.Tensor, samples: torch.Tensor, fps: int, info: dict
) -> dict:
    """cond (P, C, H, W), samples (S, T, C, H, W) -> every output file in ``out`` and ``info``
    as sample_info.json, all of them or none (``files.staged_outputs``; samples.npy, the
    marker, appears last). A rerun with fewer samples leaves no earlier run's videos beside
    the new arrays."""
    with staged_outputs(out, SAMPLES, stale=["sample_[0-9][0-9].mp4"]) as tmp:
        write_json(tmp / INFO, info)
        np.save(tmp / SAMPLES, samples.float().cpu().numpy())
        np.save(tmp / "conditioning.npy", cond.float().cpu().numpy())
        save_gif(tmp / "samples.gif", cond, samples, fps)
        for number, future in enumerate(samples, start=1):
            save_mp4(tmp / sample_file(number), torch.cat([cond, future]), fps)
    paths = {"samples": out / SAMPLES, "conditioning": out / "conditioning.npy",
             "gif": out / "samples.gif", "info": out / INFO}  # fmt: skip
    return paths | {f"mp4_{n:02d}": out / sample_file(n) for n in range(1, len(samples) + 1)}


# ---- entry point -----------------------------------------------------------------------------


def sample_futures(model, cond: torch.Tensor, st: dict, cfg: DictConfig) -> torch.Tensor:
    """cond (P, C, H, W) -> samples (S, n_future, C, H, W) in [0, 1]. The noise is drawn on the
    CPU from ``seed``, as in evaluation, so a seed gives the same samples on any device."""
    es = EvalSettings(**st, sample_chunk=cfg.sample_chunk, seed=cfg.seed)
    noise = model.noise_for(torch.tensor([0]), es)
    device = next(model.parameters()).device
    bar = lambda chunks, count: progress(chunks, "sampling", count)
    out = model.sample(
        cond[None].to(device), es.n_future, es.num_samples, es.sample_chunk, noise, bar
    )
    return out.frames[0].clamp(0, 1).cpu()


def sample_info(cfg: DictConfig, st: dict, checkpoint: dict, device: torch.device) -> dict:
    """What produced the samples (sample_info.json): frames numbered from 1 (``numbering``),
    so ``start=4`` with n_past 2 conditions on frames 5 and 6 of the input."""
    return {
        "checkpoint": checkpoint,
        "input": str(Path(cfg.input).resolve()),
        "conditioning_frames": list(range(cfg.start + 1, cfg.start + st["n_past"] + 1)),
        **st,
        "seed": cfg.seed,
        "sample_chunk": cfg.sample_chunk,
        "device": str(device),
        "package_version": svg_lightning.__version__,
    }


def sample(cfg: DictConfig) -> dict:
    """Check settings and input, load, sample, write; returns the written paths. Raises
    InputError/ConfigError/CheckpointError. Settings and input are checked before the model is
    built, so bad input fails in seconds."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is an existing file; give a folder for the outputs")
    check_writable(out, "out")  # before sampling, not after
    # Read once: settings, weights and the recorded checksum all come from the same bytes,
    # even when training is still rewriting last.ckpt.
    ckpt = read_checkpoint(cfg.ckpt_path)
    st = settings(cfg, ckpt["hyper_parameters"])
    device = pick_device(cfg.device)
    frames = read_frames(cfg.input, limit=cfg.start + st["n_past"])
    frames = conditioning(frames, cfg.start, st["n_past"], cfg.input)
    model = model_from(ckpt, Path(cfg.ckpt_path)).to(device)
    cond = to_model_frames(frames, model.hparams.channels, model.hparams.image_size)
    samples = sample_futures(model, cond, st, cfg)
    info = sample_info(cfg, st, describe(cfg.ckpt_path, ckpt), device)
    paths = write_outputs(out, cond, samples, cfg.fps, info)
    print(f"{len(samples)} sample(s) of {st['n_future']} frames after {st['n_past']} "
          f"conditioning frames of {cfg.input} written to {out.resolve()}:")  # fmt: skip
    for path in paths.values():
        print(f"  {path}")
    return paths


if __name__ == "__main__":  # python -m svg_lightning.sample (svg sample)
    hydra_command("sample", sample)()
