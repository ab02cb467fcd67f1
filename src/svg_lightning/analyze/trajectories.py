"""``analyze trajectories``: the digit's displacements in samples vs the true distribution
(the paper's Fig. 5), for one-digit SM-MNIST.

Many digits share one trajectory; the model sees its first n_past frames and samples futures. The
digit is tracked in every sampled frame (template from the first conditioning frame), and each
step's displacement (dx, dy) is compared with the displacements of many continuations of the same
generator state: a spike while the motion is determined, the uniform post-bounce distribution
after a wall.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig
from scipy.stats import wasserstein_distance

from svg_lightning.analyze import common
from svg_lightning.analyze.motion import track, true_displacements
from svg_lightning.console import print_table, progress
from svg_lightning.data.smmnist import simulate
from svg_lightning.files import write_json
from svg_lightning.memory_checks import check_analysis_memory


def pick_trajectory(rng: np.random.Generator, n_past: int, n_future: int, tries: int = 1000):
    """A one-digit trajectory with no wall in the conditioning frames and one in the future
    (with a step after it to show the redrawn velocity), so samples must go from certain to
    uncertain; the first draw if none is found."""
    first = None
    for _ in range(tries):
        traj = simulate(rng, n_past + n_future, 1)
        first = first or traj
        hits = np.flatnonzero(traj.collisions[:, 0])
        if not (hits < n_past).any() and ((hits >= n_past) & (hits < n_past + n_future - 1)).any():
            return traj
    return first


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Between the empirical distributions of integer pairs a (N, 2) and b (M, 2)."""
    keys, inverse = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    p = np.bincount(inverse[: len(a)], minlength=len(keys)) / len(a)
    q = np.bincount(inverse[len(a) :], minlength=len(keys)) / len(b)
    return float(0.5 * np.abs(p - q).sum())


