"""KTH actions: the six official zips (or their extracted avi files) -> one .npy per video.

Layout under ``out/kth{size}/``: ``videos/<name>.npy`` (uint8 (T, size, size), memory-mappable)
and ``index.json`` (per video: person, action, scenario, split, frame count, file and the 0-based
[start, end) repetition segments of ``00sequences.txt``). Frames are squashed to size x size like
the reference pipeline (aspect ratio not kept) and reduced to one channel (luma: KTH is grayscale
content stored in a colour codec, so R = G = B and the luma is that value).

A rerun reuses the finished .npy files; corrupt or truncated videos are reported and left out.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from svg_lightning.data.sources.storage import PrepareSummary, progress_bar, save_npy
from svg_lightning.errors import DataSourceError
from svg_lightning.files import write_json

CLASSES = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
VIDEO_RE = re.compile(rf"person(\d\d)_({'|'.join(CLASSES)})_d(\d)_uncomp\.avi")
SEQUENCES_FILE = "00sequences.txt"
TEST_PERSONS = range(21, 26)  # the reference split: persons 1-20 train, 21-25 test
# A header frame count may overstate by a frame or two without the file being damaged; a truncated
# file loses far more.
HEADER_SLACK = 2

_SEQ_LINE_RE = re.compile(rf"^\s*(person\d\d_(?:{'|'.join(CLASSES)})_d\d)\s+frames\s+(.*)$")
_RANGE_RE = re.compile(r"(\d+)\s*-\s*(\d+)")

EXPECTED = (
    "expected the KTH actions videos: the six archives "
    + ", ".join(f"{c}.zip" for c in CLASSES)
    + " (or their extracted files personXX_<class>_dY_uncomp.avi), optionally with "
    f"{SEQUENCES_FILE}. They are the KTH 'Recognition of human actions' dataset (Schuldt, Laptev "
    "and Caputo, ICPR 2004), distributed by KTH as six zip archives, one per action."
)


class VideoError(ValueError):
    """A video that opens but cannot be used whole (no frames, or fewer than its header says)."""


@dataclass(frozen=True)
class Source:
    """One KTH video: an avi file on disk, or a ``member`` of the zip at ``path``."""

    name: str  # e.g. person01_boxing_d1
    person: int
    action: str
    scenario: int
    path: Path
    member: str | None = None

    @property
    def label(self) -> str:
        """How reports name the input: the file, and the zip holding it."""
        return f"{self.path.name}:{self.member}" if self.member else str(self.path)

    @property
    def split(self) -> str:
        return "test" if self.person in TEST_PERSONS else "train"


@dataclass
class Sources:
    videos: list[Source]
    sequences: Path | None
    unreadable: list[tuple[str, str]]  # zips that could not be listed, with the reason


def parse_sequences(text: str) -> dict[str, list[tuple[int, int]]]:
    """``00sequences.txt`` -> {video name: [(start, end), ...]}, 0-based with exclusive end.

    The file counts frames from 1 with inclusive ends; anything that is not a video line (header,
    blank lines) is ignored, and ranges are found by pattern because spacing varies between lines.
    """
    out = {}
    for line in text.splitlines():
        m = _SEQ_LINE_RE.match(line)
        if m:
            out[m.group(1)] = [(int(a) - 1, int(b)) for a, b in _RANGE_RE.findall(m.group(2))]
    return out


def _source(path: Path, member: str | None = None) -> Source | None:
    m = VIDEO_RE.fullmatch(Path(member or path).name)
    if not m:
        return None
    person, action, scenario = int(m.group(1)), m.group(2), int(m.group(3))
    name = f"person{m.group(1)}_{action}_d{scenario}"
    return Source(name, person, action, scenario, path, member)


def find_sources(src: Path) -> Sources:
    """All KTH videos under ``src`` (searched recursively), in zips or extracted.

    A video found both extracted and in a zip is taken once, from the extracted file, which saves
    decompressing it. Raises DataSourceError naming ``src`` and the expected files if none is found.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataSourceError(f"KTH source folder {src} does not exist; {EXPECTED}")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    videos: dict[str, Source] = {}
    unreadable = []
    for p in files:
        if p.suffix.lower() == ".avi" and (s := _source(p)):
            videos.setdefault(s.name, s)
    for p in files:
        if p.suffix.lower() != ".zip":
            continue
        try:
            with zipfile.ZipFile(p) as zf:
                members = zf.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            unreadable.append((str(p), f"unreadable zip: {err}"))
            continue
        for member in members:
            if s := _source(p, member):
                videos.setdefault(s.name, s)
    if not videos:
        problems = "".join(f"; {item}: {why}" for item, why in unreadable)
        raise DataSourceError(f"no KTH video found in {src}{problems}; {EXPECTED}")
    sequences = next((p for p in files if p.name == SEQUENCES_FILE), None)
    return Sources(sorted(videos.values(), key=lambda s: s.name), sequences, unreadable)


