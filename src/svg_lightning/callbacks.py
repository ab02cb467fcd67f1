"""Callbacks: those that let people watch a run (sample videos at each validation, training
curves), and those no run goes without (``with_required_callbacks``: last.ckpt, saving on
SIGTERM, the training config in every checkpoint).

Media go to the run folder (``<run>/media/``) whatever the logger, and to the logger where it can
take them (W&B: videos and images, online or offline; TensorBoard: images). A file and its logger
key share a name and a step (``numbering``): ``media/samples_step0000010.gif`` is ``media/samples``
at step 10.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

# Figures are drawn without pyplot, so no global backend is switched (notebooks keep theirs).
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from svg_lightning import runs
from svg_lightning.errors import NonFiniteLossError, PreemptedError, StoppedByUserError
from svg_lightning.loggers import log_media
from svg_lightning.models.losses import kl_per_video_step
from svg_lightning.numbering import media_file
from svg_lightning.runs import META_KEY
from svg_lightning.viz import save_sample_gif, save_sample_grid


class VideoSamples(pl.Callback):
    """At every ``every_n_validations``-th validation (rank 0): for the first ``num_sequences``
    validation videos (the same ones every time, with the same sampling noise, so progress is
    visible) a GIF of ground truth next to ``num_samples`` samples, the posterior reconstruction,
    and a plot of the per-step KL and, for SVG-LP, the learned prior's mean sigma per step."""

    def __init__(self, num_sequences: int = 4, num_samples: int = 4, every_n_validations: int = 1):
        self.num_sequences, self.num_samples = num_sequences, num_samples
        self.every = every_n_validations
        self.validations = 0
        self.seconds = 0.0  # time spent here, to keep its cost visible

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self.validations += 1
        if (self.validations - 1) % self.every:
            return
        start = time.perf_counter()
        self._write(trainer, pl_module)
        self.seconds += time.perf_counter() - start
        # To the loggers at the step the media are named with (numbering.py): Lightning would
        # log a value logged here one step lower, at the step of the last training batch.
        pl_module.log("media/seconds", self.seconds, rank_zero_only=True, logger=False)
        for logger in trainer.loggers:
            logger.log_metrics({"media/seconds": self.seconds}, step=trainer.global_step)

    @torch.no_grad()
    def _write(self, trainer: pl.Trainer, pl_module) -> None:
        dataset = trainer.datamodule.val_set
        items = [dataset[i] for i in range(min(self.num_sequences, len(dataset)))]
        x = torch.stack([it["frames"] for it in items]).to(pl_module.device)
        index = torch.stack([it["index"] for it in items])
        settings = pl_module.val_settings
        p, f = settings.n_past, settings.n_future
        x = x[:, : p + f]
        out, step = runs.media_dir(trainer.default_root_dir), trainer.global_step
        loggers = trainer.loggers
        noise = pl_module.noise_for(index, replace(settings, num_samples=self.num_samples))
        samples = pl_module.sample(x[:, :p], f, self.num_samples, noise=noise).frames
        gif = save_sample_gif(
            out / media_file("samples", step, ".gif"), x[:, :p], x[:, p:], samples
        )
        log_media(loggers, "media/samples", gif, step)

        # Own RNG stream: media never shift the training noise (resumed runs stay exact).
        devices = [x.device.index] if x.device.type == "cuda" else []
        with pl_module.eval_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            tf = pl_module.svg(x, p)
        recon = save_sample_grid(out / media_file("posterior_reconstruction", step, ".png"),
                                 x[:, :1], x[:, 1:], tf.x_hat[:, None])  # fmt: skip
        log_media(loggers, "media/posterior_reconstruction", recon, step)
        if tf.latents.mu is not None:
            plot = self._plot_latents(
                out / media_file("kl_and_prior_sigma", step, ".png"), tf.latents, p, step
            )
            log_media(loggers, "media/kl_and_prior_sigma", plot, step)

    @staticmethod
    def _plot_latents(path: Path, latents, n_past: int, step: int) -> Path:
        lp = latents.prior_mu is not None
        kl = (
            kl_per_video_step(latents.mu, latents.logvar, latents.prior_mu, latents.prior_logvar)
            .mean(0)
            .cpu()
        )
        # The same numbers as the train/kl_frame/NN keys: the first step predicts frame 2.
        frames = np.arange(2, kl.numel() + 2)
        fig = Figure(figsize=(10 if lp else 5, 3.2))
        axes = fig.subplots(1, 2 if lp else 1, squeeze=False)
        axes[0, 0].bar(frames, kl.numpy(), color="tab:blue")
        axes[0, 0].set(xlabel="predicted frame (from 1)", ylabel="KL (nats)", title="KL per step")
        if lp:
            sigma = latents.prior_logvar.float().mul(0.5).exp().mean(-1).cpu()  # (B, T-1)
            for i, row in enumerate(sigma):
                axes[0, 1].plot(frames, row.numpy(), alpha=0.8, label=f"video {i + 1}")
            axes[0, 1].legend(fontsize=7)
            axes[0, 1].set(
                xlabel="predicted frame (from 1)", ylabel="mean sigma", title="learned prior"
            )
        for ax in axes[0]:
            ax.axvline(n_past + 0.5, color="k", linestyle=":", linewidth=1)
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(f"step {step}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path


class TrainingCurves(pl.Callback):
    """Records logged scalars (train every ``log_every_n_steps``, val at each validation) and
    plots them at the end of fit as ``<run>/training_curves.png``, at the steps the loggers have
    them (numbering.py). The history is kept in the checkpoint, so a resumed run plots its whole
    history."""

    KEYS = ("train/loss", "train/mse", "train/kl", "val/ssim_bestofN", "val/psnr_bestofN")

    def __init__(self):
        self.history: dict[str, list[tuple[int, float]]] = {k: [] for k in self.KEYS}
        self._batch_step = 0

    def _record(self, trainer: pl.Trainer, prefix: str, step: int) -> None:
        for key in self.KEYS:
            value = trainer.callback_metrics.get(key)
            if key.startswith(prefix) and value is not None:
                self.history[key].append((step, float(value)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # The batch's losses are measured with the weights as they are before its own update.
        self._batch_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The batches Lightning sends to the loggers: every log_every_n_steps-th, and the last
        # one when something stops training.
        every = max(trainer.log_every_n_steps, 1)
        if (self._batch_step + 1) % every == 0 or trainer.should_stop:
            self._record(trainer, "train/", self._batch_step)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val/", trainer.global_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and any(self.history.values()):
            path = plot_history(self.history, Path(trainer.default_root_dir) / runs.TRAINING_CURVES)
            log_media(trainer.loggers, "media/training_curves", path, trainer.global_step)

    def state_dict(self) -> dict:
        return {"history": {k: [list(p) for p in v] for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        for key, points in state_dict["history"].items():
            self.history[key] = [(int(s), float(v)) for s, v in points]


def plot_history(history: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """One panel per recorded scalar, against the optimizer step."""
    keys = [k for k, v in history.items() if v]
    fig = Figure(figsize=(3.6 * len(keys), 3))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys):
        steps, values = zip(*history[key])
        # Markers for validation scores, and for any curve too short to draw a line.
        marker = "o" if key.startswith("val/") or len(steps) < 3 else None
        ax.plot(steps, values, marker=marker, markersize=3)
        ax.set(title=key, xlabel="optimizer step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if key in ("train/loss", "train/mse") and min(values) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


class LastCheckpoint(pl.Callback):
    """``checkpoints/last.ckpt``, one file overwritten in place (atomically, by the trainer's
    checkpoint writer): every ``every_n_train_steps`` optimizer steps, and when training ends
    whatever the interval. Full (optimizer and loop state), so training goes on from it. Saved
    where training ran: under ddp_spawn (trainer=ddp_sim) the worker processes hold the step."""

    def __init__(self, every_n_train_steps: int | None = None):
        self.every = every_n_train_steps
        self.saved_step = -1

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or trainer.global_step == self.saved_step:
            return
        trainer.save_checkpoint(runs.last_checkpoint(trainer.default_root_dir), weights_only=False)
        self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._save(trainer)


class RecordTrainingConfig(pl.Callback):
    """Every checkpoint carries the resolved config it was trained with, so a checkpoint copied
    away from its run folder still evaluates, samples and resumes (``runs.training_config``)."""

    def __init__(self, config: dict):
        self.config = config  # plain values: checkpoints load with weights_only=True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint.setdefault(META_KEY, {})["train_config"] = self.config


class SaveOnSigterm(pl.Callback):
    """On SIGTERM (SLURM's warning before preemption or the time limit) Lightning stops at the
    end of the current batch; this saves ``last.ckpt`` there, so nothing done is lost.

    A first Ctrl-C (SIGINT) during fit takes the same way: it is turned into a SIGTERM of this
    process, so the batch under way finishes and is saved rather than torn mid-step; ``signal``
    then says which one stopped the run. A second Ctrl-C stops at once, unsaved."""

    def __init__(self):
        self.signal: signal.Signals | None = None
        self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        self.signal = signal.SIGINT
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C is not deferred
        signal.raise_signal(signal.SIGTERM)

    def on_fit_start(self, trainer: pl.Trainer, pl_module) -> None:
        self.signal = None
        # Signal handlers can only be set in the main thread (not e.g. in a notebook's worker).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException):
            self.signal = self.signal or signal.SIGTERM
            if not trainer.fast_dev_run:
                trainer.save_checkpoint(runs.last_checkpoint(trainer.default_root_dir))


def stopped(trainer: pl.Trainer, last: Path) -> PreemptedError:
    """The error of a fit that SIGTERM or a first Ctrl-C stopped once ``SaveOnSigterm`` had
    saved ``last`` at the end of the batch under way: exit 143 or 130, and how to resume."""
    (saver,) = [c for c in trainer.callbacks if isinstance(c, SaveOnSigterm)]
    by_user = saver.signal == signal.SIGINT
    error = StoppedByUserError if by_user else PreemptedError
    return error(
        f"stopped by {'Ctrl-C (SIGINT)' if by_user else 'SIGTERM'} at step "
        f"{trainer.global_step}; saved {last}. Resume with the same command plus ckpt_path=last "
        "(a job requeued into this run folder resumes by itself)"
    )


@contextmanager
def stopped_by_signal(what: str, fix: str = "rerun the same command") -> Iterator[None]:
    """Around ``trainer.test``, where a stop is not success:

    - SIGTERM: Lightning stops its loops by raising SIGTERMException, a SystemExit without a
      code, which would end the command with exit 0 and no results, as if it had finished.
    - Ctrl-C: Lightning catches the KeyboardInterrupt, tears down and calls ``sys.exit(1)``,
      which reads as a crash.

    Raised instead: PreemptedError (exit 143) or StoppedByUserError (exit 130), saying ``what``
    was stopped and that no results were written."""
    try:
        yield
    except SIGTERMException:
        raise PreemptedError(
            f"stopped by SIGTERM during {what}: no results were written; {fix}"
        ) from None
    except SystemExit as stop:
        if not isinstance(stop.__context__, KeyboardInterrupt):
            raise
        raise StoppedByUserError(
            f"stopped by Ctrl-C (SIGINT) during {what}: no results were written; {fix}"
        ) from None


class StopOnNonFiniteLoss(pl.Callback):
    """Stops before a NaN or inf loss reaches the weights; the checkpoints written so far (the
    last good ones) stay as they are."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        ckpt = runs.last_checkpoint(trainer.default_root_dir)
        keep = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint yet"
        if any(not torch.isfinite(p).all() for p in pl_module.parameters()):
            # The weights themselves are damaged (a resumed checkpoint, or a corrupt update):
            # a lower learning rate would not help.
            advice = "The weights are already non-finite: resume from an earlier checkpoint."
        else:
            advice = "Lower model.lr (or model.beta), or check the data."
        raise NonFiniteLossError(
            f"the loss is {loss.item()} at step {trainer.global_step}: training stopped; "
            f"{keep}. {advice}"
        )


def with_required_callbacks(callbacks: list[pl.Callback], cfg: DictConfig) -> list[pl.Callback]:
    """The configured callbacks, plus what no run goes without: ``last.ckpt`` at the end (what
    ``ckpt_path=last`` resumes), saving on SIGTERM (a preempted job loses nothing), and the
    training config inside every checkpoint (a copied checkpoint is self-contained)."""
    if not any(isinstance(c, LastCheckpoint) for c in callbacks):
        callbacks.append(LastCheckpoint())
    config = OmegaConf.to_container(cfg, resolve=True)
    return [*callbacks, SaveOnSigterm(), RecordTrainingConfig(config)]
