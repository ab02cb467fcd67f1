"""Commands stopped, killed, crowded or out of room leave nothing a later run trusts: outputs
appear as a whole, a run folder belongs to one run, SIGTERM never looks like success, and a full
disk or read-only place is one line naming the path."""

import errno
import importlib
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from pytorch_lightning.utilities.exceptions import SIGTERMException

from svg_lightning import files, hydra_entry, runner, runs
from svg_lightning.api import train
from svg_lightning.config import config_dir
from svg_lightning.errors import ConfigError, PreemptedError
from svg_lightning.evaluate import evaluate
from tests.helpers import TINY, compose_cfg
from tests.test_resume import NO_MEDIA

evaluate_mod = importlib.import_module("svg_lightning.evaluate")
sample_mod = importlib.import_module("svg_lightning.sample")
train_mod = importlib.import_module("svg_lightning.train")
EVAL = ["eval.num_videos=3", "eval.num_samples=2", "eval.n_future=3", "eval.batch_size=3",
        "eval.grid_videos=1", "eval.grid_samples=1", "logger=csv",
        "trainer.accelerator=cpu"]  # fmt: skip


def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/full/disk/file")


def sample_cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    clip = tmp_path / "clip.npy"
    np.save(clip, np.random.default_rng(0).random((4, 32, 32), dtype=np.float32))
    return compose_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={clip}",
                       f"out={tmp_path / 'samples'}", "device=cpu", *overrides,
                       config_name="sample")  # fmt: skip


