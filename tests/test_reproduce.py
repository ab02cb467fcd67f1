"""The reproductions behind the docs, end to end on tiny settings: the comparison study (three
models, two seeds, report, resume) and the quickstart's seed table with the README update (the
docs tools in tools/)."""

import json
import math

import pytest

from svg_lightning.errors import ConfigError, InputError
from svg_lightning.reproduce import seeds, study
from svg_lightning.reproduce.command import reproduce_main
from svg_lightning.reproduce.seeds import train_seed
from svg_lightning.reproduce.study import across_seeds
from tests.helpers import TINY
from tools import reproduction_report
from tools.quickstart_docs import (
    ANALYSIS_MARKERS,
    MARKERS,
    PROTOCOL_MARKERS,
    clears,
    quickstart_docs,
)

# Two validations (the report reads their trend); eval.*: every evaluation (2 conditioning
# frames as in training, 2 frames past its 3).
TINY_STUDY = [*TINY, "trainer.val_check_interval=1", "eval.num_videos=4", "eval.num_samples=3",
              "eval.n_past=2", "eval.n_future=5", "eval.batch_size=2"]  # fmt: skip


def test_across_seeds_uses_student_t():
    s = across_seeds([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["per_seed"] == [1.0, 2.0, 3.0]
    assert s["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) * std 1
    assert math.isnan(across_seeds([0.5])["ci95"])


@pytest.mark.parametrize(
    "args,needle",
    [(["--strip-videos", "0"], "--strip-videos: '0' is not an integer >= 1"),
     (["--seeds", "1,1"], "--seeds: '1,1' names a seed twice")],
)  # fmt: skip
def test_study_options_are_checked_before_any_training(tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as stop:
        reproduce_main(["--out", str(tmp_path / "study"), *args])
    assert stop.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_study_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["--out", str(out), "--seeds", "1,2", "--strip-videos", "2", *TINY_STUDY]
    assert reproduce_main(argv) == 0
    assert reproduction_report.main(["--out", str(out)]) == 0
    report = out / "report"
    for name in ("curves.png", "samples.png", "table.md", "table.json", "report.md"):
        assert (report / name).stat().st_size > 0, name
    table = json.loads((report / "table.json").read_text())
    pr = table["protocol"]
    assert (pr["n_past"], pr["n_future"], pr["num_videos"], pr["num_samples"]) == (2, 5, 4, 3)
    assert table["windows"] == {"within": [3, 5], "beyond": [6, 7]}  # video frame numbers
    assert list(table["models"]) == ["svg_lp", "svg_fp", "deterministic"]
    for model, entry in table["models"].items():
        assert entry["seeds"] == [1, 2] and entry["num_samples"] == (
            1 if model == "deterministic" else 3
        )
        for score in ("ssim_bestofN", "psnr_bestofN", "ssim_bestofN_beyond"):
            values = entry[score]["per_seed"]
            assert len(values) == 2 and entry[score]["mean"] == pytest.approx(sum(values) / 2)
            assert entry[score]["ci95"] > 0
        for seed in ("1", "2"):
            metrics = json.loads(
                (out / "runs" / model / f"seed{seed}" / "eval" / "metrics.json").read_text()
            )
            assert metrics["summary"]["ssim_bestofN"]["mean"] in entry["ssim_bestofN"]["per_seed"]
        assert len(table["curves"][model]["psnr_bestofN"]["mean"]) == 5
        assert entry["val_steps"] == [1, 2] and len(entry["val_ssim_bestofN_gain"]["per_seed"]) == 2
    assert set(table["ordering"]) == {"ssim_bestofN", "psnr_bestofN"}
    collided = table["collisions"]
    assert (
        len(collided) == 5
        and collided == sorted(collided)
        and 0 <= collided[0] <= collided[-1] <= 1
    )
    md = (report / "table.md").read_text()
    lp = table["models"]["svg_lp"]["ssim_bestofN"]
    assert f"| SVG-LP, best of 3 | {lp['mean']:.3f} ± {lp['ci95']:.3f} |" in md
    assert "| deterministic (one prediction) |" in md
    black = table["baselines"]["black"]["psnr"]
    assert "| all-black frame | " in md and f"{black['mean']:.2f} ± {black['ci95']:.2f}" in md
    text = (report / "report.md").read_text()
    assert (
        "python -m svg_lightning.reproduce" in text and "SVG-LP >= SVG-FP > deterministic" in text
    )
    assert "Validation (2 videos, best of 2): SSIM changed from step 1 to 2 by SVG-LP" in text
    assert "![curves](curves.png)" in text and "![samples](samples.png)" in text

    # Rerun: every run is reused, nothing is trained again; other settings are refused.
    ckpt = out / "runs" / "svg_fp" / "seed2" / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    capsys.readouterr()
    assert reproduce_main(argv) == 0
    assert capsys.readouterr().out.count("already done") == 6
    assert ckpt.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="other settings"):
        study(out, [1], ["svg_lp"], [*TINY_STUDY, "trainer.max_steps=3"])


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        reproduce_main(["--out", str(tmp_path), "--models", "svg_lp,svg_xp"])


def test_clears_needs_both_baselines_beaten_beyond_the_intervals():
    score = lambda mean, ci: {"mean": mean, "ci95": ci}
    summary = {"ssim_bestofN": score(0.70, 0.01), "ssim_copy_last": score(0.60, 0.02),
               "ssim_black": score(0.68, 0.005)}  # fmt: skip
    assert clears(summary, "ssim")  # 0.69 > 0.685
    summary["ssim_black"] = score(0.68, 0.02)
    assert not clears(summary, "ssim")  # 0.69 < 0.70


# small analyses of the tiny checkpoint (2 + 3 frames, so trajectories predicts 3)
ANALYSES = ["num_videos=6", "num_test_videos=6", "seq_len=12", "num_samples=2", "num_true=50"]
# the dataset's protocol, shrunk: 2 -> 4 frames (past the tiny runs' 3), best of 3, 4 videos
PROTOCOL = ["eval.num_videos=4", "eval.num_samples=3", "eval.n_past=2", "eval.n_future=4",
            "eval.batch_size=2"]  # fmt: skip


@pytest.mark.slow
def test_quickstart_docs_writes_table_figures_and_readme(tmp_path):
    readme = tmp_path / "README.md"
    numbers = f"{MARKERS[0]}\nold numbers\n{MARKERS[1]}"
    analysis = f"{ANALYSIS_MARKERS[0]}\nold analysis\n{ANALYSIS_MARKERS[1]}"
    protocol = f"{PROTOCOL_MARKERS[0]}\nold protocol\n{PROTOCOL_MARKERS[1]}"
    original = f"# title\n\nbefore\n\n{numbers}\n\nmiddle\n\n{analysis}\n\nafter\n\n{protocol}\n"
    readme.write_text(original)
    docs = tmp_path / "docs"
    results = quickstart_docs(
        tmp_path / "runs", docs, readme, [1234, 1], TINY, "", ANALYSES, PROTOCOL
    )
    assert [r["seed"] for r in results] == [1234, 1]
    md = (docs / "quickstart.md").read_text()
    for r in results:
        best = r["metrics"]["summary"]["ssim_bestofN"]
        assert f"| {r['seed']} | {best['mean']:.3f} ± {best['ci95']:.3f} |" in md
    assert "CPU cores" in md and "![curves](figures/quickstart_curves.png)" in md
    for name in ("quickstart_curves.png", "quickstart_samples.png", "quickstart_prior_sigma.png",
                 "quickstart_trajectories.png"):  # fmt: skip
        assert (docs / "figures" / name).stat().st_size > 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith(f"{PROTOCOL_MARKERS[1]}\n")
    assert f"{ANALYSIS_MARKERS[1]}\n\nafter\n\n{PROTOCOL_MARKERS[0]}" in text
    assert f"{MARKERS[1]}\n\nmiddle\n\n{ANALYSIS_MARKERS[0]}" in text
    assert "old numbers" not in text and "| all-black frame |" in text
    assert "seed 1234, the default; seed 1 in [docs/quickstart.md]" in " ".join(text.split())
    # the analysis block holds the numbers of the analyses' own JSON
    prior = json.loads((tmp_path / "runs" / "analyses" / "prior" / "prior.json").read_text())
    auroc = prior["statistics"]["kl"]["any"]["0"]["auroc"]
    assert "old analysis" not in text and "| KL, AUROC |" in text and f"{auroc:.3f}" in text
    traj = json.loads(
        (tmp_path / "runs" / "analyses" / "trajectories" / "trajectories.json").read_text()
    )
    assert f"total variation {traj['summary']['tv']:.2f}" in " ".join(text.split())
    # the protocol paragraph holds the evaluation's own metrics.json, under its overrides
    scored = json.loads((tmp_path / "runs" / "protocol" / "metrics.json").read_text())
    pr, best = scored["protocol"], scored["summary"]["psnr_bestofN"]
    assert (pr["n_past"], pr["n_future"], pr["num_videos"], pr["num_samples"]) == (2, 4, 4, 3)
    flat = " ".join(text.split())
    assert "old protocol" not in text and "2 -> 4 frames, best of 3 samples" in flat
    assert f"PSNR {best['mean']:.2f} ± {best['ci95']:.2f}" in flat and "eval.num_videos=4" in flat
    # A rerun reuses both runs and rewrites the same blocks.
    quickstart_docs(tmp_path / "runs", docs, readme, [1234, 1], TINY, "", ANALYSES, PROTOCOL)
    assert (
        readme.read_text().count(MARKERS[0]) == readme.read_text().count(ANALYSIS_MARKERS[0]) == 1
    )
    readme.write_text(original.replace(PROTOCOL_MARKERS[1], ""))
    with pytest.raises(InputError, match="quickstart-protocol"):
        quickstart_docs(tmp_path / "runs", docs, readme, [1234, 1], TINY, "", ANALYSES, PROTOCOL)
    readme.write_text(original.replace(ANALYSIS_MARKERS[0], ""))
    with pytest.raises(InputError, match="quickstart-analysis"):
        quickstart_docs(tmp_path / "runs", docs, readme, [1234, 1], TINY, "", ANALYSES, PROTOCOL)
    readme.write_text("no markers\n")
    with pytest.raises(InputError, match="quickstart-numbers"):
        quickstart_docs(tmp_path / "runs", docs, readme, [1234, 1], TINY, "", ANALYSES, PROTOCOL)


def test_fresh_process_refuses_a_folder_hydra_cannot_be_given(tmp_path):
    folder = tmp_path / "it's"
    with pytest.raises(ConfigError, match="may not hold '"):
        train_seed(folder, TINY, 1, fresh_process=True)
    assert not (folder / "checkpoints").exists()


def test_a_finished_run_is_not_reused_once_the_config_files_change(tmp_path, monkeypatch):
    """The same overrides over another preset (a retuned quickstart) must train again."""
    folder = tmp_path / "seed1"
    assert not train_seed(folder, TINY, 1).reused
    assert train_seed(folder, TINY, 1).reused
    retuned = seeds.compose_config

    def compose(name, overrides):
        cfg = retuned(name, overrides)
        cfg.trainer.max_steps += 1
        return cfg

    monkeypatch.setattr(seeds, "compose_config", compose)
    with pytest.raises(ConfigError, match="config files changed"):
        train_seed(folder, TINY, 1)
