"""Reproductions behind the docs, each one command that reruns from scratch or resumes:

python -m svg_lightning.reproduce              the paper's comparison at CPU scale (study.py)
"""

from __future__ import annotations

import time
from pathlib import Path

from svg_lightning.reproduce.report import write_results
from svg_lightning.reproduce.study import EXPERIMENT, MODELS, run_all


def study(
    out: Path,
    seeds: list[int] = (1, 2, 3),
    models: list[str] = tuple(MODELS),
    overrides: list[str] = (),
    strip_videos: int = 4,
    command: str = "",
    experiment: str = EXPERIMENT,
) -> dict:
    """Train and score every model (``conf/model`` options) for every seed on ``experiment``
    (``conf/experiment``) plus ``overrides`` under ``out/runs/``, then write
    ``out/report/``; a rerun with the same arguments reuses every finished run. Returns the
    report's table (``table.json``)."""
    start = time.perf_counter()
    found = run_all(Path(out), list(seeds), list(models), list(overrides), experiment)
    return write_results(Path(out), found, command, strip_videos, time.perf_counter() - start)
