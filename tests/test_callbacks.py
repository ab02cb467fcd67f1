"""The media callbacks write the same files whatever the logger, and hand them to the logger;
every logger has each value at the same step, the step files are named with (numbering.py)."""

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from svg_lightning import callbacks
from svg_lightning.api import train
from svg_lightning.callbacks import VideoSamples, plot_history
from tests.helpers import TINY, compose_cfg

RUN = [
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "summary.enabled=false",
    "callbacks.video_samples.num_sequences=2",
    "callbacks.video_samples.num_samples=3",
]


def gif_frames(path: Path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def media_files(out: Path) -> dict[str, list[int]]:
    """{logger key: steps} that the files in <run>/media/ are named for."""
    found = defaultdict(list)
    for path in sorted((out / "media").iterdir()):
        stem, step = re.fullmatch(r"(.+)_step(\d{7})", path.stem).groups()
        found[f"media/{stem}"].append(int(step))
    return dict(found)


def csv_steps(out: Path) -> dict[str, list[int]]:
    (metrics,) = (out / "csv").rglob("metrics.csv")
    found = defaultdict(list)
    for row in csv.DictReader(metrics.open()):
        for key, value in row.items():
            if value and key not in ("step", "epoch"):
                found[key].append(int(row["step"]))
    return dict(found)


def tensorboard_steps(out: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = out.rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    found = {k: [e.step for e in acc.Scalars(k)] for k in tags["scalars"]}
    return found | {k: [e.step for e in acc.Images(k)] for k in tags["images"]}


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_media_for_each_logger(tiny_cfg, logger, monkeypatch):
    wandb_steps = defaultdict(list)  # what Lightning's W&B logger is given (its global step)
    log_metrics = WandbLogger.log_metrics

    def record(self, metrics, step=None):
        for key in metrics:
            wandb_steps[key].append(step)
        log_metrics(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", record)
    plotted = {}  # {key: steps} as drawn on training_curves.png

    def plot(history, path):
        plotted.update({key: [step for step, _ in points] for key, points in history.items()})
        return plot_history(history, path)

    monkeypatch.setattr(callbacks, "plot_history", plot)
    cfg = tiny_cfg(f"logger={logger}", *RUN)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    media = out / "media"
    gifs = sorted(media.glob("samples_step*.gif"))
    assert [g.name for g in gifs] == ["samples_step0000002.gif", "samples_step0000004.gif"]
    # One name and one step per artifact: the logger key is the file's stem.
    files = media_files(out)
    assert files == {
        k: [2, 4]
        for k in ("media/samples", "media/posterior_reconstruction", "media/kl_and_prior_sigma")
    }
    if logger == "csv":
        steps = csv_steps(out)
    elif logger == "tensorboard":
        steps = tensorboard_steps(out)
    else:
        steps = dict(wandb_steps)
    # A training batch's loss is at the step it was measured after (0 for the first batch), in
    # the logger and on training_curves.png; validation, its media and their cost at step 2 and 4.
    assert steps["train/loss"] == plotted["train/loss"] == [0, 1, 2, 3]
    assert steps["media/seconds"] == steps["val/ssim_bestofN"] == [2, 4]
    assert plotted["val/ssim_bestofN"] == [2, 4]
    # The KL terms are named by the frame they predict (2..5 of 5), as on kl_and_prior_sigma.
    kl_frames = sorted(k for k in steps if k.startswith("train/kl_"))
    assert kl_frames == [f"train/kl_frame/{f:02d}" for f in range(2, 6)]
    if logger != "csv":  # the loggers that take media have them under the files' names
        assert {k: steps[k] for k in files} == files
        assert steps["media/training_curves"] == [4]
    assert gif_frames(gifs[0]) == 2 + 3  # n_past + n_future frames
    with Image.open(gifs[0]) as im:
        # a row per video, [ground truth, 3 samples] side by side; 32 px frames, 2 px borders
        w, h = im.size
        assert h % (2 * 36) == 0 and w * 2 == h * 4
    assert (out / "training_curves.png").stat().st_size > 0
    if logger == "wandb":
        run = next((out / "wandb").glob("offline-run-*"))
        logged = {p.suffix for p in (run / "files" / "media").rglob("*") if p.is_file()}
        assert {".gif", ".png"} <= logged


def test_deterministic_model_gets_samples_without_latent_plots(tiny_cfg):
    cfg = tiny_cfg("model=deterministic", "logger=csv", *RUN)
    train(cfg)
    media = Path(cfg.paths.output_dir) / "media"
    assert len(list(media.glob("samples_step*.gif"))) == 2
    assert not list(media.glob("kl_and_prior_sigma_step*.png"))


def test_every_n_validations(tiny_cfg):
    cfg = tiny_cfg("logger=csv", *RUN, "callbacks.video_samples.every_n_validations=2")
    train(cfg)
    gifs = list((Path(cfg.paths.output_dir) / "media").glob("samples_step*.gif"))
    assert [g.name for g in gifs] == ["samples_step0000002.gif"]


def test_validation_scores_are_logged_at_the_step_media_and_checkpoints_name(tiny_cfg):
    cfg = tiny_cfg("logger=csv", *RUN)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    val_steps = csv_steps(out)["val/ssim_bestofN"]
    media_steps = sorted(int(p.stem[-7:]) for p in (out / "media").glob("samples_step*.gif"))
    assert val_steps == media_steps == [2, 4]
    (best,) = (out / "checkpoints").glob("step*.ckpt")
    assert int(best.stem[4:]) in val_steps


def test_training_curves_show_a_single_point(tmp_path):
    """A run too short for a line still draws its points (a one-point line is invisible)."""
    path = plot_history({"train/loss": [(1, 0.5)]}, tmp_path / "curves.png")
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    colored = (rgb.max(-1) - rgb.min(-1)) > 60  # the data's colour; axes and text are grey
    assert colored.sum() > 10


def test_kl_plot_numbers_frames_as_the_kl_keys(tmp_path, monkeypatch):
    """train/kl_frame/NN and the x axis of kl_and_prior_sigma both count predicted frames from
    1: with 2 + 3 frames, the KL terms belong to frames 2..5."""
    model = instantiate(compose_cfg(tmp_path, *TINY).model)
    x = torch.rand(2, 5, 1, 32, 32)
    logged = {}
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    model.training_step({"frames": x}, 0)
    keys = [int(k.removeprefix("train/kl_frame/")) for k in logged]
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: figures.append(fig))
    with torch.no_grad():
        VideoSamples._plot_latents(tmp_path / "plot.png", model.svg(x, 2).latents, 2, 0)
    kl_axes, sigma_axes = figures[0].axes
    bars = [round(b.get_x() + b.get_width() / 2) for b in kl_axes.patches]
    assert keys == bars == list(sigma_axes.lines[0].get_xdata()) == [2, 3, 4, 5]
    assert "from 1" in kl_axes.get_xlabel()
