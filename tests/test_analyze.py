"""`python -m svg_lightning.analyze`: tracker, continuation, statistics, both commands, CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from svg_lightning.analyze import analyze
from svg_lightning.analyze.motion import continue_trajectory, track
from svg_lightning.analyze.stats import collision_statistics, lagged_labels
from svg_lightning.data.digits import load_digits
from svg_lightning.data.smmnist import LIMIT, render, simulate
from svg_lightning.errors import ConfigError
from svg_lightning.files import sha256
from tests.helpers import compose_cfg, run_cli

PRIOR = ["num_videos=4", "num_test_videos=4", "seq_len=12", "batch_size=4", "device=cpu"]
TRAJ = ["num_videos=3", "num_samples=2", "num_true=100", "n_future=5", "device=cpu"]


@pytest.fixture
def run_dir(trained_run):
    return trained_run


def analyze_cfg(tmp_path, ckpt, command, *overrides):
    return compose_cfg(
        tmp_path, f"ckpt_path={ckpt}", f"command={command}", *overrides, config_name="analyze"
    )


@pytest.mark.parametrize("size", [64, 32])
def test_tracker_recovers_generator_positions(size):
    digits = load_digits("unused", train=False).images
    rng = np.random.default_rng(size)
    trajs = [simulate(rng, 25, 1) for _ in range(12)]
    frames = np.stack([render(t, digits[i : i + 1], size) for i, t in enumerate(trajs)])
    truth = np.stack([t.positions[:, 0] for t in trajs])
    assert (truth[:, :, 0] % 2).any() and (truth[:, :, 0] % 2 == 0).any()  # both parities
    frames = torch.from_numpy(frames)
    found = track(frames, frames[:, 0], torch.from_numpy(truth[:, 0])).numpy()
    np.testing.assert_array_equal(found, truth)
    # A wrong start position shifts every estimate by the same amount: the tracker is relative.
    shifted = track(frames[:1], frames[:1, 0], truth[0, 0] + 2).numpy()
    assert not (shifted == truth[:1]).all()


def test_continuation_is_the_generator():
    """Continuing from frame 0 with the generator's own later draws reproduces it exactly."""
    for seed in range(20):
        traj = simulate(np.random.default_rng(seed), 60, 1)
        rng = np.random.default_rng(seed)
        rng.integers(0, LIMIT + 1, size=2), rng.integers(-4, 5, size=2)  # the start draws
        cont = continue_trajectory(rng, traj.positions[0], traj.velocities[0], 59)
        np.testing.assert_array_equal(cont.positions, traj.positions[1:])
        np.testing.assert_array_equal(cont.collisions, traj.collisions[1:])


def test_continuation_follows_the_wall_rules():
    rng = np.random.default_rng(0)
    c = continue_trajectory(rng, np.array([[30, 5], [2, 29]]), np.array([[4, -1], [-4, 3]]), 400)
    pos, vel, hit = c.positions, c.velocities, c.collisions
    assert hit[0].all() and hit.sum() > 20
    np.testing.assert_array_equal(pos[0], [[LIMIT, 4], [0, LIMIT]])  # clamped, not reflected
    assert (pos >= 0).all() and (pos <= LIMIT).all() and (np.abs(vel) <= 4).all()
    # A frame differs from the previous one plus its velocity exactly when it is a collision.
    moved = pos[:-1] + vel[:-1]
    np.testing.assert_array_equal((moved != pos[1:]).any(-1), hit[1:])
    # Redrawn velocities point away from the wall that was hit.
    at_right = hit & (pos[..., 0] == LIMIT) & (pos[..., 1] > 0) & (pos[..., 1] < LIMIT)
    assert at_right.any() and (vel[at_right][:, 0] < 0).all()


def test_continuation_wall_rules_without_clamping_noise():
    c = continue_trajectory(np.random.default_rng(1), np.array([[29, 10]]), np.array([[4, 0]]), 3)
    assert c.collisions[0, 0] and c.positions[0, 0].tolist() == [LIMIT, 10]
    assert c.velocities[0, 0, 0] in (-1, -2, -3, -4)


