"""The summary of a Hydra multirun: one row per job (its swept values, final validation scores,
held-out test scores, run folder and status), best first by ``optimized_metric``, printed as a
table and written to ``<hydra.sweep.dir>/sweep_summary.csv``.

Jobs may run in other processes or on other machines (hydra/launcher=local or slurm), so the
table is built only from what each job leaves in its own folder: Hydra's .hydra/overrides.yaml
and hydra.yaml, the run's scores.json (train.py) and metrics.json (the held-out summary), and
job_status.json, which ``SweepSummary.on_job_end`` writes where the job ran.
"""

from __future__ import annotations

import atexit
import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from svg_lightning import runs
from svg_lightning.console import print_table
from svg_lightning.files import atomic_path, write_json

log = logging.getLogger(__name__)

SUMMARY = "sweep_summary.csv"
JOB_STATUS = "job_status.json"
# The held-out summary of a run (evaluate/report.py writes it into the run folder).
TEST_METRICS = "metrics.json"
FINISHED, FAILED, NO_SCORES = "finished", "failed", "no scores"


@dataclass
class Job:
    """What one job of a sweep left in its folder."""

    num: int | None
    folder: Path
    overrides: dict[str, str]  # key -> value, as Hydra wrote it into .hydra/overrides.yaml
    scores: dict[str, float | None]  # the run's last logged scores: val/ssim_bestofN, ...
    test: dict[str, float | None]  # held-out summary means: test/ssim_bestofN, ...
    ended: str | None  # job_status.json: finished or failed; None when the job never said

    def score(self, name: str | None) -> float | None:
        value = {**self.test, **self.scores}.get(name) if name else None
        return None if value is None or math.isnan(value) else float(value)

    def status(self, metric: str | None) -> str:
        # A job that never wrote its status was killed or exited before Hydra's end of job.
        if self.ended != FINISHED:
            return FAILED
        has_score = self.score(metric) is not None if metric else bool(self.scores or self.test)
        return FINISHED if has_score else NO_SCORES


def parse_overrides(overrides: list) -> dict[str, str]:
    """``["model.beta=1e-4", "+experiment=x", "~callbacks.y"]`` -> key: value; the ``+`` of an
    added key is dropped so that a key reads the same however it was given."""
    parsed = {}
    for override in overrides:
        key, _, value = str(override).partition("=")
        parsed[key.lstrip("+")] = value
    return parsed


