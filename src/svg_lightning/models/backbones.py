"""Frame encoders and decoders with skip connections (the paper's Sec. 4 and appendix).

An encoder maps a frame to a ``g_dim`` code (BatchNorm + Tanh on a 1x1 map) and returns the
feature map of every resolution stage as skips. A decoder mirrors it and concatenates
``[decoder_feature, skip]`` along channels at every scale.

DCGAN: one stride-2 4x4 conv per stage, widths ``nf * 2**i`` capped at ``8 * nf``; the number of
stages follows the image size (32 -> 3, 64 -> 4, 128 -> 5), so ``dcgan32`` is the DCGAN pattern
with one fewer stage. VGG: stacks of 3x3 convs with max-pooling between stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from svg_lightning.models.batchnorm import StepBatchNorm2d


class _SkipInput:
    """First conv of a decoder stage, whose input is cat([feature, skip]) along channels, the two
    halves equally wide. A convolution is linear in its input channels, so it equals
    conv_feature(feature) + conv_skip(skip) + bias: the skip term depends on the skip frame alone
    and is computed once per distinct skip frame (a few conditioning frames, in training and
    generation alike) instead of once per decoded frame, and no concatenated copy is made.
    Called with a tensor it is the plain layer; with a pair (feature, skip term) the split one."""

    def _half(self, skip: bool) -> torch.Tensor:
        return self.weight.chunk(2, self._in_dim)[skip]

    def skip_term(self, skip: torch.Tensor) -> torch.Tensor:
        return self._conv(skip, self._half(True), None)

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            return self._conv(x, self.weight, self.bias)
        feature, term = x
        return self._conv(feature, self._half(False), self.bias).add_(term)


class SkipConv2d(_SkipInput, nn.Conv2d):
    _in_dim = 1  # weight: (out, in, k, k)

    def _conv(self, x, weight, bias):
        return self._conv_forward(x, weight, bias)


_IMAGE_CHANNELS = 4  # at most: gray, RGB, RGBA


def cpu_kernel_choice(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a layer may pick its own kernel for x: on the CPU, in the weight's dtype (float32
    or float64) without autocast. torch.compile and GPUs choose their own kernels."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def _im2col_is_faster(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """True for a CPU transposed convolution to an image's few channels (the decoder's output
    layer), where oneDNN's kernel runs 2-4x slower than ATen's im2col + matmul path (forward and
    backward of the 1- and 3-channel layers, measured in docs/performance.md)."""
    return groups == 1 and weight.shape[1] <= _IMAGE_CHANNELS and cpu_kernel_choice(x, weight)


def _is_a_matmul(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> bool:
    """A CPU convolution whose kernel meets its input or output in one pixel (the code layers,
    4x4 map <-> g_dim code): a kernel-sized input, or a 1x1 input to a transposed one; unpadded,
    undilated, one group."""
    pixels = (1, 1) if conv.transposed else conv.kernel_size
    return (
        x.shape[-2:] == pixels
        and conv.padding == (0, 0)
        and conv.output_padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and cpu_kernel_choice(x, conv.weight)
    )


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) that computes a CPU convolution whose kernel
    covers the whole input (the encoder's code layer, 4x4 map -> 1x1 code) as the matmul it is:
    flattened map times flattened weight, 1.6-2.5x faster than oneDNN's convolution there (forward
    + backward, docs/performance.md). Same function, up to float rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_a_matmul(self, x):
            return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]
        return super().forward(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and state dict) that routes two CPU layers to
    faster kernels: the image layer to im2col (``_im2col_is_faster``) and a 1x1 input (the
    decoder's first layer, code -> 4x4 map) to the matmul it is, input times flattened weight
    (1.6-2.6x faster forward + backward). Same function (the kernels differ only in float
    rounding)."""

    def _conv(self, x, weight, bias):
        if _is_a_matmul(self, x):
            # (in, out * kH * kW): each input channel paints its kernel, scaled
            rows, flat = x.flatten(1), weight.flatten(1)
            if bias is None:
                out = rows @ flat
            else:  # each output channel's bias over its kH * kW pixels
                out = torch.addmm(bias.repeat_interleave(flat.shape[1] // len(bias)), rows, flat)
            return out.view(x.shape[0], *weight.shape[1:])
        if _im2col_is_faster(x, weight, self.groups):
            return torch.ops.aten.slow_conv_transpose2d(
                x, weight, self.kernel_size, bias, self.stride, self.padding,
                self.output_padding, self.dilation,
            )  # fmt: skip
        return F.conv_transpose2d(
            x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
            self.dilation,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight, self.bias)


class SkipConvTranspose2d(_SkipInput, ConvTranspose2d):
    _in_dim = 0  # weight: (in, out, k, k)


BACKBONE_SIZES = {"dcgan32": 32, "dcgan64": 64, "dcgan128": 128, "vgg64": 64, "vgg128": 128}


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1), StepBatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


def upconv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        SkipConvTranspose2d(cin, cout, 4, 2, 1),
        StepBatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


def vgg_block(cin: int, cout: int, conv: type[nn.Conv2d] = nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(
        conv(cin, cout, 3, 1, 1), StepBatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


def code_block(cin: int, g_dim: int) -> nn.Sequential:
    """4x4 map -> g_dim code (1x1), BatchNorm + Tanh."""
    return nn.Sequential(Conv2d(cin, g_dim, 4, 1, 0), StepBatchNorm2d(g_dim), nn.Tanh())


def uncode_block(g_dim: int, cout: int) -> nn.Sequential:
    """g_dim code -> 4x4 map, the first decoder stage."""
    return nn.Sequential(
        ConvTranspose2d(g_dim, cout, 4, 1, 0),
        StepBatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class Encoder(nn.Module):
    """Runs ``stages`` in order, keeps each stage's output as a skip, then the code block."""

    def __init__(self, stages: list[nn.Module], code: nn.Module, pool_between: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.code = code
        # VGG skips are taken before pooling, so the pool opens the next stage.
        self.pool = nn.MaxPool2d(2) if pool_between else nn.Identity()

    def widest_activation(self, height: int, width: int) -> int:
        """Elements per frame of the largest feature map, the first stage's output: every later
        stage quarters the pixels and at most doubles the channels."""
        conv = next(m for m in self.stages[0].modules() if isinstance(m, nn.Conv2d))
        return conv.out_channels * (height // conv.stride[0]) * (width // conv.stride[1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(self.pool(x) if i else x)
            skips.append(x)
        h = self.code(self.pool(x))
        return h.flatten(1), skips


class Decoder(nn.Module):
    """``uncode`` then, per stage, [upsample], concat the matching skip, ``stage``; Sigmoid out.
    The concatenation is computed as a sum of two convolutions (see ``_SkipInput``)."""

    def __init__(self, uncode: nn.Module, stages: list[nn.Module], upsample: bool):
        super().__init__()
        self.uncode = uncode
        self.stages = nn.ModuleList(stages)
        self.up = nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity()
        # A plain list: the layers stay registered once, under ``stages`` (state dict unchanged).
        self._first = [next(m for m in s.modules() if isinstance(m, _SkipInput)) for s in stages]

    def skip_terms(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """The encoder's skips (finest first) -> each stage's share of its first conv, in
        decoder order: pass to ``forward`` as ``terms``, gathered to the rows being decoded."""
        return [conv.skip_term(s) for conv, s in zip(self._first, reversed(skips))]

    def forward(
        self,
        g: torch.Tensor,
        skips: list[torch.Tensor] | None = None,
        terms: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode g (N, g_dim) with the encoder's ``skips`` or their ``skip_terms`` (N rows)."""
        if terms is None:
            terms = self.skip_terms(skips)
        d = self.uncode(g[:, :, None, None])
        for stage, term in zip(self.stages, terms):
            d = stage((self.up(d), term))
        return torch.sigmoid(d)


def dcgan(image_size: int, channels: int, g_dim: int, nf: int = 64) -> tuple[Encoder, Decoder]:
    n_stages = {32: 3, 64: 4, 128: 5}[image_size]
    widths = [nf * min(2**i, 8) for i in range(n_stages)]
    enc = [conv_block(channels, widths[0])]
    enc += [conv_block(a, b) for a, b in zip(widths, widths[1:])]
    # Decoder stages consume cat(feature, skip), so their inputs are twice the skip width.
    dec = [upconv_block(2 * b, a) for a, b in zip(widths, widths[1:])][::-1]
    dec.append(SkipConvTranspose2d(2 * widths[0], channels, 4, 2, 1))
    return (
        Encoder(enc, code_block(widths[-1], g_dim), pool_between=False),
        Decoder(uncode_block(g_dim, widths[-1]), dec, upsample=False),
    )


def vgg(image_size: int, channels: int, g_dim: int) -> tuple[Encoder, Decoder]:
    def stack(*widths: int, skip_input: bool = False) -> nn.Sequential:
        first = SkipConv2d if skip_input else nn.Conv2d
        pairs = enumerate(zip(widths, widths[1:]))
        return nn.Sequential(
            *(vgg_block(a, b, first if i == 0 else nn.Conv2d) for i, (a, b) in pairs)
        )

    enc = [
        stack(channels, 64, 64),
        stack(64, 128, 128),
        stack(128, 256, 256, 256),
        stack(256, 512, 512, 512),
    ]
    dec = [
        stack(1024, 512, 512, 256, skip_input=True),
        stack(512, 256, 256, 128, skip_input=True),
        stack(256, 128, 64, skip_input=True),
        nn.Sequential(vgg_block(128, 64, SkipConv2d), ConvTranspose2d(64, channels, 3, 1, 1)),
    ]
    if image_size == 128:
        enc.append(stack(512, 512, 512, 512))
        dec.insert(0, stack(1024, 512, 512, 512, skip_input=True))
    return (
        Encoder(enc, code_block(512, g_dim), pool_between=True),
        Decoder(uncode_block(g_dim, 512), dec, upsample=True),
    )


def build_backbone(name: str, channels: int, g_dim: int, nf: int = 64) -> tuple[Encoder, Decoder]:
    """``nf`` is the DCGAN base width (64 in the paper); VGG widths are fixed."""
    size = BACKBONE_SIZES[name]
    if name.startswith("dcgan"):
        return dcgan(size, channels, g_dim, nf)
    return vgg(size, channels, g_dim)
