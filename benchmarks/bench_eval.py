"""Best-of-N evaluation throughput: predicted frames per second, SSIM/PSNR scoring included,
against the reference's generation script as it really runs.

Same paper-size SM-MNIST SVG-LP, same videos, same run, at the batch sizes users evaluate with
(8 and 100 test videos). Ours: every sample of every video through ``iter_samples`` (the
conditioning frames encoded once, the decoder's skip terms once per video; eval mode), scored per
chunk. Baseline: the reference's script (``reference_loop.reference_generate``): the whole batch
of videos per call, one sample index at a time, every conditioning frame encoded again for every
sample (twice per step), skips concatenated, and the encoder and decoder left in train mode as the
script leaves them; each sample is scored as it comes. Both keep, per video, the best mean SSIM and
the best mean PSNR. Every sample costs the same on both sides, so each side times as many samples
as fill its calls and the rates are compared. FLOPs are counted on one sample index of each side
(torch.utils.flop_counter) and set against the machine's attainable rate (bench_model).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from benchmarks.bench_model import flops, peak_rate
from benchmarks.reference_loop import reference_generate
from svg_lightning.devices import AUTO_SAMPLE_CHUNK
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
def reference_script(model: SVG, cond, target, n_samples: int) -> torch.Tensor:
    """Best (SSIM, PSNR) per video, (2, B): one call per sample index, the whole batch each."""
    best = torch.full((2, cond.shape[0]), -float("inf"))
    for _ in range(n_samples):
        pred = reference_generate(model, cond, target.shape[1])
        score = torch.stack([ssim(pred, target).mean(-1), psnr(pred, target).mean(-1)])
        best = torch.maximum(best, score)
    return best


def measure(
    model: SVG,
    script: SVG,
    b: int,
    f: int,
    rows: int,
    loop_samples: int,
    peak: float,
    rounds: int = 2,
    min_seconds: float = 8.0,
):
    """Both sides on ``b`` videos of ``f`` predicted frames: printed, with their ratio."""
    x = torch.rand(b, 5 + f, 1, 64, 64)
    cond, target = x[:, :5], x[:, 5:]
    s = max(1, rows // b)
    # (timed call, samples per video, the call whose FLOPs are counted, its samples): ours
    # shares each video's conditioning work among its samples, so its whole call is counted.
    sides = {
        "ours": (lambda: ours(model, cond, target, s, None), s, None, s),
        "reference script": (
            lambda: reference_script(script, cond, target, loop_samples), loop_samples,
            lambda: reference_script(script, cond, target, 1), 1),
    }  # fmt: skip
    for run, _, counted, _ in sides.values():
        (counted or run)()  # warm-up
    # Rounds alternate the sides, each timed for at least ``min_seconds`` (a single small call
    # lasts about a second, which this shared host's noise swamps); the ratio is per round.
    ratios = []
    for r in range(rounds):
        rates = {}
        for name, (run, samples, counted, counted_samples) in sides.items():
            calls, start = 0, time.perf_counter()
            while not calls or time.perf_counter() - start < min_seconds:
                run()
                calls += 1
            sec = time.perf_counter() - start
            frames = b * samples * f * calls
            per_frame = flops(counted or run) / (b * counted_samples * f)
            rates[name] = frames / sec
            share = rates[name] * per_frame / peak
            print(
                f"{b} videos, round {r + 1}, {name}: {samples} samples each, {frames} "
                f"predicted frames in {sec:.1f} s = {rates[name]:.1f} frames/s; "
                f"{per_frame / 1e9:.2f} GFLOP a frame, {share:.0%} of the attainable rate"
            )
        ratios.append(rates["ours"] / rates["reference script"])
    print(f"{b} videos: ours / reference script throughput: "
          f"{', '.join(f'{x:.2f}x' for x in ratios)} (per round)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, nargs="+", default=[8, 100])
    parser.add_argument("--n-future", type=int, default=10)
    parser.add_argument("--rows", type=int, default=AUTO_SAMPLE_CHUNK["cpu"],
                        help="(video, sample) rows per call of ours, per batch size (default: "
                             "what eval.sample_chunk=auto takes on a CPU)")  # fmt: skip
    parser.add_argument("--loop-samples", type=int, default=4,
                        help="sample indices the baseline runs per batch size")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    parser.add_argument("--min-seconds", type=float, default=8.0,
                        help="each side's time per round, at least")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SVG(SVGConfig()).eval()  # the paper's SM-MNIST SVG-LP network
    script = copy.deepcopy(model)  # its BatchNorm statistics move in train mode: its own copy
    script.encoder.train()
    script.decoder.train()
    peak = peak_rate()
    print(f"threads: {torch.get_num_threads()}, attainable float32 rate: {peak / 1e9:.1f} GFLOP/s")
    for b in args.videos:
        measure(
            model,
            script,
            b,
            args.n_future,
            args.rows,
            args.loop_samples,
            peak,
            args.rounds,
            args.min_seconds,
        )


if __name__ == "__main__":
    main()
