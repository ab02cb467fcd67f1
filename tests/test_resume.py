"""A run survives interruption: exact resume, SIGKILL, corrupt checkpoints, NaN losses."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from svg_lightning.api import train
from svg_lightning.errors import CheckpointError, NonFiniteLossError
from svg_lightning.runner import WEIGHTS_ONLY_NOTE
from tests.helpers import TINY

NO_MEDIA = ["summary.enabled=false", "~callbacks.video_samples", "~callbacks.rich_progress_bar"]


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_half_then_resume_equals_one_go(tmp_path, tiny_cfg):
    """Bit-exact on CPU: training data are a function of (seed, index) read from the position of
    the step, and the sampling RNG state travels in the checkpoint."""
    whole = tiny_cfg(*NO_MEDIA, "trainer.max_steps=6", "trainer.val_check_interval=2")
    whole.paths.output_dir = str(tmp_path / "whole")
    train(whole)
    first = tiny_cfg(*NO_MEDIA, "trainer.max_steps=3", "trainer.val_check_interval=2")
    first.paths.output_dir = str(tmp_path / "first")
    train(first)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    second = tiny_cfg(*NO_MEDIA, "trainer.max_steps=6", "trainer.val_check_interval=2",
                      f"ckpt_path={ckpt}")  # fmt: skip
    second.paths.output_dir = str(tmp_path / "second")
    train(second)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "second")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and the interruption mattered: the halfway weights differ from the final ones
    assert not all(torch.equal(a[k], weights(tmp_path / "first")[k]) for k in a)


def test_same_seed_same_weights_with_every_callback(tmp_path, tiny_cfg):
    """Two runs of one config on one machine are bit-identical, media, validation and summary
    included: callbacks draw from their own RNG streams, never the training noise's."""
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("other_seed", 8)):
        cfg = tiny_cfg("trainer.max_steps=4", "trainer.val_check_interval=2", f"seed={seed}")
        cfg.paths.output_dir = str(tmp_path / name)
        train(cfg)
        runs[name] = weights(tmp_path / name)
    for key in runs["a"]:
        assert torch.equal(runs["a"][key], runs["b"][key]), key
    summaries = [json.loads((tmp_path / n / "metrics.json").read_text())["summary"] for n in "ab"]
    assert summaries[0] == summaries[1]
    # what else must match for bit-exact CPU runs is recorded
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["torch_threads"] == torch.get_num_threads() and info["torch"] == torch.__version__
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # the comparison can fail: another seed gives other weights
    assert not all(torch.equal(runs["a"][k], runs["other_seed"][k]) for k in runs["a"])


def test_ckpt_path_last_finds_the_newest_run(tmp_path, tiny_cfg):
    cfg = tiny_cfg(*NO_MEDIA, "trainer.max_steps=2")
    cfg.paths.output_dir = str(tmp_path / "logs" / "quickstart" / "runs" / "a")
    train(cfg)
    again = tiny_cfg(*NO_MEDIA, "trainer.max_steps=4", "ckpt_path=last")
    again.paths.output_dir = str(tmp_path / "logs" / "quickstart" / "runs" / "b")
    train(again)
    info = json.loads((Path(again.paths.output_dir) / "run_info.json").read_text())
    assert info["resumed_from"].endswith("runs/a/checkpoints/last.ckpt")
    state = torch.load(
        Path(again.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert state["global_step"] == 4


def test_offline_resume_gives_each_wandb_run_one_offline_folder(tmp_path, tiny_cfg, caplog):
    """W&B cannot continue a run offline: a second offline copy under the same id would replace
    the first when synced. The resumed training is a W&B run of its own, in the same group
    (online it continues the run: test_train.py::test_offline_wandb_does_not_continue_a_run)."""
    cfg = tiny_cfg(*NO_MEDIA, "logger=wandb", "trainer.max_steps=2")
    cfg.paths.output_dir = str(tmp_path / "a")
    train(cfg)
    first_id = json.loads((tmp_path / "a" / "run_info.json").read_text())["wandb_id"]
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    again = tiny_cfg(*NO_MEDIA, "logger=wandb", "trainer.max_steps=3", f"ckpt_path={ckpt}")
    again.paths.output_dir = str(tmp_path / "b")
    train(again)
    second_id = json.loads((tmp_path / "b" / "run_info.json").read_text())["wandb_id"]
    assert first_id and second_id and first_id != second_id
    folders = sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("*/wandb/offline-run-*"))
    assert folders == sorted([first_id, second_id])
    assert f"cannot continue run {first_id} offline" in caplog.text


def test_resume_is_quiet_about_what_is_not_true_here(tmp_path, tiny_cfg, recwarn):
    """Resuming mid-epoch is exact (training items are a function of (seed, index), read from
    the step's position) and checkpoints are full on purpose: Lightning's messages saying
    otherwise are silenced, by train() itself (tests and notebooks call it directly)."""
    lightning = logging.getLogger("pytorch_lightning")
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    lightning.addHandler(handler)
    try:
        cfg = tiny_cfg(*NO_MEDIA, "trainer.max_steps=2")
        cfg.paths.output_dir = str(tmp_path / "a")
        train(cfg)
        ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
        again = tiny_cfg(*NO_MEDIA, "trainer.max_steps=3", f"ckpt_path={ckpt}")
        again.paths.output_dir = str(tmp_path / "b")
        train(again)
        # Lightning's own saves without weights_only (SIGTERM, SLURM requeue) say it too.
        connector = logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector")
        connector.info(WEIGHTS_ONLY_NOTE)
    finally:
        lightning.removeHandler(handler)
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt")["global_step"] == 3
    messages = [str(w.message) for w in recwarn] + [r.getMessage() for r in records]
    assert any("Restoring states from the checkpoint" in m for m in messages)  # really resumed
    assert not [m for m in messages if "not resumable" in m or "`weights_only` was not set" in m]


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read as a PyTorch checkpoint"),
        (lambda p: p.unlink(), "does not exist"),
    ],
)
def test_corrupt_or_missing_checkpoint_is_refused(tmp_path, tiny_cfg, damage, needle):
    cfg = tiny_cfg(*NO_MEDIA)
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    damage(ckpt)
    again = tiny_cfg(*NO_MEDIA, f"ckpt_path={ckpt}")
    again.paths.output_dir = str(tmp_path / "again")
    with pytest.raises(CheckpointError) as err:
        train(again)
    assert str(ckpt) in str(err.value) and needle in str(err.value)
    assert not (tmp_path / "again" / "checkpoints").exists()  # refused before training


