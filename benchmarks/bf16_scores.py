"""How far bf16 sampling moves the best-of-N scores: one checkpoint scored twice by the evaluate
command, with ``trainer.precision=32`` (the default, the precision of every published number) and
``trainer.precision=bf16-mixed`` (Lightning runs each test step under
``torch.autocast(dtype=torch.bfloat16)``), on the same test videos with the same sampling noise
(``eval.seed``). Prints each mean, their difference and each run's wall time.

    python -m benchmarks.bf16_scores RUN/checkpoints/last.ckpt [evaluate overrides ...]

e.g. ``eval.num_videos=256 eval.num_samples=20 eval.n_future=10`` for the quickstart's summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRECISIONS = ("32", "bf16-mixed")
SCORES = ("ssim_bestofN", "psnr_bestofN", "ssim_meanofN", "psnr_meanofN")


def scored(ckpt: Path, precision: str, out: Path, overrides: list[str]) -> tuple[dict, float]:
    """The evaluate command's summary of ``ckpt`` at ``precision``, and its wall time (s)."""
    command = [sys.executable, "-m", "svg_lightning.evaluate", f"ckpt_path={ckpt}",
               f"trainer.precision={precision}", f"hydra.run.dir={out}", *overrides]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return json.loads((out / "metrics.json").read_text())["summary"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("overrides", nargs="*", help="evaluate settings, e.g. eval.num_videos=256")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            p: scored(args.ckpt.resolve(), p, Path(tmp) / p, args.overrides) for p in PRECISIONS
        }
    (f32, t32), (bf16, tbf16) = runs["32"], runs["bf16-mixed"]
    print(f"{args.ckpt}: float32 {t32:.0f} s, bf16-mixed {tbf16:.0f} s (wall, start-up included)")
    for key in SCORES:
        a, b = f32[key], bf16[key]
        print(f"  {key}: float32 {a['mean']:.4f} ± {a['ci95']:.4f}, bf16-mixed {b['mean']:.4f} ± "
              f"{b['ci95']:.4f}, difference {b['mean'] - a['mean']:+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
