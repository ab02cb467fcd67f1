"""The README's quickstart numbers from real runs: ``python -m svg_lightning seed=S`` (the
default config) for several seeds, then ``python -m svg_lightning.analyze prior|trajectories``
and ``python -m svg_lightning.evaluate`` (SM-MNIST's own protocol) on the default seed's
checkpoint, written to docs/quickstart.md, docs/figures/ and, between their marker comments,
README.md. ``make docs-figures`` runs it:

    python -m tools.quickstart_docs [overrides] [--readme README.md] [--seeds 1234,1,2]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from datetime import date
from pathlib import Path
from textwrap import fill

from omegaconf import OmegaConf, open_dict

from svg_lightning import runs
from svg_lightning.analyze import analyze
from svg_lightning.compose import compose_config
from svg_lightning.errors import InputError
from svg_lightning.evaluate import evaluate
from svg_lightning.metrics.best_of_n import BASELINES
from svg_lightning.reproduce.command import default_out, seeds_arg
from svg_lightning.reproduce.report import fmt, md_table
from svg_lightning.reproduce.seeds import Progress, duration, train_seed
from svg_lightning.reproduce.study import LABELS
from svg_lightning.runner import returning_code
from tools.machine import describe, machine

SEEDS = (1234, 1, 2)
MARKERS = ("<!-- quickstart-numbers:start -->", "<!-- quickstart-numbers:end -->")
ANALYSIS_MARKERS = ("<!-- quickstart-analysis:start -->", "<!-- quickstart-analysis:end -->")
PROTOCOL_MARKERS = ("<!-- quickstart-protocol:start -->", "<!-- quickstart-protocol:end -->")
# The dataset's protocol (5 -> 20, best of 100) on the first 500 of its 5,000 test videos: the
# full set is about 10x longer on a 2-core CPU.
PROTOCOL_OVERRIDES = ("eval.num_videos=500",)
FIGURES = {"curves.png": "quickstart_curves.png", "samples.png": "quickstart_samples.png"}
# the analyses' plots: (command, file) -> docs/figures/ name
ANALYSIS_FIGURES = {
    ("prior", "prior_sigma.png"): "quickstart_prior_sigma.png",
    ("trajectories", "trajectories_hist.png"): "quickstart_trajectories.png",
}
COMMAND = "make docs-figures"
WIDTH = 100  # the README's line length


def clears(summary: dict, metric: str) -> bool:
    """Whether the best-of-N interval lies above both baselines' intervals."""
    best = summary[f"{metric}_bestofN"]
    low = best["mean"] - (best["ci95"] or 0.0)
    return all(
        low > summary[f"{metric}_{b}"]["mean"] + (summary[f"{metric}_{b}"]["ci95"] or 0.0)
        for b in BASELINES
    )


def seed_table(results: list[dict]) -> str:
    head = ["seed", "SSIM best of N", "PSNR best of N", "SSIM copy-last", "PSNR copy-last",
            "SSIM all-black", "PSNR all-black", "best of N clears both baselines (SSIM / PSNR)",
            "wall time"]  # fmt: skip
    rows = []
    for r in results:
        sm = r["metrics"]["summary"]
        cells = [str(r["seed"])]
        for key in ("bestofN", *BASELINES):
            cells += [fmt(sm[f"ssim_{key}"], "ssim"), fmt(sm[f"psnr_{key}"], "psnr")]
        cells.append(" / ".join("yes" if clears(sm, m) else "no" for m in ("ssim", "psnr")))
        cells.append(duration(r["wall_s"]))
        rows.append(cells)
    return md_table(head, rows)


def predictor_table(result: dict) -> str:
    """One run's scores next to the baselines, as the README shows them."""
    m = result["metrics"]
    sm, n = m["summary"], m["protocol"]["num_samples"]
    name = f"{LABELS[m['protocol']['model']]} quickstart"
    rows = {
        "bestofN": f"{name}, best of {n} (`bestofN`)",
        "meanofN": f"{name}, mean of {n} (`meanofN`)",
        "copy_last": "copy the last conditioning frame",
        "black": "all-black frame",
    }
    cells = [
        [label, fmt(sm[f"ssim_{k}"], "ssim"), fmt(sm[f"psnr_{k}"], "psnr")]
        for k, label in rows.items()
    ]
    return md_table(["predictor", "SSIM", "PSNR (dB)"], cells)


