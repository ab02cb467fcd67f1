"""The LightningModule: SVG-LP, SVG-FP or the deterministic baseline, chosen by ``variant``.

Hyper-parameters are plain values, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from svg_lightning.checkpoint import META_KEY, checkpoint_meta
from svg_lightning.evaluate.scoring import (
    METRICS,
    REFERENCE_METRICS,
    score_samples,
    video_noise,
)
from svg_lightning.models.backbones import BACKBONE_SIZES
from svg_lightning.models.losses import svg_loss
from svg_lightning.models.svg import SVG, Samples


@dataclass
class EvalSettings:
    """How validation/test videos are scored: condition on ``n_past`` frames, predict
    ``n_future``, keep the best of ``num_samples``. Sampling noise depends only on ``seed`` and
    the video index, so scores do not depend on batching or the number of processes."""

    n_past: int
    n_future: int
    num_samples: int
    sample_chunk: int | None = None
    seed: int = 0
    reference_ssim: bool = False  # also report the reference code's ranking SSIM


class SVGModule(pl.LightningModule):
    def __init__(
        self,
        variant: str = "lp",
        backbone: str = "dcgan64",
        image_size: int = 64,
        channels: int = 1,
        g_dim: int = 128,
        z_dim: int = 10,
        rnn_size: int = 256,
        predictor_layers: int = 2,
        posterior_layers: int = 1,
        prior_layers: int = 1,
        nf: int = 64,
        n_past: int = 5,
        n_future: int = 10,
        skip: str = "last",
        beta: float = 1e-4,
        lr: float = 2e-3,
        adam_beta1: float = 0.9,
        adam_beta2: float = 0.999,
        val_num_samples: int = 10,
        sample_chunk: int | None = None,
    ):
        super().__init__()
        if BACKBONE_SIZES.get(backbone, image_size) != image_size:
            raise ValueError(
                f"model.backbone={backbone} needs {BACKBONE_SIZES[backbone]}px frames, "
                f"not image_size={image_size}"
            )
        self.save_hyperparameters()
        self.svg = SVG(
            variant, backbone, channels, g_dim, z_dim, rnn_size,
            predictor_layers, posterior_layers, prior_layers, nf, n_past, skip,
        )  # fmt: skip
        self.val_settings = EvalSettings(n_past, n_future, val_num_samples, sample_chunk)
        # Chosen per evaluation (not stored with the model); see svg_lightning.evaluate.
        self.test_settings = EvalSettings(n_past, n_future, val_num_samples, sample_chunk)
        self.test_outputs: list[dict[str, torch.Tensor]] = []
        self.test_curves: dict[str, torch.Tensor] = {}

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, betas=(hp.adam_beta1, hp.adam_beta2))

    def training_step(self, batch, batch_idx):
        x = batch["frames"][:, : self.hparams.n_past + self.hparams.n_future]
        out = self.svg(x)
        terms = svg_loss(
            out.x_hat,
            x[:, 1:],
            self.hparams.beta,
            out.mu,
            out.logvar,
            out.prior_mu,
            out.prior_logvar,
        )
        self.log("train/loss", terms.loss, prog_bar=True)
        self.log("train/mse", terms.mse)
        self.log("train/kl", terms.kl, prog_bar=self.svg.stochastic)
        if self.svg.stochastic:
            self.log_dict(
                {f"train/kl_step/{t + 1:02d}": v for t, v in enumerate(terms.kl_per_step)}
            )
        return terms.loss

    @contextmanager
    def _eval_mode(self):
        """Sampling uses BatchNorm running statistics (the reference left E and D in train mode,
        making results depend on batch composition)."""
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
    ) -> Samples:
        """``num_samples`` futures per sequence of ``cond`` (B, n_cond, C, H, W): ``SVG.sample``."""
        with self._eval_mode():
            return self.svg.sample(
                cond, n_future, num_samples, chunk_size or self.hparams.sample_chunk, noise
            )

    def noise_for(self, index: torch.Tensor, settings: EvalSettings) -> torch.Tensor | None:
        """Per-video sampling noise for ``settings`` (None for the deterministic model)."""
        if not self.svg.stochastic:
            return None
        steps = self.svg.noise_steps(settings.n_past, settings.n_future)
        return video_noise(index, settings.num_samples, steps, self.hparams.z_dim, settings.seed)

    def score(self, batch, settings: EvalSettings) -> dict[str, torch.Tensor]:
        """Per-video per-step curves (B, T) of the best/mean/worst sample and the baselines."""
        x = batch["frames"]
        p, f = settings.n_past, settings.n_future
        cond, target = x[:, :p], x[:, p : p + f]
        noise = self.noise_for(batch["index"], settings)
        with self._eval_mode():
            return score_samples(
                self.svg, cond, target, settings.num_samples, settings.sample_chunk, noise,
                REFERENCE_METRICS if settings.reference_ssim else METRICS,
            )  # fmt: skip

    def validation_step(self, batch, batch_idx):
        curves = self.score(batch, self.val_settings)
        size = batch["frames"].shape[0]
        for name, curve in curves.items():
            name = name.replace("copy_last_", "copy_last/").replace("black_", "black/")
            self.log(
                f"val/{name}", curve.mean(), batch_size=size, sync_dist=True,
                prog_bar=name == "ssim_best",
            )  # fmt: skip

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def test_step(self, batch, batch_idx):
        curves = self.score(batch, self.test_settings)
        curves["index"] = batch["index"]
        self.test_outputs.append({k: v.detach() for k, v in curves.items()})

    def on_test_epoch_end(self) -> None:
        """Gathers per-video curves from every process and drops the duplicates a distributed
        sampler pads with, so any number of processes gives the same numbers. Result:
        ``test_curves``, each (N videos, T) on the CPU, in video-index order."""
        local = {k: torch.cat([o[k] for o in self.test_outputs]) for k in self.test_outputs[0]}
        gathered = {k: self.all_gather(v) for k, v in local.items()}
        if self.trainer.world_size > 1:
            gathered = {k: v.flatten(0, 1) for k, v in gathered.items()}
        index, first = unique_first(gathered.pop("index"))
        self.test_curves = {k: v[first].cpu() for k, v in gathered.items()}
        self.test_curves["index"] = index.cpu()
        self.test_outputs = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[META_KEY] = checkpoint_meta()
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


def unique_first(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``index`` and the position of each one's first occurrence."""
    values, inverse = torch.unique(index, return_inverse=True)
    pos = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(values, index.numel()).scatter_reduce(0, inverse, pos, "amin")
    return values, first
