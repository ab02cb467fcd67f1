"""KTH actions: the six official zips (or their extracted avi files) -> one .npy per video.

Layout under ``out/kth{size}/``: ``videos/<name>.npy`` (uint8 (T, size, size), memory-mappable)
and ``index.json`` (the resize filter, and per video: person, action, scenario, split, frame count,
file and the 0-based [start, end) repetition segments of ``00sequences.txt``). Frames are squashed
to size x size like the reference pipeline (aspect ratio not kept), with its scaler by default
(see ``RESIZE``), and reduced to one channel (luma: KTH is grayscale content stored in a colour
codec, so R = G = B and the luma is that value).

A rerun reuses the finished .npy files that pass their header checks; corrupt or truncated videos
and malformed ``00sequences.txt`` lines are reported and left out, and a video that is not
converted leaves no file behind, so a rerun on repaired inputs converts it.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from svg_lightning.data.sources.storage import (
    BAD_INPUT,
    RESIZE,
    PrepareSummary,
    VideoError,
    claim_settings,
    output_folder,
    progress_bar,
    read_video,
    reason,
    remove_stale_index,
    reusable_rows,
    save_npy,
)
from svg_lightning.errors import ConfigError, DataSourceError
from svg_lightning.files import write_json

CLASSES = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
# Case-insensitive: copies of the archives extracted on some systems carry upper-case names.
VIDEO_RE = re.compile(rf"person(\d\d)_({'|'.join(CLASSES)})_d(\d)_uncomp\.avi", re.IGNORECASE)
SEQUENCES_FILE = "00sequences.txt"
TEST_PERSONS = range(21, 26)  # the reference split: persons 1-20 train, 21-25 test
SPLIT_PERSONS = {"train": "persons 01-20", "test": "persons 21-25"}
# Which filter the videos under videos/ were resized with, written before the first of them, so a
# rerun with another filter converts them again instead of mixing the two (index.json is only
# written at the end; a run that stopped earlier leaves none).
RESIZE_RECORD = "resize.json"
# What Python's zipfile decompresses (stored, deflate, bzip2, LZMA).
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

_SEQ_LINE_RE = re.compile(rf"^\s*(person\d\d_(?:{'|'.join(CLASSES)})_d\d)\b(.*)$", re.IGNORECASE)
_FRAMES_RE = re.compile(r"\s*frames\b(.*)$", re.IGNORECASE)
_RANGE_RE = re.compile(r"(\d+)-(\d+)")

EXPECTED = (
    "expected the KTH actions videos: the six archives "
    + ", ".join(f"{c}.zip" for c in CLASSES)
    + " (or their extracted files personXX_<class>_dY_uncomp.avi), optionally with "
    f"{SEQUENCES_FILE}. They are the KTH 'Recognition of human actions' dataset (Schuldt, Laptev "
    "and Caputo, ICPR 2004), distributed by KTH as six zip archives, one per action."
)


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
    videos: list[Source]  # one per video: the copy tried first
    sequences: Path | None
    unreadable: list[tuple[str, str]]  # zips that could not be listed, with the reason
    # Every copy of each video, in the order they are tried (extracted files first).
    copies: dict[str, list[Source]] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    """One video's line of ``00sequences.txt``: its number and the well-formed segments, each
    (0-based start, exclusive end, the text as written)."""

    line: int
    segments: tuple[tuple[int, int, str], ...]


def read_sequences(
    text: str, label: str = SEQUENCES_FILE
) -> tuple[dict[str, Listing], list[tuple[str, str]]]:
    """``00sequences.txt`` -> ({video name: Listing}, [(``label line N``, problem), ...]).

    The file counts frames from 1 with inclusive ends. Lines that do not start with a KTH video
    name (header, blank lines) are ignored. A video line must read ``<name> frames A-B, C-D, ...``
    (spacing varies between lines, so ranges may be separated by commas and/or blanks); each
    segment must start at frame 1 or later and not end before it starts. Every violation is
    reported with its line number and only the valid segments are kept; a video listed twice keeps
    its first line.
    """
    listings: dict[str, Listing] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _SEQ_LINE_RE.match(line)
        if not m:
            continue
        where = f"{label} line {number}"
        name = m.group(1).lower()
        if name in listings:
            first = listings[name].line
            problems.append((where, f"{name} is listed again (first on line {first}); ignored"))
            continue
        frames = _FRAMES_RE.match(m.group(2))
        if not frames:
            problems.append(
                (where, f"{name}: expected '{name} frames A-B, C-D, ...'; line ignored")
            )
            continue
        tokens = re.split(r"[,\s]+", re.sub(r"\s*-\s*", "-", frames.group(1)).strip())
        segments, bad = [], False
        for token in filter(None, tokens):
            r = _RANGE_RE.fullmatch(token)
            if not r:
                why = "is not a range of frame numbers like 1-95"
            elif int(r.group(1)) < 1:
                why = "starts at frame 0, but frames count from 1"
            elif int(r.group(2)) < int(r.group(1)):
                why = "ends before it starts"
            else:
                segments.append((int(r.group(1)) - 1, int(r.group(2)), token))
                continue
            problems.append((where, f"{name}: segment {token!r} {why}; segment left out"))
            bad = True
        if not segments and not bad:
            problems.append((where, f"{name}: no segment listed"))
        listings[name] = Listing(number, tuple(segments))
    return listings, problems


def parse_sequences(text: str) -> dict[str, list[tuple[int, int]]]:
    """``00sequences.txt`` -> {video name: [(start, end), ...]}, 0-based with exclusive end: the
    valid segments of ``read_sequences``, without its reports."""
    listings, _ = read_sequences(text)
    return {name: [(s, e) for s, e, _ in v.segments] for name, v in listings.items()}


def fit_segments(
    name: str, listing: Listing, frames: int, label: str
) -> tuple[list[tuple[int, int]], list[tuple[str, str]]]:
    """The listing's segments that lie within a video of ``frames`` frames: a segment running
    past the last frame is clipped to it, one starting after it is left out; both are reported
    (with the line) because they mean the file or the video is not what the list describes."""
    kept, problems = [], []
    where = f"{label} line {listing.line}"
    for start, end, text in listing.segments:
        if start >= frames:
            why = f"starts after the video's last frame ({frames}); segment left out"
        elif end > frames:
            why = f"ends after the video's last frame ({frames}); clipped to {start + 1}-{frames}"
            kept.append((start, frames))
        else:
            kept.append((start, end))
            continue
        problems.append((where, f"{name}: segment {text!r} {why}"))
    return kept, problems


def _source(path: Path, member: str | None = None) -> Source | None:
    m = VIDEO_RE.fullmatch(PurePosixPath(member).name if member else path.name)
    if not m:
        return None
    person, action, scenario = int(m.group(1)), m.group(2).lower(), int(m.group(3))
    name = f"person{m.group(1)}_{action}_d{scenario}"
    return Source(name, person, action, scenario, path, member)


def find_sources(src: Path) -> Sources:
    """All KTH videos under ``src`` (searched recursively), in zips or extracted; file names are
    matched case-insensitively.

    Every copy of a video is kept, extracted files first (which saves decompressing them):
    preparation uses the first copy that decodes completely. Raises DataSourceError naming
    ``src`` and the expected files if none is found.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataSourceError(f"KTH source folder {src} does not exist; {EXPECTED}")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    copies: dict[str, list[Source]] = {}
    unreadable = []
    for p in files:
        if p.suffix.lower() == ".avi" and (s := _source(p)):
            copies.setdefault(s.name, []).append(s)
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
                copies.setdefault(s.name, []).append(s)
    if not copies:
        problems = "".join(f"; {item}: {why}" for item, why in unreadable)
        raise DataSourceError(f"no KTH video found in {src}{problems}; {EXPECTED}")
    copies = dict(sorted(copies.items()))
    sequences = next((p for p in files if p.name.lower() == SEQUENCES_FILE), None)
    return Sources([c[0] for c in copies.values()], sequences, unreadable, copies)


