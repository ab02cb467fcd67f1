"""Best-of-N scoring of sampled futures against ground truth, with two reference predictors.

Per video, every sample is scored on every predicted frame; per metric the sample with the best
time-averaged value is kept (the paper's Sec. 4 protocol, kept by later comparisons). The
copy-last-conditioning-frame and all-black predictors are scored on the same frames, because on
sparse digits SSIM is dominated by the background and a number without them misleads. Only
per-video, per-step scores are kept.

``BestOfN`` is the same protocol as a ``torchmetrics.Metric``: per-video curves kept in list
states (gathered across processes by torchmetrics), the duplicates a distributed sampler pads
with dropped, and the mean and 95% CI over videos that metrics.json reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from svg_lightning.metrics.frame import psnr, ssim, ssim_reference

METRICS = {"ssim": ssim, "psnr": psnr}
# Opt-in: the reference code's ranking SSIM, reported beside (never instead of) ``ssim``.
REFERENCE_METRICS = METRICS | {"ssim_ref": ssim_reference}
NOISE_SEED_STRIDE = 1_000_003  # keeps (seed, video) pairs apart for any realistic test set
SELECTIONS = ("bestofN", "meanofN", "worstofN")
BASELINES = ("copy_last", "black")
CI_Z = 1.96  # two-sided 95% quantile of the standard normal


def curve_names(metrics: dict = METRICS) -> list[str]:
    """The ``{metric}_{predictor}`` names ``score_chunks`` returns, in its order."""
    return [f"{m}_{s}" for m in metrics for s in SELECTIONS] + [
        f"{m}_{b}" for m in metrics for b in BASELINES
    ]


class Chunk(NamedTuple):
    """Rows (indices into the B * S (video, sample) pairs, row ``b * S + s``) and their
    predicted frames (rows, T, C, H, W): what ``score_chunks`` consumes."""

    rows: Tensor
    frames: Tensor


def select(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """scores (B, S, T) -> bestofN, meanofN and worstofN (B, T): best/worst pick, per video, the
    sample whose time-averaged score is highest/lowest; mean averages over samples per step."""
    avg = scores.mean(-1)
    pick = lambda i: scores.gather(1, i[:, None, None].expand(-1, 1, scores.shape[-1]))[:, 0]
    return {
        "bestofN": pick(avg.argmax(1)),
        "meanofN": scores.mean(1),
        "worstofN": pick(avg.argmin(1)),
    }


def video_noise(
    index: torch.Tensor, num_samples: int, steps: int, z_dim: int, seed: int = 0
) -> torch.Tensor:
    """Standard-normal draws (B, S, steps, z) that depend only on (seed, video index): a video gets
    the same samples whatever its batch, the number of processes or the chunk size."""
    out = torch.empty(len(index), num_samples, steps, z_dim)
    for row, video in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(seed * NOISE_SEED_STRIDE + int(video))
        out[row] = torch.randn(num_samples, steps, z_dim, generator=g)
    return out


def baseline_scores(
    cond: torch.Tensor | None, target: torch.Tensor, metrics: dict = METRICS
) -> dict[str, torch.Tensor]:
    """Copy-last-conditioning-frame and all-black predictions, (B, T) per metric; without
    ``cond`` only the all-black one."""
    black = torch.zeros_like(target, dtype=torch.float32)
    out = {}
    for name, fn in metrics.items():
        if cond is not None:
            out[f"{name}_copy_last"] = fn(cond[:, -1:].float().expand_as(target), target.float())
        out[f"{name}_black"] = fn(black, target.float())
    return out


@torch.no_grad()
def score_chunks(
    chunks: Iterable,
    cond: torch.Tensor | None,
    target: torch.Tensor,
    num_samples: int,
    metrics: dict = METRICS,
) -> dict[str, torch.Tensor]:
    """Score sampled futures of ``target`` (B, T, ...) chunk by chunk, dropping frames once scored
    -> per-video per-step curves (B, T) named ``{metric}_{bestofN|meanofN|worstofN}``,
    ``{metric}_copy_last`` (only with ``cond``) and ``{metric}_black``. ``chunks`` yield ``rows``
    (indices into the B * num_samples (video, sample) pairs, row ``b * num_samples + s``) and
    ``frames`` (see ``Chunk``)."""
    b, t = target.shape[:2]
    scores = {name: torch.empty(b * num_samples, t, device=target.device) for name in metrics}
    for chunk in chunks:
        pred = chunk.frames.float().clamp(0, 1)
        truth = target[chunk.rows // num_samples].float()
        for name, fn in metrics.items():
            scores[name][chunk.rows] = fn(pred, truth)
    out = {}
    for name in metrics:
        for how, curve in select(scores[name].view(b, num_samples, t)).items():
            out[f"{name}_{how}"] = curve
    return out | baseline_scores(cond, target, metrics)


def unique_first(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``index`` and the position of each one's first occurrence."""
    values, inverse = torch.unique(index, return_inverse=True)
    pos = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(values, index.numel()).scatter_reduce(0, inverse, pos, "amin")
    return values, first


