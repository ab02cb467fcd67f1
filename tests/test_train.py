"""Training end to end on tiny configs: in process, under DDP, and through the real CLI."""

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from svg_lightning import loggers
from svg_lightning.api import train
from svg_lightning.config import config_dir
from svg_lightning.console import print_config
from svg_lightning.loggers import (
    command_job_type,
    instantiate_loggers,
    name_wandb_run,
    run_tags,
    swept_keys,
    swept_values,
    wandb_names,
    wandb_server,
)
from svg_lightning.module import SVGModule
from tests.helpers import TINY, compose_cfg, run_cli


@pytest.mark.parametrize("model", ["svg_lp", "svg_fp", "deterministic"])
def test_fast_dev_run_each_model(tiny_cfg, model, capsys):
    cfg = tiny_cfg(f"model={model}", "debug=fdr")
    train(cfg)
    # fast_dev_run writes no checkpoint, and the closing lines name none.
    out = Path(cfg.paths.output_dir)
    closing = capsys.readouterr().out.rpartition(f"\n{cfg.task_name}: step 1\n")[2]
    assert not (out / "checkpoints").exists() and "checkpoint" not in closing
    assert closing.startswith("run: ") and str(out) in closing.replace("\n", "")


@pytest.mark.parametrize("debug", ["default", "limit", "overfit", "profiler"])
def test_debug_variants_train(tiny_cfg, debug):
    cfg = tiny_cfg(f"debug={debug}")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    assert not (out / "wandb").exists() and not (out / "metrics.json").exists()
    if debug == "profiler":
        assert "Profiler Report" in (out / "fit-profile.txt").read_text()


