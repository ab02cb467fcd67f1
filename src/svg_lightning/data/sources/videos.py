"""Your own videos -> one memory-mapped ``.npy`` per video, for ``VideosDataModule``.

``--src`` is a folder (searched recursively; hidden files are left alone), a glob, or a text file
listing one path per line. Every file PyAV opens (mp4, avi, mov, mkv, webm, gif, ...) and every
``.npy`` array in a layout ``sample`` accepts (``data.frames.ACCEPTED``) becomes
``out/videos/<name>-<hash>.npy``, uint8 (T, size, size) grey or (T, size, size, 3) RGB: every
``every``-th frame, squashed to size x size (aspect ratio not kept) by the libswscale bicubic
reformat KTH uses (``storage.shrink``). ``channels=1`` is swscale's full-range grey, as KTH;
``channels=3`` is RGB (a grey input is repeated). ``out/index.json`` lists each video's source
path relative to ``--src``, its file, frame count, original size, frame rate and frame count, and
split.

Splits are by video, never by clip, so no test clip shares a video with a training clip. A
video's split is a function of its path relative to ``--src`` (a hash, so adding or removing other
videos or listing them in another order moves no video), or is read from a split file.
Rerunning is the KTH converter's contract (``storage``): finished videos are reused after a check
of their headers, damaged ones converted again, and an input that fails is reported and leaves no
file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from svg_lightning.data.frames import to_tchw, unit_float
from svg_lightning.data.sources.storage import (
    BAD_INPUT,
    RESIZE,
    PrepareSummary,
    claim_settings,
    output_folder,
    progress_bar,
    read_video,
    reason,
    remove_stale_index,
    reusable_rows,
    save_npy,
    shrink,
    stamp_source,
)
from svg_lightning.errors import ConfigError, DataSourceError, InputError
from svg_lightning.files import write_json

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "test=0.1,val=0.05"
SETTINGS_RECORD = "settings.json"  # how the videos under videos/ were converted (claim_settings)
# A clip of the experiments' n_past + n_future (2 + 10): a shorter video could never be trained on.
MIN_FRAMES = 12
_GLOB_CHARS = re.compile(r"[*?\[]")
_LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Input:
    relative: str  # its path relative to --src, with '/': its name in reports, split and index
    path: Path


def parse_split(text: str) -> dict[str, float]:
    """``test=0.1,val=0.05`` -> {"test": 0.1, "val": 0.05}; ConfigError if malformed."""
    fractions = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        try:
            fraction = float(value) if eq else -1.0
        except ValueError:
            fraction = -1.0
        if key not in ("test", "val") or not 0 <= fraction < 1 or key in fractions:
            raise ConfigError(
                f"--split {text!r}: expected test=FRACTION[,val=FRACTION] with fractions in "
                f"[0, 1), e.g. {DEFAULT_SPLIT}"
            )
        fractions[key] = fraction
    if sum(fractions.values()) >= 1:
        raise ConfigError(f"--split {text!r}: the fractions leave no training video")
    return fractions


def hash_split(relative: str, fractions: dict[str, float]) -> str:
    """The split of the video at ``relative``: a uniform draw from its path's SHA-256, so the same
    path lands in the same split on every machine and run."""
    u = int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for split in ("test", "val"):
        edge += fractions.get(split, 0.0)
        if u < edge:
            return split
    return "train"


def read_split_file(path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Lines ``relative/path split`` (the path may hold blanks: the split is the last word; blank
    lines and ``#`` comments are ignored) -> ({relative path: split}, [(line, problem), ...])."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--split-file {path} cannot be read: {err}") from None
    splits, problems = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        name, _, split = line.strip().rpartition(" ")
        name = name.strip().strip("/")
        if split not in SPLITS or not name:
            problems.append((where, f"expected 'relative/path split' with split one of {SPLITS}"))
        elif name in splits:
            problems.append((where, f"{name} is listed again; this line ignored"))
        else:
            splits[name] = split
    return splits, problems


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def find_inputs(src: str | Path, out: Path) -> list[Input]:
    """The files ``src`` names, sorted by relative path; DataSourceError if there is none, and
    ConfigError if ``out`` lies inside the searched folder (its arrays would be read as inputs)."""
    text = str(src)
    if _GLOB_CHARS.search(text):
        base = Path(_GLOB_CHARS.split(text)[0]).parent if "/" in text else Path(".")
        files = [Path(p) for p in glob.glob(text, recursive=True)]
    elif Path(text).is_dir():
        base = Path(text)
        files = [
            p
            for p in base.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(base).parts)
        ]
    elif Path(text).is_file() and Path(text).suffix.lower() in _LIST_SUFFIXES:
        base = Path(text).parent
        lines = Path(text).read_text(encoding="utf-8", errors="replace").splitlines()
        files = [base / line.strip() for line in lines if line.strip() and line[0] != "#"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataSourceError(f"{text} lists files that do not exist: {', '.join(missing[:5])}")
    else:
        raise DataSourceError(
            f"--src {text} is neither a folder, a glob nor a list of paths ({_LIST_SUFFIXES})"
        )
    if Path(text).is_dir() or _GLOB_CHARS.search(text):
        if _inside(out, base):
            raise ConfigError(
                f"--out {out} lies inside --src {base}: a rerun would read the prepared arrays "
                "as videos; pass an --out outside it"
            )
    files = [f for f in files if f.is_file() and not _inside(f, out)]
    if not files:
        raise DataSourceError(
            f"no file in {text}: expected videos PyAV opens (mp4, avi, mov, mkv, webm, gif) or "
            ".npy arrays"
        )

    def relative(f: Path) -> str:
        try:
            return f.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:  # a listed file outside the list's folder
            return f.as_posix()

    return sorted((Input(relative(f), f) for f in files), key=lambda i: i.relative)


def output_name(relative: str) -> str:
    """An ASCII file name for the video at ``relative`` (any script, blanks): readable where it
    can be, unique through a hash of the whole path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", relative.rsplit(".", 1)[0]).strip("_")[-60:]
    digest = hashlib.sha256(relative.encode()).hexdigest()[:10]
    return f"videos/{stem or 'video'}-{digest}.npy"


