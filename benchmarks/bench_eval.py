"""Evaluation throughput: all samples of a batch in one call against one sample per call.

Same paper-size SM-MNIST SVG-LP, same videos, same run: predicted frames per second of
``sample(cond, n_future, num_samples=S)`` versus a Python loop of S calls with one sample each.
"""

from __future__ import annotations

import argparse
import time

import torch

from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG


def best_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--n-future", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SVG(SVGConfig())  # the paper's SM-MNIST SVG-LP network.eval()
    cond = torch.rand(args.videos, 5, 1, 64, 64)
    s, f = args.samples, args.n_future

    batched = best_time(lambda: model.sample(cond, f, num_samples=s), args.reps)
    looped = best_time(lambda: [model.sample(cond, f, num_samples=1) for _ in range(s)], args.reps)
    frames = args.videos * s * f
    print(f"{args.videos} videos x {s} samples x {f} predicted frames = {frames} frames per run")
    print(f"batched: {batched:.2f} s, {frames / batched:.0f} predicted frames/s")
    print(f"one sample per call: {looped:.2f} s, {frames / looped:.0f} predicted frames/s")
    print(f"batched / looped throughput: {looped / batched:.2f}x")


if __name__ == "__main__":
    main()
