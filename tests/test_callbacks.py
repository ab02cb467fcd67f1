"""The media callbacks write the same files whatever the logger, and hand them to the logger."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svg_lightning.callbacks import plot_history
from svg_lightning.train import train

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


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_media_for_each_logger(tiny_cfg, logger):
    cfg = tiny_cfg(f"logger={logger}", *RUN)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    media = out / "media"
    gifs = sorted(media.glob("samples_step*.gif"))
    assert [g.name for g in gifs] == ["samples_step0000002.gif", "samples_step0000004.gif"]
    assert gif_frames(gifs[0]) == 2 + 3  # n_past + n_future frames
    with Image.open(gifs[0]) as im:
        # a row per video, [ground truth, 3 samples] side by side; 32 px frames, 2 px borders
        w, h = im.size
        assert h % (2 * 36) == 0 and w * 2 == h * 4
    assert len(list(media.glob("posterior_step*.png"))) == 2
    assert len(list(media.glob("latents_step*.png"))) == 2
    assert (out / "training_curves.png").stat().st_size > 0
    if logger == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (events,) = out.rglob("events.out.tfevents.*")
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        assert "media/posterior_reconstruction" in acc.Tags()["images"]
    if logger == "wandb":
        run = next((out / "wandb").glob("offline-run-*"))
        logged = {p.suffix for p in (run / "files" / "media").rglob("*") if p.is_file()}
        assert {".gif", ".png"} <= logged


def test_deterministic_model_gets_samples_without_latent_plots(tiny_cfg):
    cfg = tiny_cfg("model=deterministic", "logger=csv", *RUN)
    train(cfg)
    media = Path(cfg.paths.output_dir) / "media"
    assert len(list(media.glob("samples_step*.gif"))) == 2
    assert not list(media.glob("latents_step*.png"))


def test_every_n_validations(tiny_cfg):
    cfg = tiny_cfg("logger=csv", *RUN, "callbacks.video_samples.every_n_validations=2")
    train(cfg)
    gifs = list((Path(cfg.paths.output_dir) / "media").glob("samples_step*.gif"))
    assert [g.name for g in gifs] == ["samples_step0000002.gif"]


def test_validation_scores_are_logged_at_the_step_media_and_checkpoints_name(tiny_cfg):
    cfg = tiny_cfg("logger=csv", *RUN)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    (metrics,) = (out / "csv").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    val_steps = sorted(int(r["step"]) for r in rows if r.get("val/ssim_bestofN"))
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
