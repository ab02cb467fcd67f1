"""``benchmarks/profile_step.py --onednn``: the per-primitive times it reads from oneDNN's verbose
log, which the performance notes quote."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import profile_step


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
