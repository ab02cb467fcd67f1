"""The LightningModule: SVG-LP, SVG-FP or the deterministic baseline, chosen by ``variant``.

Hyper-parameters are plain values, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytorch_lightning as pl
import torch

from svg_lightning.evaluation import score_predictions
from svg_lightning.models.backbones import BACKBONE_SIZES
from svg_lightning.models.losses import svg_loss
from svg_lightning.models.svg import SVG, Samples


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
        # Test-time settings are chosen per evaluation, not stored with the model.
        self.test_num_samples = val_num_samples
        self.test_n_future = n_future
        self.test_outputs: list[dict[str, torch.Tensor]] = []
        self.test_results: dict[str, dict[str, float | list[float]]] = {}

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
        self, cond: torch.Tensor, n_future: int, num_samples: int = 1, chunk_size: int | None = None
    ) -> Samples:
        """``num_samples`` futures per sequence of ``cond`` (B, n_cond, C, H, W): ``SVG.sample``."""
        with self._eval_mode():
            return self.svg.sample(
                cond, n_future, num_samples, chunk_size or self.hparams.sample_chunk
            )

    def _score(self, batch, n_future: int, num_samples: int) -> dict[str, torch.Tensor]:
        n_past = self.hparams.n_past
        x = batch["frames"]
        cond, target = x[:, :n_past], x[:, n_past : n_past + n_future]
        samples = self.sample(cond, n_future, num_samples)
        return score_predictions(samples.frames, target, cond[:, -1])

    def validation_step(self, batch, batch_idx):
        curves = self._score(batch, self.hparams.n_future, self.hparams.val_num_samples)
        size = batch["frames"].shape[0]
        for name, curve in curves.items():
            name = name.replace("copy_last_", "copy_last/").replace("black_", "black/")
            self.log(
                f"val/{name}", curve.mean(), batch_size=size, sync_dist=True,
                prog_bar=name == "ssim_best",
            )  # fmt: skip

    def test_step(self, batch, batch_idx):
        curves = self._score(batch, self.test_n_future, self.test_num_samples)
        curves["index"] = batch["index"]
        self.test_outputs.append(curves)

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def on_test_epoch_end(self) -> None:
        """Gathers per-video curves from every process and drops the duplicates a distributed
        sampler pads with, so any number of processes gives the same numbers."""
        local = {k: torch.cat([o[k] for o in self.test_outputs]) for k in self.test_outputs[0]}
        gathered = {k: self.all_gather(v) for k, v in local.items()}
        if self.trainer.world_size > 1:
            gathered = {k: v.flatten(0, 1) for k, v in gathered.items()}
        index = gathered.pop("index")
        _, first = unique_first(index)
        self.test_results = {k: summarize(v[first]) for k, v in gathered.items()}
        self.test_results["num_videos"] = int(first.numel())
        self.test_outputs = []


def unique_first(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``index`` and the position of each one's first occurrence."""
    values, inverse = torch.unique(index, return_inverse=True)
    pos = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(values, index.numel()).scatter_reduce(0, inverse, pos, "amin")
    return values, first


def summarize(curves: torch.Tensor) -> dict[str, float | list[float]]:
    """curves (N videos, T) -> mean over videos and time with its 95% CI, and the per-step curve."""
    per_video = curves.double().mean(1)
    n = per_video.numel()
    ci = 1.96 * per_video.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return {
        "mean": per_video.mean().item(),
        "ci95": ci,
        "per_step": curves.double().mean(0).tolist(),
    }
