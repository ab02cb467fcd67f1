"""Sweeps: an Optuna search, a submitit-launched multirun, the SLURM launcher config, and which
failures end a multirun."""

import atexit
import csv
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from svg_lightning import runs
from svg_lightning import sweep as sweep_module
from svg_lightning.config import config_dir
from svg_lightning.errors import ConfigError, PreemptedError, StoppedByUserError
from svg_lightning.files import write_json
from svg_lightning.hydra_entry import hydra_command
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
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert {"model.beta", "model.lr"} <= set(rows[0])  # what the sampler drew for each trial
    assert sorted(row["job"] for row in rows) == ["0", "1"]
    assert all(row["status"] == "finished" for row in rows)


@pytest.mark.parametrize(
    ("error", "code", "jobs_run"),
    [(ConfigError, 1, [0, 1]), (PreemptedError, 143, [0]), (StoppedByUserError, 130, [0])],
    ids=["error: the next job runs", "SIGTERM: all stop", "Ctrl-C: all stop"],
)
def test_which_failures_end_a_multirun(tmp_path, monkeypatch, error, code, jobs_run):
    """A job's error is that job's failure (the launcher goes on, the multirun exits 1, the
    refused job's folder stays with its log and a failed status); SIGTERM and Ctrl-C stop the
    whole multirun with their own exit codes."""
    ran = []

    def command(cfg):  # refused at once: it writes nothing into its run folder
        ran.append(HydraConfig.get().job.num)
        raise error(f"stopped job {HydraConfig.get().job.num}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SVG_ROOT", str(tmp_path))
    monkeypatch.setattr(atexit, "register", lambda *_args: None)  # no sweep table at pytest's exit
    monkeypatch.setattr(sys, "argv", ["svg", "-m", "model.beta=1e-3,1e-4", "logger=csv"])
    with pytest.raises(SystemExit) as stop:
        hydra_command("train", command)()
    assert (stop.value.code, ran) == (code, jobs_run)
    sweeps = list((tmp_path / "logs").glob("*/multiruns/*"))
    kept = sorted(p for p in sweeps[0].iterdir() if p.is_dir()) if sweeps else []
    if code in (143, 130):  # a signal: the stopped job's empty folder goes, as a single run's
        assert kept == []
        return
    assert [p.name for p in kept] == ["0", "1"]
    for job in kept:
        assert json.loads((job / sweep_module.JOB_STATUS).read_text()) == {"status": "failed"}
        assert f"stopped job {job.name}" in next(job.glob("*.log")).read_text()
        assert sweep_module.read_job(job).status("val/ssim_bestofN") == "failed"


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_multirun(tmp_path):
    """A job that stops with an error (here a checkpoint that does not exist) is logged, the jobs
    after it still run, and the multirun ends with exit code 1 naming the failed job."""
    r = run_cli("svg_lightning", tmp_path, "-m", "ckpt_path=null,/nonexistent.ckpt,null", *QUICK)
    assert r.returncode == 1, r.stderr[-3000:]
    sweep, folders = jobs(tmp_path)
    log = folders[1] / "train.log"  # job 1 was refused before it wrote anything
    assert f"job 1 of this multirun failed with exit code 2; its error is in its log, {log}" in (
        r.stderr
    )
    assert "checkpoint /nonexistent.ckpt does not exist" in log.read_text()
    assert [j.name for j in folders] == ["0", "1", "2"]
    assert [(j / "checkpoints" / "last.ckpt").is_file() for j in folders] == [True, False, True]
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert sorted((row["job"], row["status"]) for row in rows) == [
        ("0", "finished"), ("1", "failed"), ("2", "finished")
    ]  # fmt: skip


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
    # The jobs ran in other processes; the table is built from what they wrote.
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert sorted(row["model.beta"] for row in rows) == ["0.0001", "0.001"]  # as Hydra writes them
    assert "n_past" not in rows[0]  # the same in both jobs: not a column
    ssim = [float(row["val/ssim_bestofN"]) for row in rows]
    assert ssim == sorted(ssim, reverse=True)  # best first
    assert all(float(row["val/psnr_bestofN"]) > 0 and row["status"] == "finished" for row in rows)
    assert {(row["job"], Path(row["run"])) for row in rows} == {(j.name, j) for j in done}
    assert "sweep: 2 jobs, best val/ssim_bestofN first" in r.stdout


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


