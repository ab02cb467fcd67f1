"""Where a training step's time goes: torch.profiler over one step of the paper's SM-MNIST
SVG-LP (batch 16, T = 15, ``bn_stats=per_step``), self CPU time summed per op family, with the
FLOPs of each family (torch.utils.flop_counter, as ``bench_model`` counts them) and the rate they
ran at, to set against the machine's attainable rate that ``bench_model`` prints.

    python benchmarks/profile_step.py [--channels-last] [--time-chunk 5] [--top 15]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from bench_model import flop_counts, training_step
from torch.profiler import ProfilerActivity, profile

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3, help="steps before the profiled one")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--time-chunk", type=int, default=None, help="steps per call")
    args = parser.parse_args()
    *_, step = training_step(args.batch, args.channels_last, args.time_chunk)

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


if __name__ == "__main__":
    main()