def test_architecture_mismatch_lists_the_settings(tmp_path, tiny_cfg):
    cfg = tiny_cfg(*NO_MEDIA)
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    again = tiny_cfg(*NO_MEDIA, f"ckpt_path={ckpt}", "model.rnn_size=16", "model.skip=reference")
    again.paths.output_dir = str(tmp_path / "again")
    with pytest.raises(CheckpointError) as err:
        train(again)
    msg = str(err.value)
    assert "model.rnn_size: checkpoint 8, config 16" in msg
    assert "model.skip: checkpoint 'last', config 'reference'" in msg


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_cfg, monkeypatch):
    from svg_lightning.models import svg

    real = svg.svg_loss  # what the training pass's loss (TeacherForced.loss) calls

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        if poisoned.calls == 4:  # the fifth optimizer step
            terms.loss = terms.loss * float("nan")
        poisoned.calls += 1
        return terms

    poisoned.calls = 0
    monkeypatch.setattr(svg, "svg_loss", poisoned)
    cfg = tiny_cfg(
        *NO_MEDIA, "trainer.max_steps=10", "callbacks.last_checkpoint.every_n_train_steps=2"
    )
    with pytest.raises(NonFiniteLossError, match="at step 4") as err:
        train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert str(ckpt) in str(err.value)
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 4
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_mid_run_then_resume_finishes(tmp_path, sig):
    """SIGKILL: the last periodic last.ckpt survives whole. Ctrl-C (SIGINT; SIGTERM:
    tests/test_bad_input.py): the batch under way finishes and is saved, exit 130 with the way to
    resume."""
    env = {**os.environ, "SVG_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    args = [
        *TINY,
        *NO_MEDIA,
        "logger=csv",
        "trainer.max_steps=400",
        "trainer.val_check_interval=100",
        "callbacks.last_checkpoint.every_n_train_steps=5",
    ]
    log = tmp_path / "output.txt"
    with log.open("w") as output:
        proc = subprocess.Popen([sys.executable, "-m", "svg_lightning", *args], cwd=tmp_path,
                                env=env, stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        runs = tmp_path / "logs" / "quickstart" / "runs"
        deadline = time.time() + 300
        while not list(runs.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # let it run on, and maybe be mid-write, when killed
        proc.send_signal(sig)
        proc.wait(timeout=300)
    (ckpt,) = runs.glob("*/checkpoints/last.ckpt")
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < killed_at < 400
    if sig == signal.SIGINT:
        assert proc.returncode == 130, log.read_text()[-3000:]
        assert f"stopped by Ctrl-C (SIGINT) at step {killed_at}; saved {ckpt}" in log.read_text()
    # A few steps more are enough to show the resume goes on (the last of several overrides wins).
    cmd = [sys.executable, "-m", "svg_lightning", *args, "ckpt_path=last",
           f"trainer.max_steps={killed_at + 3}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    finals = [
        torch.load(p, weights_only=True)["global_step"]
        for p in runs.glob("*/checkpoints/last.ckpt")
    ]
    assert sorted(finals) == [killed_at, killed_at + 3]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_whole_job_reaches_the_data_workers_too(tmp_path, sig):
    """Ctrl-C in a terminal goes to the whole foreground process group, and a scheduler's
    SIGTERM may go to every process of the job: the DataLoader workers (forked, so holding
    copies of the handlers) get it as well. The run still stops at the end of the batch under
    way, saves, and exits 130 or 143; no worker dies of its own copy."""
    env = {**os.environ, "SVG_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    args = [*TINY, *NO_MEDIA, "logger=csv", "trainer.max_steps=100000",
            "trainer.val_check_interval=100000", "data.num_workers=2",
            "callbacks.last_checkpoint.every_n_train_steps=5"]  # fmt: skip
    log = tmp_path / "output.txt"
    with log.open("w") as output:
        proc = subprocess.Popen([sys.executable, "-m", "svg_lightning", *args], cwd=tmp_path,
                                env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        runs = tmp_path / "logs" / "quickstart" / "runs"
        deadline = time.time() + 300
        while not list(runs.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(proc.pid, sig)  # every process of the job
        proc.wait(timeout=300)
    (ckpt,) = runs.glob("*/checkpoints/last.ckpt")
    step = torch.load(ckpt, weights_only=True)["global_step"]
    text = log.read_text()
    by = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"stopped by {by} at step {step}; saved {ckpt}" in text
    assert "Traceback" not in text and "killed by signal" not in text