def protocol_text(result: dict) -> str:
    pr = result["metrics"]["protocol"]
    return (
        f"{pr['num_videos']} fixed test videos, {pr['n_past']} -> {pr['n_future']} frames, best "
        f"of N = {pr['num_samples']} samples (mean ± 95% CI over videos)"
    )


def training_text(result: dict) -> str:
    """What the run trained, from its config.yaml."""
    cfg = OmegaConf.load(Path(result["folder"]) / runs.CONFIG)
    size = cfg.data.image_size
    return (
        f"{LABELS[cfg.model.variant]} on {cfg.data.num_digits}-digit {size} x {size} "
        f"{result['metrics']['protocol']['dataset']}, {cfg.trainer.max_steps:,} steps, "
        f"validation every {cfg.trainer.val_check_interval} steps, then scoring"
    )


def readme_block(default: dict, others: list[dict], where: dict) -> str:
    seeds = " and ".join(str(r["seed"]) for r in others)
    plural = "s" if len(others) > 1 else ""
    also = f"; seed{plural} {seeds} in [docs/quickstart.md](docs/quickstart.md)" if others else ""
    text = (
        f"Measured by `{COMMAND}` on {date.today().isoformat()}, {describe(where)}: "
        f"{duration(default['wall_s'])} for the whole command ({training_text(default)}; "
        "Python's start-up included; wall time depends on the machine and its load). Held-out "
        f"scores on {protocol_text(default)}; seed {default['seed']}, the "
        f"default{also}:"
    )
    return fill(text, WIDTH) + "\n\n" + predictor_table(default)


def quickstart_md(results: list[dict], default: dict, where: dict, command: str) -> str:
    made = (
        f"Made by `{COMMAND}` (`{command}`) on {date.today().isoformat()}; {describe(where)}. "
        "Each run is `python -m svg_lightning seed=S`, the default config "
        f"({training_text(default)}), run as a command of its own and timed whole (start-up, "
        "training and scoring)."
    )
    scores = (
        f"Held-out scores on {protocol_text(default)}. *Clears* means the lower end of the "
        "best-of-N interval lies above the upper ends of both baselines' intervals."
    )
    return "\n".join(
        [
            "# The quickstart, seed by seed",
            "",
            fill(made, WIDTH, break_on_hyphens=False),
            "",
            fill(scores, WIDTH),
            "",
            seed_table(results),
            f"Seed {default['seed']} (the default):",
            "",
            f"![curves](figures/{FIGURES['curves.png']})",
            "",
            f"![samples](figures/{FIGURES['samples.png']})",
            "",
        ]
    )


def run_analyses(run: Path, out: Path, overrides: list[str] = ()) -> dict:
    """``python -m svg_lightning.analyze COMMAND ckpt_path=RUN/checkpoints/last.ckpt OVERRIDES``
    for ``prior`` and ``trajectories``, into ``out/COMMAND``: per command its JSON and wall time."""
    results = {}
    for command in ("prior", "trajectories"):
        cfg = compose_config("analyze", [f"command={command}", *overrides])
        with open_dict(cfg):  # set here, not as overrides: a path may hold any character
            cfg.ckpt_path = str(runs.last_checkpoint(run))
            cfg.paths.output_dir = str(out / command)
        start = time.perf_counter()
        paths = analyze(cfg)
        results[command] = {
            "doc": json.loads(paths["statistics"].read_text()),
            "wall_s": time.perf_counter() - start,
            "folder": out / command,
        }
    return results


