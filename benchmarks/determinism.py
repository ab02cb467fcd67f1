"""Is CPU training deterministic for a fixed seed? Trains the quickstart (``python -m
svg_lightning``, the default config) for a few hundred steps three times: twice with the same
torch thread count, once with another, and, on a CPU with AVX-512, once more with the first thread
count but torch's and oneDNN's AVX2 kernels (as on a CPU without AVX-512). Prints, for each pair
of runs, how many weight tensors differ, the largest difference, and the validation scores of
each run.

    python -m benchmarks.determinism --steps 300 --threads 2 1
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import torch

# torch's own kernels and oneDNN's, both capped at AVX2; read at start-up.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def train(out: Path, steps: int, threads: int, env: dict | None = None) -> float:
    """One quickstart run in its own process (torch reads the thread count at start-up)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "WANDB_MODE": "disabled", **(env or {})}  # fmt: skip
    args = [f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
            "summary.enabled=false", "logger=csv", "extras.print_config=false",
            "~callbacks.rich_progress_bar", f"hydra.run.dir={out}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "svg_lightning", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def val_scores(out: Path) -> dict[str, float]:
    rows = list(csv.DictReader(next(out.glob("csv/*/metrics.csv")).open()))
    last = [r for r in rows if r.get("val/ssim_bestofN")][-1]
    return {k: float(last[k]) for k in ("val/ssim_bestofN", "val/psnr_bestofN")}


def compare(a: dict, b: dict) -> tuple[int, float]:
    """(number of differing tensors, largest absolute difference)."""
    diffs = [(a[k] - b[k]).abs().max().item() for k in a]
    return sum(d > 0 for d in diffs), max(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--threads",
        type=int,
        nargs=2,
        default=(2, 1),
        metavar=("N", "M"),
        help="the thread count of the repeated pair, then the other one",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="svg-determinism-"))
    n, m = args.threads
    plan = {f"A ({n} threads)": (n, None), f"B ({n} threads)": (n, None),
            f"C ({m} threads)": (m, None)}  # fmt: skip
    if torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        plan[f"D ({n} threads, AVX2 kernels)"] = (n, AVX2)
    runs = {}
    for i, (name, (threads, env)) in enumerate(plan.items()):
        seconds = train(root / str(i), args.steps, threads, env)
        runs[name] = (weights(root / str(i)), val_scores(root / str(i)))
        scores = ", ".join(f"{k} {v:.4f}" for k, v in runs[name][1].items())
        print(f"{name}: {args.steps} steps in {seconds:.0f} s; {scores}")
    total = len(next(iter(runs.values()))[0])
    for (x, (wx, _)), (y, (wy, _)) in combinations(runs.items(), 2):
        differing, largest = compare(wx, wy)
        print(f"{x} vs {y}: {differing} of {total} weight tensors differ, "
              f"largest |diff| {largest:.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
