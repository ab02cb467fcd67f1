"""Damaged checkpoints, bad outputs and bad settings are named before any work is wasted, and a
preempted run saves its work and says so (the data-preparation cases are in test_prepare_*)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from svg_lightning import checkpoint, devices, memory_checks
from svg_lightning.analyze import analyze
from svg_lightning.api import train
from svg_lightning.callbacks import StopOnNonFiniteLoss
from svg_lightning.checkpoint import read_checkpoint
from svg_lightning.compose import compose_config
from svg_lightning.devices import memory_error
from svg_lightning.errors import CheckpointError, ConfigError, InputError, NonFiniteLossError
from svg_lightning.evaluate import evaluate
from svg_lightning.evaluate.compare import compare_main
from svg_lightning.files import output_error, write_json
from svg_lightning.hydra_entry import hydra_command
from svg_lightning.memory_checks import backward_bytes
from svg_lightning.module import SVGModule
from svg_lightning.runs import META_KEY
from svg_lightning.sample import read_frames, sample
from tests.helpers import TINY, compose_cfg

NO_MEDIA = ["summary.enabled=false", "~callbacks.video_samples", "~callbacks.rich_progress_bar"]
EVAL = ["eval.num_videos=2", "eval.num_samples=2", "eval.n_future=3", "logger=csv",
        "trainer.accelerator=cpu"]  # fmt: skip


def copy_run(trained_run: Path, dest: Path) -> Path:
    shutil.copytree(trained_run, dest)
    return dest / "checkpoints" / "last.ckpt"


def edit_checkpoint(path: Path, edit) -> None:
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)


def test_non_finite_weights_are_refused_everywhere(tmp_path, trained_run):
    ckpt = copy_run(trained_run, tmp_path / "run")
    edit_checkpoint(ckpt, lambda c: c["state_dict"]["svg.frame_predictor.embed.weight"].fill_(
        float("nan")))  # fmt: skip
    npy = tmp_path / "clip.npy"
    np.save(npy, np.random.default_rng(0).random((4, 32, 32), dtype=np.float32))
    commands = {
        "evaluate": lambda: evaluate(
            compose_cfg(tmp_path / "e", f"ckpt_path={ckpt}", *EVAL, config_name="eval")
        ),
        "sample": lambda: sample(
            compose_cfg(
                tmp_path / "s",
                f"ckpt_path={ckpt}",
                f"input={npy}",
                f"out={tmp_path / 'out'}",
                "device=cpu",
                config_name="sample",
            )
        ),  # fmt: skip
        "analyze": lambda: analyze(
            compose_cfg(
                tmp_path / "a",
                f"ckpt_path={ckpt}",
                "command=prior",
                "device=cpu",
                config_name="analyze",
            )
        ),  # fmt: skip
    }
    for name, run in commands.items():
        with pytest.raises(CheckpointError, match="non-finite") as err:
            run()
        assert str(ckpt) in str(err.value), name
    assert not (tmp_path / "out").exists() and not list((tmp_path / "e").rglob("metrics.json"))


def test_metrics_json_never_holds_bare_nan(tmp_path):
    path = write_json(tmp_path / "m.json", {"ci95": float("nan"), "x": [np.float32(1.5)]})
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert doc == {"ci95": None, "x": [1.5]}


def test_flipped_bytes_in_a_checkpoint_are_detected(tmp_path, trained_run):
    ckpt = copy_run(trained_run, tmp_path / "run")
    with zipfile.ZipFile(ckpt) as archive:
        member = max(archive.infolist(), key=lambda m: m.file_size)  # a tensor's data
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data = bytearray(ckpt.read_bytes())
    data[offset + member.file_size // 2] ^= 0x55
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its CRC-32") as err:
        read_checkpoint(ckpt)
    assert member.filename in str(err.value)


def test_directory_and_random_bytes_are_named_without_unsafe_advice(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(junk)
    assert str(junk) in str(err.value) and "weights_only" not in str(err.value)
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        read_checkpoint(empty)


def test_resume_from_weights_that_do_not_fit_their_hyper_parameters(tmp_path, trained_run):
    ckpt = copy_run(trained_run, tmp_path / "run")
    edit_checkpoint(ckpt, lambda c: c["hyper_parameters"].update(rnn_size=16))
    cfg = compose_cfg(tmp_path, *TINY, *NO_MEDIA, "model.rnn_size=16", f"ckpt_path={ckpt}")
    cfg.paths.output_dir = str(tmp_path / "again")
    with pytest.raises(CheckpointError, match="does not match its architecture") as err:
        train(cfg)
    assert str(ckpt) in str(err.value)
    assert not (tmp_path / "again").exists()  # refused before the run folder was made


def test_sample_output_must_be_a_folder_and_stale_videos_go(tmp_path, trained_run):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    npy = tmp_path / "clip.npy"
    np.save(npy, np.random.default_rng(0).random((4, 32, 32), dtype=np.float32))
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    cfg = lambda out, n: compose_cfg(
        tmp_path, f"ckpt_path={ckpt}", f"input={npy}", f"out={out}", f"num_samples={n}",
        "n_future=2", "device=cpu", config_name="sample",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="taken.txt is an existing file"):
        sample(cfg(taken, 2))
    assert taken.read_text() == "mine"
    out = tmp_path / "futures"
    sample(cfg(out, 3))
    sample(cfg(out, 1))
    assert sorted(p.name for p in out.glob("*.mp4")) == ["sample_01.mp4"]
    assert np.load(out / "samples.npy").shape[0] == 1


@pytest.mark.parametrize(
    "override,needle",
    [("eval.num_videos=0", "eval.num_videos=0 must be an integer >= 1 or null"),
     ("eval.sample_chunk=0", "eval.sample_chunk=0 must be an integer >= 1 or null"),
     ("eval.n_past=0", "eval.n_past=0 must be an integer >= 1"),
     ("eval.grid_videos=0", "eval.grid_videos=0 must be an integer >= 1"),
     (f"eval.seed={2**64}", f"eval.seed={2**64} must be an integer in [0, 4294967295]")],
)  # fmt: skip
def test_bad_evaluation_settings_are_named(tmp_path, trained_run, override, needle):
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      override, config_name="eval")  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(needle)):
        evaluate(cfg)


def test_train_config_of_another_dataset_is_named(tmp_path, trained_run):
    other = tmp_path / "bair.yaml"
    text = (trained_run / "config.yaml").read_text()
    other.write_text(text.replace("SMMNISTDataModule", "BAIRDataModule"))
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      f"train_config={other}", config_name="eval")  # fmt: skip
    with pytest.raises(ConfigError, match="BAIRDataModule with 3-channel") as err:
        evaluate(cfg)
    assert str(other) in str(err.value)


def test_nan_stop_advice_depends_on_the_weights(tmp_path):
    model = SVGModule(backbone="dcgan32", nf=4, g_dim=8, z_dim=2, rnn_size=8)
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), global_step=7)
    stop = StopOnNonFiniteLoss()
    with pytest.raises(NonFiniteLossError, match="Lower model.lr"):
        stop.on_before_backward(trainer, model, torch.tensor(float("nan")))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="already non-finite"):
        stop.on_before_backward(trainer, model, torch.tensor(float("nan")))


@pytest.mark.slow
def test_sigterm_saves_exits_non_zero_and_resumes(tmp_path):
    """SLURM sends SIGTERM before preemption: the run saves last.ckpt, exits 143 saying how to
    resume, and ckpt_path=last finishes it."""
    env = {**os.environ, "SVG_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    args = [*TINY, *NO_MEDIA, "trainer.max_steps=2000", "trainer.val_check_interval=1000",
            "callbacks.last_checkpoint.every_n_train_steps=5"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "svg_lightning", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = tmp_path / "logs" / "quickstart" / "runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, output[-3000:]
    assert "stopped by SIGTERM" in output and "ckpt_path=last" in output
    (ckpt,) = runs.glob("*/checkpoints/last.ckpt")
    stopped_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < stopped_at < 2000
    done = subprocess.run(
        [sys.executable, "-m", "svg_lightning", *args, "trainer.max_steps=" + str(stopped_at + 3),
         "ckpt_path=last"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_checkpoint_of_another_dataset_is_named_even_with_the_same_frames(tmp_path, trained_run):
    """KTH and SM-MNIST frames share size and channels: the dataset itself is compared."""
    ckpt = copy_run(trained_run, tmp_path / "run")
    edit_checkpoint(ckpt, lambda c: c[META_KEY]["train_config"]["data"].update(
        _target_="svg_lightning.data.datamodules.KTHDataModule"))  # fmt: skip
    given = trained_run / "config.yaml"  # SM-MNIST
    cfg = compose_cfg(tmp_path, f"ckpt_path={ckpt}", *EVAL, f"train_config={given}",
                      config_name="eval")  # fmt: skip
    with pytest.raises(ConfigError, match="trained on KTHDataModule, but train_config="):
        evaluate(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "override,needle",
    [("seed=-1", "seed=-1 must be an integer in [0, 4294967295]"),
     (f"seed={2**64}", f"seed={2**64} must be an integer in [0, 4294967295]"),
     ("sample_chunk=0", "sample_chunk=0 must be an integer >= 1 or null")],
)  # fmt: skip
def test_bad_sampling_settings_are_named(tmp_path, trained_run, override, needle):
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
                      f"input={tmp_path / 'none.npy'}", f"out={tmp_path / 'o'}", override,
                      config_name="sample")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        sample(cfg)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "command,overrides,needle",
    [("prior", ["batch_size=0"], "batch_size=0 must be an integer >= 1"),
     ("prior", ["lags=abc"], "lags='abc' must be a list of integers"),
     ("prior", ["seed=-1"], "seed=-1 must be an integer in [0, 4294967295]"),
     ("prior", ["burn_in=-3"], "burn_in=-3 must be an integer in [0, 98]"),
     ("prior", ["burn_in=1000"], "burn_in=1000 must be an integer in [0, 98]"),
     ("prior", ["lags=[1000]"], "lags[0]=1000 must be an integer in [-97, 98]"),
     ("prior", ["seq_len=2"], "seq_len=2 must be an integer >= 3"),
     ("trajectories", ["num_true=0"], "num_true=0 must be an integer >= 1"),
     ("trajectories", ["plot_steps=0"], "plot_steps=0 must be an integer >= 1"),
     ("trajectories", ["n_future=0"], "n_future=0 must be an integer >= 1 or null")],
)  # fmt: skip
def test_bad_analysis_settings_are_named_before_the_checkpoint_is_read(
    tmp_path, command, overrides, needle
):
    cfg = compose_cfg(tmp_path, f"ckpt_path={tmp_path / 'absent.ckpt'}", f"command={command}",
                      *overrides, config_name="analyze")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        analyze(cfg)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "config_name,override,needle",
    [("eval", "task_name=..", "task_name='..' must be a plain folder name"),
     ("sample", "task_name=a/b", "task_name='a/b' must be a plain folder name"),
     ("analyze", "task_name=.", "task_name='.' must be a plain folder name"),
     ("eval", "eval.reference_ssim=no", "eval.reference_ssim='no' must be true or false"),
     ("eval", "+trainer.inference_mode=maybe", "trainer.inference_mode='maybe' must be true")],
)  # fmt: skip
def test_every_command_refuses_a_run_folder_outside_logs_and_words_as_booleans(
    config_name, override, needle
):
    """Checked where every command line is composed, before Hydra makes the run folder."""
    with pytest.raises(ConfigError) as err:
        compose_config(config_name, [override])
    assert needle in str(err.value)


def small_metrics_json(path: Path) -> Path:
    """A metrics.json as an evaluation writes it, two predicted frames long."""
    band = {"mean": [0.5, 0.4], "ci95": [0.01, 0.02]}
    curves = {f"{m}_{k}": band for m in ("ssim", "psnr") for k in ("bestofN", "copy_last", "black")}
    protocol = {"model": "lp", "dataset": "SMMNIST", "n_past": 2, "n_future": 2,
                "num_samples": 2, "num_videos": 2}  # fmt: skip
    summary = {k: {"mean": 0.5, "ci95": 0.01} for k in curves}
    return write_json(path, {"protocol": protocol, "summary": summary, "curves": curves})


@pytest.mark.parametrize(
    "case,needle",
    [("not_metrics", "is not an evaluation's metrics.json (no protocol, summary, curves)"),
     ("not_utf8", "is not an evaluation's metrics.json"),
     ("missing_folder", "does not exist; create it first"),
     ("file_as_folder", "does not exist; create it first"),
     ("no_png_suffix", "must name a .png file, e.g. --out"),
     ("folder_as_out", "is a folder; name the .png file")],
)  # fmt: skip
def test_compare_names_bad_inputs_and_outputs(tmp_path, capsys, case, needle):
    good = small_metrics_json(tmp_path / "metrics.json")
    inputs, out = [good], tmp_path / "cmp.png"
    if case == "not_metrics":
        inputs = [write_json(tmp_path / "other.json", {"loss": 1.0})]
    elif case == "not_utf8":
        inputs = [tmp_path / "latin1.json"]
        inputs[0].write_bytes(b'{"protocol": "\xe9t\xe9"}')
    elif case == "missing_folder":
        out = tmp_path / "nowhere" / "cmp.png"
    elif case == "file_as_folder":
        out = good / "cmp.png"
    elif case == "no_png_suffix":
        out = tmp_path / "cmp"
    elif case == "folder_as_out":
        out = tmp_path / "dir.png"
        out.mkdir()
    assert compare_main([*map(str, inputs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("cmp*.png"))
    assert compare_main([str(good), "--out", str(tmp_path / "ok.png")]) == 0
    assert str(tmp_path / "ok.png") in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "prior", "trajectories"])
def test_settings_that_need_more_memory_than_there_is_are_refused_first(
    tmp_path, trained_run, command
):
    """Terabytes of frames: refused with the number and the fix, before any allocation."""
    ckpt = f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}"
    huge = 10**12
    if command == "train":
        run, cfg = train, compose_cfg(tmp_path, *TINY, *NO_MEDIA, f"model.val_num_samples={huge}")
        fix = "lower data.batch_size, model.val_num_samples"
    elif command == "evaluate":
        run, cfg = evaluate, compose_cfg(tmp_path, ckpt, *EVAL, f"eval.num_samples={huge}",
                                         config_name="eval")  # fmt: skip
        fix = "lower eval.batch_size"
    elif command == "sample":
        npy = tmp_path / "clip.npy"
        np.save(npy, np.zeros((4, 32, 32), np.float32))
        run = sample
        cfg = compose_cfg(tmp_path, ckpt, f"input={npy}", f"out={tmp_path / 'o'}",
                          f"num_samples={huge}", "device=cpu", config_name="sample")  # fmt: skip
        fix = "lower num_samples or n_future"
    else:
        run = analyze
        cfg = compose_cfg(tmp_path, ckpt, f"command={command}", f"num_videos={huge}",
                          "device=cpu", config_name="analyze")  # fmt: skip
        fix = "lower num_videos"
    with pytest.raises(ConfigError, match="GiB of cpu memory available") as err:
        run(cfg)
    assert fix in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_a_batch_whose_backward_pass_does_not_fit_is_refused_before_any_work(tmp_path, monkeypatch):
    """The frames of a batch fit, but what the training keeps for its backward pass (the
    network's activations per video and time step, measured) does not: refused with the
    figure and the fix, where the run would otherwise be killed (CPU) or hit the allocator's
    traceback (GPU)."""
    cfg = compose_cfg(tmp_path, *TINY, *NO_MEDIA, "data.batch_size=64", "n_future=30")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    per_step, weights = backward_bytes(model)
    need = int(0.95 * (64 * (cfg.n_past + cfg.n_future - 1) * per_step + 4 * weights))
    frames = 64 * (cfg.n_past + cfg.n_future) * 32 * 32 * 4  # the batch's own frames fit
    monkeypatch.setattr(devices, "available_memory", lambda device: max(frames, need // 2))
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert f"{per_step / 2**20:.1f} MiB per video and time step" in str(err.value)
    assert f"data.batch_size=64 videos of n_past + n_future = {2 + 30} frames" in str(err.value)
    assert f"{need / 2**30:.1f} GiB, more than" in str(err.value)
    assert "lower data.batch_size, or n_future" in str(err.value)
    assert not (tmp_path / "out").exists()
    # bf16-mixed keeps half: under half the memory it fits (and the run starts).
    monkeypatch.setattr(devices, "available_memory", lambda device: need // 2 + 1)
    memory_checks.check_training_memory(model, 64, cfg.n_past + cfg.n_future,
                                 {"precision": "bf16-mixed", "accelerator": "cpu"})  # fmt: skip
    with pytest.raises(ConfigError):
        memory_checks.check_training_memory(model, 64, cfg.n_past + cfg.n_future,
                                     {"precision": "32-true", "accelerator": "cpu"})  # fmt: skip


@pytest.mark.parametrize("backbone", ["dcgan32", "vgg64"])
def test_the_measured_backward_bytes_are_those_of_a_real_training_pass(backbone):
    """The meta device measures what the CPU keeps, within 5% (the check relies on 95% of
    it: a refusal must never be wrong)."""
    size = backbone[-2:]
    model = {"backbone": backbone, "image_size": int(size), "nf": 8, "g_dim": 8, "z_dim": 2,
             "rnn_size": 8}  # fmt: skip
    meta, cpu = backward_bytes(model), backward_bytes(model, "cpu")
    assert meta[1] == cpu[1] > 0  # the weights
    assert 0.95 * meta[0] <= cpu[0] <= 1.05 * meta[0]


CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of "
    "which 1.20 GiB is free. Including non-PyTorch memory, this process has 77.9 GiB in use."
)


@pytest.mark.parametrize("command", ["train", "eval", "sample", "analyze"])
def test_memory_running_out_part_way_is_one_line_naming_what_to_lower(
    tmp_path, monkeypatch, capsys, command
):
    """CUDA's OutOfMemoryError (here raised by hand: this machine has no GPU), even wrapped
    in another error, becomes exit 2 and one line with the settings that size the command."""

    def runs_out(cfg):
        try:
            raise torch.OutOfMemoryError(CUDA_OOM)
        except torch.OutOfMemoryError as err:
            raise RuntimeError("a callback failed") from err

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SVG_ROOT", str(tmp_path))
    given = {"train": [], "eval": ["ckpt_path=x"], "analyze": ["ckpt_path=x", "command=prior"],
             "sample": ["ckpt_path=x", "input=x", f"out={tmp_path / 'o'}"]}  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["svg", *given[command]])
    with pytest.raises(SystemExit) as stop:
        hydra_command(command, runs_out)()
    assert stop.value.code == 2
    printed = capsys.readouterr()
    (line,) = [x for x in (printed.out + printed.err).splitlines() if "out of memory" in x]
    fix = {"train": "lower data.batch_size or n_future", "eval": "lower eval.batch_size or "
           "eval.sample_chunk", "sample": "lower sample_chunk or num_samples",
           "analyze": "lower batch_size"}[command]  # fmt: skip
    assert "[ERROR] - out of memory: CUDA out of memory. Tried to allocate 2.00 GiB; " + fix in line


def test_the_cpu_allocator_failing_is_named_too():
    try:
        torch.empty(2**62, dtype=torch.uint8)
    except RuntimeError as err:
        found = memory_error(err, "lower it")
    assert str(found) == (f"out of memory: you tried to allocate {2**62} bytes; lower it")
    assert memory_error(RuntimeError("shapes do not match"), "lower it") is None


def test_sample_reads_only_the_frames_it_uses_of_an_array(tmp_path):
    """A long .npy is mapped, not loaded: only frames up to the last conditioning one are
    converted and checked, so a NaN after them is no error."""
    arr = np.random.default_rng(0).random((200, 32, 32), dtype=np.float32)
    arr[150] = np.nan
    np.save(tmp_path / "long.npy", arr)
    frames = read_frames(tmp_path / "long.npy", limit=4)
    assert frames.shape == (4, 1, 32, 32) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[:, 0], arr[:4])
    with pytest.raises(InputError, match=r"NaN or inf values in frame\(s\) \[150\]"):
        read_frames(tmp_path / "long.npy")


def test_a_checkpoint_write_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch.save turns the OSError of a full disk into a RuntimeError without the path."""

    class Full(io.BytesIO):
        def write(self, data):
            if self.tell() > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

        def fileno(self):
            raise AssertionError("never reached: the write fails first")

    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: Full(), raising=False)
    path = tmp_path / "last.ckpt"
    with pytest.raises(OSError) as err:
        checkpoint.AtomicCheckpointIO().save_checkpoint({"x": torch.zeros(1000)}, path)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    message = str(output_error(err.value))
    assert message.startswith(f"no space left writing {path}") and "MB free there" in message
    assert not list(tmp_path.iterdir())  # nothing half-written left
