import pytest
import torch

from benchmarks import reference_loop
from svg_lightning.models import recurrent
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG, skip_source
from tests.helpers.reference import SPEC_COUNTS, count


@pytest.mark.parametrize("name", SPEC_COUNTS)
def test_parameter_counts_match_reference(name):
    kwargs, expected = SPEC_COUNTS[name]
    m = SVG(SVGConfig(**kwargs))
    got = (
        count(m.encoder),
        count(m.decoder),
        count(m.frame_predictor),
        count(m.posterior),
        count(getattr(m, "prior", None)),
        count(m),
    )
    assert got == expected


def test_deterministic_has_no_latent_modules():
    m = SVG(SVGConfig(variant="deterministic"))
    assert not hasattr(m, "posterior") and not hasattr(m, "prior")
    assert m.frame_predictor.embed.in_features == 128


def test_reference_initialisation():
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant="lp", backbone="dcgan64"))
    conv = m.encoder.stages[2][0].weight
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    assert torch.all(m.encoder.stages[2][0].bias == 0)
    bn = m.encoder.stages[3][1]
    assert abs(bn.weight.mean().item() - 1) < 0.005 and 0.01 < bn.weight.std().item() < 0.03
    assert torch.all(bn.bias == 0)
    lin = m.posterior.mu.weight
    assert abs(lin.std().item() - 0.02) < 0.003
    bound = 1 / 256**0.5  # LSTM keeps PyTorch's uniform(-1/sqrt(rnn), 1/sqrt(rnn))
    w = m.frame_predictor.lstm.weight_hh_l0
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound


def test_skip_sources():
    # Predicting frames t = 1..14 with n_past = 5; "reference" is the reference code's off-by-one.
    steps = range(1, 15)
    assert [skip_source(t, 5, "reference") for t in steps] == [0, 1, 2, 3] + [3] * 10
    assert [skip_source(t, 5, "last") for t in steps] == [0, 1, 2, 3, 4] + [4] * 9
    assert [skip_source(t, 5, "previous") for t in steps] == list(range(14))
    assert [skip_source(t, 2, "reference") for t in range(1, 12)] == [0] * 11  # BAIR
    assert [skip_source(t, 1, "reference") for t in range(1, 4)] == [0, 0, 0]


TINY_NET = dict(backbone="dcgan32", image_size=32, channels=1, g_dim=8, z_dim=3, rnn_size=8, nf=4)


@pytest.mark.parametrize("variant", ["lp", "fp", "deterministic"])
def test_whole_sequence_pass_equals_stepwise_reference(variant, monkeypatch):
    monkeypatch.setattr("svg_lightning.models.svg.reparameterize", lambda mu, logvar: mu)
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, **TINY_NET)).eval()
    x = torch.rand(3, 7, 1, 32, 32)
    # The reference's frame-by-frame pass (the training benchmark's baseline), z = mu.
    eps = torch.zeros(3, 6, 3)
    expected = reference_loop.reference_pass(m, x, 3, eps).x_hat
    torch.testing.assert_close(m(x, 3).x_hat, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("skip", ["last", "reference", "previous"])
def test_generation_baseline_is_our_sampler(skip):
    """bench_eval's baseline (the reference's generation script: frame by frame, every
    generated frame encoded again) generates what ``SVG.sample`` does; the deterministic model
    draws no noise, so the two must agree frame for frame."""
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant="deterministic", skip=skip, **TINY_NET)).eval()
    cond = torch.rand(3, 4, 1, 32, 32)
    baseline = reference_loop.reference_generate(m, cond, 3)
    ours = m.sample(cond, 3).frames[:, 0]
    torch.testing.assert_close(ours, baseline, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["lp", "fp"])
def test_generation_baseline_with_our_noise_is_our_sampler(variant):
    """The reference's generation script (bench_eval's baseline: a whole batch per call, one
    sample index at a time) computes our sampler's function given the same standard-normal
    draws, in eval mode: the posterior sample (LP) or mean (FP) on the conditioning frames,
    then the prior's (LP) or N(0, I) (FP) z."""
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, **TINY_NET)).eval()
    cond, s = torch.rand(3, 4, 1, 32, 32), 2
    noise = torch.randn(3, s, m.noise_steps(4, 3), m.z_dim)
    ours = m.sample(cond, 3, s, noise=noise).frames
    reference_generate = reference_loop.reference_generate
    for k in range(s):
        baseline = reference_generate(m, cond, 3, noise[:, k])
        torch.testing.assert_close(ours[:, k], baseline, atol=1e-5, rtol=1e-4)


