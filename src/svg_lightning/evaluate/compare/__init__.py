"""Overlay the best-sample SSIM/PSNR curves of several evaluations (the paper's Figs. 7/8) and
print a table (``python -m svg_lightning.evaluate.compare RUN_OR_METRICS_JSON ... --out FILE``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from svg_lightning.errors import InputError
from svg_lightning.evaluate.report import plot_curves

log = logging.getLogger(__name__)


def load_metrics(path: Path) -> dict:
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{file} does not exist (expected an evaluation's metrics.json)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{file} is not an evaluation's metrics.json: {err}") from None


def compare(runs: list[Path], labels: list[str] | None, out: Path) -> dict[str, dict]:
    """Plot the runs' curves into ``out`` and print one line per run; returns label -> metrics."""
    if labels and len(labels) != len(runs):
        raise InputError(f"--labels has {len(labels)} names for {len(runs)} runs")
    loaded = [load_metrics(p) for p in runs]
    labels = labels or [
        f"{m['protocol'].get('model', '?')} ({p.resolve().parent.name if p.is_file() else p.name})"
        for p, m in zip(runs, loaded)
    ]
    protocols = {(m["protocol"]["dataset"], m["protocol"]["n_past"], m["protocol"]["n_future"])
                 for m in loaded}  # fmt: skip
    if len(protocols) > 1:
        log.warning("the runs use different protocols %s", sorted(protocols))
    by_label = dict(zip(labels, loaded))
    plot_curves(out, by_label, title="best sample per video")
    for label, m in by_label.items():
        s = m["summary"]
        print(
            f"{label}: SSIM {s['ssim_bestofN']['mean']:.4f} ± {s['ssim_bestofN']['ci95']:.4f}, "
            f"PSNR {s['psnr_bestofN']['mean']:.2f} ± {s['psnr_bestofN']['ci95']:.2f}"
        )
    print(f"plot: {out}")
    return by_label
