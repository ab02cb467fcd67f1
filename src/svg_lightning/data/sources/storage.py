"""What the dataset converters share: the output folder, atomic ``.npy`` writes and their checks,
the progress bar and the summary.

A rerun skips the output files that exist, so every file is written atomically (arrays here,
``index.json`` with ``svg_lightning.files.write_json``): an interrupted run never leaves a file
that looks finished, and a reused file is checked against its header before it is trusted.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from svg_lightning.errors import ConfigError
from svg_lightning.files import atomic_path, remove_temporaries, write_json

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; see output_folder
    fcntl = None

# Without a lock, a temporary is only known to be stale once nothing has written to it for longer
# than any single write takes (one video or one shard: seconds).
UNLOCKED_STALE_AGE = 3600.0


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save, atomically (a memory-mappable .npy with its header)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
            # On disk before the rename, so a crash cannot leave a finished name on empty data.
            f.flush()
            os.fsync(f.fileno())


class InvalidOutput(ValueError):
    """A prepared array that cannot be used (reused by a rerun, or read by a DataModule); the
    message says why, as a predicate of the file ("is ...", "holds ...")."""


def npy_rows(path: Path, tail: tuple[int, ...]) -> int:
    """The first dimension of the finished array at ``path``, after checking that it is a whole
    uint8 .npy of shape (rows, *tail): its header must parse, and the file must be exactly as long
    as the header says (a truncated or padded file is not the array it claims). InvalidOutput
    otherwise. Only the header is read. Both the prepare run's reuse of its earlier outputs and
    the DataModules' check of the prepared data use it."""
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise InvalidOutput(f"is not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive loads as a mapping
        raise InvalidOutput("is not a .npy array")
    if array.dtype != np.uint8 or array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        raise InvalidOutput(
            f"holds {array.dtype} {array.shape}, expected uint8 (N, {', '.join(map(str, tail))})"
        )
    expected = getattr(array, "offset", 0) + array.nbytes
    actual = path.stat().st_size
    if actual != expected:
        raise InvalidOutput(f"is {actual} bytes long, but its header describes {expected}")
    return int(array.shape[0])


@dataclass
class PrepareSummary:
    """What a preparation run did; ``skipped`` holds (item, reason) for every input left out,
    ``replaced`` (file, reason) for every output of an earlier run that was not valid or not
    converted from the source as it is now, and was converted again, ``not_found`` (item, where
    it is listed) for every input that a list in the sources names but no archive holds."""

    dataset: str
    out: Path
    videos: int = 0
    frames: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, str]] = field(default_factory=list)
    not_found: list[tuple[str, str]] = field(default_factory=list)
    removed_temporaries: int = 0

    def lines(self) -> list[str]:
        out = [
            f"{self.dataset}: {self.videos} videos, {self.frames} frames in {self.out} "
            f"({self.reused} output files reused from an earlier run)",
            f"skipped: {len(self.skipped)}",
        ]
        out += [f"  {item}: {why}" for item, why in self.skipped]
        if self.not_found:
            out.append(f"listed, not found: {len(self.not_found)}")
            out += [f"  {item}: listed in {where}" for item, where in self.not_found]
        if self.replaced:
            out.append(
                f"replaced: {len(self.replaced)} invalid or out-of-date output files of an "
                "earlier run"
            )
            out += [f"  {item}: {why}" for item, why in self.replaced]
        if self.removed_temporaries:
            out.append(
                f"removed {self.removed_temporaries} temporary files left by an interrupted run"
            )
        return out


def stamp_source(path: Path, source: Path) -> None:
    """Give the output ``path`` the modification time of the ``source`` it was converted from: a
    rerun then tells a source replaced or edited under the same name from the one converted
    (``reusable_rows``), with no record beside the output that a crash could lose."""
    st = source.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def reusable_rows(
    path: Path, tail: tuple[int, ...], summary: PrepareSummary, source: Path | None = None
) -> int | None:
    """Rows of the earlier run's output at ``path`` if it is valid (see ``npy_rows``) and, given
    ``source``, still carries its modification time (``stamp_source``); None if there is none
    or it is not valid or out of date, in which case it is deleted (so that nothing damaged or
    stale stays on disk even if its input now fails) and reported in ``summary.replaced``."""
    if not path.exists():
        return None
    try:
        rows = npy_rows(path, tail)
    except InvalidOutput as err:
        path.unlink()
        summary.replaced.append((str(path), f"{err}; converted again"))
        return None
    if source is not None and not _carries_mtime(path, source):
        path.unlink()
        summary.replaced.append((str(path), (
            f"was converted from another version of {source} (modified or replaced since), or "
            "before outputs carried their source's modification time; converted again"
        )))  # fmt: skip
        return None
    return rows