def _load(source: Source, size: int, resize: str) -> np.ndarray:
    if source.member is None:
        return read_video(source.path, size, resize)
    # PyAV reads file-like objects, so nothing is extracted to disk; the member is read into
    # memory (one video, megabytes) because seeking back in a compressed zip stream restarts
    # decompression, and reading it whole checks its CRC up front.
    with zipfile.ZipFile(source.path) as zf:
        info = zf.getinfo(source.member)
        how = f"; extract it with a tool that can and put the .avi beside {source.path.name}"
        if info.flag_bits & 0x1:
            raise VideoError(f"encrypted in the zip (a password is needed){how}")
        if info.compress_type not in ZIP_METHODS:
            method = info.compress_type
            raise VideoError(f"compressed with zip method {method}, which Python cannot read{how}")
        try:
            data = zf.read(info)
        except (RuntimeError, NotImplementedError) as err:  # zipfile's "cannot decompress this"
            raise VideoError(f"cannot be read from the zip: {err}{how}") from err
    return read_video(io.BytesIO(data), size, resize)


def _convert(
    copies: list[Source], size: int, resize: str, summary: PrepareSummary
) -> np.ndarray | None:
    """The video from the first copy that decodes completely, or None if none does. Every copy
    that fails is reported, with the copy used instead if there is one."""
    failed = []
    for source in copies:
        try:
            video = _load(source, size, resize)
        except BAD_INPUT as err:
            failed.append((source.label, reason(err)))
            continue
        summary.skipped += [(item, f"{why}; used {source.label} instead") for item, why in failed]
        return video
    summary.skipped += failed
    return None


