"""Training and sampling throughput of the paper-size SM-MNIST SVG-LP on this machine, against
the reference algorithm and against the machine's attainable FLOP rate, all measured in one run.

Training: batch 16, T = 15 (5 + 10), one Adam step per iteration, ``bn_stats=per_step``, with all T
steps in one encoder/decoder call and with ``time_chunk`` steps per call (by default the size
``time_chunk=auto`` picks: 5 for this net on a CPU); the baseline is
``reference_loop.reference_step`` (the reference's frame-by-frame schedule, same weights). Our steps
and the baseline alternate rep by rep; the speed-up is the median of the per-rep ratios, with their
range, so load from other jobs on the machine hits both sides of each ratio alike. On a CPU with
native bf16 (``devices.native_bf16``; ``--bf16 on`` forces it) the chunked step is also timed as
``trainer.precision=bf16-mixed`` runs it: the forward pass and the loss under
``torch.autocast("cpu", dtype=torch.bfloat16)``, float32 weights and Adam. FLOPs are counted
with torch.utils.flop_counter (matmuls and convolutions); the attainable FLOP/s is the faster of a
large float32 matmul and a large convolution of the net's shape (oneDNN's convolutions can outrun
the BLAS matmul), measured between reps. Sampling: 5 conditioning frames -> 10 generated, 16 videos
x 4 samples in one call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from benchmarks.reference_loop import reference_step
from svg_lightning.devices import native_bf16
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _transposed_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)


# The CPU image layer's kernel (backbones.ConvTranspose2d), which the counter does not know.
_EXTRA_FLOPS = {torch.ops.aten.slow_conv_transpose2d: _transposed_conv_flops}


def flop_counts(fn) -> dict[str, int]:
    """FLOPs of one call of ``fn`` per op ("aten.convolution_backward", ...)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        fn()
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}


def flops(fn) -> int:
    return sum(flop_counts(fn).values())


