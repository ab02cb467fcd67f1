"""Training end to end on tiny configs: in process, under DDP, and through the real CLI."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from svg_lightning.module import SVGModule
from svg_lightning.train import train
from tests.helpers import TINY, run_cli


@pytest.mark.parametrize("model", ["svg_lp", "svg_fp", "deterministic"])
def test_fast_dev_run_each_model(tiny_cfg, model):
    cfg = tiny_cfg(f"model={model}", "debug=fdr")
    train(cfg)


def test_fit_writes_checkpoint_summary_and_samples(tiny_cfg):
    cfg = tiny_cfg()
    train(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "config.yaml").is_file() and "${" not in (out / "config.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["num_videos"] == 3 and metrics["protocol"]["step"] == 2
    for key in ("ssim_bestofN", "psnr_bestofN", "ssim_meanofN", "ssim_copy_last", "psnr_black"):
        assert len(metrics["curves"][key]["mean"]) == 3
    assert metrics["summary"]["ssim_bestofN"]["mean"] >= metrics["summary"]["ssim_worstofN"]["mean"]
    for name in ("samples.png", "samples.gif", "curves.png", "curves.csv"):
        assert (out / name).stat().st_size > 0
    ckpt = out / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu")  # plain hyper-parameters
    assert state["hyper_parameters"]["variant"] == "lp" and state["global_step"] == 2
    model = SVGModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    assert model.hparams.backbone == "dcgan32"


def test_bf16_mixed_on_cpu(tiny_cfg):
    cfg = tiny_cfg("trainer.precision=bf16-mixed", "summary.enabled=false")
    train(cfg)
    (metrics,) = (Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")
    assert "train/loss" in metrics.read_text() and "val/ssim_bestofN" in metrics.read_text()


@pytest.mark.parametrize(
    "logger,pattern", [("tensorboard", "events.out.tfevents.*"), ("csv", "metrics.csv")]
)
def test_file_loggers_write_metrics(tiny_cfg, logger, pattern):
    cfg = tiny_cfg(f"logger={logger}", "summary.enabled=false")
    train(cfg)
    assert list(Path(cfg.paths.output_dir).rglob(pattern))


@pytest.mark.slow
def test_ddp_spawn_two_processes(tiny_cfg):
    cfg = tiny_cfg("trainer.strategy=ddp_spawn", "trainer.devices=2", "summary.enabled=false")
    train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_wandb_offline_writes_a_run(tiny_cfg):
    cfg = tiny_cfg("logger=wandb", "summary.enabled=false")
    train(cfg)
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def _cli(cwd, *args):
    return run_cli("svg_lightning", cwd, *args)


@pytest.mark.slow
def test_cli_trains_and_prints_where_outputs_are(tmp_path):
    r = _cli(tmp_path, *TINY, "logger=wandb")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "logs" / "quickstart" / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    for name in (
        "config.yaml",
        "metrics.json",
        "samples.png",
        "samples.gif",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).exists(), name
    assert str(run / "metrics.json") in r.stdout.replace("\n", "")
    assert "copy last conditioning frame" in r.stdout
    assert "wandb sync" in r.stderr + r.stdout


@pytest.mark.slow
def test_cli_rejects_bad_settings_before_training(tmp_path):
    r = _cli(tmp_path, *TINY, "n_past=0")
    assert r.returncode == 2
    assert "n_past=0 must be an integer >= 1" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    r = _cli(tmp_path, "+experiment=kth_lp", "logger=csv", "trainer.accelerator=cpu")
    assert r.returncode == 2 and "KTH data is not prepared" in r.stderr + r.stdout


@pytest.mark.slow
def test_multirun_gives_each_job_its_folder_and_wandb_run(tmp_path):
    r = _cli(tmp_path, "-m", *TINY, "logger=wandb", "model.beta=1e-3,1e-4", "summary.enabled=false")
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "quickstart" / "multiruns").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    betas = [yaml.safe_load((j / "config.yaml").read_text())["model"]["beta"] for j in jobs]
    assert betas == [1e-3, 1e-4]
    run_ids = {next((j / "wandb").glob("offline-run-*")).name for j in jobs}
    assert len(run_ids) == 2
