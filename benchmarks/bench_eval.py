"""Best-of-N evaluation throughput: predicted frames per second, SSIM/PSNR scoring included.

Same paper-size SM-MNIST SVG-LP (eval mode), same videos, same run. Ours: every sample of every
video in one ``iter_samples`` call (conditioning frames encoded once, the decoder's skip terms
computed once per video), scored per chunk. Baseline: the reference's generation, one sample of
one video per call (``reference_loop.reference_generate``), each sample scored as it comes.
Both keep, per video, the sample with the best mean SSIM and the one with the best mean PSNR.
The baseline's cost is linear in the samples, so it runs ``--loop-samples`` of them on one video
and its rate is compared (a best-of-100 loop takes ~100x as long).
"""

from __future__ import annotations

import argparse
import time

import torch
from reference_loop import reference_generate

from svg_lightning.metrics.frame import psnr, ssim
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG


@torch.no_grad()
def ours(model: SVG, cond, target, n_samples: int, chunk: int | None) -> torch.Tensor:
    """Best (SSIM, PSNR) per video, (2, B)."""
    b, f = target.shape[:2]
    scores = torch.empty(2, b * n_samples, f)
    for c in model.iter_samples(cond, f, n_samples, chunk):
        truth = target[c.rows // n_samples]
        scores[0, c.rows], scores[1, c.rows] = ssim(c.frames, truth), psnr(c.frames, truth)
    return scores.mean(-1).view(2, b, n_samples).amax(-1)


@torch.no_grad()
def per_sample(model: SVG, cond, target, n_samples: int) -> torch.Tensor:
    best = torch.full((2, cond.shape[0]), -float("inf"))
    for v in range(cond.shape[0]):
        for _ in range(n_samples):
            pred = reference_generate(model, cond[v : v + 1], target.shape[1])[0]
            score = torch.stack([ssim(pred, target[v]).mean(), psnr(pred, target[v]).mean()])
            best[:, v] = torch.maximum(best[:, v], score)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--n-future", type=int, default=10)
    parser.add_argument("--loop-samples", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=None, help="rows per sampling call")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SVG(SVGConfig()).eval()  # the paper's SM-MNIST SVG-LP network
    x = torch.rand(args.videos, 5 + args.n_future, 1, 64, 64)
    cond, target = x[:, :5], x[:, 5:]
    s = args.samples
    ours(model, cond[:1], target[:1], 2, None)  # warm-up
    rates = {}
    for name, fn, frames in (
        ("ours", lambda: ours(model, cond, target, s, args.chunk), args.videos * s),
        ("per-sample loop", lambda: per_sample(model, cond[:1], target[:1], args.loop_samples),
         args.loop_samples),
    ):  # fmt: skip
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        frames *= args.n_future
        rates[name] = frames / seconds
        print(f"{name}: {frames} predicted frames in {seconds:.1f} s = {rates[name]:.1f} frames/s")
    print(f"best of {s}, SSIM and PSNR scoring included, ours / per-sample loop throughput: "
          f"{rates['ours'] / rates['per-sample loop']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
