"""The paper's comparison (Sec. 4.1, Figs. 7 and 8) at CPU scale: SVG-LP, SVG-FP and the
deterministic model trained on one setting with several seeds, every run scored under one
best-of-N protocol, and the numbers pooled across seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import open_dict
from scipy import stats

from svg_lightning import runs
from svg_lightning.callbacks import TrainingCurves
from svg_lightning.compose import compose_config
from svg_lightning.errors import ConfigError
from svg_lightning.evaluate import evaluate
from svg_lightning.metrics.best_of_n import BASELINES
from svg_lightning.reproduce.seeds import Done, Progress, once, train_seed

# model.variant -> the paper's name; conf/model option -> model.variant.
LABELS = {"lp": "SVG-LP", "fp": "SVG-FP", "deterministic": "deterministic"}
MODELS = {"svg_lp": "lp", "svg_fp": "fp", "deterministic": "deterministic"}
# The training setting, conf/experiment/reproduce_cpu.yaml; base/smmnist is the paper's.
EXPERIMENT = "reproduce_cpu"
TRAIN = ["logger=csv", "summary.enabled=false", "extras.print_config=false"]
# One protocol for every run: SM-MNIST's 5 -> 20 frames (eval.n_past/n_future default to the
# dataset's protocol, spec Sec. 6), so the horizon runs past the 10 training frames and past
# the walls; 256 fixed test videos; best of 20 samples.
EVAL = ["eval.num_videos=256", "eval.num_samples=20"]
SCORES = ("ssim_bestofN", "psnr_bestofN")
SEED_CI_RULE = (
    "across seeds: mean of the runs' scores and the half-width of its 95% confidence interval, "
    "t(0.975, n-1) * std / sqrt(n) over the n seeds (Student t: n is small)"
)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``eval.*`` overrides go to every evaluation, the others to every training run."""
    scoring = [o for o in overrides if o.startswith("eval.")]
    return [o for o in overrides if o not in scoring], scoring


def across_seeds(values: list[float]) -> dict:
    """Mean and 95% CI half-width (SEED_CI_RULE; NaN for one seed) of one score per seed."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": math.nan, "per_seed": values}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    ci = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "ci95": ci, "per_seed": values}


def evaluate_run(run: Path, overrides: list[str]) -> Done:
    """``python -m svg_lightning.evaluate`` of the run's last.ckpt into ``run/eval``."""
    out = run / "eval"

    def work() -> None:
        cfg = compose_config("eval", overrides)
        with open_dict(cfg):
            cfg.ckpt_path = str(runs.last_checkpoint(run))
            cfg.paths.output_dir = str(out)
        evaluate(cfg)

    return once(out, overrides, work)


def validation_history(run: Path) -> dict[str, list]:
    """Score -> [[step, value], ...] of the run's validations (the validation videos, never the
    test set), as its TrainingCurves callback kept them in last.ckpt; empty without it."""
    state = torch.load(runs.last_checkpoint(run), map_location="cpu", weights_only=True)
    kept = state.get("callbacks", {}).get(TrainingCurves.__qualname__)
    history = kept["history"] if kept else {}
    return {score: history.get(f"val/{score}", []) for score in SCORES}


