"""Fast paths compute the same function as the default path: the decoder's split skip
convolution, the CPU image layer's kernel, ``channels_last`` (and the NHWC layout of CPU
generation), ``torch.compile``, and a sampling rollout with no host syncs (what CUDA-graph capture
needs)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks import reference_loop
from svg_lightning.models import backbones
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG, skip_source

NETS = {
    "dcgan": dict(backbone="dcgan32", image_size=32, g_dim=8, z_dim=3, rnn_size=8, nf=4),
    "vgg": dict(backbone="vgg64", image_size=64, g_dim=8, z_dim=3, rnn_size=8),
}
TOL = dict(atol=1e-5, rtol=1e-4)  # float32, different summation orders


def frames(net: str, b: int = 3, t: int = 6) -> torch.Tensor:
    side = NETS[net]["image_size"]
    return torch.rand(b, t, 1, side, side)


@pytest.mark.parametrize("net", NETS)
def test_split_skip_convolution_equals_concatenation(net):
    torch.manual_seed(0)
    m = SVG(SVGConfig(**NETS[net])).eval()
    h, skips = m.encoder(frames(net, 4, 1)[:, 0])
    concatenated = reference_loop.decode(m, h, skips)  # the spec's decoder, literally
    torch.testing.assert_close(m.decoder(h, skips), concatenated, **TOL)


@pytest.mark.parametrize("shape", [(64, 1, 4, 2, 1, 8), (64, 3, 4, 2, 1, 8), (16, 3, 3, 1, 1, 9)])
def test_image_layer_kernel_is_the_same_function(shape, monkeypatch):
    cin, cout, k, stride, pad, side = shape
    torch.manual_seed(0)
    layer = backbones.ConvTranspose2d(cin, cout, k, stride, pad)
    x = torch.randn(5, cin, side, side, requires_grad=True)
    assert backbones._im2col_is_faster(x, layer.weight, layer.groups)
    calls = []
    slow = torch.ops.aten.slow_conv_transpose2d
    monkeypatch.setattr(
        torch.ops.aten, "slow_conv_transpose2d", lambda *a: calls.append(1) or slow(*a)
    )
    y = layer(x)
    assert calls, "the CPU image layer did not take the im2col kernel"
    expected = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, stride, pad)
    torch.testing.assert_close(y, expected, **TOL)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, layer.weight, layer.bias), g)
    want = torch.autograd.grad(expected, (x, layer.weight, layer.bias), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


def test_image_layer_kernel_only_where_it_is_faster():
    x, w = torch.randn(2, 64, 4, 4), torch.randn(64, 1, 4, 4)
    assert backbones._im2col_is_faster(x, w, 1)
    assert not backbones._im2col_is_faster(x, torch.randn(64, 16, 4, 4), 1)  # a wide layer
    assert not backbones._im2col_is_faster(x.bfloat16(), w, 1)  # mixed dtypes: autocast's job
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not backbones._im2col_is_faster(x, w, 1)
    assert not backbones._im2col_is_faster(x.to("meta"), w.to("meta"), 1)


@pytest.mark.parametrize("transposed", [False, True])
def test_code_layers_are_the_matmul_they_compute(transposed, monkeypatch):
    """The encoder's code layer (4x4 map -> code) and the decoder's first (code -> 4x4 map) run
    as matmuls on the CPU: the convolution kernels are not called, and value and gradients equal
    them in float64."""
    torch.manual_seed(0)
    if transposed:
        layer, x = backbones.ConvTranspose2d(6, 5, 4, 1, 0), torch.randn(3, 6, 1, 1)
        conv, name = torch.nn.functional.conv_transpose2d, "conv_transpose2d"
    else:
        layer, x = backbones.Conv2d(6, 5, 4, 1, 0), torch.randn(3, 6, 4, 4)
        conv, name = torch.nn.functional.conv2d, "conv2d"
    layer, x = layer.double(), x.double().requires_grad_()
    expected = conv(x, layer.weight, layer.bias)
    g = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (x, layer.weight, layer.bias), g)
    monkeypatch.setattr(torch.nn.functional, name, lambda *a, **k: pytest.fail("conv kernel"))
    y = layer(x)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(y, (x, layer.weight, layer.bias), g), want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_code_layers_keep_the_convolution_elsewhere(monkeypatch):
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        real = getattr(torch.nn.functional, name)
        monkeypatch.setattr(
            torch.nn.functional, name, lambda *a, real=real, **k: calls.append(1) or real(*a, **k)
        )
    enc, dec = backbones.Conv2d(6, 5, 4, 1, 0), backbones.ConvTranspose2d(6, 5, 4, 1, 0)
    enc(torch.randn(2, 6, 5, 5))  # the kernel does not cover the map
    backbones.Conv2d(6, 5, 4, 1, 1)(torch.randn(2, 6, 4, 4))  # padded
    dec(torch.randn(2, 6, 2, 2))  # more than one input pixel
    backbones.ConvTranspose2d(6, 5, 4, 2, 0, output_padding=1)(torch.randn(2, 6, 1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast picks the kernel's dtype
        enc(torch.randn(2, 6, 4, 4))
        dec(torch.randn(2, 6, 1, 1))
    assert len(calls) == 6


@pytest.mark.parametrize("skip", ["last", "reference", "previous"])
def test_training_pass_decodes_with_the_chosen_skip_frames(skip, monkeypatch):
    monkeypatch.setattr("svg_lightning.models.svg.reparameterize", lambda mu, logvar: mu)
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant="lp", skip=skip, **NETS["dcgan"])).eval()
    x = frames("dcgan")
    h, skips = m.encode(x)
    mu, _, _ = m.posterior(h[:, 1:])
    g, _ = m.frame_predictor(torch.cat([h[:, :-1], mu], -1))
    src = [skip_source(t, 3, skip) for t in range(1, 6)]
    expected = m.decoder(g.flatten(0, 1), [s[:, src].flatten(0, 1) for s in skips])
    torch.testing.assert_close(m(x, 3).x_hat.flatten(0, 1), expected, **TOL)


def train_pass(m: SVG, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    torch.manual_seed(1)  # same reparameterisation noise
    loss = m(x, 3, "per_step").loss(x, 1e-2).loss
    m.zero_grad()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    return loss, grads, {k: b.clone() for k, b in m.named_buffers()}


def assert_same_function(fast: SVG, ref: SVG, x: torch.Tensor) -> None:
    """Same loss, gradients and running statistics in training; same samples in eval mode."""
    loss, grads, bufs = train_pass(ref.train(), x)
    loss_f, grads_f, bufs_f = train_pass(fast.train(), x)
    torch.testing.assert_close(loss_f, loss, **TOL)
    # Norm-wise: conv biases in front of a BatchNorm have a zero true gradient (rounding noise).
    rtol, atol = (1e-3, 1e-7) if x.dtype == torch.float32 else (1e-9, 1e-12)
    for k in grads:
        assert (grads_f[k] - grads[k]).norm() <= rtol * grads[k].norm() + atol, k
    for k in bufs:
        torch.testing.assert_close(bufs_f[k], bufs[k], **TOL, msg=k)
    noise = torch.randn(x.shape[0], 2, ref.noise_steps(3, 4), ref.z_dim, dtype=x.dtype)
    cond = x[:, :3]
    want = ref.eval().sample(cond, 4, num_samples=2, noise=noise)
    got = fast.eval().sample(cond, 4, num_samples=2, noise=noise)
    torch.testing.assert_close(got.frames, want.frames, **TOL)
    torch.testing.assert_close(got.prior_mu, want.prior_mu, **TOL)


# The VGG net's per-step BatchNorm over 3 frames (a 1x1 code map among them) amplifies float32
# rounding of a different summation order to ~0.4% of its gradients, so it is compared in float64.
@pytest.mark.parametrize("net,dtype", [("dcgan", torch.float32), ("vgg", torch.float64)])
def test_channels_last_is_the_same_function(net, dtype):
    torch.manual_seed(0)
    ref = SVG(SVGConfig(**NETS[net])).to(dtype)
    fast = copy.deepcopy(ref).fast_paths(channels_last=True)
    convs = [p for p in fast.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert_same_function(fast, ref, frames(net).to(dtype))


def conv_layouts(m: SVG) -> list[bool]:
    """Whether each convolution's weight is NHWC (and not NCHW) at its calls, recorded by forward
    hooks; a weight with one input channel is both, and is left out."""
    seen = []

    def record(layer, _):
        w = layer.weight
        if w.shape[1] > 1:
            seen.append(w.is_contiguous(memory_format=torch.channels_last) > w.is_contiguous())

    for net in (m.encoder, m.decoder):
        for layer in net.modules():
            if isinstance(layer, torch.nn.modules.conv._ConvNd):
                layer.register_forward_pre_hook(record)
    return seen


@pytest.mark.parametrize("net", NETS)
def test_cpu_generation_runs_nhwc_and_restores_the_layout(net):
    """In float32 on a CPU, generation switches the conv weights to NHWC and back; the samples
    are the function the float64 (NCHW) model computes, and training afterwards sees NCHW."""
    torch.manual_seed(0)
    m = SVG(SVGConfig(**NETS[net])).eval()
    m64 = copy.deepcopy(m).double()
    x = frames(net)
    noise = torch.randn(x.shape[0], 2, m.noise_steps(3, 4), m.z_dim)
    seen, seen64 = conv_layouts(m), conv_layouts(m64)
    with torch.no_grad():
        got = m.sample(x[:, :3], 4, num_samples=2, noise=noise)
        want = m64.sample(x[:, :3].double(), 4, num_samples=2, noise=noise.double())
    assert seen and all(seen), "float32 CPU generation did not run NHWC"
    assert seen64 and not any(seen64), "float64 generation switched the layout"
    assert all(p.is_contiguous() for p in m.parameters()), "the NCHW layout was not restored"
    torch.testing.assert_close(got.frames, want.frames.float(), **TOL)
    seen.clear()
    train_pass(m.train(), x)
    assert seen and not any(seen)


def test_cpu_generation_keeps_a_chosen_layout():
    """Weights made NHWC by ``fast_paths`` stay NHWC after generation (nothing to restore)."""
    m = SVG(SVGConfig(**NETS["dcgan"])).eval().fast_paths(channels_last=True)
    with torch.no_grad():
        m.sample(frames("dcgan")[:, :3], 2, num_samples=2)
    convs = [p for p in m.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


def test_compile_is_the_same_function(monkeypatch):
    """Every network goes through torch.compile, and the captured graphs (our BatchNorm hooks and
    split skip convolutions included) compute the same function. Inductor's code generation
    takes minutes on 2 CPU cores, so here the graphs run through the ``aot_eager`` backend (the
    same Dynamo capture and AOT autograd, no generated kernels); benchmarks/gpu_check.py runs
    the default backend on a GPU."""
    compiled = []
    plain_compile = torch.nn.Module.compile

    def aot_eager(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        plain_compile(module, *args, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", aot_eager)
    torch.manual_seed(0)
    ref = SVG(SVGConfig(**NETS["dcgan"]))
    fast = copy.deepcopy(ref).fast_paths(compile=True)
    assert sorted(compiled) == sorted(type(m).__name__ for m in ref.children())
    assert fast.state_dict().keys() == ref.state_dict().keys()  # checkpoints unchanged
    assert_same_function(fast, ref, frames("dcgan"))


class NoHostSync(TorchDispatchMode):
    """Fails on every op that copies a tensor's value to the host (``.item()``, ``.tolist()``,
    ``bool(t)``, ``int(t)``: all reach ``_local_scalar_dense``) or whose output shape depends on
    tensor values (those sync too; boolean-mask indexing among them): what a CUDA-graph capture
    cannot contain."""

    FORBIDDEN = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "repeat_interleave")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        masks = [
            i
            for a in args
            if isinstance(a, (list, tuple))
            for i in a
            if isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        ]
        if any(f in name for f in self.FORBIDDEN) or (name.startswith("index") and masks):
            raise AssertionError(f"host sync / data-dependent shape: aten.{name}")
        return func(*args, **(kwargs or {}))


def test_host_sync_guard_catches_a_sync():
    x = torch.ones(3)
    with pytest.raises(AssertionError, match="_local_scalar_dense"), NoHostSync():
        x.sum().item()
    for sync in (lambda: x[x > 0], lambda: x.nonzero()):
        with pytest.raises(AssertionError, match="host sync"), NoHostSync():
            sync()


@pytest.mark.parametrize("variant", ["lp", "fp", "deterministic"])
@pytest.mark.parametrize("skip", ["last", "previous"])
def test_rollout_has_no_host_syncs(variant, skip):
    torch.manual_seed(0)
    m = SVG(SVGConfig(variant=variant, skip=skip, **NETS["dcgan"])).eval()
    cond = frames("dcgan", 2, 3)
    # Noise prepared outside, as evaluation does; inside: encode, warm up, roll out, per chunk.
    noise = torch.randn(2, 4, m.noise_steps(3, 5), m.z_dim) if m.stochastic else None
    with NoHostSync(), torch.no_grad():
        for chunk in m.iter_samples(cond, 5, num_samples=4, chunk_size=3, noise=noise):
            assert chunk.frames.shape == (len(chunk.rows), 5, 1, 32, 32)


def test_rollout_runs_on_the_meta_device():
    """Meta tensors have shapes and no values: any read of a value on the host (``.tolist()``
    included, which the dispatch guard cannot see on CPU) or value-dependent shape fails."""
    m = SVG(SVGConfig(**NETS["dcgan"])).eval().to("meta")
    cond = torch.empty(2, 3, 1, 32, 32, device="meta")
    noise = torch.empty(2, 4, m.noise_steps(3, 5), m.z_dim, device="meta")
    with torch.no_grad():
        out = m.sample(cond, 5, num_samples=4, chunk_size=3, noise=noise)
    assert out.frames.shape == (2, 4, 5, 1, 32, 32)
