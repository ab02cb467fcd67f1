"""What the dataset converters share: the output folder, atomic ``.npy`` writes and their checks,
the progress bar and the summary.

A rerun skips the output files that exist, so every file is written atomically (arrays here,
``index.json`` with ``svg_lightning.files.write_json``): an interrupted run never leaves a file
that looks finished, and a reused file is checked against its header before it is trusted.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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

from svg_lightning.errors import ConfigError
from svg_lightning.files import atomic_path, remove_temporaries

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
    ``replaced`` (file, reason) for every output of an earlier run that was not valid and was
    converted again, ``not_found`` (item, where it is listed) for every input that a list in the
    sources names but no archive holds."""

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
            out += [f"  {item}: listed in {where}, in no archive" for item, where in self.not_found]
        if self.replaced:
            out.append(f"replaced: {len(self.replaced)} invalid output files of an earlier run")
            out += [f"  {item}: {why}" for item, why in self.replaced]
        if self.removed_temporaries:
            out.append(
                f"removed {self.removed_temporaries} temporary files left by an interrupted run"
            )
        return out


def reusable_rows(path: Path, tail: tuple[int, ...], summary: PrepareSummary) -> int | None:
    """Rows of the earlier run's output at ``path`` if it is valid (see ``npy_rows``); None if
    there is none or it is not valid, in which case it is deleted (so that nothing damaged stays
    on disk even if its input now fails) and reported in ``summary.replaced``."""
    if not path.exists():
        return None
    try:
        return npy_rows(path, tail)
    except InvalidOutput as err:
        path.unlink()
        summary.replaced.append((str(path), f"{err}; converted again"))
        return None


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


def remove_stale_index(path: Path) -> None:
    """Delete an ``index.json`` of an earlier run when this run found the dataset unusable, so the
    DataModules say it is not prepared rather than read a description that no longer holds."""
    path.unlink(missing_ok=True)