def _empty_splits(src: Path, sources: Sources, entries: list[dict], skipped) -> str | None:
    """Why the prepared dataset lacks a split (the DataModules need both), or None."""
    empty, problems = [], []
    for split, persons in SPLIT_PERSONS.items():
        if any(e["split"] == split for e in entries):
            continue
        empty.append(split)
        names = [name for name, copies in sources.copies.items() if copies[0].split == split]
        if not names:
            problems.append(f"{src} holds no {split} video ({persons})")
            continue
        mine = [f"{item}: {why}" for item, why in skipped if any(n in item.lower() for n in names)]
        problems.append(
            f"none of its {len(names)} {split} videos ({persons}) could be converted "
            f"({'; '.join(mine[:3])}{'; ...' if len(mine) > 3 else ''})"
        )
    if not empty:
        return None
    return (
        f"the KTH {' and '.join(empty)} split would be empty: {'; '.join(problems)}. Training "
        "needs both splits, so no index.json was written; repair or replace those files and "
        "rerun (the finished videos are kept)"
    )


def _claim_filter(root: Path, resize: str, summary: PrepareSummary) -> None:
    """Make ``resize`` the filter of every video under ``root/videos`` (``claim_settings``);
    videos without a ``RESIZE_RECORD`` predate it: bilinear."""
    claim_settings(root, RESIZE_RECORD, {"resize": resize}, {"resize": "bilinear"}, summary)


def prepare_kth(src: Path, out: Path, size: int = 64, resize: str = RESIZE[0]) -> PrepareSummary:
    """Convert every KTH video under ``src`` to ``out/kth{size}/videos/<name>.npy``, shrunk with
    the ``RESIZE`` filter ``resize``, and write ``index.json`` last, so its presence means the run
    finished; DataSourceError (and no index.json) if the train or test split ends up without any
    video."""
    if resize not in RESIZE:
        raise ConfigError(f"resize={resize!r} is not a KTH resize filter; allowed: {list(RESIZE)}")
    sources = find_sources(src)
    listings, problems = {}, []
    if sources.sequences:
        text = sources.sequences.read_text(errors="replace")
        listings, problems = read_sequences(text, str(sources.sequences))
    root = Path(out) / f"kth{size}"
    summary = PrepareSummary("kth", root, skipped=list(sources.unreadable) + problems)
    entries = []
    with output_folder(root, ["videos"]) as removed:
        summary.removed_temporaries = removed
        _claim_filter(root, resize, summary)
        with progress_bar(f"KTH {size}x{size}", len(sources.copies)) as advance:
            for name, copies in sources.copies.items():
                s = copies[0]
                file = f"videos/{name}.npy"
                path = root / file
                frames = reusable_rows(path, (size, size), summary)
                if frames is not None:
                    summary.reused += 1
                else:
                    video = _convert(copies, size, resize, summary)
                    if video is None:
                        advance(0)
                        continue
                    save_npy(path, video)
                    frames = len(video)
                summary.videos += 1
                summary.frames += frames
                advance(frames)
                segments = None
                if name in listings:
                    label = str(sources.sequences)
                    segments, bad = fit_segments(name, listings[name], frames, label)
                    summary.skipped += bad
                entries.append(
                    {
                        "name": name,
                        "person": s.person,
                        "action": s.action,
                        "scenario": s.scenario,
                        "split": s.split,
                        "frames": frames,
                        "file": file,
                        "segments": None if segments is None else [list(g) for g in segments],
                    }
                )
        summary.not_found = [
            (name, f"{sources.sequences} line {listing.line}, in no archive")
            for name, listing in listings.items()
            if name not in sources.copies
        ]
        if problem := _empty_splits(Path(src), sources, entries, summary.skipped):
            remove_stale_index(root / "index.json")
            raise DataSourceError(problem)
        index = {"dataset": "kth", "size": size, "resize": resize, "videos": entries}
        write_json(
            root / "index.json", index | {"sequences_file": sources.sequences is not None}, indent=1
        )
    return summary
