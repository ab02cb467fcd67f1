"""Throughput of the paper-size SM-MNIST SVG-LP on this machine, against its matmul peak.

Training: batch 16, T = 15 (5 + 10), one optimizer step per iteration, with the reference's
per-time-step BatchNorm statistics (``bn_stats=per_step``, the default) and with one set of
statistics over all frames (``joint``), in the same run. Sampling: 5 conditioning
frames -> 10 generated, 16 videos x 4 samples in one batched call. FLOPs per step are counted
with torch.utils.flop_counter (matmuls and convolutions); the machine's attainable FLOP/s is
measured with a large float32 matmul in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from svg_lightning.models.config import SVGConfig
from svg_lightning.models.losses import svg_loss
from svg_lightning.models.svg import SVG


def timed(fn, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SVG(SVGConfig())  # the paper's SM-MNIST SVG-LP network
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.rand(args.batch, 15, 1, 64, 64)

    def train_step(bn_stats: str = "per_step"):
        out = model(x, 5, bn_stats)
        lat = out.latents
        t = svg_loss(out.x_hat, x[:, 1:], 1e-4, lat.mu, lat.logvar, lat.prior_mu, lat.prior_logvar)
        opt.zero_grad(set_to_none=True)
        t.loss.backward()
        opt.step()

    samples = 4
    model.eval()
    sample = lambda: model.sample(x[:, :5], n_future=10, num_samples=samples)  # noqa: E731
    peak = matmul_peak()
    model.train()
    train_flops, train_s = flops(train_step), timed(train_step, args.reps)
    joint_s = timed(lambda: train_step("joint"), args.reps)
    model.eval()
    sample_flops, sample_s = flops(sample), timed(sample, args.reps)

    frames_train = args.batch * 15
    frames_sample = args.batch * samples * 10
    print(f"threads: {torch.get_num_threads()}, measured float32 matmul: {peak / 1e9:.1f} GFLOP/s")
    for name, f, s, n in (
        ("train step (B=16, T=15), bn_stats=per_step", train_flops, train_s, frames_train),
        ("train step (B=16, T=15), bn_stats=joint", train_flops, joint_s, frames_train),
        ("sampling (16 videos x 4 samples, 5 -> 10)", sample_flops, sample_s, frames_sample),
    ):
        print(
            f"{name}: {s * 1e3:.0f} ms, {n / s:.0f} frames/s, {f / 1e9:.1f} GFLOP/step, "
            f"{f / s / 1e9:.1f} GFLOP/s = {f / s / peak:.0%} of matmul peak"
        )
    print(f"per_step / joint step time: {train_s / joint_s:.3f}")


if __name__ == "__main__":
    main()
