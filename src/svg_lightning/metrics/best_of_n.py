"""Best-of-N scoring of sampled futures against ground truth, with two reference predictors.

Per video, every sample is scored on every predicted frame; per metric the sample with the best
time-averaged value is kept (the paper's Sec. 4 protocol, kept by later comparisons): the highest
SSIM/PSNR, the lowest LPIPS. The copy-last-conditioning-frame and all-black predictors are scored
on the same frames, because on sparse digits SSIM is dominated by the background and a number
without them misleads. Only per-video, per-step scores are kept, and for FVD the I3D features of
each real video and of one randomly drawn sample per video, for each of several draws (the SRVP
protocol, Franceschi et al. 2020).

``BestOfN`` is the same protocol as a ``torchmetrics.Metric``: per-video curves kept in list
states (gathered across processes by torchmetrics), the duplicates a distributed sampler pads
with dropped, and the mean and 95% CI over videos that metrics.json reports. ``EvalSettings`` are
the protocol's settings, shared by the LightningModule's validation and the evaluation's test task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

from svg_lightning.metrics.frame import psnr, ssim, ssim_reference
from svg_lightning.metrics.fvd import I3D, NUM_CLASSES, frechet_distance, i3d_features
from svg_lightning.metrics.perceptual import LPIPSAlex, lpips

METRICS = {"ssim": ssim, "psnr": psnr}
# Opt-in: the reference code's ranking SSIM, reported beside (never instead of) ``ssim``.
REFERENCE_METRICS = METRICS | {"ssim_ref": ssim_reference}
LOWER_IS_BETTER = frozenset({"lpips"})  # distances: the best sample has the lowest average
NOISE_SEED_STRIDE = 1_000_003  # keeps (seed, video) pairs apart for any realistic test set
# The FVD draws of a video get their own generator: far above every noise seed, so which sample
# is drawn is independent of that sample's noise.
FVD_SEED_OFFSET = 2**62
FVD_DRAWS = 5  # SRVP's repetitions of FVD, each with one random sample per video
SELECTIONS = ("bestofN", "meanofN", "worstofN")
BASELINES = ("copy_last", "black")
CI_Z = 1.96  # two-sided 95% quantile of the standard normal


@dataclass(frozen=True)
class EvalSettings:
    """How videos are scored: condition on ``n_past`` frames, predict ``n_future``, keep the best
    of ``num_samples``. Sampling noise depends only on ``seed`` and the video index, so scores do
    not depend on batching or the number of processes. The fields are the ``eval`` settings of
    the same names."""

    n_past: int
    n_future: int
    num_samples: int
    sample_chunk: int | None = None
    seed: int = 0
    reference_ssim: bool = False  # also report the reference code's ranking SSIM
    # BatchNorm while generating, one of models.batchnorm.SAMPLING_BN_STATS (the vocabulary is
    # documented there): running statistics, or those of the batch being generated.
    bn: str = "running"
    fvd_draws: int = FVD_DRAWS  # FVD repetitions, one random sample per video each (with I3D)


def metric_fns(reference_ssim: bool = False, lpips_net: LPIPSAlex | None = None) -> dict:
    """name -> per-frame score function: SSIM and PSNR, the reference SSIM when asked, LPIPS
    with ``lpips_net`` when given."""
    fns = dict(REFERENCE_METRICS if reference_ssim else METRICS)
    if lpips_net is not None:
        fns["lpips"] = partial(lpips, net=lpips_net)
    return fns


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


class FVDDraws(NamedTuple):
    """What ``score_chunks`` needs for FVD: the I3D network and, per video, the sample index of
    each draw, (B, D)."""

    net: I3D
    picks: Tensor


class FVDFeatures(NamedTuple):
    """I3D features of whole videos: ``real`` (B, 400) of the ground truth, ``fake`` (B, D, 400)
    of the sample drawn for each of D draws."""

    real: Tensor
    fake: Tensor


class Scores(NamedTuple):
    """What ``score_chunks`` returns: per-video curves name -> (B, T), and the FVD features
    (None without an I3D network)."""

    curves: dict[str, Tensor]
    fvd: FVDFeatures | None = None


def select(scores: torch.Tensor, lower_is_better: bool = False) -> dict[str, torch.Tensor]:
    """scores (B, S, T) -> bestofN, meanofN and worstofN (B, T): best/worst pick, per video, the
    sample whose time-averaged score is best/worst (highest/lowest, or lowest/highest for a
    distance); mean averages over samples per step."""
    avg = scores.mean(-1)
    if lower_is_better:
        avg = -avg
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


def fvd_picks(index: torch.Tensor, num_samples: int, draws: int, seed: int = 0) -> torch.Tensor:
    """(B, draws) sample indices, uniform in [0, num_samples): the sample each FVD draw takes of
    each video, a function of (seed, video index) only, like the sampling noise."""
    out = torch.empty(len(index), draws, dtype=torch.long)
    for row, video in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(FVD_SEED_OFFSET + seed * NOISE_SEED_STRIDE + int(video))
        out[row] = torch.randint(num_samples, (draws,), generator=g)
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
    fvd: FVDDraws | None = None,
) -> Scores:
    """Score sampled futures of ``target`` (B, T, ...) chunk by chunk, dropping frames once scored
    -> ``Scores``: per-video per-step curves (B, T) named ``{metric}_{bestofN|meanofN|worstofN}``,
    ``{metric}_copy_last`` (only with ``cond``) and ``{metric}_black``, and with ``fvd`` the I3D
    features of the real videos and of the drawn samples, conditioning frames included.
    ``chunks`` yield ``rows`` (indices into the B * num_samples (video, sample) pairs, row
    ``b * num_samples + s``) and ``frames`` (see ``Chunk``)."""
    b, t = target.shape[:2]
    if fvd is not None and cond is None:
        raise ValueError("FVD scores whole videos: pass the conditioning frames (cond)")
    scores = {name: torch.empty(b * num_samples, t, device=target.device) for name in metrics}
    fake = None if fvd is None else torch.empty(b, fvd.picks.shape[1], NUM_CLASSES)
    for chunk in chunks:
        pred = chunk.frames.float().clamp(0, 1)
        truth = target[chunk.rows // num_samples].float()
        for name, fn in metrics.items():
            scores[name][chunk.rows] = fn(pred, truth)
        if fvd is not None:
            _drawn_features(fvd, chunk.rows, pred, cond, num_samples, fake)
    out = {}
    for name in metrics:
        scored = scores[name].view(b, num_samples, t)
        for how, curve in select(scored, name in LOWER_IS_BETTER).items():
            out[f"{name}_{how}"] = curve
    curves = out | baseline_scores(cond, target, metrics)
    if fvd is None:
        return Scores(curves)
    real = i3d_features(torch.cat([cond, target], 1).float(), fvd.net).float()
    return Scores(curves, FVDFeatures(real, fake))


def _drawn_features(
    fvd: FVDDraws, rows: Tensor, pred: Tensor, cond: Tensor, num_samples: int, out: Tensor
) -> None:
    """I3D features of the rows of this chunk that some FVD draw takes, into ``out`` (B, D, F)."""
    rows = rows.cpu()
    video, sample = rows // num_samples, rows % num_samples
    hit = fvd.picks[video] == sample[:, None]  # (rows, D): which draws take this row
    keep = hit.any(1)
    if not keep.any():
        return
    whole = torch.cat([cond[video[keep].to(cond.device)].float(), pred[keep.to(pred.device)]], 1)
    feats = i3d_features(whole, fvd.net).float()
    r, d = hit[keep].nonzero(as_tuple=True)
    out[video[keep][r], d] = feats[r]


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
    ``step_ci95``: name -> T values, the same over the videos at each predicted step. ``fvd``:
    None, or ``{"mean", "ci95", "draws"}``, FVD over the draws (one random sample per video
    each). Numbers are Python floats computed in float64; a CI over a single value is NaN.
    """

    # A plain class, not a dataclass or dict: torchmetrics squeezes every one-element tensor
    # it finds inside those, which would turn one video's (1,) index into a scalar.
    __slots__ = ("index", "per_video", "mean", "ci95", "step_mean", "step_ci95", "fvd")

    def __init__(
        self,
        index: Tensor,
        per_video: dict[str, Tensor],
        mean: dict[str, float],
        ci95: dict[str, float],
        step_mean: dict[str, list[float]],
        step_ci95: dict[str, list[float]],
        fvd: dict | None = None,
    ):
        self.index, self.per_video = index, per_video
        self.mean, self.ci95 = mean, ci95
        self.step_mean, self.step_ci95 = step_mean, step_ci95
        self.fvd = fvd

    @property
    def num_videos(self) -> int:
        return int(self.index.numel())

    @property
    def names(self) -> list[str]:
        return list(self.per_video)

    def cpu(self) -> BestOfNResult:
        """The same numbers with the tensors on the CPU."""
        per_video = {k: v.cpu() for k, v in self.per_video.items()}
        return BestOfNResult(
            self.index.cpu(), per_video, self.mean, self.ci95, self.step_mean, self.step_ci95,
            self.fvd,
        )  # fmt: skip

    def to_dict(self) -> dict:
        """The ``summary`` and ``curves`` sections of metrics.json (JSON-ready); FVD, which has
        no curve, is ``summary["fvd"]``."""
        summary = {n: {"mean": self.mean[n], "ci95": self.ci95[n]} for n in self.names}
        if self.fvd is not None:
            summary["fvd"] = dict(self.fvd)
        return {
            "summary": summary,
            "curves": {
                n: {"mean": self.step_mean[n], "ci95": self.step_ci95[n]} for n in self.names
            },
        }

    def __repr__(self) -> str:
        best = {n: round(v, 4) for n, v in self.mean.items() if n.endswith("_bestofN")}
        fvd = "" if self.fvd is None else f", fvd={self.fvd['mean']:.1f}"
        return (
            f"BestOfNResult(num_videos={self.num_videos}, names={self.names}, mean={best}{fvd}...)"
        )


