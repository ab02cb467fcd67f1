"""The study's results in its report folder: curves across seeds, the table (markdown and JSON)
and sample strips of the three models on the same test videos. report.md, what they show in
words, is the repository's docs tooling, written from table.json (tools/reproduction_report.py,
run by ``make reproduce``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from svg_lightning import runs
from svg_lightning.checkpoint import load_model
from svg_lightning.evaluate.report import BASELINE_LABELS, best_samples, plot_curves
from svg_lightning.files import write_json
from svg_lightning.metrics.best_of_n import EvalSettings
from svg_lightning.reproduce.study import LABELS, SCORES, summarize_study
from svg_lightning.viz import save_sample_grid

DIGITS = {"ssim": 3, "psnr": 2}
FIGURES = {"curves": "curves.png", "strips": "samples.png"}  # in the report folder


def test_set(run: Path, protocol: dict):
    """The test videos a run was scored on, with each video's wall collisions (the DataModule
    of its training config, with the evaluation's lengths and count, as ``evaluate`` builds it)."""
    data = OmegaConf.merge(
        runs.training_config(runs.last_checkpoint(run)).data,
        {
            "n_past": protocol["n_past"],
            "n_future": protocol["n_future"],
            "test_videos": protocol["num_videos"],
            "test_seq_len": protocol["n_past"] + protocol["n_future"],
        },
    )
    datamodule = instantiate(data)
    datamodule.setup("test")
    return datamodule.test_set


def collided_by_frame(dataset, n_past: int, n_future: int) -> list[float]:
    """Per predicted frame, the fraction of videos in which a digit has hit a wall since the
    last conditioning frame. A velocity redrawn at frame j moves the digit from frame j + 1 on,
    so predicted frame t (0-based index p + k) depends on the redraws of frames p-1 .. t-1: the
    bounces the conditioning frames cannot tell (spec Sec. 4)."""
    hits = torch.stack([dataset[i]["collisions"].any(-1) for i in range(len(dataset))])
    since = hits[:, n_past - 1 : n_past + n_future - 1].cummax(1).values
    return since.float().mean(0).tolist()


@torch.no_grad()
def save_strips(path: Path, folders: dict[str, Path], dataset, protocol: dict, videos: int):
    """Per test video: the ground truth, then for each model its best sample (by SSIM, as
    scored: the evaluation's own noise) and its first sample; the deterministic model's one
    prediction."""
    p, f = protocol["n_past"], protocol["n_future"]
    settings = EvalSettings(p, f, protocol["num_samples"], seed=protocol["noise_seed"])
    rows, labels = [], []
    for folder in folders.values():
        net = load_model(runs.last_checkpoint(folder))
        cond, target, drawn, best = best_samples(net, dataset, settings, videos)
        rows.append(best[:, None])
        label = LABELS[net.hparams.variant]
        if net.svg.stochastic:
            labels.append(f"{label}, best of {drawn.shape[1]}")
            rows.append(drawn[:, :1])
            labels.append(f"{label}, sample 1")
        else:
            labels.append(label)
    return save_sample_grid(path, cond, target, torch.cat(rows, dim=1), labels)


def plotted(table: dict) -> dict[str, dict]:
    """Each model as a metrics document for ``plot_curves``: its across-seed curves, and the
    baselines (the same videos for every run)."""
    protocol = table["protocol"]
    return {
        table["models"][m]["label"]: {
            "protocol": protocol,
            "curves": {**table["curves"][m], **table["baseline_curves"]},
        }
        for m in table["models"]
    }


def fmt(score: dict, metric: str) -> str:
    """``mean ± ci`` at the metric's precision; a missing CI (one seed or video) is n/a."""
    d = DIGITS[metric]
    missing = score["ci95"] is None or math.isnan(score["ci95"])
    ci = "n/a" if missing else f"{score['ci95']:.{d}f}"
    return f"{score['mean']:.{d}f} ± {ci}"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the header, its rule, one line per row of cells."""
    line = lambda cells: "| " + " | ".join(cells) + " |"
    return "\n".join([line(head), "|" + "---|" * len(head), *map(line, rows)]) + "\n"


def markdown_table(table: dict) -> str:
    """The models' best-of-N scores across seeds, next to the two baselines."""
    pr, windows = table["protocol"], table["windows"]
    head = ["predictor", "SSIM", "PSNR (dB)"]
    head += [f"SSIM, frames {a}-{b}" for a, b in windows.values()]
    head += [f"PSNR, frames {a}-{b}" for a, b in windows.values()]
    head += ["SSIM per seed", "PSNR per seed"]
    rows = []
    for entry in table["models"].values():
        n = entry["num_samples"]
        name = f"{entry['label']}, best of {n}" if n > 1 else f"{entry['label']} (one prediction)"
        cells = [name, *(fmt(entry[s], s.split("_")[0]) for s in SCORES)]
        for score in SCORES:
            cells += [fmt(entry[f"{score}_{w}"], score.split("_")[0]) for w in windows]
        for score in SCORES:
            d = DIGITS[score.split("_")[0]]
            cells.append(", ".join(f"{v:.{d}f}" for v in entry[score]["per_seed"]))
        rows.append(cells)
    for key, name in BASELINE_LABELS.items():
        b = table["baselines"][key]
        empty = [""] * (len(head) - 3)
        rows.append([name, fmt(b["ssim"], "ssim"), fmt(b["psnr"], "psnr"), *empty])
    caption = (
        f"{pr['dataset']}, {pr['num_videos']} test videos, {pr['n_past']} -> {pr['n_future']} "
        f"frames (trained on {pr['n_past']} -> {pr['trained_n_future']}). Models: mean ± 95% CI "
        f"across seeds (Student t); baselines: mean ± 95% CI over videos (the same videos for "
        f"every run). Frames are numbered from the first conditioning frame, as on the plots."
    )
    return caption + "\n\n" + md_table(head, rows)


def write_results(out: Path, found: dict, command: str, strip_videos: int, wall_s: float) -> dict:
    """The study's table (table.json, table.md) and figures under ``out/report/``; returns the
    table written to table.json."""
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    first = next(iter(next(iter(found.values())).values()))
    trained = OmegaConf.load(Path(first["folder"]) / runs.CONFIG)
    table = summarize_study(found, int(trained.n_future))
    pr = table["protocol"]
    dataset = test_set(Path(first["folder"]), pr)
    table |= {
        "setting": {
            "num_digits": trained.data.num_digits,
            "image_size": trained.data.image_size,
            "batch_size": trained.data.batch_size,
            "max_steps": trained.trainer.max_steps,
            "val_videos": trained.data.val_videos,
            "val_num_samples": trained.model.val_num_samples,
            **{
                k: trained.model[k]
                for k in ("backbone", "nf", "g_dim", "z_dim", "rnn_size", "beta", "lr")
            },
        },
        "command": command,
        "wall_s": wall_s,
        "collisions": collided_by_frame(dataset, pr["n_past"], pr["n_future"]),
    }
    title = (
        f"{pr['dataset']}, {pr['n_past']} -> {pr['n_future']} frames, {pr['num_videos']} videos,"
        f" best of {pr['num_samples']}; mean and 95% CI across seeds"
    )
    plot_curves(report / FIGURES["curves"], plotted(table), title)
    seed = table["strip_seed"] = min(next(iter(found.values())))
    folders = {m: Path(by_seed[seed]["folder"]) for m, by_seed in found.items()}
    save_strips(report / FIGURES["strips"], folders, dataset, pr, strip_videos)
    write_json(report / "table.json", table)
    (report / "table.md").write_text(markdown_table(table))
    return table
