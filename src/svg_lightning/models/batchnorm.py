"""BatchNorm with the reference's training statistics in one batched call.

The reference trains frame by frame: every encoder/decoder call sees the B frames of one time step,
so each BatchNorm layer normalises with that step's batch statistics and updates its running
statistics once per call (momentum m), in call order. Encoding all B*T frames in one call would
normalise over B*T frames instead: a different function. ``StepBatchNorm2d`` folds the time axis
into the channel axis of one ``batch_norm`` (per (step, channel) statistics over the B frames and
the pixels), and replays the reference's sequence of K running-statistic updates in closed form:
r <- (1-m)^K r + sum_k m (1-m)^(K-1-k) s_k, with s_k the batch mean / unbiased variance of the
step the k-th call saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Which statistics BatchNorm normalises with. The code names this choice ``bn_stats`` (SVGModule,
# SVG.forward, SVG.iter_samples); the settings keep the keys users type:
#   model.bn_stats, in training: per_step, the reference's per-step statistics (above), or joint,
#     one call's statistics over all B*T frames;
#   eval.bn (EvalSettings.bn), while generating: running, the running statistics (eval mode), or
#     batch, the statistics of the batch being generated, as the reference's generation code
#     (which leaves the encoder and decoder in train mode).
TRAINING_BN_STATS = ("per_step", "joint")
SAMPLING_BN_STATS = ("running", "batch")


class StepBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state dict). Inside ``step_statistics``
    its input is B*T frames in (batch, time) order, normalised with per-step batch statistics;
    otherwise it is plain BatchNorm."""

    steps: int | None = None
    calls: Sequence[int] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps is None:
            if self._affine_in_place(x):
                return self._running_affine(x)
            return super().forward(x)
        t, c = self.steps, self.num_features
        b = x.shape[0] // t
        # Momentum 1 makes these buffers the batch mean and unbiased variance of every
        # (step, channel): the statistics of the reference's per-step calls, for free.
        mean = torch.zeros(t * c, dtype=self.running_mean.dtype, device=x.device)
        var = torch.ones(t * c, dtype=self.running_var.dtype, device=x.device)
        y = F.batch_norm(
            x.reshape(b, t * c, *x.shape[2:]), mean, var,
            self.weight.repeat(t), self.bias.repeat(t), True, 1.0, self.eps,
        )  # fmt: skip
        if self.training and self.calls:
            self._replay_updates(mean.view(t, c), var.view(t, c))
        # Not a view: the in-place LeakyReLU that follows would otherwise make autograd copy the
        # whole activation back through the view in the backward pass (as_strided scatter).
        return torch.ops.aten._unsafe_view(y, x.shape)

    def _affine_in_place(self, x: torch.Tensor) -> bool:
        """Generation: eval mode, running statistics, no autograd, same dtype. Its input is always
        a convolution's output, inside a block, read by nothing else."""
        return (
            not self.training
            and self.affine
            and self.running_mean is not None
            and not torch.is_grad_enabled()
            and x.dtype == self.weight.dtype
        )

    def _running_affine(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode BatchNorm is a per-channel affine map; done in place it writes no new
        activation: a fresh 16 MB output per call cost 5-8 ms while sampling on a CPU against 1 ms
        in place, and sampling ran 1.09-1.12x faster (docs/performance.md, "CPU generation")."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        shape = (-1,) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.view(shape), x, scale.view(shape), out=x)

    @torch.no_grad()
    def _replay_updates(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """The running statistics after the reference's calls ``self.calls`` (the step each call
        saw, in order), in closed form."""
        m, k = self.momentum, len(self.calls)
        weights = [0.0] * self.steps  # Python floats: one tensor op per layer, not one per call
        for i, step in enumerate(self.calls):
            weights[step] += m * (1 - m) ** (k - 1 - i)
        weights = torch.tensor(weights, dtype=mean.dtype, device=mean.device)[:, None]
        decay = (1 - m) ** k
        self.running_mean.mul_(decay).add_((weights * mean).sum(0))
        self.running_var.mul_(decay).add_((weights * var).sum(0))
        self.num_batches_tracked.add_(k)


@contextmanager
def step_statistics(module: nn.Module, steps: int, calls: Sequence[int] = ()) -> Iterator[None]:
    """Within the block, every ``StepBatchNorm2d`` of ``module`` takes inputs of B*steps frames,
    normalises each step with its own batch statistics and, in training mode, updates its running
    statistics as the calls ``calls`` (the step each one saw, in order) would have."""
    layers = [m for m in module.modules() if isinstance(m, StepBatchNorm2d)]
    for layer in layers:
        if layer.momentum is None:
            raise ValueError("per-step BatchNorm statistics need a momentum (not None)")
        layer.steps, layer.calls = steps, tuple(calls)
    try:
        yield
    finally:
        for layer in layers:
            del layer.steps, layer.calls  # back to the class defaults: plain BatchNorm