def _load(path: Path, loader) -> Any:
    """A job's file, or None when it is missing or unreadable: a job killed mid-write or one
    that wrote nothing must not stop the summary of the others."""
    try:
        return loader(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def read_job(folder: Path, output_subdir: str = ".hydra") -> Job:
    folder = Path(folder)
    hydra_dir = folder / output_subdir
    overrides = _load(hydra_dir / "overrides.yaml", yaml.safe_load)
    num = _dig(_load(hydra_dir / "hydra.yaml", yaml.safe_load), "hydra", "job", "num")
    if not isinstance(num, int):
        num = int(folder.name) if folder.name.isdigit() else None
    summary = _dig(_load(folder / TEST_METRICS, json.loads), "summary") or {}
    test = {f"test/{k}": _dig(v, "mean") for k, v in summary.items()}
    return Job(
        num=num,
        folder=folder,
        overrides=parse_overrides(overrides if isinstance(overrides, list) else []),
        scores=runs.read_scores(folder),
        test={k: v for k, v in test.items() if isinstance(v, (int, float))},
        ended=_dig(_load(folder / JOB_STATUS, json.loads), "status"),
    )


def find_jobs(sweep_dir: Path, output_subdir: str = ".hydra") -> list[Job]:
    """Every job folder under ``sweep_dir`` (any hydra.sweep.subdir), by Hydra's overrides.yaml."""
    found = Path(sweep_dir).glob(f"**/{output_subdir}/overrides.yaml")
    return [read_job(p.parent.parent, output_subdir) for p in sorted(found)]


def swept_keys(jobs: list[Job]) -> list[str]:
    """The overrides whose value is not the same in every job (in the order first given): what
    the sweep varied. Those common to all jobs say nothing about a row."""
    keys = dict.fromkeys(k for job in jobs for k in job.overrides)
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def rank(jobs: list[Job], metric: str | None, higher_is_better: bool = True) -> list[Job]:
    """Best first by ``metric``; jobs without it last; ties and the rest by job number."""

    def key(job: Job) -> tuple:
        value = job.score(metric)
        order = (job.num is None, job.num or 0, str(job.folder))
        if value is None:
            return (1, 0.0, order)
        return (0, -value if higher_is_better else value, order)

    return sorted(jobs, key=key)


def summary_rows(
    jobs: list[Job], metric: str | None, higher_is_better: bool = True
) -> tuple[list[str], list[list]]:
    """(columns, rows) of the sweep table, best job first: job, swept values, validation scores
    (``metric`` first), held-out test scores, run folder, status. None where a job has no value;
    only the score columns some job has."""
    ranked = rank(jobs, metric, higher_is_better)
    keys = swept_keys(jobs)
    val = [k for job in jobs for k in job.scores if k.startswith("val/") or k == metric]
    val = list(dict.fromkeys(([metric] if metric in val else []) + val))
    test = list(dict.fromkeys(k for job in jobs for k in job.test))
    columns = ["job", *keys, *val, *test, "run", "status"]
    rows = [
        [job.num, *(job.overrides.get(k) for k in keys), *(job.scores.get(k) for k in val),
         *(job.test.get(k) for k in test), str(job.folder), job.status(metric)]
        for job in ranked
    ]  # fmt: skip
    return columns, rows


def write_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


def _shown(column: str, keys: set[str], metric: str | None) -> bool:
    """The console's columns; the CSV has them all (ten validation and ten test scores would not
    fit a terminal): best of N is what the sweep is ranked by and what the papers report."""
    return (
        column in ("job", "run", "status")
        or column in keys
        or column == metric
        or column.endswith("_bestofN")
    )


def _cell(value: Any) -> Any:
    """print_table shows numbers with 3 decimals: scores stay numbers, the rest becomes text."""
    if value is None:
        return "-"
    return value if isinstance(value, float) else str(value)


def summarize(
    sweep_dir: Path,
    metric: str | None,
    higher_is_better: bool = True,
    output_subdir: str = ".hydra",
) -> Path | None:
    """Write ``sweep_dir/sweep_summary.csv`` and print the table; None when there is no job."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir, output_subdir)
    if not jobs:
        return None
    columns, rows = summary_rows(jobs, metric, higher_is_better)
    path = write_csv(sweep_dir / SUMMARY, columns, rows)
    keys = set(swept_keys(jobs))
    shown = [i for i, c in enumerate(columns) if _shown(c, keys, metric)]
    run = columns.index("run")
    console_rows = []
    for row in rows:
        folder = Path(row[run])  # on the console, its place in the sweep folder is enough
        short = folder.relative_to(sweep_dir) if sweep_dir in folder.parents else folder
        row = [short if i == run else v for i, v in enumerate(row)]
        console_rows.append([_cell(row[i]) for i in shown])
    order = (
        "" if not metric else f", best {metric} first" + ("" if higher_is_better else " (lowest)")
    )
    print_table(
        f"sweep: {len(jobs)} jobs{order}",
        [columns[i] for i in shown],
        console_rows,
        {"sweep": sweep_dir, "summary": path},
    )
    return path


def _settings(config: DictConfig) -> tuple[Path, str | None, bool, str]:
    """(sweep folder, optimized metric, higher is better, Hydra's output subdir) of a sweep."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    minimize = isinstance(direction, str) and direction.lower() == "minimize"
    return (
        Path(str(config.hydra.sweep.dir)).absolute(),
        OmegaConf.select(config, "optimized_metric", default=None),
        not minimize,
        str(OmegaConf.select(config, "hydra.output_subdir", default=None) or ".hydra"),
    )


class SweepSummary(Callback):
    """Registered in conf/hydra/default.yaml (``hydra.callbacks.sweep_summary``)."""

    def __init__(self) -> None:
        self._pending: tuple | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolving the sweep folder now also fixes its ${now:...} for the sweeper (Hydra caches
        # the resolver's value in this config).
        try:
            self._pending = _settings(config)
        except Exception:  # a sweep without its summary still runs
            log.warning("no sweep summary: its settings could not be read", exc_info=True)
            return
        # Hydra skips on_multirun_end when a job failed (its sweeper raises), which is when the
        # table is most wanted: it is then written as the process exits.
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self._at_exit)
        settings, self._pending = self._pending, None
        if settings is not None:
            self._summarize(settings)

    def _at_exit(self) -> None:
        if self._pending is not None:
            self._summarize(self._pending)

    @staticmethod
    def _summarize(settings: tuple) -> None:
        try:
            summarize(*settings)
        except Exception:  # the jobs' results are on disk either way; never fail the sweep
            log.exception("could not write the sweep summary of %s", settings[0])

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Runs where the job ran (in another process or on a cluster node for submitit)."""
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        ended = FINISHED if job_return.status == JobStatus.COMPLETED else FAILED
        try:
            out = Path(config.hydra.runtime.output_dir)
            # A single run refused before it wrote anything has had its folder removed
            # (hydra_entry): it stays removed.
            if out.is_dir():
                write_json(out / JOB_STATUS, {"status": ended})
        except Exception:  # a missing status reads as failed; never fail the job for it
            log.warning("could not write %s for this job", JOB_STATUS, exc_info=True)