def test_gaussian_lstm_state_carries_across_calls():
    torch.manual_seed(0)
    g = recurrent.GaussianLSTM(5, 3, 7, 2)
    x = torch.randn(2, 6, 5)
    mu_all, _, _ = g(x)
    state, mus = None, []
    for t in range(6):
        mu, _, state = g(x[:, t : t + 1], state)
        mus.append(mu)
    torch.testing.assert_close(torch.cat(mus, 1), mu_all)


@pytest.mark.parametrize("variant,samples", [("lp", 4), ("fp", 4), ("deterministic", 1)])
def test_sample_shapes_and_range(variant, samples):
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, **TINY_NET)).eval()
    out = m.sample(torch.rand(2, 3, 1, 32, 32), n_future=5, num_samples=4, chunk_size=3)
    assert out.frames.shape == (2, samples, 5, 1, 32, 32)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    if variant == "lp":
        assert out.prior_mu.shape == out.prior_logvar.shape == (2, 4, 5, 3)
    else:
        assert out.prior_mu is None


def test_samples_differ_and_chunking_keeps_sequences_apart():
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant="lp", **TINY_NET)).eval()
    cond = torch.rand(2, 3, 1, 32, 32)
    out = m.sample(cond, n_future=4, num_samples=5, chunk_size=3).frames
    assert (out[0, 0] - out[0, 1]).abs().max() > 0  # samples are different draws
    det = SVG(SVGConfig(variant="deterministic", **TINY_NET)).eval()
    whole = det.sample(cond, 4).frames
    torch.testing.assert_close(det.sample(cond, 4, chunk_size=1).frames, whole)
    torch.testing.assert_close(det.sample(cond[1:], 4).frames, whole[1:])


def test_sampling_first_step_uses_last_conditioning_frame():
    """With generation fed back, the first predicted frame depends only on the conditioning
    frames: a deterministic model's first prediction equals the teacher-forced one."""
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant="deterministic", **TINY_NET)).eval()
    x = torch.rand(2, 4, 1, 32, 32)
    torch.testing.assert_close(m.sample(x[:, :3], 1).frames[:, 0, 0], m(x, 3).x_hat[:, 2])


@pytest.mark.parametrize("variant", ["lp", "fp"])
def test_given_noise_makes_samples_independent_of_chunks_and_batch(variant):
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, warmup="sample", **TINY_NET)).eval()
    cond = torch.rand(3, 3, 1, 32, 32)
    noise = torch.randn(3, 4, m.noise_steps(3, 5), 3)
    whole = m.sample(cond, 5, num_samples=4, noise=noise)
    chunked = m.sample(cond, 5, num_samples=4, chunk_size=5, noise=noise)
    torch.testing.assert_close(chunked.frames, whole.frames)
    torch.testing.assert_close(m.sample(cond[1:], 5, 4, noise=noise[1:]).frames, whole.frames[1:])
    seen = []
    m.frame_predictor.register_forward_pre_hook(lambda mod, args: seen.append(args[0][..., 8:]))
    m.sample(cond, 5, num_samples=4, noise=noise)
    m.sample(cond, 5, num_samples=4, noise=noise)
    m.sample(cond, 5, num_samples=4, noise=torch.randn_like(noise))
    n = len(seen) // 3  # predictor calls per sampling run; z is the input after h (g_dim 8)
    assert all(torch.equal(a, b) for a, b in zip(seen[:n], seen[n : 2 * n]))
    assert not any(torch.equal(a, b) for a, b in zip(seen[:n], seen[2 * n :]))


@pytest.mark.parametrize(
    "variant,warmup,uses_mean",
    [("fp", "reference", True), ("lp", "reference", False), ("fp", "sample", False),
     ("lp", "mean", True)],
)  # fmt: skip
def test_generation_warmup_feeds_the_posterior_mean_or_a_sample(variant, warmup, uses_mean):
    """The reference's SVG-FP generation feeds the posterior mean on the conditioning frames,
    its SVG-LP generation a posterior sample."""
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, warmup=warmup, **TINY_NET)).eval()
    cond = torch.rand(2, 3, 1, 32, 32)
    seen = []
    m.frame_predictor.register_forward_pre_hook(lambda mod, args: seen.append(args[0][..., 8:]))
    m.sample(cond, 2, num_samples=1)
    mu, _, _ = m.posterior(m.encode(cond)[0][:, 1:])
    assert torch.allclose(seen[0], mu, atol=1e-6) == uses_mean
