"""How everything a run records is numbered and named: optimizer steps, frames, samples, lags.

Steps. A value is logged, plotted and named at the optimizer step it was measured after: the
number of optimizer updates the weights had received when it was measured. A training batch's
loss is measured before that batch's own update, so the first batch's ``train/*`` values are at
step 0 and a run of ``trainer.max_steps=N`` logs them at steps 0..N-1. A validation after N
updates (its ``val/*`` scores, ``media/*`` files and ``media/seconds``), the checkpoint written
then, the held-out summary after training (``test/*``) and an evaluation or analysis of that
checkpoint are all at step N. Every logger (CSV, TensorBoard, W&B) and ``training_curves.png``
use this number; media files carry it in their name (``media_file``).

Names. A logged artifact has one name: its logger key ends with the file's stem, less the
``_stepNNNNNNN`` of training media (``media/kl_and_prior_sigma`` at step 10 <->
``<run>/media/kl_and_prior_sigma_step0000010.png``; ``test/samples`` <-> ``samples.png``).

Frames and samples. Numbered from 1 in everything a person reads: file names
(``sample_01.mp4``), plot axes and table columns (which say "from 1"), JSON fields
(``predicted_frame``, ``collision_frames``), logger keys (``train/kl_frame/05`` is the KL term of
the step that predicts frame 5). Frame 1 is the first frame of a video, so with ``n_past`` P the
predicted frames are P+1..P+n_future; frame 1 is always given, so the recurrent steps of training
and their KL terms (the objective of the paper's Eq. 3) belong to frames 2..T. 0-based indices
exist only as positions inside arrays: ``samples.npy[0]`` is ``sample_01.mp4``, entry 0 of a
per-frame list is the first frame it covers.

Lags (``analyze prior``). Written ``-1``, ``0``, ``+1`` (``lag_name``) in tables, JSON keys and
logger keys (``analyze/sigma/any/lag+1/auroc``); lag L relates a collision at frame k to the
prior output that predicts frame k+1+L (see ``analyze.stats.ALIGNMENT``).
"""

from __future__ import annotations


def media_file(stem: str, step: int, suffix: str) -> str:
    """The file name of a media item logged as ``media/<stem>`` at ``step``."""
    return f"{stem}_step{step:07d}{suffix}"


def sample_file(number: int) -> str:
    """The video of sample ``number`` (from 1)."""
    return f"sample_{number:02d}.mp4"


def lag_name(lag: int | str) -> str:
    """``-1``, ``0``, ``+1``: the one spelling of a lag (old files wrote ``1`` for ``+1``)."""
    lag = int(lag)
    return f"{lag:+d}" if lag else "0"
