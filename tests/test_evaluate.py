"""`python -m svg_lightning.evaluate` on a tiny trained checkpoint."""

import json

import pytest
import torch

from svg_lightning.cli import compare_main
from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.evaluate import evaluate
from svg_lightning.files import sha256
from tests.helpers import compose_cfg, run_cli

EVAL = ["eval.num_videos=5", "eval.num_samples=3", "eval.n_future=4", "eval.batch_size=2",
        "eval.sample_chunk=4", "eval.grid_videos=2", "eval.grid_samples=2", "logger=csv",
        "trainer.accelerator=cpu"]  # fmt: skip


@pytest.fixture
def run_dir(trained_run):
    return trained_run


def eval_cfg(tmp_path, ckpt, *overrides):
    return compose_cfg(tmp_path, f"ckpt_path={ckpt}", *EVAL, *overrides, config_name="eval")


def test_evaluation_writes_all_outputs(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    _, paths = evaluate(eval_cfg(tmp_path, ckpt))
    out = tmp_path / "out"
    for name in ("metrics.json", "curves.csv", "curves.png", "samples.png", "samples.gif"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    pr = m["protocol"]
    assert (pr["dataset"], pr["n_past"], pr["n_future"]) == ("smmnist", 5, 4)  # protocol n_past
    assert (pr["num_videos"], pr["num_samples"]) == (5, 3)
    assert pr["checkpoint_sha256"] == sha256(ckpt) and pr["package_version"]
    assert "valid region" in pr["ssim"] and "1e-10" in pr["psnr"]
    keys = (
        "ssim_bestofN",
        "ssim_meanofN",
        "ssim_worstofN",
        "psnr_bestofN",
        "ssim_copy_last",
        "psnr_black",
    )
    for key in keys:
        assert len(m["curves"][key]["mean"]) == len(m["curves"][key]["ci95"]) == 4
    s = m["summary"]
    for metric in ("ssim", "psnr"):  # a tiny untrained model's samples nearly coincide
        worst, mean, best = (s[f"{metric}_{k}"]["mean"] for k in ("worstofN", "meanofN", "bestofN"))
        assert worst - 1e-5 <= mean <= best + 1e-5
    lines = (out / "curves.csv").read_text().splitlines()
    assert lines[0].startswith("frame,ssim_bestofN_mean") and len(lines) == 5
    assert lines[1].startswith("6,")  # first predicted frame after 5 conditioning frames
    assert set(paths) >= {"metrics", "curves_plot", "grid", "animation"}
    assert list((out / "csv").rglob("metrics.csv"))  # logged to the run's logger type too


def test_evaluation_is_reproducible(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path / "a", ckpt))
    evaluate(eval_cfg(tmp_path / "b", ckpt, "eval.batch_size=3", "eval.sample_chunk=2"))
    a = json.loads((tmp_path / "a" / "out" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "out" / "metrics.json").read_text())
    for key, curve in a["curves"].items():
        assert curve["mean"] == pytest.approx(b["curves"][key]["mean"], abs=1e-5), key


def test_batch_statistics_are_opt_in_and_depend_on_the_batch(tmp_path, run_dir):
    """eval.bn=batch generates with the statistics of each batch, as the reference's generation
    code: recorded in the protocol, and the numbers change with the batch composition."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    metrics = {}
    for size in (2, 4):
        overrides = ("eval.bn=batch", "eval.num_videos=4", f"eval.batch_size={size}")
        metrics[size], _ = evaluate(eval_cfg(tmp_path / str(size), ckpt, *overrides))
    assert metrics[2]["protocol"]["bn"] == "batch"
    assert metrics[2]["summary"]["ssim_meanofN"]["mean"] != pytest.approx(
        metrics[4]["summary"]["ssim_meanofN"]["mean"], abs=1e-6
    )
    with pytest.raises(ConfigError, match="eval.bn"):
        evaluate(eval_cfg(tmp_path / "bad", ckpt, "eval.bn=train"))
    with pytest.raises(ConfigError, match="a single video"):
        evaluate(eval_cfg(tmp_path / "one", ckpt, "eval.bn=batch", "eval.batch_size=2"))


def _eval_cli(cwd, *args):
    return run_cli("svg_lightning.evaluate", cwd, *args)


@pytest.mark.slow
def test_one_and_two_processes_give_the_same_numbers(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    results = []
    for devices in (1, 2):
        cwd = tmp_path / f"p{devices}"
        cwd.mkdir()
        strategy = "ddp" if devices > 1 else "auto"
        r = _eval_cli(
            cwd,
            f"ckpt_path={ckpt}",
            *EVAL,
            f"trainer.devices={devices}",
            f"trainer.strategy={strategy}",
        )
        assert r.returncode == 0, r.stderr[-3000:]
        if devices > 1:
            assert "MEMBER: 2/2" in r.stderr + r.stdout  # really two processes
        (metrics,) = (cwd / "logs" / "eval" / "runs").rglob("metrics.json")
        results.append(json.loads(metrics.read_text()))
    one, two = results
    assert one["protocol"]["num_videos"] == two["protocol"]["num_videos"] == 5
    for key, curve in one["curves"].items():
        assert curve["mean"] == pytest.approx(two["curves"][key]["mean"], abs=1e-5), key
        assert curve["ci95"] == pytest.approx(two["curves"][key]["ci95"], abs=1e-5), key


def _corrupt(tmp_path, kind, good):
    path = tmp_path / "run" / "checkpoints" / f"{kind}.ckpt"
    path.parent.mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text((good.parent.parent / "config.yaml").read_text())
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "other_version":
        ckpt = torch.load(good, weights_only=True)
        ckpt["svg_lightning"] = {"version": "0.0.1", "format": 0}
        torch.save(ckpt, path)
    elif kind == "foreign":
        torch.save({"state_dict": {}}, path)
    elif kind == "other_architecture":
        ckpt = torch.load(good, weights_only=True)
        ckpt["hyper_parameters"]["rnn_size"] = 16
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("missing", "does not exist"),
        ("truncated", "cannot be read as a PyTorch checkpoint"),
        ("other_version", "written by svg_lightning 0.0.1 (checkpoint format 0)"),
        ("foreign", "was not written by svg_lightning"),
        ("other_architecture", "does not match its architecture"),
    ],
)
def test_bad_checkpoints_are_named(tmp_path, run_dir, kind, needle):
    good = run_dir / "checkpoints" / "last.ckpt"
    path = tmp_path / "nope.ckpt" if kind == "missing" else _corrupt(tmp_path, kind, good)
    with pytest.raises(CheckpointError) as err:
        evaluate(eval_cfg(tmp_path, path))
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.slow
def test_cli_reports_a_bad_checkpoint_without_traceback(tmp_path, run_dir):
    path = _corrupt(tmp_path, "truncated", run_dir / "checkpoints" / "last.ckpt")
    r = _eval_cli(tmp_path, f"ckpt_path={path}", *EVAL)
    assert r.returncode == 2 and str(path) in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_missing_training_config_is_named(tmp_path, run_dir):
    path = tmp_path / "lonely" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(Exception, match="train_config=PATH"):
        evaluate(eval_cfg(tmp_path, path))


def test_compare_overlays_runs(tmp_path, run_dir):
    compare = compare_main

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for name in ("a", "b"):
        evaluate(eval_cfg(tmp_path / name, ckpt))
    out = tmp_path / "cmp.png"
    runs = [str(tmp_path / n / "out") for n in ("a", "b")]
    assert compare([*runs, "--out", str(out), "--labels", "lp", "lp-again"]) == 0
    assert out.stat().st_size > 0
    assert compare(runs) == 0  # by default the plot goes next to the inputs
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert compare([str(tmp_path / "missing")]) == 2


def test_compare_warns_when_runs_were_scored_differently(tmp_path, run_dir, capsys):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path / "a", ckpt))
    evaluate(eval_cfg(tmp_path / "b", ckpt, "eval.num_samples=2"))
    runs = [str(tmp_path / n / "out") for n in ("a", "b")]
    capsys.readouterr()
    assert compare_main(runs) == 0
    assert "differ in num_samples" in capsys.readouterr().err


def test_reference_ssim_is_opt_in_and_reported_beside(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path, ckpt, "eval.reference_ssim=true"))
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"ssim_ref_bestofN", "ssim_ref_copy_last", "ssim_ref_black"} <= set(m["summary"])
    assert "7x7 uniform window" in m["protocol"]["ssim_ref"]
    # The old definition inflates SSIM on sparse digit frames.
    assert m["summary"]["ssim_ref_black"]["mean"] > m["summary"]["ssim_black"]["mean"]