def test_fit_writes_checkpoint_summary_and_samples(tiny_cfg, capsys):
    cfg = tiny_cfg()
    train(cfg)
    assert "backbone: dcgan32" in capsys.readouterr().out  # extras.print_config
    out = Path(cfg.paths.output_dir)
    assert (out / "config.yaml").is_file() and "${" not in (out / "config.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["num_videos"] == 3 and metrics["protocol"]["step"] == 2
    for key in ("ssim_bestofN", "psnr_bestofN", "ssim_meanofN", "ssim_copy_last", "psnr_black"):
        assert len(metrics["curves"][key]["mean"]) == 3
    assert metrics["summary"]["ssim_bestofN"]["mean"] >= metrics["summary"]["ssim_worstofN"]["mean"]
    for name in ("samples.png", "samples_animation.gif", "curves.png", "curves.csv"):
        assert (out / name).stat().st_size > 0
    # The held-out summary scores the trained weights: logged at the last step (numbering.py).
    (csv_file,) = (out / "csv").rglob("metrics.csv")
    rows = list(csv.DictReader(csv_file.open()))
    assert {int(r["step"]) for r in rows if r.get("test/ssim_bestofN")} == {2}
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
def test_file_loggers_write_metrics(tiny_cfg, logger, pattern, capsys):
    cfg = tiny_cfg(f"logger={logger}", "summary.enabled=false", "extras.print_config=false")
    train(cfg)
    assert list(Path(cfg.paths.output_dir).rglob(pattern))
    assert "backbone: dcgan32" not in capsys.readouterr().out
    if logger == "csv":
        # The resolved config, once: not again as Lightning's flat copy of the model's arguments.
        (hparams,) = Path(cfg.paths.output_dir).rglob("hparams.yaml")
        logged = yaml.safe_load(hparams.read_text())
        assert logged["model"]["backbone"] == "dcgan32" and "backbone" not in logged


def test_print_config_shows_each_group(tmp_path, capsys):
    print_config(compose_cfg(tmp_path, "logger=csv"))
    out = capsys.readouterr().out
    for line in ("model", "backbone: dcgan32", "csv:", f"root_dir: {tmp_path}", "task_name"):
        assert line in out, line


# --- W&B -----------------------------------------------------------------------------------------


def test_wandb_disabled_means_no_wandb_logger(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_cfg(tmp_path, "logger=many_loggers")
    with caplog.at_level(logging.INFO, logger="svg_lightning.loggers"):
        found = instantiate_loggers(cfg.logger)
    assert [type(lg) for lg in found] == [CSVLogger, TensorBoardLogger]
    assert "WANDB_MODE=disabled: no W&B logger and no W&B run" in caplog.text


def test_self_hosted_wandb_is_probed_at_its_host(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.lab.internal:8080")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    rc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(rc))
    public = "machine api.wandb.ai\n  login user\n  password public-key\n"
    rc.write_text(public)
    assert wandb_server() == ("wandb.lab.internal", 8080, "wandb.lab.internal:8080")
    assert not loggers._has_api_key()  # a key for the public service is not this server's
    rc.write_text(public + "machine wandb.lab.internal:8080\n  login user\n  password lab-key\n")
    assert loggers._has_api_key()
    probed = []

    def connect(address, timeout):
        probed.append(address)
        raise OSError("unreachable")

    monkeypatch.setattr(loggers.socket, "create_connection", connect)
    assert not loggers._reachable()
    monkeypatch.delenv("WANDB_BASE_URL")
    assert not loggers._reachable()
    assert probed == [("wandb.lab.internal", 8080), ("api.wandb.ai", 443)]
    assert loggers._has_api_key()  # the public key again


def test_wandb_names_show_only_the_swept_values(tmp_path):
    assert wandb_names("quickstart", {}) == ("quickstart", "quickstart")
    # The multirun.yaml Hydra writes first holds the command line with its sweeps.
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - model.beta=1e-4,1e-5\n    - data.beta=1,2\n"
        "    - trainer.accelerator=cpu\n    - summary.num_samples=2\n"
    )
    swept = swept_keys(tmp_path)
    assert swept == {"model.beta", "data.beta"}
    job = ["model.beta=1e-05", "data.beta=2", "trainer.accelerator=cpu", "summary.num_samples=2"]
    values = swept_values(job, swept)
    assert values == {"model.beta": "1e-05", "data.beta": "2"}  # two "beta": full keys
    name, group = wandb_names("smmnist_lp", values, sweep="2024-05-01_10-00-00")
    assert name == "smmnist_lp[model.beta=1e-05,data.beta=2]"
    assert group == "smmnist_lp-sweep-2024-05-01_10-00-00"
    assert swept_values(["model.lr=0.01", "seed=3"], {"model.lr"}) == {"lr": "0.01"}
    # An optuna search sweeps the keys of its params.
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - hparams_search=smmnist_beta\n"
        "  sweeper:\n    params:\n      model.beta: interval(1e-5, 1e-3)\n"
    )
    assert swept_keys(tmp_path) == {"model.beta"}


def test_tags_follow_the_resolved_config_not_the_preset(tmp_path):
    assert run_tags(compose_cfg(tmp_path)) == ["smmnist", "lp", "quickstart"]
    assert run_tags(compose_cfg(tmp_path, "model=svg_fp")) == ["smmnist", "fp", "quickstart"]
    assert run_tags(compose_cfg(tmp_path, "+experiment=kth_det", "tags=[mine]")) == [
        "kth", "deterministic", "mine"
    ]  # fmt: skip


def test_wandb_job_types(tmp_path):
    cfg = compose_cfg(tmp_path, "logger=wandb")
    name_wandb_run(cfg)  # training: what train() does before it writes config.yaml
    w = cfg.logger.wandb
    assert (w.name, w.group, w.job_type) == ("quickstart", "quickstart", "train")
    (lg,) = instantiate_loggers(cfg.logger)
    assert isinstance(lg, WandbLogger) and lg._wandb_init["job_type"] == "train"
    (lg,) = instantiate_loggers(cfg.logger, tmp_path, "quickstart-eval", job_type="eval")
    init = lg._wandb_init
    assert (init["job_type"], init["name"], init["group"]) == (
        "eval",
        "quickstart-eval",
        "quickstart",
    )
    # Analysis passes no job type: it is the command's, from its Hydra job.
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        analyze = compose("analyze", ["ckpt_path=x", "logger=wandb"], return_hydra_config=True)
    assert command_job_type() is None
    HydraConfig.instance().set_config(analyze)
    try:
        assert command_job_type() == "analyze"
        (lg,) = instantiate_loggers(analyze.logger, tmp_path, "quickstart-prior")
        assert (lg._wandb_init["job_type"], lg._wandb_init["tags"]) == ("analyze", [])
    finally:
        HydraConfig.instance().cfg = None


def test_offline_wandb_does_not_continue_a_run(tmp_path, monkeypatch, caplog):
    """Offline, W&B would write a second copy of the run under the same id (syncing it replaces
    the first); online, the resumed training continues the run."""
    seen = []
    monkeypatch.setattr(loggers, "WandbLogger", lambda **kw: seen.append(kw))
    loggers.wandb_logger(offline=False, id="abc", resume="allow", save_dir=str(tmp_path))
    assert (seen[-1]["id"], seen[-1]["resume"]) == ("abc", "allow")
    loggers.wandb_logger(offline=True, id="abc", resume="allow", save_dir=str(tmp_path))
    assert (seen[-1]["id"], seen[-1]["resume"]) == (None, None)
    assert "cannot continue run abc offline" in caplog.text


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
        "samples_animation.gif",
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
    # Refused before Hydra made a run folder: nothing under logs/.
    assert not (tmp_path / "logs").exists()
    r = _cli(tmp_path, "+experiment=kth_lp", "logger=csv", "trainer.accelerator=cpu")
    assert r.returncode == 2 and "KTH data is not prepared" in r.stderr + r.stdout


@pytest.mark.slow
def test_multirun_gives_each_job_its_folder_and_wandb_run(tmp_path):
    r = _cli(tmp_path, "-m", *TINY, "logger=wandb", "model.beta=1e-3,1e-4", "summary.enabled=false")
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "quickstart" / "multiruns").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    configs = [yaml.safe_load((j / "config.yaml").read_text()) for j in jobs]
    assert [c["model"]["beta"] for c in configs] == [1e-3, 1e-4]
    run_ids = {next((j / "wandb").glob("offline-run-*")).name for j in jobs}
    assert len(run_ids) == 2
    # W&B: runs named by the task and the swept value only (not the 20 TINY overrides),
    # grouped by sweep
    names = [c["logger"]["wandb"]["name"] for c in configs]
    assert names == ["quickstart[beta=0.001]", "quickstart[beta=0.0001]"]
    assert {c["logger"]["wandb"]["group"] for c in configs} == {f"quickstart-sweep-{sweep.name}"}
    assert {c["logger"]["wandb"]["job_type"] for c in configs} == {"train"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,group,option",
    [
        ("debug=fdrr", "debug", "fdr"),
        ("hparams_search=smmnist_bta", "hparams_search", "smmnist_beta"),
    ],
)
def test_cli_misspelt_option_fails_before_running(tmp_path, override, group, option):
    r = _cli(tmp_path, *TINY, override)
    out = r.stderr + r.stdout
    assert r.returncode != 0
    assert out.startswith(f"error: {override} is not an option of {group}; options: ")
    assert option in out and len(out.splitlines()) == 1 and "Traceback" not in out
    assert not (tmp_path / "logs").exists()  # nothing ran


@pytest.mark.slow
def test_cli_debug_run_is_never_resumed_by_a_real_run(tmp_path):
    default_logger = [o for o in TINY if not o.startswith("logger=")]  # W&B
    r = _cli(tmp_path, *default_logger, "debug=default")
    assert r.returncode == 0, r.stderr[-3000:]
    (debug_run,) = (tmp_path / "logs" / "debug" / "quickstart" / "runs").iterdir()
    assert (debug_run / "checkpoints" / "last.ckpt").is_file()
    assert not (debug_run / "wandb").exists()
    assert not (tmp_path / "logs" / "quickstart").exists()
    r = _cli(tmp_path, *TINY, "ckpt_path=last")
    out = r.stderr + r.stdout
    assert r.returncode == 2 and "ckpt_path=last: no checkpoints/last.ckpt under" in out
    assert str(tmp_path / "logs" / "quickstart") in out.replace("\n", "")
    assert not (tmp_path / "logs" / "quickstart").exists()  # refused: its folder removed


@pytest.mark.slow
def test_cli_ddp_sim_trains_two_steps(tmp_path):
    r = _cli(tmp_path, *TINY, "trainer=ddp_sim", "summary.enabled=false")
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "quickstart" / "runs").iterdir()
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2
