"""The LightningModule: SVG-LP, SVG-FP or the deterministic baseline, chosen by ``variant``.

Hyper-parameters are plain values (the architecture fields of ``SVGConfig`` and the training
settings), so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytorch_lightning as pl
import torch

import svg_lightning
from svg_lightning.metrics.best_of_n import (
    BestOfN,
    EvalSettings,
    Scores,
    metric_fns,
    score_chunks,
    video_noise,
)
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG, Samples, training_errors
from svg_lightning.runs import CHECKPOINT_FORMAT, META_KEY


class SVGModule(pl.LightningModule):
    """``architecture``: the fields of ``SVGConfig`` (variant, backbone, image_size, ...)."""

    def __init__(
        self,
        n_past: int = 5,
        n_future: int = 10,
        beta: float = 1e-4,
        lr: float = 2e-3,
        adam_beta1: float = 0.9,
        adam_beta2: float = 0.999,
        val_num_samples: int = 10,
        sample_chunk: int | None = None,
        bn_stats: str = "per_step",
        time_chunk: int | str | None = "auto",  # steps per encoder/decoder call (SVG.forward)
        compile: bool = False,  # torch.compile of every network (see SVG.fast_paths)
        channels_last: bool = False,  # NHWC convolutions (see SVG.fast_paths)
        **architecture,
    ):
        super().__init__()
        if errors := training_errors(bn_stats, time_chunk):
            raise ValueError("; ".join(errors))
        config = SVGConfig(**architecture)  # TypeError names an unknown field
        self.save_hyperparameters()
        self.hparams.update(config.as_dict())  # every field, defaults included: the checkpoint
        # then describes its network whatever the defaults of a later version
        self.svg = SVG(config)

    def configure_model(self) -> None:
        """Lightning calls this before fit/test moves the model to its device and DDP wraps it,
        once per entry point: both switches may be applied again."""
        self.svg.fast_paths(self.hparams.compile, self.hparams.channels_last)

    @property
    def val_settings(self) -> EvalSettings:
        hp = self.hparams
        return EvalSettings(hp.n_past, hp.n_future, hp.val_num_samples, hp.sample_chunk)

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, betas=(hp.adam_beta1, hp.adam_beta2))

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        x = batch["frames"][:, : hp.n_past + hp.n_future]
        terms = self.svg(x, hp.n_past, hp.bn_stats, hp.time_chunk).loss(x, hp.beta)
        self.log("train/loss", terms.loss, prog_bar=True)
        self.log("train/mse", terms.mse)
        self.log("train/kl", terms.kl, prog_bar=self.svg.stochastic)
        if self.svg.stochastic:
            # Named by the frame each KL term belongs to, from 1 (numbering.py): the first
            # recurrent step predicts frame 2.
            self.log_dict(
                {f"train/kl_frame/{t + 2:02d}": v for t, v in enumerate(terms.kl_per_step)}
            )
        return terms.loss

    @contextmanager
    def eval_mode(self):
        """Sampling uses BatchNorm running statistics (the reference left E and D in train mode,
        making results depend on batch composition); the training mode is restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def sample(
        self,
        cond: torch.Tensor,
        n_future: int,
        num_samples: int = 1,
        chunk_size: int | None = None,
        noise: torch.Tensor | None = None,
        wrap=None,
    ) -> Samples:
        """``num_samples`` futures per sequence of ``cond`` (B, n_cond, C, H, W): ``SVG.sample``."""
        with self.eval_mode():
            return self.svg.sample(
                cond, n_future, num_samples, chunk_size or self.hparams.sample_chunk, noise, wrap
            )

    def noise_for(self, index: torch.Tensor, settings: EvalSettings) -> torch.Tensor | None:
        """Per-video sampling noise for ``settings`` (None for the deterministic model)."""
        if not self.svg.stochastic:
            return None
        steps = self.svg.noise_steps(settings.n_past, settings.n_future)
        return video_noise(index, settings.num_samples, steps, self.hparams.z_dim, settings.seed)

    def score(self, batch, settings: EvalSettings, metric: BestOfN | None = None) -> Scores:
        """Per-video per-step curves (B, T) of the best/mean/worst sample and the baselines,
        scored by ``metric``'s functions and FVD draws (default: SSIM and PSNR)."""
        x = batch["frames"]
        p, f = settings.n_past, settings.n_future
        cond, target = x[:, :p], x[:, p : p + f]
        noise = self.noise_for(batch["index"], settings)
        s = settings.num_samples if self.svg.stochastic else 1
        fns = metric.metric_fns if metric else metric_fns(settings.reference_ssim)
        fvd = metric.fvd_for(batch["index"], s) if metric else None
        with self.eval_mode():
            chunks = self.svg.iter_samples(
                cond, f, s, settings.sample_chunk, noise, bn_stats=settings.bn
            )
            return score_chunks(chunks, cond, target, s, fns, fvd)

    def validation_step(self, batch, batch_idx):
        curves = self.score(batch, self.val_settings).curves
        size = batch["frames"].shape[0]
        for name, curve in curves.items():
            # logger=False: on_validation_end sends them to the loggers (at the right step).
            self.log(
                f"val/{name}", curve.mean(), batch_size=size, sync_dist=True, logger=False,
                prog_bar=name == "ssim_bestofN",
            )  # fmt: skip

    def on_validation_end(self) -> None:
        """Validation scores go to the loggers at the optimizer step they were measured after,
        the number checkpoints and media are named with (Lightning would log them one lower)."""
        if self.trainer.sanity_checking:
            return
        scores = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }
        for logger in self.loggers:
            logger.log_metrics(scores, step=self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # update: callbacks (RecordTrainingConfig) write into the same entry before this hook.
        meta = checkpoint.setdefault(META_KEY, {})
        meta.update(version=svg_lightning.__version__, format=CHECKPOINT_FORMAT)
        # The sampling noise of training comes from the global RNG; keeping its state makes a
        # resumed run draw exactly what an uninterrupted one would have.
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states", {})
        if "torch" in states:
            torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