def fake_job(sweep, num, overrides, scores=None, ended="finished", test=None):
    """A job folder as a multirun leaves it: Hydra's files, then what the run and the job's end
    wrote (``None``: not written)."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if scores is not None:
        runs.write_scores(job, 2, {"train/loss": torch.tensor(1.0), **scores})
    if ended is not None:
        write_json(job / sweep_module.JOB_STATUS, {"status": ended})
    if test is not None:
        write_json(job / "metrics.json", {"summary": {k: {"mean": v} for k, v in test.items()}})
    return job


def test_sweep_summary_ranks_jobs_by_the_metric_and_shows_what_was_swept(tmp_path, capsys):
    common = ["n_past=2", "+experiment=smmnist_lp"]
    val = {"val/ssim_bestofN": 0.5, "val/psnr_bestofN": 15.0}
    test = {"ssim_bestofN": 0.45, "psnr_bestofN": 14.0}
    fake_job(tmp_path, 0, [*common, "model.beta=1e-3"], val, test=test)
    fake_job(tmp_path, 1, [*common, "model.beta=1e-4"], {"val/ssim_bestofN": 0.7})
    fake_job(tmp_path, 2, [*common, "model.beta=1e-5"], None)  # finished, wrote no scores
    fake_job(tmp_path, 3, [*common, "model.beta=1e-6"], None, ended=None)  # killed
    fake_job(tmp_path, 4, [*common, "model.beta=1e-7"], {"val/ssim_bestofN": 0.9}, "failed")
    path = sweep_module.summarize(tmp_path, "val/ssim_bestofN")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["job", "model.beta", "val/ssim_bestofN", "val/psnr_bestofN",
                             "test/ssim_bestofN", "test/psnr_bestofN", "run", "status"]  # fmt: skip
    assert [r["job"] for r in rows] == ["4", "1", "0", "2", "3"]  # best first, no score last
    assert [r["status"] for r in rows] == ["failed", "finished", "finished", "no scores", "failed"]
    assert [r["model.beta"] for r in rows] == ["1e-7", "1e-4", "1e-3", "1e-5", "1e-6"]
    assert rows[2]["test/ssim_bestofN"] == "0.45" and rows[1]["test/ssim_bestofN"] == ""
    assert rows[1]["run"] == str(tmp_path / "1")
    out = capsys.readouterr().out
    assert "sweep: 5 jobs, best val/ssim_bestofN first" in out and "no scores" in out
    # lower is better (an Optuna sweep that minimises): the order turns, missing still last
    ranked = sweep_module.rank(sweep_module.find_jobs(tmp_path), "val/ssim_bestofN", False)
    assert [j.num for j in ranked] == [0, 1, 4, 2, 3]


def test_swept_keys_are_those_that_differ_between_jobs():
    job = lambda *o: sweep_module.Job(0, Path("."), sweep_module.parse_overrides(list(o)), {}, {},
                                      "finished")  # fmt: skip
    jobs = [job("a=1", "b=2", "+c=x"), job("a=1", "b=3", "c=x"), job("a=1", "b=3", "d=4")]
    assert sweep_module.swept_keys(jobs) == ["b", "c", "d"]  # c and d: not in every job
    assert sweep_module.swept_keys(jobs[:1]) == []


def test_sweep_summary_callback_records_each_job_and_survives_a_job_without_files(
    tmp_path, monkeypatch
):
    at_exit = []  # the process's exit handlers, kept here: pytest's own process never exits them
    monkeypatch.setattr(atexit, "register", at_exit.append)
    monkeypatch.setattr(atexit, "unregister", at_exit.remove)
    sweep = tmp_path / "sweep"
    done = fake_job(sweep, 0, ["model.beta=1e-3"], {"val/ssim_bestofN": 0.6}, ended=None)
    broken = fake_job(sweep, 1, ["model.beta=1e-4"], None, ended=None)
    (broken / runs.SCORES).write_text("{not json")  # killed mid-write by hand
    hydra = {"sweep": {"dir": str(sweep)}, "output_subdir": ".hydra", "mode": RunMode.MULTIRUN}
    config = OmegaConf.create({"optimized_metric": "val/ssim_bestofN", "hydra": hydra})
    callback = sweep_module.SweepSummary()
    callback.on_multirun_start(config)
    for job, status in ((done, JobStatus.COMPLETED), (broken, JobStatus.FAILED)):
        job_config = OmegaConf.merge(config, {"hydra": {"runtime": {"output_dir": str(job)}}})
        callback.on_job_end(job_config, JobReturn(status=status))
    summary = sweep / sweep_module.SUMMARY
    (write_at_exit,) = at_exit  # a failed job makes Hydra's sweeper raise: no on_multirun_end
    write_at_exit()
    assert summary.is_file()
    summary.unlink()
    callback.on_multirun_end(config)
    assert at_exit == []  # written once, not again as the process exits
    rows = list(csv.DictReader(summary.open()))
    assert [(r["job"], r["status"], r["val/ssim_bestofN"]) for r in rows] == [
        ("0", "finished", "0.6"),
        ("1", "failed", ""),
    ]
