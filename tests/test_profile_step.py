"""``benchmarks/profile_step.py --onednn``: the per-primitive times it reads from oneDNN's verbose
log, which the performance notes quote."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks import bench_eval, profile_step


def test_onednn_times_reads_each_primitive_execution(capfd):
    x, w = torch.randn(4, 8, 16, 16), torch.randn(16, 8, 4, 4)

    def two_convs():
        F.conv2d(x, w, stride=2, padding=1)
        F.conv2d(x[:2], w, stride=2, padding=1)

    wall, times = profile_step.onednn_times(two_convs)
    convs = {shape: ms for (kind, shape), ms in times.items() if kind == "convolution"}
    assert set(convs) == {
        "mb4_ic8oc16_ih16oh8kh4sh2dh0ph1_iw16ow8kw4sw2dw0pw1",
        "mb2_ic8oc16_ih16oh8kh4sh2dh0ph1_iw16ow8kw4sw2dw0pw1",
    }
    assert all(len(ms) == 1 and 0 < ms[0] < wall * 1e3 for ms in convs.values())
    # The log went to a file, and verbose mode is off again: nothing reaches the terminal.
    F.conv2d(x, w)
    assert "onednn_verbose" not in capfd.readouterr().out


def test_convolution_bound_counts_transposed_convolutions_and_only_convolution_flops():
    """``bench_eval --onednn``: the decoder's transposed convolutions are oneDNN deconvolution
    primitives and count as convolution time; matmul FLOPs count toward the call, not the
    convolution rate."""
    x, w = torch.randn(8, 32, 8, 8), torch.randn(32, 16, 4, 4)
    a = torch.randn(256, 256)
    deconv = lambda: F.conv_transpose2d(x, w, stride=2, padding=1)
    only = bench_eval.convolution_bound(deconv, peak=1e12, reps=2)
    assert 0 < only["conv_ms"] <= only["wall_ms"]
    assert only["bound_share"] == pytest.approx(only["conv_share"])
    both = bench_eval.convolution_bound(lambda: (deconv(), a @ a), peak=1e12, reps=2)
    conv_flops = 2 * 8 * 32 * 16 * 16 * 8 * 8
    assert both["conv_gflop_per_s"] == pytest.approx(conv_flops / both["conv_ms"] / 1e6)
    assert both["bound_share"] == pytest.approx(
        both["conv_share"] * (conv_flops + 2 * 256**3) / conv_flops
    )
