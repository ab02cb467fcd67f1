"""`python -m svg_lightning.evaluate.compare RUN_OR_METRICS_JSON ... [--out FILE]`: overlay the
best-sample SSIM/PSNR curves of several evaluations (the paper's Figs. 7/8) and print a table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from svg_lightning.evaluate.report import plot_curves


def load_metrics(path: Path) -> dict:
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist (expected an evaluation's metrics.json)")
    return json.loads(file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation folders or metrics.json")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    parser.add_argument("--out", type=Path, default=Path("compare.png"))
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels has {len(args.labels)} names for {len(args.runs)} runs")
    try:
        loaded = [load_metrics(p) for p in args.runs]
    except (FileNotFoundError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = args.labels or [
        f"{m['protocol'].get('model', '?')} ({p.resolve().parent.name if p.is_file() else p.name})"
        for p, m in zip(args.runs, loaded)
    ]
    protocols = {(m["protocol"]["dataset"], m["protocol"]["n_past"], m["protocol"]["n_future"])
                 for m in loaded}  # fmt: skip
    if len(protocols) > 1:
        print(f"warning: the runs use different protocols {sorted(protocols)}", file=sys.stderr)
    plot_curves(args.out, dict(zip(labels, loaded)), title="best sample per video")
    for label, m in zip(labels, loaded):
        s = m["summary"]
        print(
            f"{label}: SSIM {s['ssim_best']['mean']:.4f} ± {s['ssim_best']['ci95']:.4f}, "
            f"PSNR {s['psnr_best']['mean']:.2f} ± {s['psnr_best']['ci95']:.2f}"
        )
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
