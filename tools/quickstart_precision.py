"""Whether the quickstart should train in bf16-mixed, decided by measurement: the quickstart
(``python -m svg_lightning OVERRIDES seed=S``) in ``trainer.precision=32-true`` and in
``bf16-mixed`` for each seed, each run a command of its own timed whole (start-up, training and
the held-out summary), then the rule of the issue:

* same scores: for SSIM and for PSNR best of N, the across-seed 95% intervals of the two
  precisions overlap (the held-out summary scores in float32 either way, so only training
  differs);
* fast enough: the sum of the float32 runs' wall times over the sum of the bf16 runs' is at
  least 1.3.

Both hold: the quickstart uses bf16-mixed on CPUs that compute bf16 natively and float32
elsewhere; else it stays float32 and the table says why. On a host without native bf16 bf16 is
emulated (many times slower), so its timing says nothing of a native host: the verdict then
holds for that host only.

The runs alternate per seed, ABBA: the first seed float32 then bf16, the next bf16 then float32,
and so on, so that a drift of the machine's load or clock weighs on both precisions alike.
Writes OUT/precision.md and OUT/precision.json; finished runs are reused by a rerun:

    python -m tools.quickstart_precision [--seeds 1234,1,2] [--out DIR] [overrides]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import date
from pathlib import Path
from textwrap import fill

from svg_lightning import runs
from svg_lightning.devices import native_bf16
from svg_lightning.errors import ConfigError
from svg_lightning.files import write_json
from svg_lightning.reproduce.command import default_out, seeds_arg
from svg_lightning.reproduce.report import fmt, md_table
from svg_lightning.reproduce.seeds import Done, Progress, duration, train_seed
from svg_lightning.reproduce.study import SEED_CI_RULE, across_seeds, runs_agree
from svg_lightning.runner import returning_code
from tools.machine import describe, machine
from tools.quickstart_docs import SEEDS, WIDTH, protocol_text, training_text

FP32, BF16 = "32-true", "bf16-mixed"
PRECISIONS = (FP32, BF16)
METRICS = ("ssim", "psnr")
FAST_ENOUGH = 1.3  # float32 wall time over bf16's, end to end
COMMAND = "make quickstart-precision"


def order(index: int) -> tuple[str, ...]:
    """The precisions of the ``index``-th seed, in the order they run (ABBA)."""
    return PRECISIONS if index % 2 == 0 else PRECISIONS[::-1]


def run_one(out: Path, overrides: list[str], seed: int, precision: str) -> dict:
    """One quickstart run (reused if finished): its wall time, held-out scores and run_info."""
    folder = Path(out) / precision / f"seed{seed}"
    done = train_seed(folder, [*overrides, f"trainer.precision={precision}"], seed,
                      fresh_process=True)  # fmt: skip
    metrics = json.loads((folder / "metrics.json").read_text())  # the held-out summary's
    info = runs.read_run_info(folder)
    if info.get("precision") != precision:
        raise ConfigError(f"{folder} ran in {info.get('precision')!r}, not {precision!r}")
    return {
        "precision": precision,
        "seed": seed,
        "folder": str(folder),
        "wall_s": done.wall_s,
        "reused": done.reused,
        "metrics": {"protocol": metrics["protocol"], "summary": metrics["summary"]},
        "run_info": info,
    }


def run_all(out: Path, seeds: list[int], overrides: list[str]) -> dict[str, dict[int, dict]]:
    """precision -> seed -> run_one's record, the runs in ``order``."""
    progress = Progress(len(seeds) * len(PRECISIONS))
    found: dict[str, dict[int, dict]] = {p: {} for p in PRECISIONS}
    for index, seed in enumerate(seeds):
        for precision in order(index):
            progress.start(f"quickstart, {precision}, seed {seed}")
            r = found[precision][seed] = run_one(out, overrides, seed, precision)
            progress.end(Done(Path(r["folder"]), r["wall_s"], r["reused"]))
    return found


def overlap(a: dict, b: dict) -> bool:
    """Whether two ``{mean, ci95}`` intervals overlap; never with a missing CI (one seed)."""
    return abs(a["mean"] - b["mean"]) <= a["ci95"] + b["ci95"]  # NaN compares False


def score(run: dict, metric: str) -> float:
    return run["metrics"]["summary"][f"{metric}_bestofN"]["mean"]


