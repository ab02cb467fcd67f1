"""`python -m svg_lightning.sample` on a tiny trained checkpoint and the user's own clips."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import av
import numpy as np
import pytest
import torch
from PIL import Image

from svg_lightning.errors import ConfigError, InputError
from svg_lightning.sample import read_frames, sample
from tests.helpers import compose_cfg

SIZE, P, T = 32, 2, 3  # the TINY model: 32x32, 1 channel, n_past=2, n_future=3


@pytest.fixture
def ckpt(trained_run) -> Path:
    return trained_run / "checkpoints" / "last.ckpt"


def moving_square(n: int = 10, h: int = 48, w: int = 64) -> np.ndarray:
    """uint8 (n, h, w, 3): a bright square moving right, so every frame differs."""
    x = np.zeros((n, h, w, 3), np.uint8)
    for t in range(n):
        x[t, 10:26, 4 * t : 4 * t + 16] = (255, 200, 50)
    return x


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    return path


def sample_cfg(tmp_path, ckpt, input, *overrides):
    return compose_cfg(
        tmp_path, f"ckpt_path={ckpt}", f"input={input}", f"out={tmp_path / 'samples'}",
        "num_samples=3", "device=cpu", *overrides, config_name="sample",
    )  # fmt: skip


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def check_outputs(out: Path, s: int, p: int = P, t: int = T, fps: int = 8) -> np.ndarray:
    x = np.load(out / "samples.npy")
    assert x.dtype == np.float32 and x.shape == (s, t, 1, SIZE, SIZE)
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0
    assert np.load(out / "conditioning.npy").shape == (p, 1, SIZE, SIZE)
    gif = Image.open(out / "samples.gif")
    # PIL merges identical consecutive frames (summing durations), so check the total duration.
    durations = [gif.seek(i) or gif.info["duration"] for i in range(gif.n_frames)]
    assert (
        gif.n_frames > 1
        and gif.n_frames <= p + t
        and sum(durations) == (p + t) * 10 * round(100 / fps)
    )
    assert gif.size[0] == s * gif.size[1] and gif.size[1] > SIZE  # square panels side by side
    mp4s = sorted(out.glob("sample_*.mp4"))
    # Numbered from 1 as the grids' "sample 1" (numbering.py); sample_01.mp4 is samples.npy[0].
    assert [m.name for m in mp4s] == [f"sample_{i:02d}.mp4" for i in range(1, s + 1)]
    for m in mp4s:
        frames = decoded_frames(m)
        assert len(frames) == p + t and frames[0].shape == (128, 128, 3)
    return x


def test_samples_a_user_mp4(tmp_path, ckpt, capsys):
    video = write_mp4(tmp_path / "clip.mp4", moving_square())
    paths = sample(sample_cfg(tmp_path, ckpt, video, "start=4", "n_future=4", "fps=5"))
    out = tmp_path / "samples"
    check_outputs(out, s=3, t=4, fps=5)
    cond = np.load(out / "conditioning.npy")[:, 0]
    # start=4: frame 4's square spans columns 16..31 of 64 -> 8..15 of the squashed 32, centre 12
    # (frame 0's would be at 4), rows 10..25 of 48 -> centre 12 too.
    w = cond[0] / cond[0].sum()
    cx, cy = (w.sum(0) * np.arange(SIZE)).sum(), (w.sum(1) * np.arange(SIZE)).sum()
    assert cx == pytest.approx(11.5, abs=1) and cy == pytest.approx(11.5, abs=1)
    assert str(out) in capsys.readouterr().out and paths["gif"] == out / "samples.gif"
    assert paths["mp4_01"] == out / "sample_01.mp4"
    # What produced the samples: the checkpoint's very bytes and step, the input frames from 1.
    info = json.loads(paths["info"].read_text())
    ckpt_dict = torch.load(ckpt, weights_only=True)
    assert info["checkpoint"] == {
        "path": str(ckpt),
        "global_step": ckpt_dict["global_step"],
        "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
    }
    assert info["input"] == str(video.resolve()) and info["conditioning_frames"] == [5, 6]
    assert (info["n_past"], info["n_future"], info["num_samples"], info["seed"]) == (P, 4, 3, 0)
    assert info["device"] == "cpu"


def test_samples_npy_layouts_and_is_reproducible(tmp_path, ckpt):
    rgb = moving_square(6)
    gray_thw = rgb[..., 0]  # uint8 (T, H, W)
    float_tchw = rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255  # float (T, C, H, W)
    runs = [("thw", gray_thw, "seed=0"), ("tchw", float_tchw, "seed=0"),
            ("again", float_tchw, "seed=0"), ("seed1", float_tchw, "seed=1")]  # fmt: skip
    results, conds = [], []
    for name, arr, seed in runs:
        np.save(tmp_path / f"{name}.npy", arr)
        sample(sample_cfg(tmp_path / name, ckpt, tmp_path / f"{name}.npy", "num_samples=2", seed))
        results.append(check_outputs(tmp_path / name / "samples", s=2))
        conds.append(np.load(tmp_path / name / "samples" / "conditioning.npy"))
    # The square is red channel 255 (THW input) but BT.601 luma 199.3 / 255 as RGB.
    assert conds[0].max() == pytest.approx(1.0, abs=1e-3)
    assert conds[1].max() == pytest.approx(0.7816, abs=1e-3) and conds[1].min() == 0
    np.testing.assert_array_equal(results[1], results[2])  # same seed, same samples
    assert not np.array_equal(results[1], results[3])  # another seed, other noise


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((4, 5, 8, 8), np.uint8), "has shape (4, 5, 8, 8); accepted"),
        (np.zeros((4, 8, 8), np.int64), "has dtype int64"),
        (np.full((4, 8, 8), 2.0, np.float32), "outside [0, 1]"),
    ],
)
def test_bad_arrays_are_named(tmp_path, arr, message):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(InputError, match="bad.npy") as err:
        read_frames(tmp_path / "bad.npy")
    assert message in str(err.value)


def test_reading_infers_layout_and_range(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    np.save(tmp_path / "hwc.npy", x)
    np.save(tmp_path / "chw.npy", x.transpose(0, 3, 1, 2))
    a, b = read_frames(tmp_path / "hwc.npy"), read_frames(tmp_path / "chw.npy")
    assert a.shape == (3, 3, 8, 6) and a.dtype == np.float32 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a * 255, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("override", ["n_past=0", "num_samples=0"])
def test_bad_settings(tmp_path, ckpt, override):
    np.save(tmp_path / "x.npy", moving_square(6))
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        sample(sample_cfg(tmp_path, ckpt, tmp_path / "x.npy", override))


def test_missing_input(tmp_path, ckpt):
    with pytest.raises(InputError, match="nope.mp4 does not exist"):
        sample(sample_cfg(tmp_path, ckpt, tmp_path / "nope.mp4"))


def start_cli(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m svg_lightning.sample`` as a user runs it (like conftest.run_cli), without
    waiting: the runs start in parallel, as each spends seconds importing torch."""
    env = {**os.environ, "SVG_ROOT": str(cwd), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "svg_lightning.sample", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE, text=True)


