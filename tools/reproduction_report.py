"""report.md of a finished comparison study (``python -m svg_lightning.reproduce``): what its
table says about the paper's claims (Sec. 4.1, Figs. 7 and 8), in sentences made from the
numbers of OUT/report/table.json, next to the curves and sample strips. ``make reproduce`` runs
it after the study:

    python -m tools.reproduction_report [--out logs/reproduce]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy import stats

from svg_lightning.errors import InputError
from svg_lightning.evaluate.report import BASELINE_LABELS
from svg_lightning.reproduce.command import default_out
from svg_lightning.reproduce.report import DIGITS, FIGURES, fmt, markdown_table
from svg_lightning.reproduce.seeds import duration
from svg_lightning.reproduce.study import SCORES
from svg_lightning.runner import returning_code


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
        one_seed = len(models["svg_lp"]["seeds"]) < 2
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
    for key, name in BASELINE_LABELS.items():
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
    validation videos, never on the test set."""
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


def write_report_md(report: Path) -> Path:
    """``report/report.md`` from ``report/table.json`` (the study's report folder)."""
    found = report / "table.json"
    if not found.is_file():
        raise InputError(
            f"{found} is missing: run the study first (python -m svg_lightning.reproduce)"
        )
    path = report / "report.md"
    path.write_text(report_md(json.loads(found.read_text()), FIGURES))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.reproduction_report",
        description="Write OUT/report/report.md, the reading of a finished comparison study "
        "(python -m svg_lightning.reproduce), from its OUT/report/table.json.",
    )
    # the same default as ``python -m svg_lightning.reproduce --out``
    parser.add_argument("--out", type=Path, default=default_out("reproduce"),
                        help="the study's folder (default: logs/reproduce)")  # fmt: skip
    args = parser.parse_args(argv)
    code, written = returning_code(write_report_md, args.out / "report")
    if code == 0:
        print(f"report: {written}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
