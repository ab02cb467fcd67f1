"""What the dataset converters share: atomic ``.npy`` writes, the progress bar and the summary.

A rerun skips the output files that exist, so every file is written atomically (arrays here,
``index.json`` with ``svg_lightning.files.write_json``): an interrupted run never leaves a file
that looks finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from svg_lightning.files import atomic_path


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save, atomically (a memory-mappable .npy with its header)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
            # On disk before the rename, so a crash cannot leave a finished name on empty data.
            f.flush()
            os.fsync(f.fileno())


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
