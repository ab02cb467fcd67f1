"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), AlexNet variant with the v0.1 linear layers, as the SRVP protocol (Franceschi et al.
2020) scores predicted frames.

The distance between two images ``x``, ``y`` in [-1, 1]: both are shifted and scaled per channel
(``SHIFT``, ``SCALE``), passed through torchvision's AlexNet feature layers, and at each of the
five ReLU outputs (64, 192, 384, 256, 256 channels) the features are divided by their L2 norm
over channels, subtracted, squared, weighted per channel by that layer's 1x1 convolution (no
bias, non-negative weights), averaged over space; the five layer values are summed.

Weights come from local files only, never from the network: the AlexNet backbone from a
torchvision ``alexnet`` state dict (``alexnet-owt-7be5be79.pth``, given as a path or found in the
torch hub cache), the linear layers from the ``alex.pth`` file the ``lpips`` package ships (or a
given path). Errors that name the missing or wrong file are ``MissingWeightsError``
(a ``FileNotFoundError``) and ``WeightsFileError`` (a ``ValueError``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

LPIPS_RULE = (
    "LPIPS (Zhang et al. 2018) v0.1, AlexNet backbone (torchvision ImageNet weights), linear "
    "layers of the lpips package (weights/v0.1/alex.pth); frames in [0, 1] mapped to [-1, 1], "
    "grayscale repeated to RGB, one value per frame; equals lpips.LPIPS(net='alex')(x, y, "
    "normalize=True)"
)

SHIFT = (-0.030, -0.088, -0.188)
"""Per-channel (RGB) shift of the v0.1 input scaling, applied to inputs in [-1, 1]."""
SCALE = (0.458, 0.448, 0.450)
"""Per-channel (RGB) scale of the v0.1 input scaling: ``(x - SHIFT) / SCALE``."""
CHANNELS = (64, 192, 384, 256, 256)
"""Channels of the five AlexNet ReLU outputs LPIPS compares."""
MIN_SIZE = 31
"""Smallest H and W for which every AlexNet layer up to relu5 has a non-empty output."""
NORM_EPS = 1e-10
"""Added to the channel norm before dividing, as the reference implementation does."""

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"

# Index (in torchvision's ``alexnet().features``) just past each ReLU that LPIPS reads: relu1 is
# layer 1, relu2 layer 4, relu3 layer 7, relu4 layer 9, relu5 layer 11.
_STAGE_ENDS = (2, 5, 8, 10, 12)
_CONVS = (0, 3, 6, 8, 10)

# Pixels (per H x W plane, both inputs together) per forward pass: 2**23 = 2048 pairs of 64x64
# frames. AlexNet's activations at 64x64 are about the size of the input, so a slice stays in the
# low hundreds of MB; larger frames grow the activations less than proportionally.
_SLICE_PIXELS = 2**23


class MissingWeightsError(FileNotFoundError):
    """A weight file the metric needs is not there; the message says what to put where.
    ``argument``: the loader's argument that takes the file's path instead, which the message
    names last (``hint``); a command names its own setting for it."""

    def __init__(self, what: str, argument: str | None = None):
        super().__init__(what)
        self.what, self.argument = what, argument

    def hint(self, setting: str | None = None) -> str:
        """The message, ending with how to give the path: ``setting`` (a command's key), else
        the loader's argument."""
        if setting:
            return f"{self.what}, or give the file's path with {setting}=PATH"
        return (
            f"{self.what}, or pass {self.argument}=PATH to that file"
            if self.argument
            else self.what
        )

    def __str__(self) -> str:
        return self.hint()


class WeightsFileError(ValueError):
    """A weight file that is not what the metric expects (wrong network, keys or shapes)."""


def _alexnet_features() -> nn.Sequential:
    # Built on the meta device: the full AlexNet's 58 M classifier parameters would take most of
    # a second to initialise only to be dropped.
    with torch.device("meta"):
        features = torchvision.models.alexnet(weights=None).features[: _STAGE_ENDS[-1]]
    features.to_empty(device="cpu")
    for i in _CONVS:
        features[i].reset_parameters()
    return features


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone: ``forward(x, y)`` with ``(B, 3, H, W)`` tensors in
    [-1, 1] returns ``(B,)`` distances. Build it with ``load_lpips``; a fresh instance has random
    backbone weights and zero linear weights."""

    def __init__(self) -> None:
        super().__init__()
        # The first 12 layers of torchvision's AlexNet (up to relu5, without the last max-pool),
        # with its module indices so its state dict loads as is.
        self.features = _alexnet_features()
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        for conv in self.lin:
            nn.init.zeros_(conv.weight)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b = x.shape[0]
        # One pass over both inputs: half the kernel launches, larger (faster) convolutions.
        h = (torch.cat([x, y]) - self.shift) / self.scale
        total = x.new_zeros(b)
        start = 0
        for end, lin in zip(_STAGE_ENDS, self.lin, strict=True):
            for layer in self.features[start:end]:
                h = layer(h)
            start = end
            f = h / (h.square().sum(1, keepdim=True).sqrt() + NORM_EPS)
            d = (f[:b] - f[b:]).square()
            total = total + lin(d).mean((-2, -1)).flatten()
        return total


def _default_linear() -> Path:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            "LPIPS needs the v0.1 linear-layer weights (alex.pth) that the lpips package ships: "
            "pip install 'lpips>=0.1.4'",
            "linear",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        raise MissingWeightsError(
            f"the installed lpips package has no {path} (its v0.1 linear-layer weights); "
            "reinstall lpips>=0.1.4",
            "linear",
        )
    return path


def _default_backbone() -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS needs torchvision's ImageNet AlexNet weights and downloads nothing: put "
            f"{ALEXNET_FILE} (from {ALEXNET_URL}) at {path}",
            "backbone",
        )
    return path


def load_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """A state dict of tensors (or a checkpoint holding one under ``state_dict``) loaded with
    ``weights_only=True``; a one-line error naming ``path`` and ``what`` it was meant to be."""
    if not path.is_file():
        raise MissingWeightsError(f"{what} file {path} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means "not a torch tensor file"
        raise WeightsFileError(f"{path} is not a torch state dict ({what}): {e}") from e
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise WeightsFileError(f"{path} is not a state dict of tensors ({what})")
    return sd


def _backbone_state(path: Path) -> dict[str, Tensor]:
    sd = load_tensors(path, "AlexNet backbone")
    with torch.device("meta"):
        ref = torchvision.models.alexnet(weights=None).state_dict()
    out = {}
    for i in _CONVS:
        for p in ("weight", "bias"):
            key = f"features.{i}.{p}"
            if key not in sd:
                raise WeightsFileError(
                    f"{path} is not a torchvision alexnet state dict: no {key!r} "
                    f"(expected {ALEXNET_FILE} from {ALEXNET_URL})"
                )
            if sd[key].shape != ref[key].shape:
                raise WeightsFileError(
                    f"{path}: {key} has shape {tuple(sd[key].shape)}, torchvision alexnet has "
                    f"{tuple(ref[key].shape)}"
                )
            out[key[len("features.") :]] = sd[key]
    return out


def _linear_state(path: Path) -> list[Tensor]:
    sd = load_tensors(path, "LPIPS linear layers")
    weights = []
    for k, c in enumerate(CHANNELS):
        # The lpips package names them lin{k}.model.1.weight (a dropout sits at model.0); accept
        # any single lin{k}.*weight so a re-saved file works too.
        keys = [n for n in sd if n.startswith(f"lin{k}.") and n.endswith("weight")]
        if len(keys) != 1 or sd[keys[0]].numel() != c:
            raise WeightsFileError(
                f"{path} is not an LPIPS AlexNet linear-layer file: expected one lin{k}.*weight "
                f"with {c} values (the lpips package's weights/v0.1/alex.pth)"
            )
        w = sd[keys[0]].float().reshape(1, c, 1, 1)
        if (w < 0).any():
            # v0.1 weights are clamped non-negative in training; negatives mean another file.
            raise WeightsFileError(f"{path}: {keys[0]} has negative weights; not LPIPS v0.1")
        weights.append(w)
    return weights


def lpips_files(
    backbone: str | Path | None = None, linear: str | Path | None = None
) -> tuple[Path, Path]:
    """The (backbone, linear) weight files ``load_lpips`` reads for these arguments; raises
    ``MissingWeightsError`` when a default one is not there."""
    bpath = Path(backbone) if backbone is not None else _default_backbone()
    lpath = Path(linear) if linear is not None else _default_linear()
    return bpath, lpath


def load_lpips(backbone: str | Path | None = None, linear: str | Path | None = None) -> LPIPSAlex:
    """The LPIPS AlexNet v0.1 network (Zhang et al. 2018) from local files, in eval mode, on CPU.

    ``backbone``: a torchvision ``alexnet`` state dict file; None uses
    ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` where torchvision caches it.
    ``linear``: the v0.1 linear-layer file; None uses ``weights/v0.1/alex.pth`` of the installed
    ``lpips`` package. Never downloads. Raises ``MissingWeightsError`` (a FileNotFoundError)
    naming the file and where it comes from, or ``WeightsFileError`` (a ValueError) for a file
    with other keys or shapes.
    """
    bpath, lpath = lpips_files(backbone, linear)
    net = LPIPSAlex()
    net.features.load_state_dict(_backbone_state(bpath))
    for conv, w in zip(net.lin, _linear_state(lpath), strict=True):
        conv.weight.copy_(w)
    return net.eval()


_DEFAULT: LPIPSAlex | None = None


def _default_net() -> LPIPSAlex:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_lpips()
    return _DEFAULT


def lpips(pred: Tensor, target: Tensor, net: LPIPSAlex | None = None) -> Tensor:
    """LPIPS per image, see ``LPIPS_RULE``; ``(..., C, H, W)`` in [0, 1] -> ``(...)``, float32.

    C is 1 (repeated to RGB, as SRVP does for KTH and SM-MNIST) or 3. ``net`` from
    ``load_lpips``; None loads the default files once per process. The network is moved to
    ``pred``'s device. Leading dims are flattened into one batch, cut into fixed-size slices to
    bound memory (results do not depend on the slicing). Not detached: call under
    ``torch.no_grad()`` for evaluation. Raises ValueError on mismatched shapes, C not in (1, 3),
    or H or W < 31 (AlexNet's second max-pool would be empty; a 64x64 frame gives 3x3 maps at
    relu3-5).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    if pred.dim() < 3 or pred.shape[-3] not in (1, 3):
        raise ValueError(f"expected (..., C, H, W) tensors, C = 1 or 3, got {tuple(pred.shape)}")
    if min(pred.shape[-2:]) < MIN_SIZE:
        raise ValueError(f"LPIPS needs H and W >= {MIN_SIZE}, got {tuple(pred.shape[-2:])}")
    net = _default_net() if net is None else net
    net.to(pred.device)
    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    x, y = pred.reshape(-1, c, h, w), target.reshape(-1, c, h, w)
    n = max(1, _SLICE_PIXELS // (2 * h * w))
    out = []
    for xs, ys in zip(x.split(n), y.split(n), strict=True):
        # [0, 1] -> [-1, 1], the range the v0.1 scaling constants assume.
        xs, ys = 2 * xs.float() - 1, 2 * ys.float() - 1
        out.append(net(xs.expand(-1, 3, -1, -1), ys.expand(-1, 3, -1, -1)))
    return torch.cat(out).view(lead)
