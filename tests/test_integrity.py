"""What the config says is what runs, and every output says what ran: strict configs, refused
commands that leave nothing behind, one checkpoint per state, self-contained checkpoints and the
provenance every evaluation records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from svg_lightning import runs
from svg_lightning.api import train
from svg_lightning.compose import checked_config, compose_config
from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.evaluate import evaluate
from svg_lightning.files import sha256
from tests.helpers import compose_cfg, run_cli

EVAL = ["eval.num_videos=3", "eval.num_samples=2", "eval.n_future=3", "eval.batch_size=2",
        "eval.grid_videos=1", "eval.grid_samples=1", "logger=csv",
        "trainer.accelerator=cpu"]  # fmt: skip


@pytest.mark.parametrize(
    "overrides,says",
    [
        (["+lr=1e-3"], ["lr: no part of the program reads it", "did you mean model.lr"]),
        (["+modle=svg_lp"], ["modle: no part of the program reads it", "did you mean model"]),
        (["+summary.foo=1"], ["summary.foo:", "'enabled', 'grid_samples'"]),
        (["+data.foo=1"], ["data.foo:", "'batch_size'"]),
        (["+trainer.gradiant_clip_val=1"], ["did you mean trainer.gradient_clip_val"]),
        (["+eval.x=1"], ["eval: no part of the program reads it"]),
        (["+callbacks.early_stopping.patience=-1"], ["callbacks.early_stopping:"]),
        (["modle=svg_lp"], ["modle: no such setting", "model"]),
        (["debug=fdrr"], ["debug=fdrr is not an option of debug; options: default, fdr"]),
        (["model=svg_lpp"], ["options: deterministic, svg_fp, svg_lp"]),
        (["callbacks=defualt"], ["callbacks=defualt is not an option"]),
        (["logger=null"], ["drop it with ~logger", "csv, many_loggers, tensorboard, wandb"]),
        (["data=_shared"], ["data=_shared is a building block", "options: bair, kth, smmnist"]),
        (["+experiment=base/kth"], ["experiment=base/kth is a building block"]),
        (["model.beta=["], ["cannot read the override"]),
    ],
)
def test_a_command_line_nothing_reads_is_refused_in_one_line(overrides, says):
    with pytest.raises(ConfigError) as err:
        checked_config("train", overrides)
    for text in says:
        assert text in str(err.value)
    assert "Traceback" not in str(err.value) and "Config search path" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+trainer.gradient_clip_val=1.0"],  # a Trainer argument no yaml lists
        ["+logger.wandb.entity=lab"],  # W&B settings pass through to wandb.init
        ["+experiment=bair_lp"],
        ["~logger"],
        ["callbacks=[default,early_stopping]"],
        ["hydra.run.dir=/tmp/elsewhere"],
    ],
)
def test_what_the_program_reads_is_accepted(overrides):
    checked_config("train", overrides)


def test_a_sweep_is_checked_as_its_first_job():
    cfg = checked_config("train", ["model.beta=1e-3,1e-4", "data.batch_size=range(4,6)"], True)
    assert (cfg.model.beta, cfg.data.batch_size) == (1e-3, 4)
    with pytest.raises(ConfigError, match="lr: no part"):
        checked_config("train", ["+lr=1e-3,1e-4"], multirun=True)


@pytest.mark.parametrize(
    "name,missing", [("eval", "ckpt_path"), ("analyze", "ckpt_path"), ("sample", "input=")]
)
def test_a_missing_mandatory_value_is_one_line(name, missing):
    with pytest.raises(ConfigError, match=f"missing mandatory .*{missing}"):
        checked_config(name, [])
    compose_config(name, [])  # the Python API fills them in itself (reproduce, notebooks)


@pytest.mark.slow
def test_refused_commands_exit_2_and_leave_nothing_behind(tmp_path):
    r = run_cli("svg_lightning", tmp_path, "+lr=1e-3")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: unknown settings") and "Traceback" not in r.stderr
    r = run_cli("svg_lightning.evaluate", tmp_path)
    assert r.returncode == 2 and "missing mandatory ckpt_path" in r.stderr
    assert "Traceback" not in r.stderr
    # Refused once the config is composed (no BAIR data here): no config tree, no W&B run.
    r = run_cli("svg_lightning", tmp_path, "+experiment=bair_lp", "logger=wandb")
    assert r.returncode == 2 and "BAIR data is not prepared" in r.stdout + r.stderr
    assert "wandb:" not in r.stdout + r.stderr and "├──" not in r.stdout  # no W&B, no tree
    r = run_cli("svg_lightning.evaluate", tmp_path, f"ckpt_path={tmp_path / 'none.ckpt'}")
    assert r.returncode == 2 and "none.ckpt does not exist" in r.stdout + r.stderr
    assert not (tmp_path / "logs").exists(), sorted(tmp_path.rglob("*"))


def test_one_checkpoint_file_per_state(trained_run):
    names = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [n for n in names if n.startswith("last-")]


def test_periodic_and_final_last_checkpoint_are_one_file(tiny_cfg):
    cfg = tiny_cfg("trainer.max_steps=3", "callbacks.last_checkpoint.every_n_train_steps=2",
                   "summary.enabled=false")  # fmt: skip
    train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    assert sorted(p.name for p in folder.glob("last*")) == ["last.ckpt"]
    ckpt = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3


def test_ckpt_path_last_finds_the_newest_multirun_job(tmp_path):
    old = tmp_path / "logs/task/runs/2026-01-01_00-00-00/checkpoints/last.ckpt"
    job = tmp_path / "logs/task/multiruns/2026-01-02_00-00-00/1/checkpoints/last.ckpt"
    for i, path in enumerate((old, job)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    assert runs.find_last_checkpoint(tmp_path / "logs", "task", exclude=tmp_path / "x") == job
    with pytest.raises(CheckpointError, match="no checkpoints/last.ckpt"):
        runs.find_last_checkpoint(tmp_path / "logs", "other", exclude=tmp_path / "x")


def test_a_lone_checkpoint_evaluates_and_every_output_records_what_ran(tmp_path, trained_run):
    lone = tmp_path / "copied" / "model.ckpt"  # no config.yaml anywhere near it
    lone.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", lone)
    cfg = compose_cfg(tmp_path, f"ckpt_path={lone}", *EVAL, config_name="eval")
    metrics, _ = evaluate(cfg)
    step = torch.load(lone, map_location="cpu", weights_only=True)["global_step"]
    assert step == 3
    pr = metrics["protocol"]
    assert (pr["checkpoint"], pr["checkpoint_sha256"], pr["step"]) == (str(lone), sha256(lone), 3)
    prov = json.loads((tmp_path / "out" / "metrics.json").read_text())["provenance"]
    assert prov["eval"]["num_samples"] == 2 and prov["eval"]["n_past"] == 5
    assert prov["checkpoint"] == {"path": str(lone), "sha256": sha256(lone), "global_step": 3}
    assert prov["model"]["variant"] == "lp" and prov["train_config"]["task_name"] == "quickstart"
    # The logger's config (CSV: hparams.yaml) holds the same record.
    (hparams,) = (tmp_path / "out").rglob("hparams.yaml")
    logged = yaml.safe_load(hparams.read_text())
    assert logged["eval"]["num_samples"] == 2 and logged["checkpoint"]["global_step"] == 3
    assert logged["model"]["z_dim"] == 2 and logged["train_config"]["seed"] == 1234


def test_training_config_in_a_checkpoint_is_the_run_config(trained_run):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    stored = ckpt["svg_lightning"]["train_config"]
    assert stored == yaml.safe_load((trained_run / "config.yaml").read_text())
    assert stored["tags"] == ["smmnist", "lp", "quickstart"]