def analysis_block(analyses: dict, default: dict) -> str:
    """The README's reading of both analyses of the default seed's checkpoint."""
    prior, traj = analyses["prior"], analyses["trajectories"]
    stats = prior["doc"]["statistics"]
    lags = list(stats["sigma"]["any"])
    label = lambda lag: f"lag {int(lag):+d}" if int(lag) else "lag 0"
    best = max(lags, key=lambda lag: stats["sigma"]["any"][lag]["auroc"])
    rows = {
        "prior sigma, AUROC": ("sigma", "auroc"),
        "prior sigma, point-biserial r": ("sigma", "point_biserial"),
        "KL, AUROC": ("kl", "auroc"),
    }
    cells = []
    for name, (score, key) in rows.items():
        values = [f"{stats[score]['any'][lag][key]:.3f}" for lag in lags]
        cells.append([name, *(f"**{v}**" if lag == best else v for v, lag in zip(values, lags))])
    table = md_table(["score", *map(label, lags)], cells)
    p = prior["doc"]["protocol"]
    at_zero = stats["sigma"]["any"]["0"]
    where = "exactly at" if best == "0" else f"at {label(best)}, not at"
    intro = (
        f"The quickstart's default seed ({default['seed']}; `make docs-figures` runs both "
        f"analyses on its checkpoint), on {p['num_test_videos']} test videos of {p['seq_len']} "
        f"frames ({duration(prior['wall_s'])}):"
    )
    reading = (
        f"The prior's sigma detects collisions best {where} the step whose frame first shows "
        f"the redrawn velocity (lag 0); {at_zero['peak_within_1']:.0%} of the collisions have a "
        f"sigma peak within one step (chance {at_zero['peak_within_1_chance']:.0%}). The "
        f"synchronised batch ({p['num_videos']} digits, one trajectory) gives the paper's Fig. 6:"
    )
    t, tp = traj["doc"]["summary"], traj["doc"]["protocol"]
    motion = (
        f"Motion in its samples (`trajectories`, {tp['num_videos']} digits x {tp['num_samples']} "
        f"samples against {tp['num_true']:,} generator continuations, "
        f"{duration(traj['wall_s'])}): mean Wasserstein-1 of (dx, dy) {t['w1']:.2f} px (floor "
        f"{t['w1_floor']:.2f}), total variation {t['tv']:.2f} (floor {t['tv_floor']:.2f}); "
        "0 would be the true distribution of motion, the floor is what two samples of it of "
        "this size differ by."
    )
    return "\n".join([
        fill(intro, WIDTH), "", table, fill(reading, WIDTH), "",
        f"![learned prior sigma](docs/figures/{ANALYSIS_FIGURES['prior', 'prior_sigma.png']})",
        "", fill(motion, WIDTH), "",
        "![displacement histograms](docs/figures/"
        f"{ANALYSIS_FIGURES['trajectories', 'trajectories_hist.png']})",
        "",
    ])  # fmt: skip


def run_protocol(run: Path, out: Path, overrides: list[str] = PROTOCOL_OVERRIDES) -> dict:
    """``python -m svg_lightning.evaluate ckpt_path=RUN/checkpoints/last.ckpt OVERRIDES`` into
    ``out``: its metrics document, command line and wall time."""
    cfg = compose_config("eval", list(overrides))
    with open_dict(cfg):
        cfg.ckpt_path = str(runs.last_checkpoint(run))
        cfg.paths.output_dir = str(out)
    # The figures are redone on every call, and evaluate refuses a folder holding a finished
    # evaluation: this folder is the docs tool's own, so its last scores make way.
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    metrics, _ = evaluate(cfg)
    command = " ".join(["python -m svg_lightning.evaluate ckpt_path=RUN/checkpoints/last.ckpt",
                        *overrides])  # fmt: skip
    return {"metrics": metrics, "command": command, "wall_s": time.perf_counter() - start}


def scores_text(summary: dict, key: str) -> str:
    return f"SSIM {fmt(summary[f'ssim_{key}'], 'ssim')}, PSNR {fmt(summary[f'psnr_{key}'], 'psnr')}"


def protocol_block(protocol: dict, default: dict) -> str:
    """The README's paragraph on the default seed's checkpoint under its dataset's protocol."""
    sm, pr = protocol["metrics"]["summary"], protocol["metrics"]["protocol"]
    cleared = [m.upper() for m in ("ssim", "psnr") if clears(sm, m)]
    verdict = {2: "on both metrics", 0: "on neither metric"}.get(len(cleared))
    verdict = verdict or f"on {cleared[0]} only"
    text = (
        f"The same checkpoint (seed {default['seed']}) under the dataset's own protocol, past the "
        f"training horizon: {pr['n_past']} -> {pr['n_future']} frames, best of "
        f"{pr['num_samples']} samples, the first {pr['num_videos']} test videos "
        f"(`{protocol['command']}`, run by `{COMMAND}`; {duration(protocol['wall_s'])} on "
        f"the same machine). Best sample: {scores_text(sm, 'bestofN')}; copy-last: "
        f"{scores_text(sm, 'copy_last')}; all-black: {scores_text(sm, 'black')} (mean ± 95% CI "
        f"over videos). Its best sample clears both baselines {verdict} (its "
        "interval above both of theirs)."
    )
    return fill(text, WIDTH, break_on_hyphens=False) + "\n"