def decide(fp32_runs: list[dict], bf16_runs: list[dict]) -> dict:
    """The issue's rule on the runs of both precisions (each with ``seed``, ``wall_s`` and
    ``metrics.summary.{ssim,psnr}_bestofN.mean``, the same seeds on both sides)."""
    by_seed = {r["seed"]: r for r in bf16_runs}
    if sorted(by_seed) != sorted(r["seed"] for r in fp32_runs):
        raise ConfigError("both precisions need the same seeds")
    scores = {}
    for metric in METRICS:
        fp32 = across_seeds([score(r, metric) for r in fp32_runs])
        bf16 = across_seeds([score(by_seed[r["seed"]], metric) for r in fp32_runs])
        scores[metric] = {FP32: fp32, BF16: bf16, "overlap": overlap(fp32, bf16)}
    per_seed = {r["seed"]: r["wall_s"] / by_seed[r["seed"]]["wall_s"] for r in fp32_runs}
    total = sum(r["wall_s"] for r in fp32_runs) / sum(r["wall_s"] for r in bf16_runs)
    same = all(scores[m]["overlap"] for m in METRICS)
    fast = total >= FAST_ENOUGH
    return {
        "scores": scores,
        "same_scores": same,
        "speedup": {"total": total, "per_seed": per_seed, "threshold": FAST_ENOUGH},
        "fast_enough": fast,
        "use_bf16": same and fast,
    }


def verdict_text(decision: dict, native: bool) -> str:
    """Both conditions with their numbers, the verdict, and how far this host's timing counts."""
    lines = []
    for metric in METRICS:
        s = decision["scores"][metric]
        both = f"{fmt(s[FP32], metric)} in float32, {fmt(s[BF16], metric)} in bf16-mixed"
        lines.append(f"{metric.upper()} {both}: the intervals "
                     f"{'overlap' if s['overlap'] else 'do not overlap'}")  # fmt: skip
    sp = decision["speedup"]
    per_seed = ", ".join(f"seed {s}: {r:.2f}x" for s, r in sp["per_seed"].items())
    same = "yes" if decision["same_scores"] else "no"
    fast = "yes" if decision["fast_enough"] else "no"
    text = [
        f"- Same scores: {same}. " + "; ".join(lines) + ".",
        f"- Fast enough: {fast}. float32 / bf16-mixed wall time {sp['total']:.2f}x end to end "
        f"({per_seed}); the rule asks >= {sp['threshold']}x.",
    ]
    if decision["use_bf16"]:
        text.append("- Verdict: the quickstart uses `trainer.precision=bf16-mixed` on CPUs "
                    "with native bf16, float32 elsewhere.")  # fmt: skip
    else:
        failed = [n for n, ok in (("same scores", decision["same_scores"]),
                                  ("fast enough", decision["fast_enough"])) if not ok]  # fmt: skip
        text.append(f"- Verdict: the quickstart stays float32 (not {' and not '.join(failed)}).")
    if native:
        text.append("- This host computes bf16 natively: the timing is the one the rule means.")
    else:
        text.append("- This host does not compute bf16 natively (bf16 is emulated): the timing "
                    "is not meaningful for a native-bf16 CPU, and the verdict holds for this "
                    "host only.")  # fmt: skip
    bullets = [fill(t, WIDTH, subsequent_indent="  ", break_on_hyphens=False) for t in text]
    return "\n".join(bullets) + "\n"


def runs_table(found: dict[str, dict[int, dict]]) -> str:
    head = ["precision", "seed", "SSIM best of N", "PSNR best of N", "wall time",
            "precision that ran", "native bf16"]  # fmt: skip
    rows = []
    for precision, by_seed in found.items():
        for seed, r in by_seed.items():
            sm, info = r["metrics"]["summary"], r["run_info"]
            native = "yes" if info.get("native_bf16") else "no"
            rows.append([precision, str(seed), fmt(sm["ssim_bestofN"], "ssim"),
                         fmt(sm["psnr_bestofN"], "psnr"), duration(r["wall_s"]),
                         info.get("precision", "?"), native])  # fmt: skip
    return md_table(head, rows)


