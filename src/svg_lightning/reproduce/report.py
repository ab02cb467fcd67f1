"""The study's report folder: curves across seeds, the table (markdown and JSON), sample strips
of the three models on the same test videos, and report.md saying what they show."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import stats

from svg_lightning import runs
from svg_lightning.checkpoint import load_model
from svg_lightning.evaluate.report import BASELINES, best_samples, plot_curves
from svg_lightning.files import write_json
from svg_lightning.module import EvalSettings
from svg_lightning.reproduce.seeds import duration
from svg_lightning.reproduce.study import LABELS, SCORES, summarize_study
from svg_lightning.viz import save_sample_grid

DIGITS = {"ssim": 3, "psnr": 2}


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


def markdown_table(table: dict) -> str:
    """The models' best-of-N scores across seeds, next to the two baselines."""
    pr, windows = table["protocol"], table["windows"]
    head = ["predictor", "SSIM", "PSNR (dB)"]
    head += [f"SSIM, frames {a}-{b}" for a, b in windows.values()]
    head += [f"PSNR, frames {a}-{b}" for a, b in windows.values()]
    head += ["SSIM per seed", "PSNR per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table["models"].values():
        n = entry["num_samples"]
        name = f"{entry['label']}, best of {n}" if n > 1 else f"{entry['label']} (one prediction)"
        cells = [name, *(fmt(entry[s], s.split("_")[0]) for s in SCORES)]
        for score in SCORES:
            cells += [fmt(entry[f"{score}_{w}"], score.split("_")[0]) for w in windows]
        for score in SCORES:
            d = DIGITS[score.split("_")[0]]
            cells.append(", ".join(f"{v:.{d}f}" for v in entry[score]["per_seed"]))
        lines.append("| " + " | ".join(cells) + " |")
    for key, name in BASELINES.items():
        b = table["baselines"][key]
        empty = [""] * (len(head) - 3)
        lines.append("| " + " | ".join([name, fmt(b["ssim"], "ssim"), fmt(b["psnr"], "psnr"),
                                         *empty]) + " |")  # fmt: skip
    caption = (
        f"{pr['dataset']}, {pr['num_videos']} test videos, {pr['n_past']} -> {pr['n_future']} "
        f"frames (trained on {pr['n_past']} -> {pr['trained_n_future']}). Models: mean ± 95% CI "
        f"across seeds (Student t); baselines: mean ± 95% CI over videos (the same videos for "
        f"every run). Frames are numbered from the first conditioning frame, as on the plots."
    )
    return caption + "\n\n" + "\n".join(lines) + "\n"


def separation(disjoint: bool, one_seed: bool) -> str:
    if one_seed:
        return "one seed: no interval"
    return f"{'beyond' if disjoint else 'within'} the across-seed intervals"


def reading(table: dict) -> list[str]:
    """What the numbers say about the paper's claims, in sentences made from them."""
    out, models, order = [], table["models"], table["ordering"]
    for score in SCORES:
        metric = score.split("_")[0]
        name = "SSIM" if metric == "ssim" else "PSNR"
        means = ", ".join(f"{e['label']} {fmt(e[score], metric)}" for e in models.values())
        out.append(f"- {name}, best of N over all predicted frames: {means}.")
        if not order:
            continue
        o, d = order[score], DIGITS[metric] + 1
        holds = o["lp_ge_fp"] and o["fp_gt_det"]
        one_seed = math.isnan(models["svg_lp"][score]["ci95"])
        lp_fp = separation(o["lp_fp_intervals_disjoint"], one_seed)
        fp_det = separation(o["fp_det_intervals_disjoint"], one_seed)
        out.append(
            f"  The paper's ordering SVG-LP >= SVG-FP > deterministic "
            f"{'holds' if holds else 'does not hold'} on the means: LP - FP = "
            f"{o['lp_minus_fp']:+.{d}f} ({lp_fp}), FP - det = {o['fp_minus_det']:+.{d}f} "
            f"({fp_det})."
        )
        if "beyond" in table["windows"] and {"svg_lp", "deterministic"} <= set(models):
            gaps = {
                w: models["svg_lp"][f"{score}_{w}"]["mean"]
                - models["deterministic"][f"{score}_{w}"]["mean"]
                for w in table["windows"]
            }
            (a, b), (c, e) = table["windows"]["within"], table["windows"]["beyond"]
            trend = "wider" if gaps["beyond"] > gaps["within"] else "not wider"
            out.append(
                f"  SVG-LP - deterministic: {gaps['within']:+.{d}f} on frames {a}-{b} (the "
                f"training horizon), {gaps['beyond']:+.{d}f} on frames {c}-{e}: {trend} later, "
                "where more digits have bounced (the paper: the gap opens after collisions)."
            )
    for key, name in BASELINES.items():
        for score in SCORES:
            metric = score.split("_")[0]
            base = table["baselines"][key][metric]
            worse = [e["label"] for e in models.values() if e[score]["mean"] <= base["mean"]]
            if worse:
                out.append(
                    f"- On {metric.upper()}, the {name} ({fmt(base, metric)}) scores at least as "
                    f"well as {', '.join(worse)}."
                )
    return out


def still_learning(table: dict) -> list[str]:
    """Whether the validation scores still rose at the end of training: a choice made on the
    validation videos (issue: try longer training before concluding), never on the test set."""
    models = [e for e in table["models"].values() if "val_ssim_bestofN_gain" in e]
    if not models:
        return []
    (a, b), st = models[0]["val_steps"], table["setting"]
    gains = ", ".join(
        f"{e['label']} {e['val_ssim_bestofN_gain']['mean']:+.3f} (to "
        f"{fmt(e['val_ssim_bestofN'], 'ssim')})"
        for e in models
    )
    rising = all(e["val_ssim_bestofN_gain"]["mean"] > 0 for e in models)
    verdict = (
        "every model was still improving when training stopped: longer training is the first "
        "change to try"
        if rising
        else "not every model was still improving"
    )
    return [
        f"- Validation ({st['val_videos']} videos, best of {st['val_num_samples']}): SSIM "
        f"changed from step {a} to {b} by {gains}; {verdict}."
    ]


def setting_text(setting: dict) -> str:
    return (
        f"{setting['num_digits']} digit{'s' if setting['num_digits'] > 1 else ''} at "
        f"{setting['image_size']} x {setting['image_size']}, "
        f"{setting['backbone']} (nf {setting['nf']}, g {setting['g_dim']}, LSTMs of "
        f"{setting['rnn_size']}), {setting['max_steps']:,} steps of batch {setting['batch_size']}"
    )


def bounced(table: dict) -> str:
    """The share of test videos whose digit has bounced since the conditioning frames, at the
    end of each window."""
    p, col = table["protocol"]["n_past"], table["collisions"]
    at = [hi for _, hi in table["windows"].values()]
    shares = ", ".join(f"{100 * col[frame - p - 1]:.0f}% by frame {frame}" for frame in at)
    return (
        f"the share of test videos in which a digit has bounced since the last conditioning "
        f"frame (a velocity the conditioning frames cannot tell) is {shares}."
    )


def report_md(table: dict, figures: dict[str, str]) -> str:
    pr = table["protocol"]
    n_seeds = len(next(iter(table["models"].values()))["seeds"])
    walls = [w for e in table["models"].values() for w in e["wall_s"].values()]
    train_s, eval_s = (sum(w[k] for w in walls) for k in ("train", "eval"))
    return "\n".join(
        [
            "# SVG-LP vs SVG-FP vs deterministic (the paper's Figs. 7 and 8, at CPU scale)",
            "",
            f"Command: `{table['command']}`  ",
            f"Wall time of this invocation: {duration(table['wall_s'])}; the runs' own: "
            f"{duration(train_s)} training, {duration(eval_s)} scoring (a run finished by an "
            "earlier invocation counts there, not here).",
            "",
            markdown_table(table),
            f"![curves]({figures['curves']})",
            "",
            "Per predicted frame, the best-of-N score of each model: the mean over seeds of the "
            "runs' per-frame means, with a band of 95% CI across seeds (Student t); the "
            "baselines' bands are over videos.",
            "",
            f"![samples]({figures['strips']})",
            "",
            f"The first test videos, models of seed {table['strip_seed']}: ground truth "
            "(grey), then each model's best sample (by SSIM: the sample that was scored) and its"
            " first sample; conditioning frames green.",
            "",
            "## Reading",
            "",
            *reading(table),
            *still_learning(table),
            f"- Walls: {bounced(table)}",
            "",
            "## What this shows and what it does not",
            "",
            "- It compares the three models trained alike (same data, network, steps and seeds)"
            " and scored alike, with seed-to-seed spread measured rather than assumed.",
            f"- It is not the paper's setting: here {setting_text(table['setting'])}; the "
            "paper trains two digits at 64 x 64 with DCGAN-64 (nf 64, g 128, LSTMs of 256) for "
            "180,000 updates of batch 100. Absolute numbers are not comparable with the "
            "paper's or SRVP's tables.",
            "- Best of N favours models that sample: the deterministic model gets one try, the "
            f"stochastic ones {pr['num_samples']}. That is the paper's protocol, and the reason"
            " the deterministic model is the reference the others must beat.",
            "- SSIM on sparse digits is dominated by the black background; read the models next "
            "to the all-black and copy-last rows.",
            f"- {n_seeds} seeds give wide intervals (the t quantile for {n_seeds} seeds is "
            f"{stats.t.ppf(0.975, n_seeds - 1):.1f}, not 1.96): a difference inside them is "
            "not evidence either way."
            if n_seeds > 1
            else "- One seed: no interval across seeds, so no difference between models is "
            "shown to exceed the seed-to-seed spread.",
            "",
        ]
    )


def write_report(out: Path, found: dict, command: str, strip_videos: int, wall_s: float) -> dict:
    """Everything under ``out/report/``; returns the table written to table.json."""
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
    plot_curves(report / "curves.png", plotted(table), title)
    seed = table["strip_seed"] = min(next(iter(found.values())))
    folders = {m: Path(by_seed[seed]["folder"]) for m, by_seed in found.items()}
    save_strips(report / "samples.png", folders, dataset, pr, strip_videos)
    write_json(report / "table.json", table)
    (report / "table.md").write_text(markdown_table(table))
    figures = {"curves": "curves.png", "strips": "samples.png"}
    (report / "report.md").write_text(report_md(table, figures))
    return table