def replace_between_markers(path: Path, text: str, markers: tuple[str, str] = MARKERS) -> None:
    content = path.read_text()
    start, end = (content.find(m) for m in markers)
    if start < 0 or end < start:
        raise InputError(f"{path} has no {markers[0]} ... {markers[1]} block to update")
    head = content[: start + len(markers[0])]
    path.write_text(f"{head}\n{text}{content[end:]}")


def quickstart_docs(
    out: Path,
    docs: Path,
    readme: Path | None = None,
    seeds: list[int] = SEEDS,
    overrides: list[str] = (),
    command: str = "",
    analysis_overrides: list[str] = (),
    protocol_overrides: list[str] = PROTOCOL_OVERRIDES,
) -> list[dict]:
    """Train ``python -m svg_lightning OVERRIDES seed=S`` for each seed under ``out/`` (a rerun
    reuses finished runs), analyse the default seed's checkpoint (``analysis_overrides``) and
    score it under its dataset's protocol (``protocol_overrides``), then write
    ``docs/quickstart.md`` and the figures, and update ``readme``'s marked blocks. Returns per
    seed its folder, wall time and metrics.json."""
    for markers in (MARKERS, ANALYSIS_MARKERS, PROTOCOL_MARKERS):
        if readme is not None and markers[0] not in readme.read_text():
            raise InputError(f"{readme} has no {markers[0]} ... {markers[1]} block to update")
    where = machine()
    progress = Progress(len(seeds))
    results = []
    for seed in seeds:
        folder = Path(out) / f"seed{seed}"
        progress.start(f"quickstart, seed {seed} ({folder})")
        done = train_seed(folder, list(overrides), seed, fresh_process=True)
        progress.end(done)
        metrics = json.loads((folder / "metrics.json").read_text())
        results.append({"seed": seed, "folder": str(folder), "wall_s": done.wall_s,
                        "metrics": metrics})  # fmt: skip
    default_seed = compose_config("train", list(overrides)).seed
    default = next((r for r in results if r["seed"] == default_seed), results[0])
    figures = Path(docs) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name, target in FIGURES.items():
        shutil.copyfile(Path(default["folder"]) / name, figures / target)
    print(f"analyses of seed {default['seed']}'s checkpoint", flush=True)
    analyses = run_analyses(Path(default["folder"]), Path(out) / "analyses", analysis_overrides)
    for (name, file), target in ANALYSIS_FIGURES.items():
        shutil.copyfile(analyses[name]["folder"] / file, figures / target)
    print(f"seed {default['seed']}'s checkpoint under the dataset's protocol", flush=True)
    protocol = run_protocol(Path(default["folder"]), Path(out) / "protocol", protocol_overrides)
    (Path(docs) / "quickstart.md").write_text(quickstart_md(results, default, where, command))
    if readme is not None:
        others = [r for r in results if r is not default]
        replace_between_markers(readme, readme_block(default, others, where))
        replace_between_markers(readme, analysis_block(analyses, default), ANALYSIS_MARKERS)
        replace_between_markers(readme, protocol_block(protocol, default), PROTOCOL_MARKERS)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tools.quickstart_docs",
        description="The quickstart (python -m svg_lightning) for several seeds: writes "
        "DOCS/quickstart.md (the seeds' table, wall times, machine), copies the default seed's "
        "curves and samples into DOCS/figures/, analyses the default seed's checkpoint (prior, "
        "trajectories) and scores it under the dataset's protocol (500 test videos) and, with "
        "--readme, rewrites the README's marked quickstart blocks. Resumable: finished runs "
        "are reused.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of every run (none: the quickstart itself)")  # fmt: skip
    # logs/ under SVG_ROOT or the current folder, as the training runs (conf/paths/default.yaml)
    parser.add_argument("--out", type=Path, default=default_out("docs_figures"),
                        help="the runs' folder (default: logs/docs_figures)")  # fmt: skip
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--readme", type=Path, default=None,
                        help="README.md whose quickstart block to update")  # fmt: skip
    parser.add_argument("--seeds", type=seeds_arg, default=list(SEEDS),
                        help=f"default: {','.join(map(str, SEEDS))}")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    command = shlex.join(["python", "-m", "tools.quickstart_docs", *argv])
    return returning_code(
        quickstart_docs, args.out, args.docs, args.readme, args.seeds, args.overrides, command
    )[0]


if __name__ == "__main__":
    raise SystemExit(main())
