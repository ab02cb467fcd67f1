"""Evaluation results: metrics.json, a CSV of the per-step curves, plots and sample grids."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

# Figures are drawn without pyplot, so no global backend is switched (notebooks keep theirs).
from matplotlib.figure import Figure

import svg_lightning
from svg_lightning.console import print_table
from svg_lightning.files import staged_outputs, write_json
from svg_lightning.loggers import log_media, log_scalars
from svg_lightning.metrics import PSNR_RULE, SSIM_REFERENCE_RULE, SSIM_RULE, ssim
from svg_lightning.metrics.best_of_n import BestOfNResult, EvalSettings
from svg_lightning.module import SVGModule
from svg_lightning.viz import save_sample_gif, save_sample_grid

SELECTION_RULE = (
    "per video, each metric is averaged over the predicted frames for every sample of N; "
    "<metric>_bestofN/_worstofN keep the sample with the best/worst average (separately per "
    "metric: highest SSIM/PSNR, lowest LPIPS), _meanofN averages over the N samples; _copy_last "
    "and _black are the two reference predictors; the deterministic model is scored once"
)
FVD_SELECTION_RULE = (
    "FVD: real test videos against one sample per video drawn uniformly from the N (seeded per "
    "video), conditioning frames included; repeated over independent draws, mean and 95% CI "
    "over the draws"
)
METRICS = "metrics.json"  # written last: a folder holding it holds all of an evaluation's files
METRIC_LABELS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "lpips": "LPIPS (lower is better)"}
CI_RULE = "95% CI = 1.96 * std / sqrt(n) over videos (per step: over the videos at that step)"
# How tables and plots name the predictors of metrics.best_of_n.BASELINES.
BASELINE_LABELS = {"copy_last": "copy last conditioning frame", "black": "all-black frame"}
BASELINE_STYLE = {
    "copy_last": {"color": "0.5", "linestyle": ":"},
    "black": {"color": "k", "linestyle": "-."},
}


def build_metrics(result: BestOfNResult, protocol: dict) -> dict:
    """The metrics.json document of ``BestOfN``'s numbers under ``protocol``."""
    return {
        "protocol": {
            **protocol,
            "num_videos": result.num_videos,
            "ssim": SSIM_RULE,
            "psnr": PSNR_RULE,
            "selection": SELECTION_RULE,
            "ci": CI_RULE,
            "package_version": svg_lightning.__version__,
        },
        **result.to_dict(),  # "summary" and "curves"
    }


def frame_numbers(metrics: dict) -> list[int]:
    """1-based frame numbers of the predicted frames, as on the paper's plots."""
    p, f = metrics["protocol"]["n_past"], metrics["protocol"]["n_future"]
    return list(range(p + 1, p + f + 1))


def write_csv(path: Path, metrics: dict) -> Path:
    names = list(metrics["curves"])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame"] + [f"{n}_{s}" for n in names for s in ("mean", "ci95")])
        for t, frame in enumerate(frame_numbers(metrics)):
            row = [frame]
            for n in names:
                row += [metrics["curves"][n]["mean"][t], metrics["curves"][n]["ci95"][t]]
            w.writerow(row)
    return path


def _band(ax, x, curve: dict, **style) -> None:
    mean, ci = torch.tensor(curve["mean"]), torch.tensor(curve["ci95"]).nan_to_num(0.0)
    (line,) = ax.plot(x, mean, **style)
    ax.fill_between(x, mean - ci, mean + ci, color=line.get_color(), alpha=0.2, linewidth=0)


def plotted_metrics(runs: dict[str, dict]) -> list[str]:
    """SSIM, PSNR, and LPIPS when every run has it."""
    has_lpips = all("lpips_bestofN" in m["curves"] for m in runs.values())
    return ["ssim", "psnr"] + (["lpips"] if has_lpips else [])