def read_video(file: str | Path | BinaryIO, size: int) -> np.ndarray:
    """Every frame of an avi as uint8 (T, size, size): luma, resized with PIL bilinear.

    PIL's bilinear filter widens its support when shrinking (area-aware), so the 160 -> 64 width
    reduction does not alias. Raises VideoError if no frame decodes or the decoded frames fall
    short of the count in the AVI header: a truncated file otherwise decodes its first frames
    without any error.
    """
    frames = []
    with av.open(file) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            gray = Image.fromarray(frame.to_ndarray(format="gray"))
            frames.append(np.asarray(gray.resize((size, size), Image.Resampling.BILINEAR)))
        expected = stream.frames
    if not frames:
        raise VideoError("no decodable frame")
    if expected and len(frames) + HEADER_SLACK < expected:
        raise VideoError(f"truncated: {len(frames)} of {expected} frames decode")
    return np.stack(frames)


def _load(source: Source, size: int) -> np.ndarray:
    if source.member is None:
        return read_video(source.path, size)
    # PyAV reads file-like objects, so nothing is extracted to disk; the member is read into
    # memory (one video, megabytes) because seeking back in a compressed zip stream restarts
    # decompression, and reading it whole checks its CRC up front.
    with zipfile.ZipFile(source.path) as zf:
        data = zf.read(source.member)
    return read_video(io.BytesIO(data), size)


# What a bad input can raise; anything else (a bug, a full disk, Ctrl-C) stops the run.
_BAD_INPUT = (av.error.FFmpegError, VideoError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _reason(err: Exception) -> str:
    # FFmpeg's message repeats the file name (or '<none>' for a zip member); the report has it.
    text = err.strerror if isinstance(err, av.error.FFmpegError) else str(err)
    return f"{type(err).__name__}: {text}"


def prepare_kth(src: Path, out: Path, size: int = 64) -> PrepareSummary:
    """Convert every KTH video under ``src`` to ``out/kth{size}/videos/<name>.npy`` and write
    ``index.json`` last, so its presence means the run finished (only if some video did)."""
    sources = find_sources(src)
    sequences = (
        parse_sequences(sources.sequences.read_text(errors="replace")) if sources.sequences else {}
    )
    root = Path(out) / f"kth{size}"
    summary = PrepareSummary("kth", root, skipped=list(sources.unreadable))
    entries = []
    with progress_bar(f"KTH {size}x{size}", len(sources.videos)) as advance:
        for s in sources.videos:
            file = f"videos/{s.name}.npy"
            path = root / file
            if path.exists():
                frames = np.load(path, mmap_mode="r").shape[0]
                summary.reused += 1
            else:
                try:
                    video = _load(s, size)
                except _BAD_INPUT as err:
                    summary.skipped.append((s.label, _reason(err)))
                    advance(0)
                    continue
                save_npy(path, video)
                frames = len(video)
            summary.videos += 1
            summary.frames += frames
            advance(frames)
            segs = sequences.get(s.name)
            entries.append(
                {
                    "name": s.name,
                    "person": s.person,
                    "action": s.action,
                    "scenario": s.scenario,
                    "split": s.split,
                    "frames": frames,
                    "file": file,
                    "segments": [list(seg) for seg in segs] if segs is not None else None,
                }
            )
    if entries:
        index = {"dataset": "kth", "size": size, "videos": entries}
        write_json(
            root / "index.json", index | {"sequences_file": sources.sequences is not None}, indent=1
        )
    return summary