def seeds_table(found: dict[str, dict[int, dict]], decision: dict) -> str:
    head = ["precision", "SSIM across seeds", "PSNR across seeds", "total wall time"]
    s = decision["scores"]
    rows = [[precision, fmt(s["ssim"][precision], "ssim"), fmt(s["psnr"][precision], "psnr"),
             duration(sum(r["wall_s"] for r in by_seed.values()))]
            for precision, by_seed in found.items()]  # fmt: skip
    return md_table(head, rows)


def speed_table(found: dict[str, dict[int, dict]], decision: dict) -> str:
    """Wall time per seed in both precisions and their ratio, and the same over all seeds."""
    head = ["seed", "float32", "bf16-mixed", "float32 / bf16-mixed"]
    sp = decision["speedup"]
    rows = [[str(seed), *(duration(found[p][seed]["wall_s"]) for p in PRECISIONS), f"{ratio:.2f}x"]
            for seed, ratio in sp["per_seed"].items()]  # fmt: skip
    totals = [duration(sum(r["wall_s"] for r in found[p].values())) for p in PRECISIONS]
    rows.append(["all", *totals, f"{sp['total']:.2f}x"])
    return md_table(head, rows)


def host_native(found: dict[str, dict[int, dict]]) -> bool:
    """Native bf16 here, and where every run recorded it ran (a reused run may be another's)."""
    recorded = [r["run_info"].get("native_bf16") for by in found.values() for r in by.values()]
    return native_bf16() and all(recorded)


def precision_md(found: dict, decision: dict, native: bool, where: dict, command: str) -> str:
    first = next(iter(found[FP32].values()))
    made = (
        f"Made by `{COMMAND}` (`{command}`) on {date.today().isoformat()}; {describe(where)}; "
        f"native bf16: {'yes' if native else 'no'}. Each run is the quickstart "
        f"({training_text(first)}) with `trainer.precision=P seed=S`, run as a command of its "
        "own and timed whole; seeds alternate ABBA. Held-out scores (in float32 for both) on "
        f"{protocol_text(first)}; {SEED_CI_RULE}."
    )
    return "\n".join([
        "# The quickstart in float32 and in bf16-mixed", "",
        fill(made, WIDTH, break_on_hyphens=False), "",
        runs_table(found), seeds_table(found, decision), speed_table(found, decision),
        verdict_text(decision, native),
    ])  # fmt: skip


def quickstart_precision(
    out: Path, seeds: list[int] = SEEDS, overrides: list[str] = (), command: str = ""
) -> dict:
    """Run (or reuse) both precisions for every seed under ``out``, then write and print
    ``out/precision.md`` and ``out/precision.json``; returns the JSON's document."""
    if any(o.lstrip("+~").startswith("trainer.precision=") for o in overrides):
        raise ConfigError("the command sets trainer.precision itself; leave it out of overrides")
    where = machine()  # before the runs: the load they meet
    found = run_all(Path(out), list(seeds), list(overrides))
    runs_agree(found)  # the same test videos and protocol on both sides
    decision = decide(list(found[FP32].values()), list(found[BF16].values()))
    native = host_native(found)
    md = precision_md(found, decision, native, where, command)
    (Path(out) / "precision.md").write_text(md)
    doc = {"command": command, "machine": where, "native_bf16": native, "decision": decision,
           "runs": found}  # fmt: skip
    write_json(Path(out) / "precision.json", doc)
    print(md, flush=True)
    return doc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tools.quickstart_precision",
        description="The quickstart (python -m svg_lightning) in trainer.precision=32-true and "
        "bf16-mixed for every seed, each run timed whole, then the decision: bf16-mixed "
        f"becomes the quickstart's on native-bf16 CPUs if its scores match float32's "
        f"(across-seed 95% intervals overlap, SSIM and PSNR) and it is >= {FAST_ENOUGH}x "
        "faster end to end. Writes OUT/precision.md and OUT/precision.json. Resumable: "
        "finished runs are reused.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of every run (none: the quickstart itself)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=default_out("quickstart_precision"),
                        help="the runs' folder (default: logs/quickstart_precision)")  # fmt: skip
    parser.add_argument("--seeds", type=seeds_arg, default=list(SEEDS),
                        help=f"default: {','.join(map(str, SEEDS))}")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    command = shlex.join(["python", "-m", "tools.quickstart_precision", *argv])
    code, _ = returning_code(quickstart_precision, args.out, args.seeds, args.overrides, command)
    if code == 0:
        print(f"table: {args.out / 'precision.md'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