def test_a_failed_sample_rerun_leaves_the_earlier_outputs_whole(
    tmp_path, trained_run, monkeypatch, capsys
):
    """A rerun that dies midway (here the disk fills at the third video) neither deletes the
    earlier run's videos nor leaves its own samples.npy beside them; the error is one line."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    sample_mod.sample(sample_cfg(tmp_path, ckpt, "num_samples=4"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = sample_mod.save_mp4, []

    def fills_up(*args):
        calls.append(1)
        return full_disk() if len(calls) == 3 else real(*args)

    monkeypatch.setattr(sample_mod, "save_mp4", fills_up)
    with pytest.raises(SystemExit) as stop:
        runner.guarded(sample_mod.sample, sample_cfg(tmp_path, ckpt, "num_samples=3", "seed=1"),
                    hydra_logging=False)  # fmt: skip
    assert stop.value.code == 74
    (line,) = capsys.readouterr().err.splitlines()
    assert "no space left writing /full/disk/file" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary left either


def test_evaluate_out_of_room_leaves_no_metrics_json(tmp_path, trained_run, monkeypatch):
    """metrics.json is what compare and reproduce read: it appears only with every other file."""
    monkeypatch.setattr(evaluate_mod.report, "save_sample_grid", full_disk)
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      config_name="eval")  # fmt: skip
    with pytest.raises(OSError):
        evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    assert not (out / "metrics.json").exists() and not (out / "curves.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".metrics.json")]


def test_sigterm_during_evaluation_is_not_success(tmp_path, trained_run, monkeypatch):
    """Lightning stops its test loop on SIGTERM with SIGTERMException, a SystemExit without a
    code: exit 0 with no results. It becomes PreemptedError (exit 143)."""

    def preempted(*_args, **_kwargs):
        raise SIGTERMException

    monkeypatch.setattr(evaluate_mod, "run_best_of_n", preempted)
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      config_name="eval")  # fmt: skip
    with pytest.raises(PreemptedError, match="stopped by SIGTERM during the evaluation") as err:
        evaluate(cfg)
    assert err.value.exit_code == 143
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_ctrl_c_during_evaluation_exits_130_and_leaves_sigint_working(
    tmp_path, trained_run, monkeypatch, capsys
):
    """Lightning's own Ctrl-C handling runs (teardown, then sys.exit(1), a crash's code): the
    command says it was stopped and exits 130, no metrics are written, and SIGINT's handler is
    the one from before (Lightning ignores SIGINT while it shuts down)."""

    def ctrl_c(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_mod.SVGModule, "score", ctrl_c)
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      config_name="eval")  # fmt: skip
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stop:
        runner.guarded(evaluate, cfg, hydra_logging=False)
    assert stop.value.code == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stopped by Ctrl-C (SIGINT) during the evaluation of" in line
    assert "no results were written; rerun the same command" in line
    assert signal.getsignal(signal.SIGINT) is before is not signal.SIG_IGN
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_sigterm_during_the_training_summary_is_not_success(tmp_path, monkeypatch):
    def preempted(*_args, **_kwargs):
        raise SIGTERMException

    monkeypatch.setattr(train_mod, "run_best_of_n", preempted)
    cfg = compose_cfg(tmp_path, *TINY, "~callbacks.video_samples", "~callbacks.rich_progress_bar")
    with pytest.raises(PreemptedError, match="held-out summary.*svg_lightning.evaluate ckpt_path="):
        train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_a_run_folder_in_use_is_refused(tmp_path):
    cfg = compose_cfg(tmp_path, *TINY, *NO_MEDIA)
    out = Path(cfg.paths.output_dir)
    with runs.claimed(out, "an evaluation"):
        assert runs.in_use(out)
        with pytest.raises(ConfigError, match=f"run folder {out} is in use by an evaluation, pid"):
            train(cfg)
    assert not runs.in_use(out) and not (out / "config.yaml").exists()


def test_a_run_folder_given_again_takes_only_the_same_settings(tmp_path):
    """Same settings: the run resumed (a requeued job). Other settings: refused, config.yaml and
    last.ckpt untouched."""
    cfg = compose_cfg(tmp_path, *TINY, *NO_MEDIA, "model.lr=0.002")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    config, ckpt = (out / "config.yaml").read_bytes(), (out / "checkpoints/last.ckpt").read_bytes()
    other = compose_cfg(tmp_path, *TINY, *NO_MEDIA, "model.lr=0.01")
    with pytest.raises(ConfigError, match=r"other settings \(model.lr: 0.002 -> 0.01\)"):
        train(other)
    assert (out / "config.yaml").read_bytes() == config
    assert (out / "checkpoints/last.ckpt").read_bytes() == ckpt
    train(compose_cfg(tmp_path, *TINY, *NO_MEDIA, "model.lr=0.002"))  # the same run: accepted


def test_an_evaluation_folder_holding_results_is_refused(tmp_path, trained_run):
    cfg = compose_cfg(tmp_path, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", *EVAL,
                      config_name="eval")  # fmt: skip
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"{out} holds a finished evaluation"):
        evaluate(cfg)
    assert (out / "metrics.json").read_text() == "{}"


@pytest.mark.parametrize(
    "command,overrides,setting",
    [
        ("train", ["hydra.run.dir={ro}/run"], "hydra.run.dir"),
        ("eval", ["ckpt_path=x.ckpt", "hydra.run.dir={ro}/run"], "hydra.run.dir"),
        ("sample", ["ckpt_path=x.ckpt", "input=x.mp4", "out={ro}/samples"], "out"),
        # sample from a read-only folder: Hydra's log goes to ./logs even with a writable out=
        ("sample", ["ckpt_path=x.ckpt", "input=x.mp4", "out={rw}/samples", "paths.root_dir={ro}"],
         "paths.log_dir"),
    ],
)  # fmt: skip
def test_read_only_places_are_refused_before_hydra_starts(
    tmp_path, monkeypatch, capsys, command, overrides, setting
):
    """The suite may run as root, whom permission bits do not stop: os.access is made to deny
    the folder, as it does for anyone on a read-only mount."""
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir(), rw.mkdir()
    real = files.os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: Path(p) != ro and real(p, mode))
    args = [o.format(ro=ro, rw=rw) for o in overrides]
    monkeypatch.setattr(sys, "argv", ["svg", *args])
    with pytest.raises(SystemExit) as stop:
        hydra_entry.precheck(command)
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{setting}=" in line and f"its existing parent {ro} is not writable" in line


def test_output_error_names_the_path_through_wrapping_errors(tmp_path):
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x.png"))
        except OSError as inner:
            raise RuntimeError("wrapped by a library") from inner
    except RuntimeError as outer:
        err = files.output_error(outer)
    assert str(err).startswith(f"cannot write {tmp_path / 'x.png'}: Read-only file system")
    assert files.output_error(OSError(errno.ENOENT, "No such file")) is None
    assert files.output_error(ValueError("not a write")) is None


def test_runs_started_in_the_same_second_get_folders_of_their_own():
    """Hydra makes the run folder before any of our code runs, so its name alone must tell two
    jobs of one task apart (a folder taken anyway is refused: test_a_run_folder_in_use_...)."""
    folders = []
    for _ in range(2):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", return_hydra_config=True)
        folders.append(cfg.hydra.run.dir)
    assert folders[0] != folders[1] and Path(folders[0]).parent == Path(folders[1]).parent
