"""File helpers every command shares: crash-safe writes, checksums, JSON without NaN tokens."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


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