def _read_array(path: Path, size: int, channels: int, every: int, info: dict) -> np.ndarray:
    """A user's .npy video, converted frame by frame (never the whole array in memory as float)
    by the same swscale call as a decoded frame."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"not a readable .npy array: {err}") from None
    tchw = to_tchw(array, path)
    if not len(tchw):
        raise InputError("holds no frame")
    info |= {"width": tchw.shape[3], "height": tchw.shape[2], "fps": None, "frames": len(tchw)}
    frames = []
    for t in range(0, len(tchw), every):
        rgb = (unit_float(tchw[t : t + 1], path)[0].transpose(1, 2, 0) * 255).round()
        rgb = rgb.astype(np.uint8)
        fmt = "rgb24" if rgb.shape[2] == 3 else "gray"
        plane = np.ascontiguousarray(rgb if fmt == "rgb24" else rgb[..., 0])
        frame = av.VideoFrame.from_ndarray(plane, format=fmt)
        frames.append(shrink(frame, size, RESIZE[0], channels))
    return np.stack(frames)


def _probe(path: Path) -> dict:
    """The original size, rate and frame count of a reused video, from its header only."""
    if path.suffix.lower() == ".npy":
        tchw = to_tchw(np.load(path, mmap_mode="r", allow_pickle=False), path)
        return {"width": tchw.shape[3], "height": tchw.shape[2], "fps": None, "frames": len(tchw)}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return {"width": stream.width, "height": stream.height,
                "fps": float(rate) if rate else None, "frames": stream.frames or None}  # fmt: skip


def _convert(item: Input, size: int, channels: int, every: int) -> tuple[np.ndarray, dict]:
    info: dict = {}
    if item.path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)")
    if item.path.suffix.lower() == ".npy":
        return _read_array(item.path, size, channels, every, info), info
    return read_video(item.path, size, RESIZE[0], channels, every, info), info


def _empty_splits(src, counts: dict[str, int], skipped: int, rule: str) -> str | None:
    empty = [split for split in ("train", "test") if not counts.get(split)]
    if not empty:
        return None
    found = ", ".join(f"{counts.get(s, 0)} {s}" for s in SPLITS)
    return (
        f"the {' and '.join(empty)} split of the videos in {src} would be empty ({found}; "
        f"{skipped} inputs skipped, listed above), split by {rule}. Training needs both, so no "
        "index.json was written; add videos, raise the test fraction (--split test=0.3) or give "
        "a --split-file, and rerun (the finished videos are kept)"
    )


def _check_options(size, channels, every, min_frames, split, split_file) -> None:
    if size not in (32, 64, 128):
        raise ConfigError(f"--size {size}: allowed 32, 64, 128 (the networks' frame sizes)")
    if channels not in (1, 3):
        raise ConfigError(f"--channels {channels}: allowed 1 (grey) or 3 (RGB)")
    if every < 1 or min_frames < 1:
        raise ConfigError("--every and --min-frames must be >= 1")
    if split is not None and split_file is not None:
        raise ConfigError("give --split or --split-file, not both")


def _output(
    item: Input, path: Path, size: int, channels: int, every: int, min_frames: int, summary
) -> tuple[int, dict]:
    """The frame count of ``item``'s array at ``path`` and its original's size, rate and length:
    the earlier run's array where it is still valid and up to date, else converted now (and
    written only if it holds at least ``min_frames``)."""
    tail = (size, size) if channels == 1 else (size, size, 3)
    frames = reusable_rows(path, tail, summary, source=item.path)
    if frames is not None:
        info = _probe(item.path)
        summary.reused += 1
        return frames, info
    video, info = _convert(item, size, channels, every)
    if len(video) >= min_frames:
        save_npy(path, video)
        stamp_source(path, item.path)
    return len(video), info


def prepare_videos(
    src: str | Path,
    out: str | Path,
    size: int = 64,
    channels: int = 3,
    every: int = 1,
    min_frames: int = MIN_FRAMES,
    split: str | None = None,
    split_file: str | Path | None = None,
) -> PrepareSummary:
    """Convert the videos ``src`` names into ``out`` (``data.data_dir`` of ``data=videos``) and
    write ``index.json`` last, so its presence means the run finished. DataSourceError (and no
    index.json) if no video lands in the train or the test split."""
    _check_options(size, channels, every, min_frames, split, split_file)
    out = Path(out)
    inputs = find_inputs(src, out)
    summary = PrepareSummary("videos", out)
    listed: dict[str, str] | None = None
    if split_file is not None:
        listed, problems = read_split_file(Path(split_file))
        summary.skipped += problems
        rule = f"the split file {split_file}"
    else:
        fractions = parse_split(split or DEFAULT_SPLIT)
        rule = f"hash of the relative path ({split or DEFAULT_SPLIT})"
    settings = {"size": size, "channels": channels, "every": every, "resize": RESIZE[0]}
    entries = []
    with output_folder(out, ["videos"]) as removed:
        summary.removed_temporaries = removed
        claim_settings(out, SETTINGS_RECORD, settings, {}, summary)
        with progress_bar(f"videos {size}x{size}", len(inputs)) as advance:
            for item in inputs:
                if listed is not None and item.relative not in listed:
                    summary.skipped.append((item.relative, f"not listed in {split_file}"))
                    advance(0)
                    continue
                file = output_name(item.relative)
                path = out / file
                try:
                    frames, info = _output(item, path, size, channels, every, min_frames, summary)
                except (*BAD_INPUT, InputError, UnicodeDecodeError) as err:
                    summary.skipped.append((item.relative, reason(err)))
                    advance(0)
                    continue
                advance(frames)
                if frames < min_frames:
                    kept = f"every {every}th of {info['frames']}" if every > 1 else "all"
                    summary.skipped.append((item.relative, f"{frames} frames ({kept}), fewer "
                                            f"than --min-frames {min_frames}"))  # fmt: skip
                    continue
                summary.videos += 1
                summary.frames += frames
                entries.append(
                    {
                        "name": item.relative,
                        "file": file,
                        "frames": frames,
                        "split": listed[item.relative] if listed is not None
                        else hash_split(item.relative, fractions),
                        "original": info,
                    }
                )  # fmt: skip
        if listed is not None:
            found = {i.relative for i in inputs}
            summary.not_found = [
                (name, f"{split_file}, not in {src}") for name in listed if name not in found
            ]
        counts = {s: sum(e["split"] == s for e in entries) for s in SPLITS}
        if problem := _empty_splits(src, counts, len(summary.skipped), rule):
            remove_stale_index(out / "index.json")
            raise DataSourceError(problem)
        index = {"dataset": "videos", **settings, "src": str(src), "split": rule}
        write_json(out / "index.json", index | {"videos": entries}, indent=1)
    return summary


def prepared_channels(root: str | Path | None) -> int | None:
    """The channels of the videos prepared into ``root`` (its index.json), or None when there is
    no readable index there: what ``model.channels`` follows in the ``videos_*`` experiments."""
    if not root:
        return None
    try:
        channels = json.loads((Path(root) / "index.json").read_text()).get("channels")
    except (OSError, ValueError, AttributeError):
        return None
    return channels if channels in (1, 3) else None
