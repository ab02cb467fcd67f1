"""``model.bn_stats=per_step`` is the reference's training step: the reference runs the encoder
and decoder frame by frame, so every BatchNorm layer normalises with one time step's batch
statistics and updates its running statistics once per call, in call order (SVG-LP encodes
x_{t-1} then x_t at every step; SVG-FP, and the deterministic model, every frame once). The
frame-by-frame loop written from that description, with plain BatchNorm in train mode, is the
benchmarks' baseline (benchmarks/reference_loop.py); the batched ``per_step`` pass must give the
same loss, gradients and running statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmarks import reference_loop
from svg_lightning.models.batchnorm import StepBatchNorm2d
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG, skip_source

BETA = 1e-2
NETS = {
    "dcgan": dict(backbone="dcgan32", image_size=32, g_dim=16, z_dim=3, rnn_size=16, nf=8),
    "vgg": dict(backbone="vgg64", image_size=64, g_dim=16, z_dim=3, rnn_size=16),
}


def reference_step(m: SVG, x: torch.Tensor, n_past: int, eps: torch.Tensor) -> torch.Tensor:
    """The reference's training loss, one frame at a time (z = mu + sigma * eps): the baseline
    ``make bench`` times our step against, so these tests also show that it computes our
    function."""
    return reference_loop.reference_step(m, x, n_past, BETA, eps).loss


def batched_step(m: SVG, x, n_past, eps, bn_stats, monkeypatch, time_chunk=None) -> torch.Tensor:
    monkeypatch.setattr(
        "svg_lightning.models.svg.reparameterize",
        lambda mu, logvar: mu + torch.exp(0.5 * logvar) * eps,
    )
    return m(x, n_past, bn_stats, time_chunk).loss(x, BETA).loss


def state(m: nn.Module) -> tuple[dict, dict]:
    grads = {k: p.grad for k, p in m.named_parameters()}
    return grads, dict(m.named_buffers())


def setup(variant: str, net: str, skip: str = "last"):
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, skip=skip, **NETS[net])).double().train()
    size = NETS[net]["image_size"]
    x = torch.rand(3, 5, 1, size, size, dtype=torch.float64)
    eps = torch.randn(3, 4, 3, dtype=torch.float64)
    return m, copy.deepcopy(m), x, eps


# time_chunk 2 of T = 5: encoder calls over steps (0, 1), (2, 3), (4); decoder (1, 2), (3, 4)
@pytest.mark.parametrize("time_chunk", [None, 2])
@pytest.mark.parametrize("net", ["dcgan", "vgg"])
@pytest.mark.parametrize("variant", ["lp", "fp", "deterministic"])
def test_per_step_equals_the_reference_frame_by_frame(variant, net, time_chunk, monkeypatch):
    m, ref, x, eps = setup(variant, net, skip="reference" if net == "vgg" else "last")
    loss = batched_step(m, x, 3, eps, "per_step", monkeypatch, time_chunk)
    ref_loss = reference_step(ref, x, 3, eps)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
    loss.backward()
    ref_loss.backward()
    (grads, buffers), (ref_grads, ref_buffers) = state(m), state(ref)
    assert grads.keys() == ref_grads.keys() and buffers.keys() == ref_buffers.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-10)
    for name in buffers:
        torch.testing.assert_close(buffers[name], ref_buffers[name], rtol=1e-10, atol=1e-10)
    # The reference's call counts: 2(T-1) (LP) or T encoder calls, T-1 decoder calls.
    calls = 8 if variant == "lp" else 5
    assert int(m.encoder.code[1].num_batches_tracked) == calls
    assert int(m.decoder.uncode[1].num_batches_tracked) == 4


def test_joint_is_one_plain_batch_norm_over_all_frames(monkeypatch):
    """``joint`` (the batched statistics of earlier versions): plain BatchNorm over the B*T
    frames of one call, running statistics updated once per update."""
    m, ref, x, eps = setup("lp", "dcgan")
    for layer in list(ref.modules()):
        for child_name, child in list(layer.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                plain = nn.BatchNorm2d(child.num_features).double()
                plain.load_state_dict(child.state_dict())
                setattr(layer, child_name, plain)
    loss = batched_step(m, x, 3, eps, "joint", monkeypatch)
    ref_loss = batched_step(ref, x, 3, eps, "joint", monkeypatch)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    assert int(m.encoder.code[1].num_batches_tracked) == 1
    fresh, _, _, _ = setup("lp", "dcgan")
    per_step = batched_step(fresh, x, 3, eps, "per_step", monkeypatch)
    assert not torch.allclose(per_step, loss)  # a different function, not a rounding


def test_time_chunks_need_per_step_statistics_in_training(monkeypatch):
    m, _, x, eps = setup("lp", "dcgan")
    with pytest.raises(ValueError, match="time_chunk needs bn_stats='per_step'"):
        batched_step(m, x, 3, eps, "joint", monkeypatch, time_chunk=2)


@pytest.mark.parametrize("skip", ["last", "previous"])
def test_time_chunks_are_the_same_function(skip, monkeypatch):
    """Chunks of 1, 2 and 3 steps against one call (float64), skips of every source frame."""
    m, _, x, eps = setup("lp", "dcgan", skip=skip)
    whole = batched_step(copy.deepcopy(m), x, 3, eps, "per_step", monkeypatch)
    for size in (1, 2, 3):
        chunked = batched_step(copy.deepcopy(m), x, 3, eps, "per_step", monkeypatch, size)
        torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)


def test_eval_mode_uses_running_statistics_whatever_bn_stats(monkeypatch):
    m, _, x, eps = setup("lp", "dcgan")
    m.eval()
    a = batched_step(m, x, 3, eps, "per_step", monkeypatch)
    b = batched_step(m, x, 3, eps, "joint", monkeypatch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert int(m.encoder.code[1].num_batches_tracked) == 0


def reference_generation(m: SVG, cond, n_future: int, noise) -> torch.Tensor:
    """The reference's generation, one sample index at a time over the B videos, frame by frame,
    with the encoder and decoder in train mode (batch statistics) -> (B, S, n_future, ...)."""
    n_cond, samples = cond.shape[1], noise.shape[1]
    out = []
    for s in range(samples):
        eps = noise[:, s]
        post = prior = pred = None
        feats = [m.encoder(cond[:, i]) for i in range(n_cond)]
        for i in range(1, n_cond):
            h_prev = feats[i - 1][0][:, None]
            mu, logvar, post = m.posterior(feats[i][0][:, None], post)
            z = mu if m.warmup_mean else mu + torch.exp(0.5 * logvar) * eps[:, i - 1 : i]
            if m.variant == "lp":
                _, _, prior = m.prior(h_prev, prior)
            _, pred = m.frame_predictor(torch.cat([h_prev, z], -1), pred)
        h_in, skip = feats[-1][0][:, None], feats[skip_source(n_cond, n_cond, m.skip)][1]
        frames = []
        for step in range(n_future):
            e = eps[:, n_cond - 1 + step : n_cond + step]
            if m.variant == "lp":
                mu, logvar, prior = m.prior(h_in, prior)
                z = mu + torch.exp(0.5 * logvar) * e
            else:
                z = e
            g, pred = m.frame_predictor(torch.cat([h_in, z], -1), pred)
            frames.append(m.decoder(g[:, 0], skip))
            h_next, skip_next = m.encoder(frames[-1])
            h_in = h_next[:, None]
            skip = skip_next if m.skip == "previous" else skip
        out.append(torch.stack(frames, 1))
    return torch.stack(out, 1)


@pytest.mark.parametrize("variant,skip", [("lp", "last"), ("fp", "previous")])
def test_batch_statistics_generation_equals_the_reference(variant, skip):
    """``eval.bn=batch`` reproduces the reference's train-mode generation exactly, and leaves the
    running statistics alone."""
    m, ref, _, _ = setup(variant, "dcgan", skip=skip)
    m.eval()
    buffers = {k: v.clone() for k, v in m.named_buffers()}
    cond = torch.rand(3, 3, 1, 32, 32, dtype=torch.float64)
    noise = torch.randn(3, 2, m.noise_steps(3, 4), 3, dtype=torch.float64)
    with torch.no_grad():
        chunks = list(m.iter_samples(cond, 4, 2, chunk_size=1, noise=noise, bn_stats="batch"))
        got = torch.empty(6, 4, 1, 32, 32, dtype=torch.float64)
        for c in chunks:
            got[c.rows] = c.frames
        expected = reference_generation(ref.train(), cond, 4, noise)
    torch.testing.assert_close(got.view(3, 2, 4, 1, 32, 32), expected, rtol=1e-10, atol=1e-10)
    for name, value in m.named_buffers():
        assert torch.equal(value, buffers[name]), name
    running = m.sample(cond, 4, 2, noise=noise).frames
    assert not torch.allclose(running, expected)  # running statistics: another function


def test_auto_time_chunk_keeps_a_call_near_the_cpu_budget():
    x = torch.empty(16, 15, 1, 64, 64)
    paper = SVG(SVGConfig())  # SM-MNIST dcgan64: first stage 64 x 32 x 32, 4 MiB a step at B=16
    assert paper.auto_time_chunk(x) == 5
    assert paper.auto_time_chunk(torch.empty(100, 15, 1, 64, 64)) == 1
    assert paper.auto_time_chunk(x.to("meta")) is None  # off the CPU: one call
    bair = SVG(SVGConfig(backbone="vgg64", channels=3, z_dim=64))  # 64 x 64 x 64: 16 MiB a step
    assert bair.auto_time_chunk(torch.empty(16, 12, 3, 64, 64)) == 1
    small = SVG(SVGConfig(backbone="dcgan32", image_size=32, nf=16, g_dim=64, rnn_size=128))
    assert small.auto_time_chunk(torch.empty(16, 15, 1, 32, 32)) is None  # fits: one call


def test_auto_time_chunk_chunks_where_it_is_the_same_function(monkeypatch):
    m, _, x, eps = setup("lp", "dcgan")  # first stage 8 x 16 x 16 float64: 6 KiB a step at B=3
    monkeypatch.setattr("svg_lightning.models.svg.CPU_CALL_BYTES", 2 * 3 * 8 * 16 * 16 * 8)
    calls = []
    m.encoder.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    auto = batched_step(copy.deepcopy(m), x, 3, eps, "per_step", monkeypatch, "auto")
    whole = batched_step(m, x, 3, eps, "per_step", monkeypatch, None)
    assert calls == [6, 6, 3, 15]  # T = 5: steps (0, 1), (2, 3), (4), then the one call
    torch.testing.assert_close(auto, whole, rtol=1e-12, atol=1e-12)
    calls.clear()
    batched_step(m, x, 3, eps, "joint", monkeypatch, "auto")  # would change the function
    m.eval()
    batched_step(m, x, 3, eps, "per_step", monkeypatch, "auto")  # running statistics
    assert calls == [15, 6, 6, 3]


def test_inference_batch_norm_is_the_running_affine_map_in_place():
    """Eval mode without autograd: the running-statistics BatchNorm, computed in place; with
    autograd or in training it is the plain layer and leaves its input alone."""
    torch.manual_seed(0)
    bn = StepBatchNorm2d(6).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
    plain = nn.BatchNorm2d(6).eval()
    plain.load_state_dict(bn.state_dict())
    x = torch.randn(4, 6, 5, 5)
    want = plain(x).detach()
    with torch.no_grad():
        y = x.clone()
        out = bn(y)
    assert out.data_ptr() == y.data_ptr(), "inference BatchNorm made a new activation"
    torch.testing.assert_close(out, want)
    y = x.clone()
    torch.testing.assert_close(bn(y), want)  # autograd on: a new tensor, the input kept
    torch.testing.assert_close(y, x)
    with torch.no_grad():
        y = x.clone()
        bn.train()(y)
        torch.testing.assert_close(y, x)