def _carries_mtime(path: Path, source: Path) -> bool:
    stored, now = path.stat().st_mtime_ns, source.stat().st_mtime_ns
    # A disk with a coarse clock (FAT: 2 s; ext3 and some network file systems: 1 s) stores the
    # stamp rounded to whole seconds.
    return stored == now or stored % 10**9 == 0 and abs(stored - now) < 2 * 10**9


def _describe(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    return f"{err.strerror or err}{where}"


@contextmanager
def output_folder(root: Path, subfolders: Sequence[str] = ()) -> Iterator[int]:
    """Claim ``root`` (and ``root/<subfolder>``) for one preparation run, before any work.

    Creates the folders and writes a probe file into each, so a folder that cannot be written
    (permissions, a read-only mount, a path under a regular file) is a one-line ConfigError now
    rather than a traceback after the first conversion. Holds an exclusive advisory lock on
    ``root`` while the block runs; a second run into the same folder is refused, which is what
    makes it safe to delete the temporaries that killed runs left there. Yields how many were
    deleted. Where locks are unsupported (some network file systems), only temporaries untouched
    for ``UNLOCKED_STALE_AGE`` seconds are deleted."""
    folders = [root, *(root / name for name in subfolders)]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise ConfigError(
                f"cannot write to the output folder {folder}: {_describe(err)}; "
                "pass an --out folder that can be written"
            ) from None
    fd = os.open(root, os.O_RDONLY) if fcntl is not None else None
    try:
        locked = False
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise ConfigError(
                    f"another preparation run is writing into {root}; let it finish (or stop "
                    "it) before starting this one"
                ) from None
            except OSError:
                pass  # no lock support here: fall back to the age rule
        age = None if locked else UNLOCKED_STALE_AGE
        yield sum(remove_temporaries(folder, older_than=age) for folder in folders)
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` input items; yields ``advance(frames)``, to call once per
    item with the number of frames it produced. Shows items done, frames, frames/s and time left."""
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[frames]} frames, {task.fields[rate]} frames/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(description, total=total, frames=0, rate="-")
        done = 0

        def advance(frames: int) -> None:
            nonlocal done
            done += frames
            rate = f"{done / max(time.perf_counter() - start, 1e-9):.0f}"
            bar.update(task, advance=1, frames=done, rate=rate)

        yield advance


def claim_settings(
    root: Path, record: str, settings: dict, before: dict, summary: PrepareSummary
) -> None:
    """Make ``settings`` (how the videos are converted) those of every video under
    ``root/videos``: the videos of an earlier run with other settings (read from ``root/record``;
    ``before`` when there is no record but there are videos: they predate it) are deleted, with
    the index.json that lists them, and reported in ``summary.replaced``. The record is written
    before the first video of this run, because index.json is only written at the end and a run
    that stopped earlier leaves none."""
    videos = sorted((root / "videos").glob("*.npy"))
    try:
        previous = json.loads((root / record).read_text())
        previous = previous if isinstance(previous, dict) else None
    except (OSError, ValueError):  # none, or not one this code wrote
        previous = None
    if previous is None:
        previous = before if videos else settings
    if previous != settings:
        for path in videos:
            path.unlink()
        remove_stale_index(root / "index.json")
        if videos:
            old = ", ".join(f"{k}={v}" for k, v in previous.items())
            new = ", ".join(f"{k}={v}" for k, v in settings.items())
            summary.replaced.append(
                (
                    f"{len(videos)} videos in {root / 'videos'}",
                    f"made with {old}; converted again with {new}",
                )
            )
    write_json(root / record, settings)


def remove_stale_index(path: Path) -> None:
    """Delete an ``index.json`` of an earlier run when this run found the dataset unusable, so the
    DataModules say it is not prepared rather than read a description that no longer holds."""
    path.unlink(missing_ok=True)


# --- Decoding videos (KTH, your own videos) ----------------------------------------------------

# How frames are shrunk to size x size. "bicubic" is the reference's: its converter runs
# `ffmpeg -i AVI -r 25 -f image2 -s 64x64`, whose scaler is libswscale with ffmpeg's default
# bicubic filter, and PyAV's reformat calls that same libswscale. "bilinear" is PIL's (area-aware
# when shrinking), what earlier versions wrote. The first is the default.
RESIZE = ("bicubic", "bilinear")
# A header frame count may overstate by a frame or two without the file being damaged; a truncated
# file loses far more, or shows in its RIFF sizes (see read_video).
HEADER_SLACK = 2


class VideoError(ValueError):
    """A video that opens but cannot be used whole (no frames, or fewer than its header says)."""


def _missing_bytes(f: BinaryIO) -> int:
    """How many bytes the file's top-level RIFF chunks declare beyond its end: 0 for a whole AVI
    (and for a file that is not RIFF at all, which the decoder judges). The sizes sit at the start
    of each chunk, so they show a file cut anywhere after its header, even between two frames,
    where every frame that is left still decodes."""
    size = f.seek(0, os.SEEK_END)
    pos = missing = 0
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(8)
        if head[:4] != b"RIFF":
            break
        end = pos + 8 + int.from_bytes(head[4:], "little")
        if end > size:
            missing = end - size
            break
        pos = end + (end - pos) % 2  # chunks are padded to an even length
    f.seek(0)
    return missing


# Pixel formats of the prepared frames: 1 channel is swscale's full-range grey (KTH's), 3 RGB.
PIXEL_FORMATS = {1: "gray", 3: "rgb24"}


def shrink(
    frame: av.VideoFrame, size: int, resize: str = RESIZE[0], channels: int = 1
) -> np.ndarray:
    """One decoded frame squashed to uint8 (size, size) grey (swscale's conversion to full-range
    grey), or (size, size, 3) RGB with ``channels=3``, resized with the ``RESIZE`` filter named
    ``resize``."""
    fmt = PIXEL_FORMATS[channels]
    if resize == "bicubic":  # scale and colour conversion in one swscale call, like ffmpeg -s
        return frame.reformat(size, size, fmt, interpolation="BICUBIC").to_ndarray()
    image = Image.fromarray(frame.to_ndarray(format=fmt))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def read_video(
    file: str | Path | BinaryIO,
    size: int,
    resize: str = RESIZE[0],
    channels: int = 1,
    every: int = 1,
    info: dict | None = None,
) -> np.ndarray:
    """Every ``every``-th frame of a video as uint8 (T, size, size[, 3]), through ``shrink``
    (the others are decoded, not converted); ``info``, when given, receives the original width,
    height, frame rate and frame count. Raises VideoError if no frame decodes, if the decoded
    frames fall short of the count in the container's header by more than ``HEADER_SLACK``, or
    by any amount when an AVI is shorter than its RIFF header says: a truncated file otherwise
    decodes its first frames without any error.
    """
    if isinstance(file, (str, Path)):
        with open(file, "rb") as f:
            missing = _missing_bytes(f)
    else:
        missing = _missing_bytes(file)
    cut = f"truncated: the file ends {missing} bytes before the end its RIFF header gives"
    frames, decoded = [], 0
    try:
        with av.open(file) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if decoded % every == 0:
                    frames.append(shrink(frame, size, resize, channels))
                decoded += 1
            expected = stream.frames
            if info is not None:
                rate = stream.average_rate or stream.guessed_rate
                info |= {"width": stream.width, "height": stream.height,
                         "fps": float(rate) if rate else None, "frames": decoded}  # fmt: skip
    except av.error.FFmpegError as err:
        if missing:  # the decoder's complaint is about the cut
            raise VideoError(f"{cut}; {decoded} frames decode before it") from err
        raise
    if not frames:
        raise VideoError("no decodable frame")
    if expected and decoded + HEADER_SLACK < expected:
        raise VideoError(f"truncated: {decoded} of {expected} frames decode")
    if expected and decoded < expected and missing:
        raise VideoError(f"{cut}; {decoded} of the {expected} frames it counts decode")
    return np.stack(frames)


# What a bad input can raise; anything else (a bug, a full disk, Ctrl-C) stops the run.
BAD_INPUT = (av.error.FFmpegError, VideoError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


def reason(err: Exception) -> str:
    # FFmpeg's message repeats the file name (or '<none>' for a zip member); the report has it.
    text = err.strerror if isinstance(err, av.error.FFmpegError) else str(err)
    return f"{type(err).__name__}: {text}"
