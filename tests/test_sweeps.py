"""Sweeps: an Optuna search, a submitit-launched multirun, and the SLURM launcher config."""

import json

import pytest
import yaml
from hydra import compose, initialize_config_dir

from svg_lightning.config import config_dir
from tests.helpers import TINY, run_cli

QUICK = [*TINY, "summary.enabled=false", "~callbacks.video_samples", "logger=wandb"]


def jobs(tmp_path):
    sweep = next((tmp_path / "logs" / "quickstart" / "multiruns").iterdir())
    return sweep, sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.mark.slow
def test_optuna_search_two_trials(tmp_path):
    r = run_cli(
        "svg_lightning", tmp_path, "hparams_search=smmnist_beta", "hydra.sweeper.n_trials=2", *QUICK
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sweep, trials = jobs(tmp_path)
    assert [t.name for t in trials] == ["0", "1"]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"model.beta", "model.lr"}
    betas = {yaml.safe_load((t / "config.yaml").read_text())["model"]["beta"] for t in trials}
    assert len(betas) == 2 and all(1e-6 <= b <= 1e-2 for b in betas)
    ids = {json.loads((t / "run_info.json").read_text())["wandb_id"] for t in trials}
    assert len(ids) == 2  # one W&B run per trial


@pytest.mark.slow
def test_submitit_local_two_jobs(tmp_path):
    r = run_cli(
        "svg_lightning", tmp_path, "-m", "hydra/launcher=local", "model.beta=1e-3,1e-4", *QUICK
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sweep, done = jobs(tmp_path)
    assert [j.name for j in done] == ["0", "1"]
    for j in done:
        assert (j / "checkpoints" / "last.ckpt").is_file()
    assert (sweep / ".submitit").is_dir()  # really launched through submitit


def test_slurm_launcher_follows_the_trainer():
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