def fvd_summary(features: FVDFeatures) -> dict:
    """FVD of each draw (real features against the draw's samples) and their mean and 95% CI."""
    draws = [
        frechet_distance(features.real, features.fake[:, d]) for d in range(features.fake.shape[1])
    ]
    mean, ci = mean_ci(torch.tensor(draws))
    return {"mean": mean, "ci95": ci, "draws": draws}


def summarize(
    curves: dict[str, Tensor], index: Tensor | None = None, fvd: FVDFeatures | None = None
) -> BestOfNResult:
    """Per-video curves, name -> (N, T), of videos ``index`` (N,) (default 0..N-1) -> their
    mean and 95% CI over videos, overall (of each video's time average) and per step; with
    ``fvd`` (features of the same N videos) the FVD of each draw, see ``fvd_summary``."""
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
    fvd_numbers = None if fvd is None else fvd_summary(fvd)
    return BestOfNResult(index, dict(curves), mean, ci95, step_mean, step_ci95, fvd_numbers)


def _cat(state) -> Tensor | None:
    """A list state (a list of tensors, or one tensor once torchmetrics has synced it)."""
    if isinstance(state, Tensor):
        return state if state.numel() else None
    return torch.cat(state) if state else None


class BestOfN(Metric):
    """Best-of-N SSIM/PSNR (and LPIPS) of sampled futures (Denton & Fergus 2018, Sec. 4), with
    the copy-last-conditioning-frame and all-black reference predictors, and FVD, as a
    torchmetrics Metric.

    ``update(samples, target, index, cond=None)`` scores every sample on every frame;
    ``update_curves(curves, index, fvd=None)`` takes per-video curves (and FVD features) already
    scored chunk by chunk by ``score_chunks``. ``index`` holds the video indices: a video seen
    more than once (the duplicates a DDP ``DistributedSampler`` pads with) counts once, by its
    first occurrence. ``compute()`` returns a ``BestOfNResult`` over every process's videos,
    ordered by index, with curves named ``{ssim|psnr}_{bestofN|meanofN|worstofN|copy_last|black}``
    (copy_last only when ``cond`` was given); ``reference_ssim=True`` adds ``ssim_ref_*``,
    ``lpips_net`` (from ``load_lpips``) adds ``lpips_*`` (best = lowest), ``i3d_net`` (from
    ``load_i3d``) adds FVD over ``fvd_draws`` draws of one sample per video, drawn by
    ``fvd_picks`` with ``seed`` (FVD needs ``cond``: it scores whole videos). Keyword arguments
    go to ``torchmetrics.Metric`` (e.g. ``compute_on_cpu``, ``process_group``).
    """

    is_differentiable = False
    higher_is_better = None  # SSIM/PSNR rise with quality; the result is many curves, no score
    full_state_update = False

    def __init__(
        self,
        reference_ssim: bool = False,
        lpips_net: LPIPSAlex | None = None,
        i3d_net: I3D | None = None,
        fvd_draws: int = FVD_DRAWS,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if i3d_net is not None and fvd_draws < 1:
            raise ValueError(f"fvd_draws must be >= 1, got {fvd_draws}")
        # Submodules, so the networks move with the metric (and with a LightningModule holding it).
        self.lpips_net, self.i3d_net = lpips_net, i3d_net
        self.fvd_draws, self.seed = fvd_draws, seed
        self.metric_fns = metric_fns(reference_ssim, lpips_net)
        self.names = curve_names(self.metric_fns)
        self.add_state("video_index", default=[], dist_reduce_fx="cat")
        for name in self.names:
            self.add_state(_state(name), default=[], dist_reduce_fx="cat")
        if i3d_net is not None:
            self.add_state("fvd_real", default=[], dist_reduce_fx="cat")
            self.add_state("fvd_fake", default=[], dist_reduce_fx="cat")

    def fvd_for(self, index: Tensor, num_samples: int) -> FVDDraws | None:
        """The FVD draws of videos ``index`` with ``num_samples`` samples each (None without an
        I3D network): what ``score_chunks`` takes as ``fvd``."""
        if self.i3d_net is None:
            return None
        return FVDDraws(
            self.i3d_net, fvd_picks(index.cpu(), num_samples, self.fvd_draws, self.seed)
        )

    def update(
        self, samples: Tensor, target: Tensor, index: Tensor, cond: Tensor | None = None
    ) -> None:
        """samples (B, S, T, C, H, W) and target (B, T, C, H, W) in [0, 1], index (B,);
        ``cond`` (B, P, C, H, W), the conditioning frames, scores the copy-last baseline and is
        needed for FVD."""
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
        index = torch.as_tensor(index)
        scores = score_chunks([chunk], cond, target, s, self.metric_fns, self.fvd_for(index, s))
        self._append(scores.curves, index, scores.fvd)

    def update_curves(
        self, curves: dict[str, Tensor], index: Tensor, fvd: FVDFeatures | None = None
    ) -> None:
        """Per-video curves name -> (B, T) and FVD features, as ``score_chunks`` returns them
        (``Scores``), of videos ``index`` (B,)."""
        # torchmetrics does this bookkeeping for ``update`` only: without it a cached compute()
        # would hide these videos, and compute() would warn that nothing was updated.
        self._computed = None
        self._update_count += 1
        self._append(curves, index, fvd)

    def _append(self, curves: dict[str, Tensor], index: Tensor, fvd: FVDFeatures | None) -> None:
        unknown = sorted(set(curves) - set(self.names))
        if unknown:
            raise ValueError(f"unknown curves {unknown}; this metric keeps {self.names}")
        if not curves:
            raise ValueError("no curves given")
        if (fvd is None) != (self.i3d_net is None):
            raise ValueError(
                "FVD features given to a metric without an I3D network"
                if self.i3d_net is None
                else "this metric computes FVD (i3d_net): give the FVD features of every batch"
            )
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
        if fvd is not None:
            self.fvd_real.append(fvd.real.detach().to(device, torch.float32))
            self.fvd_fake.append(fvd.fake.detach().to(device, torch.float32))

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
        fvd = None
        if self.i3d_net is not None:
            fake = _cat(self.fvd_fake).view(-1, self.fvd_draws, NUM_CLASSES)
            fvd = FVDFeatures(_cat(self.fvd_real)[first].cpu(), fake[first].cpu())
        return summarize({name: c[first] for name, c in curves.items()}, index, fvd)


def _state(name: str) -> str:
    return f"curve_{name}"
