"""``analyze prior``: the learned prior's sigma against wall collisions (the paper's Fig. 6).

The prior runs over ground-truth frames (``SVG.latents``), so its output for frame t (frames
numbered from 1, t = 2..T) has seen frames 1..t-1; see ``stats`` for how outputs are aligned with
collisions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig

from svg_lightning.analyze import common
from svg_lightning.analyze.stats import ALIGNMENT, collision_statistics
from svg_lightning.console import print_table, progress
from svg_lightning.data.smmnist import MovingMNIST, simulate
from svg_lightning.files import write_json
from svg_lightning.memory_checks import check_analysis_memory
from svg_lightning.models.losses import kl_per_video_step


@torch.no_grad()
def prior_sigma_kl(
    model, frames: torch.Tensor, batch_size: int, description: str = "learned prior"
) -> tuple[np.ndarray, np.ndarray]:
    """frames (N, T, S, S) -> sigma_psi (N, T-1, z) = exp(logvar / 2) of the learned prior and
    KL(posterior || prior) (N, T-1) summed over z, both over the same ground-truth frames."""
    sigmas, kls = [], []
    with model.eval_mode():
        batches = frames.split(batch_size)
        for x in progress(batches, description, len(batches)):
            lat = model.svg.latents(x[:, :, None].to(model.device))
            sigmas.append((lat.prior_logvar.float() / 2).exp().cpu())
            kl = kl_per_video_step(lat.mu, lat.logvar, lat.prior_mu, lat.prior_logvar)
            kls.append(kl.cpu())
    return torch.cat(sigmas).numpy(), torch.cat(kls).numpy()


def test_videos(digits, cfg: DictConfig, num_digits: int, size: int):
    """Ordinary fixed-seed test videos -> frames (N, T, S, S), collisions (N, T, D)."""
    data = MovingMNIST(digits, cfg.num_test_videos, cfg.seq_len, num_digits, size, seed=cfg.seed)
    items = [data[i] for i in range(len(data))]
    frames = torch.stack([it["frames"][:, 0] for it in items])
    return frames, np.stack([it["collisions"].numpy() for it in items])


def plot_sigma(path: Path, sigma: np.ndarray, kl: np.ndarray, collisions: np.ndarray) -> Path:
    """Mean +- std over videos of the mean-over-z sigma (and of the KL) per predicted frame, with
    a line at the frame after each collision (what the lag-0 output predicts). Frames are
    numbered from 1 (``numbering``): array position i is frame i + 1, and the prior's output at
    position i predicts frame i + 2."""
    fig = Figure(figsize=(11, 6), constrained_layout=True)
    axes = fig.subplots(2, 1, sharex=True)
    frame = np.arange(2, sigma.shape[1] + 2)
    for ax, values, label in ((axes[0], sigma.mean(-1), "mean over z of sigma_psi"),
                              (axes[1], kl, "KL(q || p_psi), summed over z")):  # fmt: skip
        m, s = values.mean(0), values.std(0)
        ax.plot(frame, m, color="k", linewidth=1.5)
        ax.fill_between(frame, m - s, m + s, color="k", alpha=0.2, linewidth=0)
        for d in range(collisions.shape[1]):
            for i, k in enumerate(np.flatnonzero(collisions[:-1, d])):
                ax.axvline(k + 2, color=f"C{d}", linestyle="--", alpha=0.8,
                           label=f"digit {d + 1} collision" if i == 0 else None)  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if collisions.any():
        axes[0].legend(fontsize=8, loc="upper right")
    axes[1].set_xlabel(
        "predicted frame (from 1; the prior has seen every frame before it; dashed: "
        "the first frame after a wall)"
    )
    axes[1].xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Learned prior on {sigma.shape[0]} videos sharing one trajectory (mean ± std)")
    fig.savefig(path, dpi=120)
    return path


FRAME_NUMBERS = (
    "frames are numbered from 1 (frame 1 is a video's first frame): predicted_frame and "
    "collision_frames hold frame numbers; entry i of sigma, kl and sigma_per_z is frame "
    "predicted_frame[i]; entry i of positions and collisions_per_frame is frame i + 1"
)


def _curve(values: np.ndarray) -> dict:
    return {"mean": values.mean(0), "std": values.std(0)}


def analyze_prior(cfg: DictConfig) -> dict:
    loaded = common.load_for(cfg, "prior", variants=("lp",))
    model, train_cfg = loaded.model, loaded.train_cfg
    check_analysis_memory(cfg, model.hparams, model.device)
    num_digits, size = int(train_cfg.data.num_digits), int(train_cfg.data.image_size)
    digits = common.test_digits(cfg, train_cfg)
    rng = np.random.default_rng(cfg.seed)
    traj = simulate(rng, cfg.seq_len, num_digits)
    sync = common.render_synchronised(rng, traj, digits, cfg.num_videos, size)
    sync_sigma, sync_kl = prior_sigma_kl(model, sync, cfg.batch_size, "prior: synchronised videos")
    frames, collisions = test_videos(digits, cfg, num_digits, size)
    sigma, kl = prior_sigma_kl(model, frames, cfg.batch_size, "prior: test videos")

    lags = [int(lag) for lag in cfg.lags]
    stats = {
        "sigma": collision_statistics(sigma.mean(-1), collisions, lags, cfg.burn_in),
        "kl": collision_statistics(kl, collisions, lags, cfg.burn_in),
    }
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "protocol": {
            **common.protocol(cfg, loaded, digits),
            "num_videos": cfg.num_videos,
            "num_test_videos": cfg.num_test_videos,
            "seq_len": cfg.seq_len,
            "burn_in": cfg.burn_in,
            "alignment": " ".join(ALIGNMENT.split()),
            "frame_numbers": FRAME_NUMBERS,
        },
        "synchronised": {
            "positions": traj.positions,
            "collision_frames": [
                np.flatnonzero(traj.collisions[:, d]) + 1 for d in range(num_digits)
            ],
            "predicted_frame": np.arange(2, cfg.seq_len + 1),
            "sigma": _curve(sync_sigma.mean(-1)),
            "sigma_per_z": sync_sigma.mean(0),
            "kl": _curve(sync_kl),
        },
        "test": {
            "predicted_frame": np.arange(2, cfg.seq_len + 1),
            "sigma": _curve(sigma.mean(-1)),
            "kl": _curve(kl),
            "collisions_per_frame": collisions.any(-1).mean(0),
        },
        "statistics": stats,
        "provenance": common.provenance(cfg, loaded),
    }
    paths = {
        "statistics": write_json(out / "prior.json", doc),
        "plot": plot_sigma(out / "prior_sigma.png", sync_sigma, sync_kl, traj.collisions),
    }
    scalars = {
        f"analyze/{score}/{group}/lag{lag}/{key}": v
        for score, groups in stats.items()
        for group, per_lag in groups.items()
        for lag, numbers in per_lag.items()
        for key, v in numbers.items()
        if key in ("auroc", "point_biserial", "peak_within_1")
    }
    common.log_results(cfg, loaded, out, scalars, {"prior_sigma": paths["plot"]})
    rows = [
        [score, group, lag, n["auroc"], n["point_biserial"], n["peak_within_1"],
         n["peak_within_1_chance"], str(n["positives"])]
        for score, groups in stats.items()
        for group, per_lag in groups.items()
        for lag, n in per_lag.items()
    ]  # fmt: skip
    print_table(
        f"Collision detection on {cfg.num_test_videos} test videos of {cfg.seq_len} frames "
        f"(lag L: score of the output predicting frame k+1+L vs a collision at frame k)",
        ["score", "digits", "lag", "AUROC", "point-biserial r", "peak ±1", "peak ±1 chance", "n+"],
        rows,
        {"checkpoint": cfg.ckpt_path, **paths},
    )
    return paths
