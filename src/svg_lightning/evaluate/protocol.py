"""The best-of-N test task: every test video scored under ``EvalSettings`` through
``Trainer.test`` (what ``svg evaluate`` and the end of a training run report)."""

from __future__ import annotations

from contextlib import nullcontext

import pytorch_lightning as pl
import torch

from svg_lightning.metrics.best_of_n import BestOfN, BestOfNResult, EvalSettings
from svg_lightning.metrics.fvd import I3D
from svg_lightning.metrics.perceptual import LPIPSAlex
from svg_lightning.module import SVGModule


class BestOfNTest(pl.LightningModule):
    """``Trainer.test`` of ``model`` under ``settings``: per-video curves (and FVD features),
    scored chunk by chunk and kept by a ``BestOfN`` metric, which gathers them from every process
    and drops the duplicates a distributed sampler pads with, so any number of processes gives
    the same numbers. Use through ``run_best_of_n``."""

    def __init__(
        self,
        model: SVGModule,
        settings: EvalSettings,
        lpips_net: LPIPSAlex | None = None,
        i3d_net: I3D | None = None,
        float32: bool = False,
    ):
        super().__init__()
        self.model, self.settings, self.float32 = model, settings, float32
        self.best_of_n = BestOfN(
            settings.reference_ssim, lpips_net, i3d_net, settings.fvd_draws, settings.seed
        )
        self.result: BestOfNResult | None = None

    def test_step(self, batch, batch_idx):
        # float32: the trainer's mixed precision (its autocast around this step) is switched off,
        # so the scores are float32 numbers whatever precision the model was trained in.
        off = torch.autocast(batch["frames"].device.type, enabled=False)
        with off if self.float32 else nullcontext():
            scores = self.model.score(batch, self.settings, self.best_of_n)
        self.best_of_n.update_curves(scores.curves, batch["index"], scores.fvd)

    def on_test_epoch_end(self) -> None:
        self.result = self.best_of_n.compute().cpu()
        self.best_of_n.reset()


def run_best_of_n(
    trainer: pl.Trainer,
    model: SVGModule,
    datamodule,
    settings: EvalSettings,
    lpips_net: LPIPSAlex | None = None,
    i3d_net: I3D | None = None,
    float32: bool = False,
) -> BestOfNResult | None:
    """The best-of-N numbers of every test video (LPIPS with ``lpips_net``, FVD with
    ``i3d_net``; ``float32``: scored in float32 under a mixed-precision trainer); None on
    processes that do not hold the gathered result (the workers of ``ddp_spawn``)."""
    task = BestOfNTest(model, settings, lpips_net, i3d_net, float32)
    trainer.test(task, datamodule=datamodule, verbose=False)
    return task.result
