"""Overlay the best-of-N SSIM/PSNR (and LPIPS) curves of several evaluations (the paper's
Figs. 7/8) and print a table with FVD where the runs have it:
``python -m svg_lightning.evaluate.compare RUN_OR_METRICS_JSON ... [--out FILE]``.
Beside the plot, ``<FILE stem>.json`` records what it shows: each label's metrics.json, the
checkpoint (path, sha256, step) and protocol it was scored with, and its summary numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from svg_lightning.console import print_table
from svg_lightning.errors import InputError
from svg_lightning.evaluate.report import format_mean_ci, plot_curves
from svg_lightning.files import write_json
from svg_lightning.runner import returning_code

# What the table and the plot read of a metrics.json (evaluate/report.py writes them all).
PARTS = ("protocol", "summary", "curves")


def metrics_file(path: Path) -> Path:
    return path / "metrics.json" if path.is_dir() else path


def load_metrics(path: Path) -> dict:
    file = metrics_file(path)
    if not file.is_file():
        raise InputError(f"{file} does not exist (expected an evaluation's metrics.json)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{file} is not an evaluation's metrics.json: {err}") from None
    parts = doc if isinstance(doc, dict) else {}
    missing = [k for k in PARTS if not isinstance(parts.get(k), dict)]
    if not missing and "ssim_bestofN" not in doc["curves"]:
        missing = ["curves.ssim_bestofN"]
    if missing:
        raise InputError(
            f"{file} is not an evaluation's metrics.json (no {', '.join(missing)}); give the "
            "folder or metrics.json that `svg evaluate` wrote"
        )
    return doc


def check_out(out: Path) -> None:
    """The plot's path must be a .png in an existing, writable folder (checked before any
    input is read)."""
    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must name a .png file, e.g. --out {out.with_suffix('.png')}")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; name the .png file to write")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"--out {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {folder} is not writable; pick another --out")


def default_out(runs: list[Path]) -> Path:
    """compare.png in the folder that holds all the inputs (not the current directory)."""
    folders = [(p if p.is_dir() else p.parent).resolve() for p in runs]
    return Path(os.path.commonpath(folders)) / "compare.png"


def record(runs: list[Path], by_label: dict[str, dict], plot: Path) -> dict:
    """What a comparison plot shows, for the JSON beside it: a plot copied into a draft can be
    traced to the evaluations, and through them to the checkpoints and their training runs."""
    return {
        "plot": str(plot.resolve()),
        "runs": {
            label: {
                "metrics": str(metrics_file(path).resolve()),
                "protocol": m["protocol"],
                "summary": m["summary"],
            }
            for path, (label, m) in zip(runs, by_label.items())
        },
    }


def compare(runs: list[Path], labels: list[str] | None, out: Path | None) -> dict[str, dict]:
    """Plot the runs' best-of-N curves into ``out`` (default: next to the inputs), record what
    it shows beside it (``record``) and print each run's scores next to its own baselines;
    warns when the runs were not scored alike. Returns label -> metrics."""
    if labels and len(labels) != len(runs):
        raise InputError(f"--labels has {len(labels)} names for {len(runs)} runs")
    if out is not None:  # a bad --out is named before the inputs are read
        check_out(out)
    loaded = [load_metrics(p) for p in runs]
    out = out or default_out(runs)
    check_out(out)
    labels = labels or [
        f"{m['protocol'].get('model', '?')} ({p.resolve().parent.name if p.is_file() else p.name})"
        for p, m in zip(runs, loaded)
    ]
    if len(set(labels)) < len(labels):  # e.g. several runs/<time>/out folders
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    by_label = dict(zip(labels, loaded))
    for key in ("dataset", "n_past", "n_future", "num_samples", "num_videos"):
        values = {label: m["protocol"].get(key) for label, m in by_label.items()}
        if len(set(map(str, values.values()))) > 1:
            print(f"warning: the runs differ in {key}: {values}; their numbers are not comparable",
                  file=sys.stderr)  # fmt: skip
    plot_curves(out, by_label, title="best of N per video")
    recorded = write_json(out.with_suffix(".json"), record(runs, by_label, out))
    names = ["ssim_bestofN", "psnr_bestofN", "ssim_copy_last", "psnr_copy_last", "ssim_black",
             "psnr_black"]  # fmt: skip
    columns = ["run", "SSIM bestofN", "PSNR bestofN", "SSIM copy-last", "PSNR copy-last",
               "SSIM black", "PSNR black"]  # fmt: skip
    # LPIPS and FVD where any run has them ("-" for the others).
    for key, column in (("lpips_bestofN", "LPIPS bestofN"), ("lpips_copy_last", "LPIPS copy-last"),
                        ("fvd", "FVD")):  # fmt: skip
        if any(key in m["summary"] for m in by_label.values()):
            names.append(key)
            columns.append(column)
    rows = [
        [label, *(format_mean_ci(m["summary"].get(k), 1 if k == "fvd" else 4) for k in names)]
        for label, m in by_label.items()
    ]
    print_table("best of N per video, next to each run's own baselines", columns, rows,
                {"plot": out, "what it shows": recorded})  # fmt: skip
    return by_label


def compare_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m svg_lightning.evaluate.compare",
        description="Overlay the best-sample SSIM/PSNR curves of several evaluations and print "
        "their summary numbers.",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation folders or metrics.json")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    parser.add_argument(
        "--out", type=Path, default=None, help="the plot (default: compare.png next to the runs)"
    )
    args = parser.parse_args(argv)
    return returning_code(compare, args.runs, args.labels, args.out)[0]


if __name__ == "__main__":
    raise SystemExit(compare_main())