def plot_curves(path: Path, runs: dict[str, dict], title: str = "") -> Path:
    """SSIM, PSNR (and LPIPS) per predicted frame with 95% bands (the paper's Figs. 7/8). One
    run: best and mean sample next to the baselines; several runs: each run's best sample, and
    the first run's baselines."""
    metrics = plotted_metrics(runs)
    fig = Figure(figsize=(5.5 * len(metrics), 4), constrained_layout=True)
    axes = fig.subplots(1, len(metrics))
    first = next(iter(runs.values()))
    for ax, metric in zip(axes, metrics):
        for label, m in runs.items():
            x = frame_numbers(m)
            best_label = f"{label}: best of N" if len(runs) == 1 else label
            _band(ax, x, m["curves"][f"{metric}_bestofN"], label=best_label, linewidth=2)
            if len(runs) == 1 and f"{metric}_meanofN" in m["curves"]:
                _band(ax, x, m["curves"][f"{metric}_meanofN"], label=f"{label}: mean of N")
        for key, name in BASELINE_LABELS.items():
            curve = first["curves"][f"{metric}_{key}"]
            _band(ax, frame_numbers(first), curve, label=name, **BASELINE_STYLE[key])
        p = first["protocol"]["n_past"]
        ax.set(
            xlabel=f"predicted frame (from 1; conditioned on frames 1-{p})", title=metric.upper()
        )
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return path


def write_report(out: Path, metrics: dict, label: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / METRICS, metrics)
    pr = metrics["protocol"]
    title = (
        f"{label}: {pr['dataset']}, {pr['n_past']} -> {pr['n_future']} frames, "
        f"{pr['num_videos']} videos, best of {pr['num_samples']}"
    )
    return {
        "metrics": path,
        "curves_csv": write_csv(out / "curves.csv", metrics),
        "curves_plot": plot_curves(out / "curves.png", {label: metrics}, title),
    }


@torch.no_grad()
def best_samples(model: SVGModule, dataset, settings: EvalSettings, videos: int):
    """The first ``videos`` test videos: (conditioning frames, targets, every sample drawn with the
    evaluation's own noise, each video's best sample by mean SSIM), so the best sample shown is
    the one that was scored."""
    items = [dataset[i] for i in range(min(videos, len(dataset)))]
    x = torch.stack([it["frames"] for it in items]).to(model.device)
    index = torch.stack([it["index"] for it in items])
    p, f = settings.n_past, settings.n_future
    cond, target = x[:, :p], x[:, p : p + f]
    noise = model.noise_for(index, settings)
    drawn = model.sample(cond, f, settings.num_samples, settings.sample_chunk, noise).frames
    drawn = drawn.clamp(0, 1)
    best = ssim(drawn, target[:, None].expand_as(drawn)).mean(-1).argmax(1)
    return cond, target, drawn, drawn[torch.arange(len(x)), best]


def save_samples(
    out: Path, model: SVGModule, dataset, settings: EvalSettings, videos: int, samples: int
) -> dict[str, Path]:
    """For the first ``videos`` test videos: ground truth, the best sample (by SSIM) and the first
    ``samples`` samples drawn, as a PNG grid and a GIF (see ``best_samples``)."""
    cond, target, drawn, best = best_samples(model, dataset, settings, videos)
    shown = torch.cat([best[:, None], drawn[:, :samples]], dim=1)
    return {
        "grid": save_sample_grid(
            out / "samples.png",
            cond,
            target,
            shown,
            ["best (SSIM)", *(f"sample {k + 1}" for k in range(shown.shape[1] - 1))],
        ),  # fmt: skip
        # Not samples.gif: its logger key (the file's stem) would be the grid's.
        "animation": save_sample_gif(out / "samples_animation.gif", cond, target, shown),
    }


def format_mean_ci(score: dict | None, digits: int = 4) -> str:
    """``mean ± ci`` of a summary entry, as text; ``-`` when there is none."""
    if score is None:
        return "-"
    ci = float("nan") if score["ci95"] is None else score["ci95"]
    return f"{score['mean']:.{digits}f} ± {ci:.{digits}f}"