def mean_ci(x: Tensor) -> tuple[float, float]:
    """Mean of the values ``x`` (n,) and the half-width of its 95% confidence interval,
    ``1.96 * std / sqrt(n)`` (sample std), in float64; the half-width is NaN for one value."""
    x = x.detach().cpu().double()
    n = x.numel()
    ci = CI_Z * x.std().item() / math.sqrt(n) if n > 1 else math.nan
    return x.mean().item(), ci


class BestOfNResult:
    """The protocol's numbers for N videos (what ``BestOfN.compute`` returns).

    ``index`` (N,): the video indices, ascending. ``per_video``: name -> (N, T) per-video,
    per-step scores, rows in ``index`` order. ``mean`` / ``ci95``: name -> the mean over videos
    of each video's time-averaged score, and its 95% CI half-width. ``step_mean`` /
    ``step_ci95``: name -> T values, the same over the videos at each predicted step. Numbers
    are Python floats computed in float64; a CI over a single video is NaN.
    """

    # A plain class, not a dataclass or dict: torchmetrics squeezes every one-element tensor
    # it finds inside those, which would turn one video's (1,) index into a scalar.
    __slots__ = ("index", "per_video", "mean", "ci95", "step_mean", "step_ci95")

    def __init__(
        self,
        index: Tensor,
        per_video: dict[str, Tensor],
        mean: dict[str, float],
        ci95: dict[str, float],
        step_mean: dict[str, list[float]],
        step_ci95: dict[str, list[float]],
    ):
        self.index, self.per_video = index, per_video
        self.mean, self.ci95 = mean, ci95
        self.step_mean, self.step_ci95 = step_mean, step_ci95

    @property
    def num_videos(self) -> int:
        return int(self.index.numel())

    @property
    def names(self) -> list[str]:
        return list(self.per_video)

    def to_dict(self) -> dict:
        """The ``summary`` and ``curves`` sections of metrics.json (JSON-ready)."""
        return {
            "summary": {n: {"mean": self.mean[n], "ci95": self.ci95[n]} for n in self.names},
            "curves": {
                n: {"mean": self.step_mean[n], "ci95": self.step_ci95[n]} for n in self.names
            },
        }

    def __repr__(self) -> str:
        best = {n: round(v, 4) for n, v in self.mean.items() if n.endswith("_bestofN")}
        return f"BestOfNResult(num_videos={self.num_videos}, names={self.names}, mean={best}...)"


def summarize(curves: dict[str, Tensor], index: Tensor | None = None) -> BestOfNResult:
    """Per-video curves, name -> (N, T), of videos ``index`` (N,) (default 0..N-1) -> their
    mean and 95% CI over videos, overall (of each video's time average) and per step."""
    if not curves:
        raise ValueError("no curves to summarise")
    n = next(iter(curves.values())).shape[0]
    index = torch.arange(n) if index is None else index
    mean, ci95, step_mean, step_ci95 = {}, {}, {}, {}
    for name, c in curves.items():
        if c.dim() != 2 or c.shape[0] != n:
            raise ValueError(f"{name}: expected a ({n}, T) curve per video, got {tuple(c.shape)}")
        c = c.detach().cpu().double()
        mean[name], ci95[name] = mean_ci(c.mean(1))
        # Column by column: a reduction over dim 0 of the whole matrix rounds differently in the
        # last bits, and metrics.json should not change with how it is computed.
        steps = [mean_ci(c[:, t]) for t in range(c.shape[1])]
        step_mean[name], step_ci95[name] = [m for m, _ in steps], [e for _, e in steps]
    return BestOfNResult(index, dict(curves), mean, ci95, step_mean, step_ci95)


def _cat(state) -> Tensor | None:
    """A list state (a list of tensors, or one tensor once torchmetrics has synced it)."""
    if isinstance(state, Tensor):
        return state if state.numel() else None
    return torch.cat(state) if state else None


