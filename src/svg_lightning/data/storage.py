"""Crash-safe writes and the progress/summary plumbing of the dataset preparation commands.

Every output file is written under a temporary name in its final folder and renamed into place, so
an interrupted run never leaves a file that looks finished; a rerun skips the files that exist.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DataSourceError(FileNotFoundError):
    """Missing or unusable raw inputs; the message says what is expected and where it comes from."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renamed to ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save, atomically (a memory-mappable .npy with its header)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())


def save_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


@dataclass
class PrepareSummary:
    """What a preparation run did; ``skipped`` holds (item, reason) for every input left out."""

    dataset: str
    out: Path
    videos: int = 0
    frames: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{self.dataset}: {self.videos} videos, {self.frames} frames in {self.out} "
            f"({self.reused} output files reused from an earlier run)",
            f"skipped: {len(self.skipped)}",
        ]
        out += [f"  {item}: {why}" for item, why in self.skipped]
        return out


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` input items; yields ``advance(frames)``, to call once per
    item with the number of frames it produced. Shows items done, frames, frames/s and time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