def _collisions(n, t, d, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([simulate(rng, t, d).collisions for _ in range(n)])


@pytest.mark.parametrize("num_digits", [1, 2])
def test_spikes_at_lag_zero_are_detected_only_at_lag_zero(num_digits):
    col = _collisions(60, 30, num_digits)
    sigma = np.ones((60, 29))
    labels, _ = lagged_labels(col.any(-1, keepdims=True), 29, lag=0)
    sigma[labels[..., 0]] = 3.0  # the outputs predicting the frame after each collision
    stats = collision_statistics(sigma, col, lags=(-1, 0, 1), burn_in=2)
    at = stats["any"]
    assert list(at) == ["-1", "0", "+1"]  # one spelling of lags everywhere (numbering.py)
    assert at["0"]["auroc"] == 1.0 and at["0"]["point_biserial"] == pytest.approx(1.0)
    assert at["-1"]["auroc"] < 0.75 and at["+1"]["auroc"] < 0.75
    assert at["0"]["peak_within_1"] > at["0"]["peak_within_1_chance"]
    if num_digits == 2:
        assert set(stats) == {"digit1", "digit2", "any"}  # digits from 1, as on the plots
        assert 0.5 < stats["digit1"]["0"]["auroc"] < 1.0  # spikes of the other digit too
    else:
        assert set(stats) == {"any"}


def test_random_sigma_is_chance():
    col = _collisions(300, 30, 2, seed=3)
    sigma = np.random.default_rng(4).random((300, 29))
    for lag, numbers in collision_statistics(sigma, col)["any"].items():
        assert numbers["auroc"] == pytest.approx(0.5, abs=0.03), lag
        assert abs(numbers["point_biserial"]) < 0.05
        assert numbers["peak_within_1"] == pytest.approx(numbers["peak_within_1_chance"], abs=0.05)


def test_ties_count_one_half():
    col = _collisions(20, 20, 1)
    stats = collision_statistics(np.ones((20, 19)), col)
    assert stats["any"]["0"]["auroc"] == 0.5


def test_prior_command_writes_outputs(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # seed=43: the synchronised trajectory hits walls (at frames 7 and 10)
    paths = analyze(analyze_cfg(tmp_path, ckpt, "prior", *PRIOR, "logger=csv", "seed=43"))
    out = tmp_path / "out"
    assert paths["plot"] == out / "prior_sigma.png" and paths["plot"].stat().st_size > 0
    doc = json.loads((out / "prior.json").read_text())
    sync = doc["synchronised"]
    assert len(sync["sigma"]["mean"]) == len(sync["kl"]["std"]) == 11
    assert np.array(sync["sigma_per_z"]).shape == (11, 2)  # model.z_dim=2
    assert np.array(sync["positions"]).shape == (12, 1, 2)
    assert set(doc["statistics"]) == {"sigma", "kl"}
    assert set(doc["statistics"]["sigma"]["any"]) == {"-1", "0", "+1"}
    assert "frame k+1+L" in doc["protocol"]["alignment"]
    # Frames from 1, as the note beside them says: the prior predicts frames 2..12 of 12, and
    # the synchronised trajectory's collisions are frame numbers of its 12 frames.
    assert "numbered from 1" in doc["protocol"]["frame_numbers"]
    assert "0-based" not in json.dumps(doc["protocol"])
    for part in ("synchronised", "test"):
        assert doc[part]["predicted_frame"] == list(range(2, 13))
    positions = np.array(sync["positions"])[:, 0]  # entry i is frame i + 1
    (frames,) = sync["collision_frames"]
    assert frames == [7, 10] and all({0, LIMIT} & set(positions[k - 1]) for k in frames)
    # Logged at the checkpoint's step (3), lags spelt as in the file.
    (metrics,) = (out / "csv").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    keys = {k for row in rows for k, v in row.items() if v and k != "step"}
    assert {f"analyze/sigma/any/lag{lag}/auroc" for lag in ("-1", "0", "+1")} <= keys
    assert {int(row["step"]) for row in rows} == {3}
    # The file and the logger's config record what decided the numbers.
    assert (doc["protocol"]["step"], doc["protocol"]["checkpoint_sha256"]) == (3, sha256(ckpt))
    (hparams,) = (out / "csv").rglob("hparams.yaml")
    logged = yaml.safe_load(hparams.read_text())
    assert logged["analyze"]["num_videos"] == doc["protocol"]["num_videos"]
    assert logged["checkpoint"] == {"path": str(ckpt), "sha256": sha256(ckpt), "global_step": 3}
    assert logged["model"]["variant"] == "lp" and logged["train_config"]["seed"] == 1234
    kept = doc["provenance"]  # the same record in the file, with or without a logger
    assert {k: kept[k] for k in ("checkpoint", "model")} == {
        k: logged[k] for k in ("checkpoint", "model")
    }
    assert kept["analyze"]["num_videos"] == logged["analyze"]["num_videos"]


def test_trajectories_command_writes_outputs(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    analyze(analyze_cfg(tmp_path, ckpt, "trajectories", *TRAJ))
    out = tmp_path / "out"
    for name in ("trajectories_hist.png", "trajectories_distance.png"):
        assert (out / name).stat().st_size > 0
    doc = json.loads((out / "trajectories.json").read_text())
    assert doc["tracker_exact_fraction_ground_truth"] == 1.0
    assert len(doc["per_step"]["w1"]) == 5 and doc["summary"]["w1"] >= 0
    assert doc["protocol"]["num_videos"] * doc["protocol"]["num_samples"] == 6
    assert doc["predicted_frame"] == [3, 4, 5, 6, 7]  # n_past=2: frames from 1 (numbering.py)
    assert doc["trajectory"]["collision_frames"][0] in doc["predicted_frame"][:-1]
    assert sum(doc["true_displacement_counts"][0].values()) == 100
    # No logger, yet the file records what decided its numbers.
    kept = doc["provenance"]
    assert kept["checkpoint"] == {"path": str(ckpt), "sha256": sha256(ckpt), "global_step": 3}
    assert kept["analyze"]["num_true"] == 100 and kept["analyze"]["command"] == "trajectories"
    assert kept["model"]["variant"] == "lp" and kept["train_config"]["seed"] == 1234


def _edited(tmp_path, run_dir, variant=None, num_digits=None) -> Path:
    """A copy of the run as an SVG-FP model (prior weights dropped) and/or with more digits."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    if variant:
        ckpt["hyper_parameters"]["variant"] = variant
        ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if ".prior." not in k}
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(ckpt, path)
    config = (run_dir / "config.yaml").read_text()
    if num_digits:
        config = config.replace("num_digits: 1", f"num_digits: {num_digits}")
    (tmp_path / "run" / "config.yaml").write_text(config)
    return path


def test_prior_refuses_a_model_without_learned_prior(tmp_path, run_dir):
    path = _edited(tmp_path, run_dir, variant="fp")
    with pytest.raises(ConfigError, match="learned prior.*model.variant=fp"):
        analyze(analyze_cfg(tmp_path, path, "prior", *PRIOR))
    analyze(analyze_cfg(tmp_path, path, "trajectories", *TRAJ))  # FP samples can be tracked


def test_trajectories_refuses_two_digits(tmp_path, run_dir):
    path = _edited(tmp_path, run_dir, num_digits=2)
    with pytest.raises(ConfigError, match="single digit.*data.num_digits=2"):
        analyze(analyze_cfg(tmp_path, path, "trajectories", *TRAJ))


def test_non_smmnist_is_refused(tmp_path, run_dir):
    path = _edited(tmp_path, run_dir)
    config = path.parent.parent / "config.yaml"
    text = config.read_text().replace("SMMNISTDataModule", "KTHDataModule")
    config.write_text(text)
    with pytest.raises(ConfigError, match="Stochastic Moving MNIST"):
        analyze(analyze_cfg(tmp_path, path, "prior", *PRIOR))


@pytest.mark.slow
def test_cli_subcommand_and_errors(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    r = run_cli("svg_lightning.analyze", tmp_path, "prior", f"ckpt_path={ckpt}", *PRIOR)
    assert r.returncode == 0, r.stderr[-3000:]
    (found,) = (tmp_path / "logs" / "analyze" / "runs").rglob("prior.json")
    assert json.loads(found.read_text())["protocol"]["command"] == "prior"
    assert "AUROC" in r.stdout
    bad = run_cli("svg_lightning.analyze", tmp_path, "nonsense", f"ckpt_path={ckpt}")
    assert bad.returncode == 2 and "prior,trajectories" in bad.stderr