class BestOfN(Metric):
    """Best-of-N SSIM/PSNR of sampled futures (Denton & Fergus 2018, Sec. 4), with the
    copy-last-conditioning-frame and all-black reference predictors, as a torchmetrics Metric.

    ``update(samples, target, index, cond=None)`` scores every sample on every frame;
    ``update_curves(curves, index)`` takes per-video curves already scored chunk by chunk by
    ``score_chunks``. ``index`` holds the video indices: a video seen more than once (the
    duplicates a DDP ``DistributedSampler`` pads with) counts once, by its first occurrence.
    ``compute()`` returns a ``BestOfNResult`` over every process's videos, ordered by index,
    with curves named ``{ssim|psnr}_{bestofN|meanofN|worstofN|copy_last|black}`` (copy_last only
    when ``cond`` was given); ``reference_ssim=True`` adds ``ssim_ref_*``. Keyword arguments go to
    ``torchmetrics.Metric`` (e.g. ``compute_on_cpu``, ``process_group``).
    """

    is_differentiable = False
    higher_is_better = None  # SSIM/PSNR rise with quality; the result is many curves, no score
    full_state_update = False

    def __init__(self, reference_ssim: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.metric_fns = REFERENCE_METRICS if reference_ssim else METRICS
        self.names = curve_names(self.metric_fns)
        self.add_state("video_index", default=[], dist_reduce_fx="cat")
        for name in self.names:
            self.add_state(_state(name), default=[], dist_reduce_fx="cat")

    def update(
        self, samples: Tensor, target: Tensor, index: Tensor, cond: Tensor | None = None
    ) -> None:
        """samples (B, S, T, C, H, W) and target (B, T, C, H, W) in [0, 1], index (B,);
        ``cond`` (B, P, C, H, W), the conditioning frames, scores the copy-last baseline."""
        if samples.dim() != 6 or target.dim() != 5 or samples.shape[2:] != target.shape[1:]:
            raise ValueError(
                "expected samples (B, S, T, C, H, W) and target (B, T, C, H, W) with the same "
                f"T, C, H, W; got {tuple(samples.shape)} and {tuple(target.shape)}"
            )
        if samples.shape[0] != target.shape[0]:
            raise ValueError(f"{samples.shape[0]} videos of samples but {target.shape[0]} targets")
        if cond is not None and (
            cond.dim() != 5
            or cond.shape[0] != target.shape[0]
            or cond.shape[2:] != target.shape[2:]
        ):
            raise ValueError(
                f"expected cond (B, P, C, H, W) matching target {tuple(target.shape)}, got "
                f"{tuple(cond.shape)}"
            )
        b, s = samples.shape[:2]
        chunk = Chunk(torch.arange(b * s, device=samples.device), samples.flatten(0, 1))
        self._append(score_chunks([chunk], cond, target, s, self.metric_fns), index)

    def update_curves(self, curves: dict[str, Tensor], index: Tensor) -> None:
        """Per-video curves name -> (B, T), as ``score_chunks`` returns them, of videos
        ``index`` (B,)."""
        # torchmetrics does this bookkeeping for ``update`` only: without it a cached compute()
        # would hide these videos, and compute() would warn that nothing was updated.
        self._computed = None
        self._update_count += 1
        self._append(curves, index)

    def _append(self, curves: dict[str, Tensor], index: Tensor) -> None:
        unknown = sorted(set(curves) - set(self.names))
        if unknown:
            raise ValueError(f"unknown curves {unknown}; this metric keeps {self.names}")
        if not curves:
            raise ValueError("no curves given")
        index = torch.as_tensor(index)
        some = next(iter(curves.values()))
        for name, curve in curves.items():
            if curve.dim() != 2 or curve.shape != some.shape:
                raise ValueError(
                    f"expected every curve of shape (B, T) = {tuple(some.shape)}, got "
                    f"{name} {tuple(curve.shape)}"
                )
        if index.shape != some.shape[:1]:
            raise ValueError(
                f"expected index of shape ({some.shape[0]},), got {tuple(index.shape)}"
            )
        device = torch.device("cpu") if self.compute_on_cpu else some.device
        # One device and dtype for every state: a DDP gather (NCCL) takes tensors of one device,
        # and torchmetrics stands in float32 (its default dtype) for a process with no videos.
        self.video_index.append(index.detach().to(device, torch.long))
        for name, curve in curves.items():
            getattr(self, _state(name)).append(curve.detach().to(device, torch.float32))

    def compute(self) -> BestOfNResult:
        index = _cat(self.video_index)
        if index is None:
            raise ValueError("BestOfN has no videos: call update or update_curves first")
        curves = {}
        for name in self.names:
            c = _cat(getattr(self, _state(name)))
            if c is None:
                continue
            if c.shape[0] != index.shape[0]:
                raise ValueError(
                    f"{name} was scored for {c.shape[0]} of {index.shape[0]} videos: give every "
                    "update the same curves (cond to all of them or to none)"
                )
            curves[name] = c
        index, first = unique_first(index)
        return summarize({name: c[first] for name, c in curves.items()}, index)


def _state(name: str) -> str:
    return f"curve_{name}"
