"""``trainer.precision=bf16-mixed`` on a CPU: the detector of native bf16, a bf16 training step
close to float32 on the paper's net and the quickstart's, BatchNorm statistics and checkpoints
kept in float32, and the precision recorded in the run."""

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from svg_lightning import devices
from svg_lightning.api import train
from svg_lightning.config import Checks, check_accelerator
from svg_lightning.models.batchnorm import StepBatchNorm2d, step_statistics
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG

# --- the detector ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cpuinfo,native",
    [
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16 amx_tile\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n", False),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # aarch64
        ("processor\t: 0\nFeatures\t: fp asimd crc32\n", False),
    ],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path, monkeypatch, cpuinfo, native):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "cpuinfo")
    assert devices.native_bf16() is native


@pytest.mark.parametrize("probe", [True, False])
def test_native_bf16_without_proc_cpuinfo_asks_torch(tmp_path, monkeypatch, probe):
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: probe, raising=False)
    assert devices.native_bf16() is probe


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_warns_only_without_native_bf16(monkeypatch, caplog, native):
    monkeypatch.setattr("svg_lightning.config.native_bf16", lambda: native)
    c = Checks()
    with caplog.at_level(logging.WARNING, logger="svg_lightning.config"):
        check_accelerator(c, {"accelerator": "cpu", "precision": "bf16-mixed"})
        check_accelerator(c, {"accelerator": "cpu", "precision": "32"})
    assert not c.errors  # accepted either way
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == (0 if native else 1)
    if warned:
        assert "trainer.precision=bf16-mixed" in warned[0] and "slower" in warned[0]


# --- one step, bf16 against float32 ---------------------------------------------------------------

# What bf16 autocast changed, measured over 4 seeds of the paper net and 8 of the quickstart net at
# these sizes: the loss by at most 1e-4 (relative), the gradient's cosine with float32's by at most
# 0.0023 and its norm by at most 0.3%. Bounds of 10x those: a loss or gradient computed in bf16
# throughout (8-bit mantissa) moves by percents, a wrong one by far more.
LOSS_RTOL, GRAD_COSINE, GRAD_NORM_RTOL = 1e-3, 0.99, 0.02
# Batch 4, not 2: the encoder's last BatchNorm sees one value per video (a 1x1 map); over 2 videos
# it outputs +-1 whatever the input, the encoder's gradient is then rounding noise in float32 too.
NETS = {
    # The paper's SM-MNIST net (SVGConfig's defaults, 64 x 64), 2 -> 1 frames: one forward/backward.
    "paper": (SVGConfig(), 64, 2, 1),
    # conf/preset/quickstart.yaml's net, 5 -> 1 frames.
    "quickstart": (SVGConfig(backbone="dcgan32", nf=16, g_dim=64, rnn_size=128), 32, 5, 1),
}


def one_step(model: SVG, x: torch.Tensor, n_past: int, bf16: bool):
    """Loss, flat gradient and the state after one forward/backward (same noise for both)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(x, n_past, "per_step", "auto").loss(x, 1e-4).loss
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    return loss, grad, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "net", [pytest.param("paper", marks=pytest.mark.slow), "quickstart"]
)  # the paper net's bf16 step takes ~20 s where bf16 is emulated (AVX2)
def test_bf16_step_is_close_to_float32(net):
    config, size, n_past, n_future = NETS[net]
    torch.manual_seed(0)
    model = SVG(config).fast_paths().train()
    x = torch.rand(4, n_past + n_future, 1, size, size)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    loss32, grad32, _ = one_step(model, x, n_past, bf16=False)
    model.load_state_dict(start)
    loss16, grad16, state = one_step(model, x, n_past, bf16=True)

    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)  # losses.py: float32
    assert torch.isfinite(grad16).all() and grad16.dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) < LOSS_RTOL * loss32.item()
    assert F.cosine_similarity(grad16, grad32, dim=0) > GRAD_COSINE
    assert abs(grad16.norm() / grad32.norm() - 1) < GRAD_NORM_RTOL
    # Every parameter and BatchNorm buffer (running statistics) stays float32.
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    assert any(not torch.equal(state[k], start[k]) for k in state if "running_mean" in k)


def test_per_step_batchnorm_statistics_are_float32_under_autocast():
    """A layer's per-step statistics of a bf16 input are those of its values computed in float32
    (a bf16 sum of these 2,048 values per step would be off by ~1e-2), and its running buffers
    stay float32."""
    b, t, c, calls = 8, 3, 4, (0, 1, 2, 1)
    layer = StepBatchNorm2d(c, momentum=0.1).train()
    x = (3 + torch.randn(b * t, c, 16, 16)).bfloat16()  # a convolution's output under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16), step_statistics(layer, t, calls):
        y = layer(x)
    assert y.shape == x.shape
    assert layer.running_mean.dtype == layer.running_var.dtype == torch.float32

    steps = x.double().view(b, t, c, -1).transpose(0, 1)  # (t, b, c, pixels)
    mean = steps.mean(dim=(1, 3))
    var = steps.transpose(1, 2).reshape(t, c, -1).var(dim=2)  # unbiased, as BatchNorm's
    expect_mean, expect_var = torch.zeros(c, dtype=torch.double), torch.ones(c, dtype=torch.double)
    for step in calls:
        expect_mean = 0.9 * expect_mean + 0.1 * mean[step]
        expect_var = 0.9 * expect_var + 0.1 * var[step]
    torch.testing.assert_close(layer.running_mean.double(), expect_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.running_var.double(), expect_var, rtol=1e-5, atol=1e-6)


# --- a training run -------------------------------------------------------------------------------


def floating_tensors(tree, path="checkpoint"):
    """(path, tensor) of every floating-point tensor in a checkpoint's nested dicts and lists."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            yield path, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from floating_tensors(v, f"{path}.{k}")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from floating_tensors(v, f"{path}[{i}]")


@pytest.mark.slow
def test_bf16_mixed_training_writes_float32_checkpoints_and_records_it(tiny_cfg):
    cfg = tiny_cfg("trainer.precision=bf16-mixed", "summary.enabled=false")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert state["global_step"] == 2
    tensors = dict(floating_tensors(state))
    assert any(".state_dict." in k for k in tensors) and any(
        "optimizer_states" in k for k in tensors
    )
    assert {k: v.dtype for k, v in tensors.items() if v.dtype != torch.float32} == {}
    # The precision that ran: run_info.json (and the resolved config.yaml).
    info = json.loads((out / "run_info.json").read_text())
    assert info["precision"] == "bf16-mixed" and info["native_bf16"] == devices.native_bf16()
    assert "precision: bf16-mixed" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_the_held_out_summary_after_bf16_training_is_float32(tiny_cfg, monkeypatch):
    """Validation runs in the training precision; the held-out summary is scored in float32
    (the published numbers are float32), with the trainer's autocast switched off."""
    from svg_lightning.module import SVGModule

    seen = []
    real = SVGModule.score

    def spy(self, batch, settings, metric=None):
        seen.append((metric is not None, torch.is_autocast_enabled("cpu")))
        return real(self, batch, settings, metric)

    monkeypatch.setattr(SVGModule, "score", spy)
    train(tiny_cfg("trainer.precision=bf16-mixed", "summary.num_samples=2"))
    validation = {autocast for held_out, autocast in seen if not held_out}
    summary = {autocast for held_out, autocast in seen if held_out}
    assert validation == {True} and summary == {False}