def matmul_rate(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 * reps / seconds(lambda: [a @ b for _ in range(reps)])


def conv_rate(reps: int = 5) -> float:
    """A 4x4 stride-2 convolution as in the net's middle stages, 256 frames of 128 x 16 x 16, in
    the faster of the two layouts: on an AVX2 host oneDNN ran it NHWC at 181-194 GFLOP/s and
    NCHW at 85-121 (the output reordered back), and CPU generation runs NHWC."""
    return max(
        _conv_rate(layout, reps) for layout in (torch.contiguous_format, torch.channels_last)
    )


def _conv_rate(layout: torch.memory_format, reps: int) -> float:
    x = torch.randn(256, 128, 16, 16).contiguous(memory_format=layout)
    w = torch.randn(256, 128, 4, 4).contiguous(memory_format=layout)
    conv = lambda: F.conv2d(x, w, stride=2, padding=1)
    conv()
    return 2 * 256 * 256 * 128 * 16 * 8 * 8 * reps / seconds(lambda: [conv() for _ in range(reps)])


def peak_rate() -> float:
    return max(matmul_rate(), conv_rate())


def settled_peak_rate(samples: int = 3) -> float:
    """The median of ``samples`` measurements of ``peak_rate`` after a discarded one: the first
    read 20-25% low on a cold core (144-150 against 186-193 GFLOP/s after it, AVX2 host), which
    inflated every fraction of the attainable rate set against it."""
    peak_rate()
    return statistics.median(peak_rate() for _ in range(samples))


def interleaved(fns: dict, reps: int) -> dict[str, list[float]]:
    """Seconds of each function per rep, called in turn rep after rep (after one warm-up each)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(seconds(fn))
    return times


def paired_ratio(base: list[float], ours: list[float]) -> tuple[float, float, float]:
    """Speed-up over ``base`` rep by rep (the two ran back to back, under the same load): the
    median and the range over reps."""
    ratios = [b / o for b, o in zip(base, ours)]
    return statistics.median(ratios), min(ratios), max(ratios)


def training_step(
    batch: int, channels_last: bool = False, time_chunk: int | None = None, bf16: bool = False
):
    """The paper's SM-MNIST SVG-LP network, its Adam, a batch of T = 15 frames, and one
    optimizer step of ours (``bn_stats=per_step``, ``time_chunk`` steps per encoder/decoder
    call; ``bf16``: the forward pass under bf16 autocast, as Lightning's bf16-mixed):
    (model, opt, x, step)."""
    torch.manual_seed(0)
    model = SVG(SVGConfig()).fast_paths(channels_last=channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.rand(batch, 15, 1, 64, 64)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, 5, "per_step", time_chunk).loss(x, 1e-4).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, opt, x, step


def reference_training_step(model: SVG, opt: torch.optim.Optimizer, x: torch.Tensor):
    """One optimizer step of the reference's frame-by-frame schedule on the same model and batch
    (``reference_loop.reference_step``)."""

    def step():
        opt.zero_grad(set_to_none=True)
        reference_step(model, x, 5, 1e-4).loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--time-chunk", type=int, default=None, help="steps per call, chunked step (default: auto)"
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--bf16", choices=("auto", "on", "off"), default="auto",
        help="time the bf16-mixed step too (auto: on CPUs with native bf16)",
    )  # fmt: skip
    args = parser.parse_args()
    model, opt, x, whole = training_step(args.batch, args.channels_last)
    chunk = args.time_chunk or model.auto_time_chunk(x)
    auto = "" if args.time_chunk else " (auto)"
    if chunk is None:  # auto picked one call (a small batch): there is no second step to time
        steps = {f"ours, one call{auto}": whole}
    else:
        chunked = training_step(args.batch, args.channels_last, chunk)[3]
        steps = {"ours, one call": whole, f"ours, {chunk} steps per call{auto}": chunked}
    default_name = list(steps)[-1]
    if args.bf16 == "on" or args.bf16 == "auto" and native_bf16():
        per_call = f"{chunk} steps per call{auto}" if chunk else f"one call{auto}"
        steps[f"ours, bf16-mixed, {per_call}"] = training_step(
            args.batch, args.channels_last, chunk, bf16=True
        )[3]
    else:
        print("no bf16-mixed row: this CPU has no native bf16 (--bf16 on times it anyway)")

    samples = 4
    sample = lambda: model.sample(x[:, :5], n_future=10, num_samples=samples)
    model.train()
    steps["reference loop"] = reference_training_step(model, opt, x)
    step_flops = {name: flops(fn) for name, fn in steps.items()}
    peaks = []
    reps = interleaved({**steps, "peak": lambda: peaks.append(peak_rate())}, args.reps)
    t = {k: statistics.median(v) for k, v in reps.items()}
    peak = statistics.median(peaks)
    model.eval()
    f_sample = flops(sample)
    t_sample = statistics.median(interleaved({"sample": sample}, args.reps)["sample"])

    frames = args.batch * 15
    print(f"threads: {torch.get_num_threads()}, attainable float32 rate (fastest of a 2048 matmul "
          f"and a conv, NCHW or NHWC): {peak / 1e9:.1f} GFLOP/s")  # fmt: skip
    print(f"train step (B={args.batch}, T=15, per_step BN), medians of {args.reps} reps; speed-up "
          f"= median of the per-rep ratios (range over reps):")  # fmt: skip
    rate_of = lambda name: "float32 " if "bf16" in name else ""  # bf16's own peak is higher
    for name in steps:
        f, sec = step_flops[name], t[name]
        speedup = ""
        if name != "reference loop":
            mid, lo, hi = paired_ratio(reps["reference loop"], reps[name])
            speedup = f", {mid:.2f}x the reference loop ({lo:.2f}-{hi:.2f})"
        print(f"  {name}: {sec * 1e3:.0f} ms = {frames / sec:.1f} frames/s{speedup}; "
              f"{f / 1e9:.1f} GFLOP, {f / sec / 1e9:.1f} GFLOP/s = "
              f"{f / sec / peak:.0%} of the attainable {rate_of(name)}rate")  # fmt: skip
    ratio = step_flops["reference loop"] / step_flops[default_name]
    print(f"FLOP ratio, reference loop / ours: {ratio:.2f}x")
    n = args.batch * samples * 10
    print(
        f"sampling ({args.batch} videos x {samples} samples, 5 -> 10): {t_sample * 1e3:.0f} ms, "
        f"{n / t_sample:.0f} frames/s, {f_sample / t_sample / peak:.0%} of the attainable rate"
    )


if __name__ == "__main__":
    main()