def w1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 of dx and of dy (separately), averaged; 64-grid pixels."""
    return float(np.mean([wasserstein_distance(a[:, i], b[:, i]) for i in (0, 1)]))


def plot_histograms(path: Path, model_d, true_d, first_frame: int, collisions, steps: int) -> Path:
    """Per future step (columns) the dx and dy (rows) histograms of model samples and truth.
    ``first_frame``: 0-based index of the first predicted frame; titles number frames from 1."""
    steps = min(steps, model_d.shape[1])
    fig = Figure(figsize=(2.0 * steps + 1, 4.6), constrained_layout=True)
    axes = fig.subplots(2, steps, sharey="row", squeeze=False)
    lo = int(min(model_d.min(), true_d.min(), -4))
    hi = int(max(model_d.max(), true_d.max(), 4))
    bins = np.arange(lo, hi + 2) - 0.5
    for j in range(steps):
        for i, name in enumerate(("dx", "dy")):
            ax = axes[i, j]
            ax.hist(true_d[:, j, i], bins, density=True, alpha=0.5, color="C0", label="true")
            ax.hist(model_d[:, j, i], bins, density=True, histtype="step", color="C3",
                    linewidth=1.5, label="model")  # fmt: skip
            ax.set_xlim(max(lo, -8) - 0.5, min(hi, 8) + 0.5)
            if j == 0:
                ax.set_ylabel(name)
        frame = first_frame + j
        wall = " (after wall)" if collisions[frame - 1] else ""
        axes[0, j].set_title(f"frame {frame + 1}{wall}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Digit displacement into each predicted frame (64-grid px): true vs model")
    fig.savefig(path, dpi=110)
    return path


def plot_distance(path: Path, frames, per_step: dict, collisions) -> Path:
    """W1 and TV per predicted frame, each on its own axes next to its noise floor (the same
    distance between two independent true samples). ``frames``: the predicted frames, numbered
    from 1 (``numbering``); ``collisions`` per frame (array position i is frame i + 1)."""
    shown = np.asarray(frames)
    fig = Figure(figsize=(11, 3.6), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "w1", "W1 of dx and dy (64-grid px)"),
                           (axes[1], "tv", "TV of the joint (dx, dy)")):  # fmt: skip
        ax.plot(shown, per_step[key], "o-", label="model vs true")
        ax.plot(shown, per_step[f"{key}_floor"], "o:", color="0.5",
                label="true vs true (noise floor)")  # fmt: skip
        for k in np.flatnonzero(collisions):  # position k is frame k+1; k+2 is the first after
            if shown[0] <= k + 2 <= shown[-1]:
                ax.axvline(k + 2, color="C3", alpha=0.5, linestyle="--")
        ax.set(title=title, xlabel="predicted frame (from 1; dashed: first after a wall)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def analyze_trajectories(cfg: DictConfig) -> dict:
    loaded = common.load_for(cfg, "trajectories", num_digits=1)
    model, train_cfg = loaded.model, loaded.train_cfg
    check_analysis_memory(cfg, model.hparams, model.device)
    n_past = int(model.hparams.n_past) if cfg.n_past is None else cfg.n_past
    n_future = int(model.hparams.n_future) if cfg.n_future is None else cfg.n_future
    digits = common.test_digits(cfg, train_cfg)
    rng = np.random.default_rng(cfg.seed)
    traj = pick_trajectory(rng, n_past, n_future)
    frames = common.render_synchronised(
        rng, traj, digits, cfg.num_videos, int(train_cfg.data.image_size)
    )
    start = traj.positions[0, 0]
    gt = track(frames, frames[:, 0], start).numpy()  # (N, T, 2)
    tracker_exact = float((gt == traj.positions[None, :, 0]).all(-1).mean())

    torch.manual_seed(cfg.seed)
    model_d = _sampled_displacements(model, frames, traj, n_past, n_future, cfg)
    last, vel = traj.positions[n_past - 1, 0], traj.velocities[n_past - 1, 0]
    true_d = true_displacements(rng, last, vel, n_future, cfg.num_true)
    floor_d = true_displacements(rng, last, vel, n_future, len(model_d))
    per_step = _distances(model_d, true_d, floor_d)
    summary = {k: float(np.mean(v)) for k, v in per_step.items()}
    predicted = np.arange(n_past + 1, n_past + n_future + 1)  # frame numbers, from 1
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, s = len(frames), len(model_d) // len(frames)
    doc = {
        "protocol": {
            **common.protocol(cfg, loaded, digits),
            "n_past": n_past,
            "n_future": n_future,
            "num_videos": n,
            "num_samples": s,
            "num_true": cfg.num_true,
            **PROTOCOL_NOTES,
        },
        "trajectory": {
            "positions": traj.positions[:, 0],
            "collision_frames": np.flatnonzero(traj.collisions[:, 0]) + 1,
        },
        "tracker_exact_fraction_ground_truth": tracker_exact,
        "predicted_frame": predicted,
        "per_step": per_step,
        "summary": summary,
        "model_displacement_counts": [_counts(model_d[:, j]) for j in range(n_future)],
        "true_displacement_counts": [_counts(true_d[:, j]) for j in range(n_future)],
        "provenance": common.provenance(cfg, loaded),
    }
    collisions = traj.collisions[:, 0]
    paths = {
        "statistics": write_json(out / "trajectories.json", doc),
        "histograms": plot_histograms(
            out / "trajectories_hist.png", model_d, true_d, n_past, collisions, cfg.plot_steps
        ),
        "distance_plot": plot_distance(
            out / "trajectories_distance.png", predicted, per_step, collisions
        ),
    }
    common.log_results(
        cfg, loaded, out, {f"analyze/trajectories/{k}": v for k, v in summary.items()},
        {"trajectories_hist": paths["histograms"], "trajectories_distance": paths["distance_plot"]},
    )  # fmt: skip
    rows = [
        [f"{f}{' (after wall)' if collisions[f - 2] else ''}"] + [v[j] for v in per_step.values()]
        for j, f in enumerate(predicted)
    ]
    rows.append(["mean", *summary.values()])
    print_table(
        f"Displacements: {n} digits x {s} samples vs {cfg.num_true} true continuations "
        f"(ground-truth tracking exact on {tracker_exact:.1%} of frames)",
        ["frame (from 1)", "W1", "W1 floor", "TV", "TV floor"],
        rows,
        {"checkpoint": cfg.ckpt_path, **paths},
    )
    return paths


PROTOCOL_NOTES = {
    "units": "64-grid pixels; displacement into frame j = position(j) - position(j-1)",
    "frame_numbers": (
        "frames are numbered from 1 (frame 1 is the first conditioning frame): "
        "predicted_frame and collision_frames hold frame numbers; entry i of the "
        "per_step lists and of the displacement counts is frame predicted_frame[i]; "
        "entry i of positions is frame i + 1"
    ),
    "w1": "scipy wasserstein_distance on dx and on dy, averaged",
    "tv": "total variation between the joint (dx, dy) histograms",
    "floor": "the same distance between two independent true samples, the model's size",
}


def _sampled_displacements(model, frames, traj, n_past: int, n_future: int, cfg) -> np.ndarray:
    """(N * S, n_future, 2): the tracked digit's step in each predicted frame of every sample,
    the first from its last conditioning position."""
    cond = frames[:, :n_past, None].to(model.device)
    bar = lambda chunks, count: progress(chunks, "sampling futures", count)
    drawn = model.sample(cond, n_future, cfg.num_samples, cfg.batch_size, wrap=bar).frames
    s = drawn.shape[1]
    drawn = drawn.clamp(0, 1)[:, :, :, 0].flatten(0, 1).cpu()  # (N*S, F, H, W)
    pos = track(drawn, frames[:, 0].repeat_interleave(s, 0), traj.positions[0, 0]).numpy()
    last = np.broadcast_to(traj.positions[n_past - 1, 0], (len(pos), 1, 2))
    return np.diff(np.concatenate([last, pos], 1), axis=1)


def _distances(model_d, true_d, floor_d) -> dict[str, list[float]]:
    """Per predicted frame: the model's displacements against the true ones, and the floor (two
    true samples, the model's size, against each other)."""
    steps = range(model_d.shape[1])
    return {
        "w1": [w1(model_d[:, j], true_d[:, j]) for j in steps],
        "w1_floor": [w1(floor_d[:, j], true_d[:, j]) for j in steps],
        "tv": [total_variation(model_d[:, j], true_d[:, j]) for j in steps],
        "tv_floor": [total_variation(floor_d[:, j], true_d[:, j]) for j in steps],
    }


def _counts(d: np.ndarray) -> dict:
    keys, counts = np.unique(d, axis=0, return_counts=True)
    return {f"{x},{y}": int(c) for (x, y), c in zip(keys, counts)}
