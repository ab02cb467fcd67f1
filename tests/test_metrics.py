"""Golden tests: svg_lightning.metrics against scikit-image, computed independently in float64."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from svg_lightning import metrics
from svg_lightning.metrics import MSE_FLOOR, PSNR_RULE, SSIM_RULE, psnr, ssim, ssim_reference

TOL = 1e-5


def sk_ssim(p: np.ndarray, t: np.ndarray) -> float:
    """skimage SSIM of one (C, H, W) float64 image, the definition `ssim` must reproduce."""
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    if p.shape[0] == 1:
        return float(structural_similarity(p[0], t[0], **kw))
    return float(structural_similarity(p, t, channel_axis=0, **kw))


def sk_ssim_reference(p: np.ndarray, t: np.ndarray) -> float:
    """Old skimage `compare_ssim` defaults, as used by the 2018 SVG code."""
    kw = {
        "win_size": 7,
        "gaussian_weights": False,
        "use_sample_covariance": True,
        "data_range": 2.0,
    }
    return float(structural_similarity(p, t, channel_axis=0, **kw))


def sk_psnr(p: np.ndarray, t: np.ndarray) -> float:
    """Per-channel skimage PSNR, then mean (skimage alone would pool the MSE over channels)."""
    return float(
        np.mean([peak_signal_noise_ratio(t[c], p[c], data_range=1.0) for c in range(len(p))])
    )


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def check_all(p: np.ndarray, t: np.ndarray) -> None:
    """Compare all three metrics on one (C, H, W) pair, with skimage on the float32-rounded data."""
    p, t = p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)
    pt, tt = to_t(p), to_t(t)
    assert ssim(pt, tt).item() == pytest.approx(sk_ssim(p, t), abs=TOL)
    assert ssim_reference(pt, tt).item() == pytest.approx(sk_ssim_reference(p, t), abs=TOL)
    assert psnr(pt, tt).item() == pytest.approx(sk_psnr(p, t), abs=TOL)


def digit_like(h: int = 64, w: int = 64, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A blurred '7'-ish stroke (horizontal bar + diagonal) on black, peak ~1, like a digit."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = h / 2 + shift[0], w / 2 + shift[1]
    bar = np.exp(-(((yy - (cy - 10)) / 2.0) ** 2)) * (np.abs(xx - cx) < 9)
    # distance to the line from (cy - 10, cx + 8) to (cy + 12, cx - 4)
    y0, x0, y1, x1 = cy - 10, cx + 8, cy + 12, cx - 4
    s = np.clip(
        ((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0)) / ((y1 - y0) ** 2 + (x1 - x0) ** 2), 0, 1
    )
    d = np.hypot(yy - (y0 + s * (y1 - y0)), xx - (x0 + s * (x1 - x0)))
    img = np.maximum(bar, np.exp(-((d / 2.0) ** 2)))
    return np.clip(img, 0.0, 1.0)[None]


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 64, 64), (1, 32, 48), (3, 48, 32), (2, 11, 11)])
def test_random_frames_match_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    t = rng.random(shape)
    check_all(rng.random(shape), t)  # unrelated frames: SSIM near 0
    check_all(np.clip(t + 0.05 * rng.standard_normal(shape), 0, 1), t)  # noisy prediction


def test_low_contrast_frames_match_skimage():
    # Small variances on a mid-grey offset: where float32 E[x^2] - E[x]^2 would cancel badly.
    rng = np.random.default_rng(1)
    t = 0.5 + 0.01 * rng.random((3, 64, 64))
    check_all(0.5 + 0.01 * rng.random((3, 64, 64)), t)


def test_digit_like_frames_match_skimage():
    t = digit_like()
    for shift in [(0, 1), (1, -2), (3, 3)]:
        p = digit_like(shift=shift)
        check_all(p, t)
        check_all(0.8 * p, t)  # dimmer prediction
    rgb = np.concatenate([t, 0.5 * t, np.roll(t, 2, axis=-1)])
    check_all(np.roll(rgb, 1, axis=-2), rgb)
    # the shifted digit must be clearly worse than the exact one, but not garbage
    s = ssim(to_t(digit_like(shift=(1, 1))), to_t(t)).item()
    assert 0.3 < s < 0.99


def test_identical_frames():
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(5), atol=1e-6, rtol=0)
    assert torch.allclose(ssim_reference(x, x), torch.ones(5), atol=1e-6, rtol=0)
    assert torch.all(psnr(x, x) == 100.0)
    assert 10 * np.log10(1 / MSE_FLOOR) == pytest.approx(100.0)


def test_constant_frames():
    a, b = np.full((1, 64, 64), 0.3), np.full((1, 64, 64), 0.5)
    check_all(a, b)
    # closed form: zero variance -> SSIM is the luminance term only
    c1 = 0.01**2
    expected = (2 * 0.3 * 0.5 + c1) / (0.3**2 + 0.5**2 + c1)
    assert ssim(to_t(a), to_t(b)).item() == pytest.approx(expected, abs=TOL)
    assert psnr(to_t(a), to_t(b)).item() == pytest.approx(10 * np.log10(1 / 0.04), abs=TOL)
    black = torch.zeros(2, 3, 64, 64)
    assert torch.all(ssim(black, black) == 1.0)
    assert torch.all(ssim_reference(black, black) == 1.0)
    assert torch.all(psnr(black, black) == 100.0)


def test_leading_batch_dims_match_per_image_skimage():
    rng = np.random.default_rng(2)
    t = rng.random((2, 3, 4, 3, 32, 40))
    p = np.clip(t + 0.1 * rng.standard_normal(t.shape), 0, 1).astype(np.float32).astype(np.float64)
    t = t.astype(np.float32).astype(np.float64)
    got = {f.__name__: f(to_t(p), to_t(t)) for f in (ssim, ssim_reference, psnr)}
    for name, ref_fn in [
        ("ssim", sk_ssim),
        ("ssim_reference", sk_ssim_reference),
        ("psnr", sk_psnr),
    ]:
        assert got[name].shape == (2, 3, 4) and got[name].dtype == torch.float32
        ref = np.array([ref_fn(p[idx], t[idx]) for idx in np.ndindex(2, 3, 4)]).reshape(2, 3, 4)
        np.testing.assert_allclose(got[name].numpy(), ref, atol=TOL, rtol=0, err_msg=name)


def test_slicing_does_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(3)
    t = torch.rand(7, 3, 16, 24, generator=g)
    p = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    full = ssim(p, t), ssim_reference(p, t)
    monkeypatch.setattr(metrics.frame, "_SLICE_PIXELS", 2 * 16 * 24)  # 2 planes per slice, odd tail
    sliced = ssim(p, t), ssim_reference(p, t)
    for a, b in zip(full, sliced, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(dtype):
    rng = np.random.default_rng(4)
    t = digit_like()[None].repeat(2, 0)
    p = np.stack(
        [digit_like(shift=(1, 0)), np.clip(t[1] + 0.05 * rng.standard_normal(t[1].shape), 0, 1)]
    )
    pt, tt = to_t(p).to(dtype), to_t(t).to(dtype)
    # skimage on exactly the values the low-precision tensors hold
    pq, tq = pt.double().numpy(), tt.double().numpy()
    for fn, ref_fn in [(ssim, sk_ssim), (ssim_reference, sk_ssim_reference), (psnr, sk_psnr)]:
        out = fn(pt, tt)
        assert out.dtype == torch.float32 and out.shape == (2,)
        ref = [ref_fn(pq[i], tq[i]) for i in range(2)]
        np.testing.assert_allclose(out.numpy(), ref, atol=TOL, rtol=0)
        # and close to the float32-input result (differences only from input rounding)
        np.testing.assert_allclose(out.numpy(), fn(to_t(p), to_t(t)).numpy(), atol=5e-2, rtol=0)


def test_reference_variant_inflates_ssim():
    # Digit-like frames (mostly black): the 4x larger C1, C2 of data range 2 lift SSIM clearly.
    t = to_t(digit_like())
    p = torch.stack([to_t(digit_like(shift=sh)) for sh in [(1, 0), (2, 2), (4, -3)]])
    t = t.expand_as(p)
    assert torch.all(ssim_reference(p, t) > ssim(p, t) + 0.01)


def test_errors():
    x = torch.rand(1, 10, 64)
    with pytest.raises(ValueError, match="H and W >= 11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="H and W >= 11"):
        ssim(torch.rand(2, 1, 64, 10), torch.rand(2, 1, 64, 10))
    ssim_reference(x, x)  # 7x7 window fits a 10x64 frame
    with pytest.raises(ValueError, match="H and W >= 7"):
        ssim_reference(torch.rand(1, 6, 64), torch.rand(1, 6, 64))
    for fn in (ssim, ssim_reference, psnr):
        with pytest.raises(ValueError, match="shapes differ"):
            fn(torch.rand(1, 64, 64), torch.rand(3, 64, 64))
        with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
            fn(torch.rand(64, 64), torch.rand(64, 64))


def test_rules_are_documented():
    assert "1e-10" in PSNR_RULE and "100 dB" in PSNR_RULE and "per channel" in PSNR_RULE
    assert "11x11" in SSIM_RULE and "sigma 1.5" in SSIM_RULE and "valid" in SSIM_RULE


def test_real_moving_mnist_frames_match_skimage():
    """Real MNIST digits through the SM-MNIST generator: a frame against the next frame."""
    from svg_lightning.data.digits import load_digits
    from svg_lightning.data.smmnist import MovingMNIST

    digits = load_digits("/nonexistent", train=False)
    video = MovingMNIST(digits, 1, 4, num_digits=2, image_size=64, seed=3)[0]["frames"].double()
    for i in range(3):
        check_all(video[i + 1].numpy(), video[i].numpy())
