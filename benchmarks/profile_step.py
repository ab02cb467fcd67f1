"""Where a training step's time goes: torch.profiler over one step of the paper's SM-MNIST
SVG-LP (batch 16, T = 15, ``bn_stats=per_step``), self CPU time summed per op family, with the
FLOPs of each family (torch.utils.flop_counter, as ``bench_model`` counts them) and the rate they
ran at, to set against the machine's attainable rate that ``bench_model`` prints.

torch.profiler's per-call times are not to be trusted on a loaded or virtualised CPU (it gave one
call of a layer 26 ms that took 4-6 ms timed alone, docs/performance.md); ``--onednn N`` adds N
more steps timed by oneDNN's own timer (its verbose mode), per primitive: convolutions, the
reorders between PyTorch's NCHW tensors and oneDNN's blocked layout, the LSTMs; with
``--reference`` the reference loop's steps in turn with ours.

    python -m benchmarks.profile_step [--channels-last] [--time-chunk 5] [--top 15]
        [--onednn 5 [--reference]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_model import flop_counts, reference_training_step, training_step

# First match wins: op-name substrings -> family.
FAMILIES = (
    ("conv backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("conv forward", ("conv", "mkldnn_convolution")),
    ("batchnorm", ("batch_norm",)),
    ("LSTM / linear", ("lstm", "rnn", "addmm", "mm", "linear", "_thnn_fused")),
    ("copies / cat / index", ("cat", "copy_", "index", "clone", "contiguous", "stack", "repeat")),
    ("optimizer", ("_foreach", "adam")),
    ("allocator", ("empty", "zeros", "ones", "fill_", "resize_")),
)


def family(name: str) -> str:
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "elementwise / other"


def onednn_times(fn) -> tuple[float, dict[tuple[str, str], list[float]]]:
    """Wall seconds of ``fn()`` and, from oneDNN's verbose log of that call, the milliseconds of
    every primitive execution, keyed by (kind, shape). The log goes to the C library's stdout,
    which is redirected to a file for the call."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile("w+") as log:
        os.dup2(log.fileno(), 1)
        try:
            torch._C._verbose.mkldnn_set_verbose(1)
            start = time.perf_counter()
            fn()
            wall = time.perf_counter() - start
        finally:
            torch._C._verbose.mkldnn_set_verbose(0)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().splitlines()
    times = defaultdict(list)
    for line in lines:
        fields = line.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,<kind>,<impl>,...,<shape>,<ms>
        if len(fields) > 6 and fields[2:4] == ["primitive", "exec"]:
            times[fields[5], fields[-2]].append(float(fields[-1]))
    return wall, times


def print_onednn(steps: dict, reps: int, top: int) -> None:
    """oneDNN's view of each step in ``steps`` (name -> function), called in turn ``reps`` times:
    medians of the wall time, of the time per primitive kind and per primitive shape."""
    med = statistics.median
    walls, insides = defaultdict(list), defaultdict(list)
    kinds = {name: defaultdict(list) for name in steps}
    shapes = {name: defaultdict(list) for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            wall, times = onednn_times(step)
            walls[name].append(wall * 1e3)
            per_kind = defaultdict(float)
            for (kind, shape), ms in times.items():
                per_kind[kind] += sum(ms)
                shapes[name][kind, shape, len(ms)].append(sum(ms))
            for kind, ms in per_kind.items():
                kinds[name][kind].append(ms)
            insides[name].append(sum(per_kind.values()))
    for name in steps:
        inside = med(insides[name])
        w = walls[name]
        print(
            f"\n{name}, oneDNN's own timer, medians of {reps} steps: {med(w):.0f} ms of wall time "
            f"(range {min(w):.0f}-{max(w):.0f}), {inside:.0f} ms in oneDNN primitives, "
            f"{med(w) - inside:.0f} ms outside them"
        )
        for kind, ms in sorted(kinds[name].items(), key=lambda kv: -med(kv[1])):
            print(f"  {kind:<15} {med(ms):8.1f} ms")
        print(f"top {top} primitives by time:")
        ranked = sorted(shapes[name].items(), key=lambda kv: -med(kv[1]))[:top]
        for (kind, shape, n), ms in ranked:
            print(f"  {kind:<15} {shape:<55} {n:>4} calls {med(ms):>8.1f} ms")
    if len(steps) == 2:
        ours, base = (walls[name] for name in steps)
        ratios = sorted(b / o for o, b in zip(ours, base))
        print(f"\nspeed-up per pair: median {med(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3, help="steps before the profiled one")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--time-chunk", type=int, default=None, help="steps per call")
    parser.add_argument(
        "--onednn", type=int, default=0, metavar="STEPS", help="time STEPS more steps by oneDNN"
    )
    parser.add_argument(
        "--reference", action="store_true", help="with --onednn: the reference loop too, in turn"
    )
    args = parser.parse_args()
    model, opt, x, step = training_step(args.batch, args.channels_last, args.time_chunk)

    for _ in range(args.warmup):  # oneDNN primitive caches; the first steps of a process run slow
        step()
    fam_flops = defaultdict(int)
    for op, n in flop_counts(step).items():
        fam_flops[family(op)] += n
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    fams = defaultdict(float)
    for e in events:
        fams[family(e.key)] += e.self_cpu_time_total
    print(f"one training step: {total / 1e3:.0f} ms of self CPU time")
    print("| op family | ms | share | GFLOP | GFLOP/s |\n|---|---:|---:|---:|---:|")
    for fam, us in sorted(fams.items(), key=lambda kv: -kv[1]):
        gflop = fam_flops.get(fam, 0) / 1e9
        counted = f"{gflop:.1f} | {gflop / us * 1e6:.0f}" if gflop else " | "
        print(f"| {fam} | {us / 1e3:.0f} | {us / total:.1%} | {counted} |")
    print(f"\ntop {args.top} ops by self CPU time:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"  {e.key:<45} {e.count:>5} calls {e.self_cpu_time_total / 1e3:>8.1f} ms")
    if args.onednn:
        steps = {"ours": step}
        if args.reference:
            steps["reference loop"] = reference = reference_training_step(model, opt, x)
            reference()  # its first call builds oneDNN primitives for batch-16 shapes
        print_onednn(steps, args.onednn, args.top)


if __name__ == "__main__":
    main()
