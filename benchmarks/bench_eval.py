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
``--onednn N`` times N more calls of ours with oneDNN's own timer: the rate its convolution
primitives reach inside the pipeline, which bounds what the whole call can reach.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from benchmarks.bench_model import flop_counts, flops, settled_peak_rate
from benchmarks.profile_step import onednn_times
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


_CONV_KINDS = ("convolution", "deconvolution")


def convolution_bound(run, peak: float, reps: int) -> dict[str, float]:
    """Medians over ``reps`` calls of ``run`` timed by oneDNN (after one warm-up): wall and
    convolution-primitive milliseconds, the rate of those primitives on the call's oneDNN
    convolution FLOPs (``aten.convolution``; the decoder's im2col image layer and the matmul
    code layers are not oneDNN convolutions) and, as fractions of ``peak``, that rate and the
    whole call's rate were everything but the convolution primitives free."""
    counts = flop_counts(run)
    conv, total = counts.get("aten.convolution", 0), sum(counts.values())
    walls, convs = [], []
    for _ in range(reps):
        wall, times = onednn_times(run)
        walls.append(wall * 1e3)
        convs.append(sum(sum(ms) for (kind, _), ms in times.items() if kind in _CONV_KINDS))
    wall_ms, conv_ms = statistics.median(walls), statistics.median(convs)
    rate = conv / conv_ms * 1e3
    return {
        "wall_ms": wall_ms,
        "conv_ms": conv_ms,
        "conv_gflop_per_s": rate / 1e9,
        "conv_share": rate / peak,
        "bound_share": total / conv_ms * 1e3 / peak,
    }


def report_bound(model: SVG, b: int, f: int, rows: int, peak: float, reps: int) -> None:
    x = torch.rand(b, 5 + f, 1, 64, 64)
    s = max(1, rows // b)
    peak = max(peak, settled_peak_rate())  # again, next to the timed calls; the higher counts
    r = convolution_bound(lambda: ours(model, x[:, :5], x[:, 5:], s, None), peak, reps)
    print(
        f"{b} videos, ours timed by oneDNN, medians of {reps} calls: {r['wall_ms']:.0f} ms, of "
        f"which {r['conv_ms']:.0f} ms in convolution primitives at {r['conv_gflop_per_s']:.1f} "
        f"GFLOP/s, {r['conv_share']:.0%} of the attainable rate ({peak / 1e9:.1f} GFLOP/s, "
        f"measured again); with all else free the call would reach {r['bound_share']:.0%}"
    )


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
    parser.add_argument("--onednn", type=int, default=0, metavar="CALLS",
                        help="time CALLS more calls of ours by oneDNN, per batch size")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SVG(SVGConfig()).eval()  # the paper's SM-MNIST SVG-LP network
    script = copy.deepcopy(model)  # its BatchNorm statistics move in train mode: its own copy
    script.encoder.train()
    script.decoder.train()
    peak = settled_peak_rate()
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
        if args.onednn:
            report_bound(model, b, args.n_future, args.rows, peak, args.onednn)


if __name__ == "__main__":
    main()
