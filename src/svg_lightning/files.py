"""File helpers every command shares: crash-safe writes, checksums, JSON without NaN tokens."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from svg_lightning.errors import ConfigError, OutputError


def _umask() -> int:
    """The process umask. Linux reports it in /proc (read without changing it); elsewhere it is
    read by setting it and putting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# atomic_path's temporaries: ".<final name>.<mkstemp's 8 random characters>.tmp".
_TEMPORARY_RE = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renamed to ``path`` only if the block succeeds,
    so an interrupted write never leaves a file that looks finished.

    The finished file gets the mode a plain ``open()`` would give it (0666 minus the umask), not
    mkstemp's 0600, so that a shared data folder stays readable to the rest of a group. A process
    killed inside the block leaves its temporary behind; ``remove_temporaries`` clears them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_outputs(folder: Path, marker: str, stale: Iterable[str] = ()) -> Iterator[Path]:
    """A command's outputs appear as a whole or not at all: this is how every command that writes
    several files (evaluate and the training summary: metrics.json, curves, sample grids;
    sample: arrays, GIF, MP4s) writes them.

    Yields an empty temporary folder inside ``folder`` to write the outputs into. When the block
    succeeds, the earlier run's ``marker`` is removed first (from then on the folder does not look
    finished), then its files matching the glob patterns ``stale``, then each new file replaces its
    namesake, ``marker`` last. ``marker`` is the file a reader takes as the sign of a finished
    command (metrics.json: what ``compare`` and ``reproduce`` read; samples.npy), so a folder
    holding it holds every file of the same run. A block that fails, or a process killed inside
    it, leaves the earlier outputs as they were (killed: plus the hidden temporary folder, never
    read)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{marker}.", suffix=".tmp", dir=folder))
    try:
        yield tmp
        (folder / marker).unlink(missing_ok=True)
        for pattern in stale:
            for old in folder.glob(pattern):
                old.unlink()
        for new in sorted(tmp.iterdir(), key=lambda p: p.name == marker):  # the marker last
            os.replace(new, folder / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_temporaries(folder: Path, older_than: float | None = None) -> int:
    """Delete the temporaries ``atomic_path`` left in ``folder`` (not below it) when a process was
    killed mid-write; with ``older_than`` (seconds), only those not modified for that long.
    Returns how many were removed. Only call it while no other process writes into ``folder``
    (or with an ``older_than`` longer than any write takes): a live write's temporary matches too.
    """
    removed = 0
    now = time.time()
    for entry in os.scandir(folder):
        if not _TEMPORARY_RE.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        if older_than is not None and now - entry.stat().st_mtime < older_than:
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:  # its own process finished or removed it meanwhile
            continue
        removed += 1
    return removed


# What a write fails with when the place, not the program, is at fault: disk or quota full,
# read-only file system, no permission.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: where a folder to be made would go."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | Path, setting: str) -> None:
    """Before any work: ConfigError (one line, naming ``setting``) when the folder ``path``
    cannot be made or written to (read-only file system, no permission). os.access asks as the
    real user; root passes permission bits, but not a read-only mount."""
    where = _existing(Path(path))
    if where.is_dir() and os.access(where, os.W_OK | os.X_OK):
        return
    why = (
        "is not a folder" if not where.is_dir() else "is not writable (read-only or no permission)"
    )
    at = "" if where == Path(path).absolute() else f" (its existing parent {where} {why})"
    raise ConfigError(
        f"{setting}={path} cannot be written{at or ': it ' + why}; give a folder you may write to"
    )


def output_error(err: BaseException) -> OutputError | None:
    """The one-line OutputError of a write that failed for lack of space or permission (an
    OSError of WRITE_ERRNOS anywhere in ``err``'s chain), naming the path; else None."""
    while err is not None and not (isinstance(err, OSError) and err.errno in WRITE_ERRNOS):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    path = err.filename or "a file"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(_existing(Path(path))).free if err.filename else None
        room = f" ({free / 1e6:.1f} MB free there)" if free is not None else ""
        fix = "free some space (or write elsewhere) and rerun the command"
        return OutputError(f"no space left writing {path}{room}: {err.strerror}; {fix}")
    return OutputError(
        f"cannot write {path}: {err.strerror}; give a folder you may write to and rerun"
    )


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plain(x):
    """JSON-ready: NaN as None (strict JSON has no NaN), numpy scalars/arrays as Python values."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(path: Path, doc, indent: int = 2) -> Path:
    """``doc`` as strict JSON (see ``plain``), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plain(doc), indent=indent))
    return path
