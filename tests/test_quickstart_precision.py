"""The quickstart's precision decision (tools/quickstart_precision.py): the rule on made-up
numbers, each of its two conditions able to fail, and the whole command on tiny settings."""

import json

import pytest

from svg_lightning.errors import ConfigError
from svg_lightning.reproduce.study import across_seeds
from tests.helpers import TINY
from tools.quickstart_precision import BF16, FP32, decide, main, order, verdict_text


def run(seed: int, wall_s: float, ssim: float, psnr: float) -> dict:
    """A run record as run_one makes it, with only what decide reads."""
    summary = {"ssim_bestofN": {"mean": ssim}, "psnr_bestofN": {"mean": psnr}}
    return {"seed": seed, "wall_s": wall_s, "metrics": {"summary": summary}}


def runs(walls: list[float], ssims: list[float], psnrs: list[float]) -> list[dict]:
    return [run(s, *values) for s, values in zip((1234, 1, 2), zip(walls, ssims, psnrs))]


FP32_RUNS = runs([300, 310, 290], [0.70, 0.71, 0.72], [19.0, 19.2, 19.4])
SAME_SSIM, SAME_PSNR = [0.69, 0.70, 0.71], [18.9, 19.1, 19.3]  # shifted less than the CIs


def test_same_scores_and_fast_enough_use_bf16():
    bf16 = runs([200, 200, 200], SAME_SSIM, SAME_PSNR)
    d = decide(FP32_RUNS, bf16)
    assert d["same_scores"] and d["fast_enough"] and d["use_bf16"]
    assert d["speedup"]["total"] == pytest.approx(900 / 600)
    assert d["speedup"]["per_seed"] == pytest.approx({1234: 1.5, 1: 1.55, 2: 1.45})
    assert d["scores"]["ssim"][FP32] == across_seeds([0.70, 0.71, 0.72])
    assert d["scores"]["psnr"][BF16] == across_seeds(SAME_PSNR)


def test_too_slow_fails_on_speed_alone():
    d = decide(FP32_RUNS, runs([240, 240, 240], SAME_SSIM, SAME_PSNR))  # 1.25x
    assert d["same_scores"] and not d["fast_enough"] and not d["use_bf16"]
    # the ratio of the sums (1.18x), not the mean of the per-seed ratios (1.3x)
    lopsided = decide(FP32_RUNS, runs([300, 310, 290 / 1.9], SAME_SSIM, SAME_PSNR))
    assert not lopsided["fast_enough"]
    at_threshold = decide(
        runs([130] * 3, SAME_SSIM, SAME_PSNR), runs([100] * 3, SAME_SSIM, SAME_PSNR)
    )
    assert at_threshold["speedup"]["total"] == 1.3 and at_threshold["fast_enough"]


@pytest.mark.parametrize("metric", ["ssim", "psnr"])
def test_scores_apart_on_either_metric_fail(metric):
    ssim = [0.60, 0.61, 0.62] if metric == "ssim" else SAME_SSIM
    psnr = [17.0, 17.2, 17.4] if metric == "psnr" else SAME_PSNR
    d = decide(FP32_RUNS, runs([100, 100, 100], ssim, psnr))
    assert d["fast_enough"] and not d["same_scores"] and not d["use_bf16"]
    other = "psnr" if metric == "ssim" else "ssim"
    assert not d["scores"][metric]["overlap"] and d["scores"][other]["overlap"]


def test_one_seed_has_no_interval_so_no_same_scores():
    d = decide(FP32_RUNS[:1], runs([100], [0.70], [19.0])[:1])
    assert not d["same_scores"] and d["fast_enough"]


def test_the_seeds_must_match():
    with pytest.raises(ConfigError, match="same seeds"):
        decide(FP32_RUNS, FP32_RUNS[:2])


def test_verdict_states_both_conditions_and_the_host():
    d = decide(FP32_RUNS, runs([240, 240, 240], SAME_SSIM, SAME_PSNR))
    text = " ".join(verdict_text(d, native=False).split())
    assert "Same scores: yes" in text and "Fast enough: no" in text and "1.25x" in text
    assert "stays float32 (not fast enough)" in text and "this host only" in text
    s = d["scores"]["ssim"]
    assert f"{s[FP32]['mean']:.3f} ± {s[FP32]['ci95']:.3f} in float32" in text
    good = verdict_text(decide(FP32_RUNS, runs([200] * 3, SAME_SSIM, SAME_PSNR)), native=True)
    assert "uses `trainer.precision=bf16-mixed`" in good and "natively" in good


def test_the_runs_alternate_abba():
    assert [order(i) for i in range(3)] == [(FP32, BF16), (BF16, FP32), (FP32, BF16)]


def test_the_precision_is_not_an_override(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "trainer.precision=bf16-mixed"]) != 0
    assert "sets trainer.precision itself" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_command_writes_table_and_verdict(tmp_path, capsys):
    out = tmp_path / "precision"
    assert main(["--out", str(out), "--seeds", "1234,1", *TINY]) == 0
    md = (out / "precision.md").read_text()
    doc = json.loads((out / "precision.json").read_text())
    for precision in (FP32, BF16):
        assert f"| {precision} | 1234 |" in md and f"| {precision} | 1 |" in md
        for seed in ("1234", "1"):
            info = doc["runs"][precision][seed]["run_info"]
            assert info["precision"] == precision
    assert "Same scores:" in md and "Fast enough:" in md and "Verdict:" in md
    assert "CPU cores" in md and "native bf16" in md
    assert set(doc["decision"]) >= {"same_scores", "fast_enough", "use_bf16"}
    printed = capsys.readouterr().out
    assert "Verdict:" in printed and "precision.md" in printed
    # ABBA: seed 1234 float32 first, seed 1 bf16 first
    starts = [
        line for line in printed.splitlines() if line.startswith("[") and "quickstart" in line
    ]
    assert [s.split(", ")[1] for s in starts] == [FP32, BF16, BF16, FP32]
    # A rerun reuses all four runs.
    assert main(["--out", str(out), "--seeds", "1234,1", *TINY]) == 0
    assert capsys.readouterr().out.count("already done") == 4