def run_all(
    out: Path, seeds: list[int], models: list[str], overrides: list[str], experiment: str
) -> dict[str, dict[int, dict]]:
    """Train and score every (seed, model), seed by seed (so an interrupted study already holds
    whole seeds); returns model -> seed -> {"folder", "metrics", "validation", "train_s",
    "eval_s"}."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown models {unknown}; allowed: {list(MODELS)}")
    training, scoring = split_overrides(overrides)
    scoring = [*EVAL, *scoring]
    progress = Progress(len(seeds) * len(models))
    found: dict[str, dict[int, dict]] = {m: {} for m in models}
    for seed in seeds:
        for model in models:
            folder = out / "runs" / model / f"seed{seed}"
            progress.start(f"{LABELS[MODELS[model]]}, seed {seed}: train, then score ({folder})")
            settings = [f"+experiment={experiment}", f"model={model}", *TRAIN, *training]
            trained = train_seed(folder, settings, seed)
            scored = evaluate_run(folder, scoring)
            both = trained.wall_s + scored.wall_s
            progress.end(Done(folder, both, trained.reused and scored.reused))
            found[model][seed] = {
                "folder": str(folder),
                "metrics": json.loads((folder / "eval" / "metrics.json").read_text()),
                "validation": validation_history(folder),
                "train_s": trained.wall_s,
                "eval_s": scored.wall_s,
            }
    return found


def runs_agree(found: dict[str, dict[int, dict]]) -> dict:
    """The protocol of the first run; ConfigError if the runs were not all scored alike on the
    same test videos (the baselines' scores would differ)."""
    scored = [r["metrics"] for by_seed in found.values() for r in by_seed.values()]
    keys = ("dataset", "n_past", "n_future", "num_videos", "noise_seed", "bn")
    first = scored[0]
    for m in scored[1:]:
        same = all(m["protocol"][k] == first["protocol"][k] for k in keys) and all(
            m["summary"][f"{s}_{b}"] == first["summary"][f"{s}_{b}"]
            for s in ("ssim", "psnr")
            for b in BASELINES
        )
        if not same:
            raise ConfigError(
                f"the runs were not scored alike ({first['protocol']} vs {m['protocol']}); "
                "write the study to a fresh folder"
            )
    return first["protocol"]


def per_step_across_seeds(curves: list[dict]) -> dict:
    """The per-step curves {mean, ci95} of several runs -> the across-seed mean and CI per step."""
    steps = zip(*(c["mean"] for c in curves))
    pooled = [across_seeds(list(values)) for values in steps]
    return {"mean": [p["mean"] for p in pooled], "ci95": [p["ci95"] for p in pooled]}


def window(curve: list[float], lo: int, hi: int) -> float:
    """Mean over predicted frames lo..hi-1 of a per-step mean curve (every video is scored on
    every frame, so this is the mean over videos of their average over those frames)."""
    return sum(curve[lo:hi]) / (hi - lo)


def summarize_study(found: dict[str, dict[int, dict]], trained_future: int) -> dict:
    """The study's table: per model the across-seed mean and CI of each run's best-of-N score,
    over all predicted frames and over the frames within / beyond the training horizon
    (``trained_future``); the per-step curves across seeds; the baselines; the paper's ordering."""
    protocol = runs_agree(found)
    first = next(iter(next(iter(found.values())).values()))["metrics"]
    horizon = protocol["n_future"]
    windows = {"within": (0, min(trained_future, horizon)), "beyond": (trained_future, horizon)}
    models, curves = {}, {}
    for model, by_seed in found.items():
        seeds = sorted(by_seed)
        scored = [by_seed[s]["metrics"] for s in seeds]
        entry = {"label": LABELS[MODELS[model]], "seeds": seeds,
                 "num_samples": scored[0]["protocol"]["num_samples"]}  # fmt: skip
        curves[model] = {}
        for score in SCORES:
            entry[score] = across_seeds([m["summary"][score]["mean"] for m in scored])
            for name, (lo, hi) in windows.items():
                if hi > lo:
                    values = [window(m["curves"][score]["mean"], lo, hi) for m in scored]
                    entry[f"{score}_{name}"] = across_seeds(values)
            curves[model][score] = per_step_across_seeds([m["curves"][score] for m in scored])
            history = [by_seed[s]["validation"][score] for s in seeds]
            if all(len(h) >= 2 for h in history):  # the last validation, and its gain
                entry[f"val_{score}"] = across_seeds([h[-1][1] for h in history])
                entry[f"val_{score}_gain"] = across_seeds([h[-1][1] - h[-2][1] for h in history])
                entry["val_steps"] = history[0][-2][0], history[0][-1][0]
        entry["wall_s"] = {s: {"train": by_seed[s]["train_s"], "eval": by_seed[s]["eval_s"]}
                           for s in seeds}  # fmt: skip
        models[model] = entry
    baselines = {b: {s: first["summary"][f"{s}_{b}"] for s in ("ssim", "psnr")} for b in BASELINES}
    baseline_curves = {
        f"{s}_{b}": first["curves"][f"{s}_{b}"] for s in ("ssim", "psnr") for b in BASELINES
    }
    return {
        "protocol": {
            **protocol,
            "num_samples": max(m["num_samples"] for m in models.values()),
            "trained_n_future": trained_future,
            "seed_ci": SEED_CI_RULE,
        },
        # as frame numbers of the video (1-based, conditioning frames first), as on the plots
        "windows": {
            k: [protocol["n_past"] + lo + 1, protocol["n_past"] + hi]
            for k, (lo, hi) in windows.items()
            if hi > lo
        },
        "models": models,
        "baselines": baselines,
        "ordering": ordering(models),
        "curves": curves,
        "baseline_curves": baseline_curves,
    }


def ordering(models: dict) -> dict:
    """The paper's claim SVG-LP >= SVG-FP > deterministic, score by score: whether the means are
    so ordered, and whether the across-seed intervals of neighbours are disjoint."""
    if not set(MODELS) <= set(models):
        return {}
    out = {}
    for score in SCORES:
        lp, fp, det = (models[m][score] for m in MODELS)
        apart = lambda a, b: abs(a["mean"] - b["mean"]) > a["ci95"] + b["ci95"]  # NaN: False
        out[score] = {
            "lp_minus_fp": lp["mean"] - fp["mean"],
            "fp_minus_det": fp["mean"] - det["mean"],
            "lp_ge_fp": lp["mean"] >= fp["mean"],
            "fp_gt_det": fp["mean"] > det["mean"],
            "lp_fp_intervals_disjoint": apart(lp, fp),
            "fp_det_intervals_disjoint": apart(fp, det),
        }
    return out
