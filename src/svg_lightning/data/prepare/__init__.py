"""Converts the official KTH or BAIR archives, or your own videos, into the memory-mapped arrays
the DataModules read; ``python -m svg_lightning.data.prepare {kth,bair,videos} --src PATH --out
DATA_DIR``
(or ``svg prepare``) is its command line.

Resumable: finished files are kept and skipped on a rerun (after a check of their headers); an
interrupted run leaves no file that looks finished, and the next run removes its temporaries.
Corrupt or truncated inputs are reported with their names and skipped, and nothing converted from
a damaged input is reused by a rerun. An output folder that cannot be written and a truncated BAIR
tar are refused before any work; a train or test split left without videos is an error, and no
``index.json`` is written for it.
"""

from __future__ import annotations

from pathlib import Path

from svg_lightning.data.sources.bair import prepare_bair
from svg_lightning.data.sources.kth import prepare_kth
from svg_lightning.data.sources.storage import PrepareSummary
from svg_lightning.data.sources.videos import prepare_videos
from svg_lightning.errors import ConfigError

PREPARERS = {"kth": prepare_kth, "bair": prepare_bair, "videos": prepare_videos}


def prepare(
    dataset: str, src: str | Path, out: str | Path, options: dict | None = None
) -> PrepareSummary:
    """Prepare ``dataset`` from ``src`` into ``out`` (the data folder, ``data.data_dir``);
    ``options`` are the converter's own keywords (KTH: ``size``, ``resize``; videos: ``size``,
    ``channels``, ``every``, ``min_frames``, ``split``, ``split_file``). DataSourceError when
    ``src`` does not hold the expected archives or a split ends up empty; ConfigError when ``out``
    cannot be written, another run is writing into it or an option is not one of its values."""
    if dataset not in PREPARERS:
        raise ConfigError(f"cannot prepare {dataset!r}; allowed: {sorted(PREPARERS)}")
    return PREPARERS[dataset](Path(src), Path(out), **(options or {}))