def print_report(metrics: dict, paths: dict[str, Path], label: str = "model") -> None:
    pr, sm = metrics["protocol"], metrics["summary"]
    title = (
        f"{pr['dataset']}: {pr['num_videos']} videos, {pr['n_past']} -> {pr['n_future']} "
        f"frames, best of {pr['num_samples']} samples (mean ± 95% CI)"
    )
    names = [m for m in ("ssim", "psnr", "lpips") if f"{m}_bestofN" in sm]
    predictors = {"bestofN": f"{label}, best of N (bestofN)",
                  "meanofN": f"{label}, mean of N (meanofN)", **BASELINE_LABELS}  # fmt: skip
    rows = [[name, *(format_mean_ci(sm.get(f"{m}_{key}")) for m in names)]
            for key, name in predictors.items()]  # fmt: skip
    columns = ["predictor", *(METRIC_LABELS[m] for m in names)]
    if "fvd" in sm:
        columns.append("FVD")
        rows = [row + ["-"] for row in rows]
        draws = len(sm["fvd"]["draws"])
        rows.append([f"{label}, one random sample per video ({draws} draws)",
                     *("-" for _ in names), format_mean_ci(sm["fvd"], 1)])  # fmt: skip
    print_table(title, columns, rows, paths)


def log_to_loggers(
    loggers, metrics: dict, paths: dict[str, Path], prefix: str, step: int | None = None
) -> None:
    """Summary numbers as metrics, plots and sample grids as media, where the logger can, all at
    ``step``: the optimizer step of the scored checkpoint (numbering.py); None takes the
    protocol's ``step``. A medium's key is ``<prefix>/<file stem>`` (``test/samples`` is
    samples.png)."""
    if step is None:
        step = metrics["protocol"].get("step")
    log_scalars(loggers, {f"{prefix}/{k}": v["mean"] for k, v in metrics["summary"].items()}, step)
    for key in ("curves_plot", "grid", "animation"):
        if key in paths:
            log_media(loggers, f"{prefix}/{Path(paths[key]).stem}", paths[key], step)


def report_run(
    out: Path,
    model: SVGModule,
    result: BestOfNResult,
    settings: EvalSettings,
    datamodule,
    loggers,
    source: dict,
    grid_videos: int,
    grid_samples: int,
    label: str,
    extra: dict | None = None,
    provenance: dict | None = None,
) -> tuple[dict, dict[str, Path]]:
    """Everything an evaluation writes, from the gathered numbers ``result``: metrics.json
    (with the protocol, the checkpoint ``source`` — path, sha256 of the bytes scored, training
    step — and the ``provenance``: the settings that decided the numbers), curves.csv,
    curves.png, samples.png and samples_animation.gif; logged and printed. Returns the metrics
    document and the written paths."""
    protocol = {
        "dataset": datamodule.name,
        "ssim_ref": SSIM_REFERENCE_RULE if settings.reference_ssim else None,
        "n_past": settings.n_past,
        "n_future": settings.n_future,
        "num_samples": settings.num_samples if model.svg.stochastic else 1,
        "noise_seed": settings.seed,
        "bn": settings.bn,
        "model": model.hparams.variant,
        "checkpoint": str(source["path"]),
        "checkpoint_sha256": source["sha256"],
        "step": source["global_step"],
        **(extra or {}),
    }
    metrics = build_metrics(result, protocol)
    if provenance is not None:
        metrics["provenance"] = provenance
    with staged_outputs(out, METRICS) as tmp:  # all of them, or none (a killed run)
        paths = write_report(tmp, metrics, label)
        paths |= save_samples(tmp, model, datamodule.test_set, settings, grid_videos, grid_samples)
    paths = {key: out / path.name for key, path in paths.items()}
    log_to_loggers(loggers, metrics, paths, prefix="test")
    print_report(metrics, {"checkpoint": source["path"], **paths}, label)
    return metrics, paths
