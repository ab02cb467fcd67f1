"""``trainer=ddp trainer.num_nodes=2`` rehearsed on one CPU: two processes, each one "node" of
one device (gloo), each running the real command as a cluster runs it on every node, both
writing into one run folder (a shared filesystem; ``hydra.run.dir`` given explicitly, since the
default folder name holds the second each process started in). The nodes are launched

- by hand, with Lightning's variables: ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK`` and
  ``WORLD_SIZE`` (Lightning's ``LightningEnvironment``);
- as ``srun`` starts a job of 2 nodes x 1 task: ``SLURM_NTASKS``, ``SLURM_NTASKS_PER_NODE``,
  ``SLURM_NNODES``, ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NODEID``, ``SLURM_NODELIST``,
  ``SLURM_JOB_ID`` (the port is 15000 + its last 4 digits), ``SLURM_JOB_NAME`` (Lightning's
  ``SLURMEnvironment``; no ``MASTER_*``).

Two nodes must train the very weights of one machine with two processes (``trainer=ddp_sim``)
and score a checkpoint exactly as one process does. Every process gets one intra-op thread:
Lightning otherwise gives each process cpu_count / processes-per-node threads, and a different
summation order moves the weights by float rounding (Adam turns that into ~1e-3 on the
convolution biases ahead of BatchNorm, whose gradient is ~0)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY

# What the launch of the two "nodes" sets; nothing of the caller's own job may leak in (the
# tests may themselves run inside a SLURM job or under torchrun).
LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "RANK",
               "WORLD_SIZE", "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")  # fmt: skip
TRAIN = [*TINY, "summary.enabled=false", "extras.print_config=false"]
# One device per node, the CPU: trainer=ddp itself asks for every GPU.
TWO_NODES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2"]
EVAL = [
    "eval.num_samples=2",
    "eval.num_videos=3",
    "eval.batch_size=2",  # two batches, the last of one video: padded by the sampler
    "eval.n_past=null",  # the model's training lengths (2 -> 3)
    "eval.n_future=null",
    "eval.grid_videos=2",
    "eval.grid_samples=2",
    "logger=csv",
]
TIMEOUT = 420  # seconds for all the processes of one command


def clean_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCH_VARS and not k.startswith("SLURM_")}  # fmt: skip
    return {**env, "SVG_ROOT": str(root), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def free_port(low: int = 20000, high: int = 60000) -> int:
    """A port in [low, high) nothing listens on now."""
    for port in random.sample(range(low, high), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in [{low}, {high})")


def lightning_nodes(root: Path) -> list[dict[str, str]]:
    """The environment of each node, launched by hand (Lightning's multi-node docs)."""
    port = str(free_port())
    return [
        {
            **clean_env(root),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "NODE_RANK": str(node),
            "WORLD_SIZE": "2",
        }  # fmt: skip
        for node in range(2)
    ]


def slurm_nodes(root: Path) -> list[dict[str, str]]:
    """The environment ``srun`` gives the task of each node of ``sbatch --nodes=2
    --ntasks-per-node=1``; Lightning takes the main port from the job id."""
    port = free_port(15000, 25000)
    job = {
        "SLURM_JOB_ID": f"77{port - 15000:04d}",
        "SLURM_JOB_NAME": "svg",  # not bash/interactive: those turn the detection off
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "2",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_JOB_NODELIST": "127.0.0.1",
        "SLURM_LOCALID": "0",
    }
    return [
        {**clean_env(root), **job, "SLURM_PROCID": str(node), "SLURM_NODEID": str(node)}
        for node in range(2)
    ]


LAUNCHES = {"lightning": lightning_nodes, "slurm": slurm_nodes}


def run_nodes(module: str, args: list[str], envs: list[dict], logs: Path) -> list[str]:
    """``python -m module args`` once per environment, all at once; returns each one's output.
    A process that fails stops the others (its peers would wait for it for 30 minutes)."""
    logs.mkdir(parents=True, exist_ok=True)
    files = [logs / f"node{i}.log" for i in range(len(envs))]
    procs = []
    for env, file in zip(envs, files):
        with open(file, "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=env["SVG_ROOT"], env=env,
                stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = [f.read_text(errors="replace") for f in files]
    for i, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"node {i} of {module} exited {p.returncode}:\n{out[-4000:]}"
    return outputs


def state_dict(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2
    return state["state_dict"]


def scores(folder: Path) -> dict:
    """metrics.json's numbers: the summary and the per-step curves."""
    doc = json.loads((folder / "metrics.json").read_text())
    return {"summary": doc["summary"], "curves": doc["curves"]}


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory) -> tuple[Path, Path]:
    """Two processes on one machine (trainer=ddp_sim) trained a run; one process scored it.
    Returns (run folder, evaluation folder)."""
    root = tmp_path_factory.mktemp("one_machine")
    run, evaluation = root / "run", root / "eval"
    env = [clean_env(root)]
    run_nodes("svg_lightning", [*TRAIN, "trainer=ddp_sim", f"hydra.run.dir={run}"], env,
              root / "train_logs")  # fmt: skip
    ckpt = run / "checkpoints" / "last.ckpt"
    run_nodes("svg_lightning.evaluate", [f"ckpt_path={ckpt}", *EVAL, "trainer.accelerator=cpu",
              f"hydra.run.dir={evaluation}"], env, root / "eval_logs")  # fmt: skip
    return run, evaluation


@pytest.mark.slow
@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_two_nodes_train_and_score_as_one_machine(tmp_path, one_machine, launch):
    reference_run, reference_eval = one_machine
    run = tmp_path / "run"  # the one folder both nodes see
    out = run_nodes("svg_lightning", [*TRAIN, *TWO_NODES, f"hydra.run.dir={run}"],
                    LAUNCHES[launch](tmp_path), tmp_path / "train_logs")  # fmt: skip
    for rank in range(2):  # one world of two processes, one per node
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in out[rank]
    got, want = state_dict(run), state_dict(reference_run)
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"weights differ from one machine's: {differ[:5]}"

    # Scoring the one-machine checkpoint on two nodes gives one process's numbers.
    evaluation = tmp_path / "eval"
    ckpt = reference_run / "checkpoints" / "last.ckpt"
    out = run_nodes("svg_lightning.evaluate", [f"ckpt_path={ckpt}", *EVAL, *TWO_NODES,
                    f"hydra.run.dir={evaluation}"],
                    LAUNCHES[launch](tmp_path), tmp_path / "eval_logs")  # fmt: skip
    assert "MEMBER: 2/2" in out[1]
    assert scores(evaluation) == scores(reference_eval)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("allocation", "message"),
    [
        ({"SLURM_NNODES": "1", "SLURM_NTASKS": "1"}, "HINT: Set `num_nodes=1`"),
        ({"SLURM_NTASKS_PER_NODE": None}, "HINT: Use `--ntasks-per-node=2` instead"),
    ],
    ids=["one_node_allocated", "ntasks_without_per_node"],
)
def test_slurm_allocation_that_does_not_match_is_refused(tmp_path, allocation, message):
    """Lightning stops a job whose SLURM allocation does not match the trainer's nodes and
    devices, instead of leaving its processes waiting for peers that never come."""
    env = {**slurm_nodes(tmp_path)[0], **allocation}
    env = {k: v for k, v in env.items() if v is not None}
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "svg_lightning", *TRAIN, *TWO_NODES, f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode != 0
    assert message in r.stdout + r.stderr
    assert not (run / "checkpoints").exists()