@pytest.mark.slow
def test_cli_samples_and_reports_bad_inputs(tmp_path, ckpt):
    ok, corrupt, short = tmp_path / "ok", tmp_path / "corrupt", tmp_path / "short"
    for cwd in (ok, corrupt, short):
        cwd.mkdir()
    write_mp4(ok / "clip.mp4", moving_square())
    (corrupt / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_mp4(short / "short.mp4", moving_square(3))
    runs = {
        ok: start_cli(ok, f"ckpt_path={ckpt}", "input=clip.mp4", "out=res", "num_samples=2"),
        corrupt: start_cli(corrupt, f"ckpt_path={ckpt}", "input=corrupt.mp4", "out=res"),
        short: start_cli(short, f"ckpt_path={ckpt}", "input=short.mp4", "out=res", "n_past=5"),
    }
    results = {cwd: (*proc.communicate(timeout=300), proc.returncode) for cwd, proc in runs.items()}

    stdout, stderr, code = results[ok]
    assert code == 0, stderr
    check_outputs(ok / "res", s=2)
    assert "samples.gif" in stdout
    assert list((ok / "logs" / "sample" / "runs").iterdir())  # hydra's dir, under SVG_ROOT
    messages = {
        corrupt: "input corrupt.mp4 cannot be decoded",
        short: "input short.mp4: needs n_past=5 frames from frame start=0, the video has 3; "
        "lower n_past or start",
    }
    for cwd, message in messages.items():
        stdout, stderr, code = results[cwd]
        assert code == 2, stderr
        assert message in stdout + stderr  # hydra's logging goes to stdout
        assert "Traceback" not in stderr and not (cwd / "res").exists()
