"""LPIPS and FVD building blocks: LPIPS against the lpips package on a random AlexNet, the
Fréchet distance against scipy's sqrtm formula, I3D shapes and weight files. No pretrained
weights are needed: every network here has random weights saved to temporary files."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import torchvision

from svg_lightning.metrics.fvd import (
    I3D,
    frechet_distance,
    i3d_features,
    load_i3d,
    preprocess_i3d,
)
from svg_lightning.metrics.perceptual import (
    ALEXNET_FILE,
    MissingWeightsError,
    WeightsFileError,
    load_lpips,
    lpips,
)

# By module name: once `svg_lightning.metrics` exports the function `lpips`, the attribute
# `svg_lightning.metrics.perceptual` is that function, not this module.
lpips_mod = importlib.import_module("svg_lightning.metrics.perceptual")
fvd_mod = importlib.import_module("svg_lightning.metrics.fvd")


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None)
    path = tmp_path_factory.mktemp("alexnet") / ALEXNET_FILE
    # Only features.* is read; leaving out the classifier saves writing 230 MB.
    torch.save({k: v for k, v in net.state_dict().items() if k.startswith("features.")}, path)
    return path


@pytest.fixture(scope="module")
def lpips_net(alexnet_file):
    return load_lpips(backbone=alexnet_file)


def frames(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- LPIPS -----------------------------------------------------------------------------------


def test_lpips_zero_on_identical_and_symmetric(lpips_net):
    x, y = frames(2, 3, 3, 64, 64), frames(2, 3, 3, 64, 64, seed=1)
    with torch.no_grad():
        assert torch.equal(lpips(x, x, lpips_net), torch.zeros(2, 3))
        d = lpips(x, y, lpips_net)
        torch.testing.assert_close(d, lpips(y, x, lpips_net), rtol=1e-6, atol=0)
    assert (d > 0).all()


def test_lpips_shapes_gray_and_slicing(lpips_net, monkeypatch):
    x, y = frames(2, 3, 1, 64, 64), frames(2, 3, 1, 64, 64, seed=1)
    with torch.no_grad():
        d = lpips(x, y, lpips_net)
        assert d.shape == (2, 3) and d.dtype == torch.float32
        # Grayscale frames are scored as the RGB frames that repeat them.
        rgb = lpips(x.expand(-1, -1, 3, -1, -1), y.expand(-1, -1, 3, -1, -1), lpips_net)
        torch.testing.assert_close(d, rgb, rtol=0, atol=0)
        assert lpips(x[0, 0], y[0, 0], lpips_net).shape == ()
        assert lpips(x[0], y[0], lpips_net).shape == (3,)
        monkeypatch.setattr(lpips_mod, "_SLICE_PIXELS", 2 * 64 * 64 * 2)  # 2 pairs per slice
        torch.testing.assert_close(lpips(x, y, lpips_net), d, rtol=1e-6, atol=1e-7)


def test_lpips_rejects_bad_inputs(lpips_net):
    with pytest.raises(ValueError, match="differ"):
        lpips(frames(1, 3, 64, 64), frames(1, 3, 64, 32), lpips_net)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        lpips(frames(1, 2, 64, 64), frames(1, 2, 64, 64), lpips_net)
    with pytest.raises(ValueError, match=">= 31"):
        lpips(frames(1, 3, 30, 64), frames(1, 3, 30, 64), lpips_net)


def test_lpips_matches_the_lpips_package(alexnet_file, lpips_net):
    package = importlib.import_module("lpips")  # a dependency: never skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about `pretrained=False`
        # pnet_rand: a random trunk, nothing downloaded; the linear layers are its v0.1 file.
        ref = package.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    state = torch.load(alexnet_file, weights_only=True)
    for sl in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, layer in sl.named_children():  # the package keeps torchvision's indices
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.copy_(state[f"features.{name}.weight"])
                layer.bias.copy_(state[f"features.{name}.bias"])
    x, y = frames(6, 3, 64, 64), frames(6, 3, 64, 64, seed=1)
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
        got = lpips(x, y, lpips_net)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert expected.abs().min() > 1e-3  # a real comparison, not of zeros


def test_lpips_backbone_from_hub_cache_or_one_line_error(alexnet_file, lpips_net, monkeypatch):
    hub = alexnet_file.parent / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    with pytest.raises(MissingWeightsError) as err:
        load_lpips()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in msg
    assert str(hub / "checkpoints" / ALEXNET_FILE) in msg and "backbone=PATH" in msg
    assert "download.pytorch.org" in msg
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / ALEXNET_FILE).symlink_to(alexnet_file)
    net = load_lpips()
    assert not net.training
    for a, b in zip(net.state_dict().values(), lpips_net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_lpips_wrong_weight_files(alexnet_file, tmp_path):
    linear = lpips_mod._default_linear()
    with pytest.raises(WeightsFileError, match="not a torchvision alexnet"):
        load_lpips(backbone=linear)
    with pytest.raises(WeightsFileError, match="linear-layer"):
        load_lpips(backbone=alexnet_file, linear=alexnet_file)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match="not a torch state dict"):
        load_lpips(backbone=junk)
    with pytest.raises(MissingWeightsError):
        load_lpips(backbone=tmp_path / "absent.pth")


# --- Fréchet distance ------------------------------------------------------------------------


def scipy_frechet(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return np.square(mu_a - mu_b).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)


def test_frechet_distance_matches_scipy_and_is_order_free():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 16))
    b = 0.5 + rng.normal(size=(50, 16)) @ rng.normal(size=(16, 16)) / 4
    d = frechet_distance(a, b)
    assert d == pytest.approx(scipy_frechet(a, b), rel=1e-10)
    assert frechet_distance(torch.from_numpy(a), b) == d  # tensors are accepted too
    assert frechet_distance(b, a) == pytest.approx(d, rel=1e-10)
    assert frechet_distance(a[rng.permutation(50)], b[rng.permutation(50)]) == pytest.approx(
        d, rel=1e-12
    )
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-10)
    assert frechet_distance(a, a[::-1]) == pytest.approx(0, abs=1e-10)


def test_frechet_distance_singular_covariances_and_bad_input():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 40)), rng.normal(size=(12, 40))  # N < D: rank-deficient
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(a, b[:, :5])
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], b)


# --- I3D -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d_random():
    torch.manual_seed(0)
    net = I3D()
    for m in net.modules():  # non-trivial BatchNorm statistics, so a lost buffer shows
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def video():
    return frames(2, 10, 1, 64, 64, seed=3)  # gray, resized to 224 inside


@pytest.fixture(scope="module")
def video_features(i3d_random, video):
    return i3d_features(video, i3d_random, batch_size=1)


def test_i3d_features_shape(i3d_random, video, video_features):
    feats = video_features
    assert feats.shape == (2, 400) and feats.dtype == torch.float64
    assert feats.device.type == "cpu" and torch.isfinite(feats).all()
    assert not torch.equal(feats[0], feats[1])
    with pytest.raises(ValueError, match="T >= 9"):
        i3d_features(video[:, :8], i3d_random)


def test_i3d_preprocessing():
    v = frames(1, 2, 1, 8, 8)
    x = preprocess_i3d(v)
    assert x.shape == (1, 3, 2, 224, 224) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, preprocess_i3d(v.expand(-1, -1, 3, -1, -1)))  # gray -> RGB
    # TF1 resize_bilinear (half_pixel_centers=False): output i samples input i * n_in / n_out,
    # so every 28th output pixel (224 / 8) is an input pixel.
    torch.testing.assert_close(x[0, 0, :, ::28, ::28], 2 * v[0, :, 0] - 1)
    m = fvd_mod._tf1_bilinear_matrix(2, 4)
    assert torch.equal(m, torch.tensor([[1, 0], [0.5, 0.5], [0, 1], [0, 1]], dtype=m.dtype))
    t = preprocess_i3d(v, resize="torch")
    expected = 2 * F.interpolate(v[0], size=(224, 224), mode="bilinear") - 1
    torch.testing.assert_close(t[0, 0], expected[:, 0])
    flat = preprocess_i3d(torch.full((1, 9, 3, 64, 64), 0.25))
    torch.testing.assert_close(flat, torch.full_like(flat, -0.5))


def test_load_i3d_state_dict_and_torchscript(i3d_random, video, video_features, tmp_path):
    # The port's file layout: no num_batches_tracked (older torch), a DataParallel prefix.
    sd = {
        f"module.{k}": v
        for k, v in i3d_random.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save(sd, tmp_path / "rgb_imagenet.pt")
    net = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    torch.testing.assert_close(i3d_features(video[:1], net), video_features[:1])

    # A TorchScript export of the port: its parameters are read by name, its code never run
    # (this one's code is a single layer, which keeps tracing cheap).
    class Export(I3D):
        def forward(self, x):
            return self.logits.conv3d(x)

    export = Export()
    export.load_state_dict(i3d_random.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        traced = torch.jit.trace(export.eval(), torch.zeros(1, 1024, 1, 1, 1))
        torch.jit.save(traced, tmp_path / "i3d_torchscript.pt")
        torch.jit.save(torch.jit.trace(export.logits.conv3d, torch.zeros(1, 1024, 1, 1, 1)),
                       tmp_path / "conv.pt")  # fmt: skip
    net = load_i3d(tmp_path / "i3d_torchscript.pt")
    for (k, a), b in zip(net.state_dict().items(), i3d_random.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsFileError, match=r"\(TorchScript\) is not an I3D"):
        load_i3d(tmp_path / "conv.pt")


def test_load_i3d_wrong_files(alexnet_file, i3d_random, tmp_path):
    with pytest.raises(WeightsFileError, match="rgb_imagenet.pt"):
        load_i3d(alexnet_file)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsFileError, match="not a torch state dict"):
        load_i3d(junk)
    with pytest.raises(MissingWeightsError, match="rgb_imagenet.pt"):
        load_i3d(tmp_path / "absent.pt")
    sd = dict(i3d_random.state_dict())
    sd["logits.conv3d.weight"] = torch.zeros(157, 1024, 1, 1, 1)  # Charades, not Kinetics-400
    torch.save(sd, tmp_path / "charades.pt")
    with pytest.raises(WeightsFileError, match=r"logits.conv3d.weight has shape \(157"):
        load_i3d(tmp_path / "charades.pt")
