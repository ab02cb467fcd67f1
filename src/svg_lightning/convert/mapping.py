"""Which tensor of the reference networks is which tensor of ours, checked one by one.

The reference builds each encoder stage as a module ``c1, c2, ...`` (DCGAN: a ``dcgan_conv``
whose ``main`` is Conv + BatchNorm + LeakyReLU; VGG: a Sequential of ``vgg_layer``s, each with
such a ``main``) and its code layer as the last ``c``; the decoder's first layer is ``upc1`` and
its stages ``upc2, upc3, ...``. Ours holds the same layers as ``encoder.stages[i]``,
``encoder.code``, ``decoder.uncode`` and ``decoder.stages[i]`` without the ``main`` level, and
the last DCGAN stage is the bare transposed conv (the reference wraps it with its Sigmoid). The
reference LSTMs are lists of ``nn.LSTMCell``; ours are ``nn.LSTM``s, whose layer-k parameters
``weight_ih_l{k}`` ... are the k-th cell's ``weight_ih`` ... (same gate order, two biases).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from svg_lightning.convert.legacy import ModuleStandIn
from svg_lightning.errors import CheckpointError

# The reference's module file of each backbone.
BACKBONE_MODULES = {
    "dcgan64": "models.dcgan_64",
    "dcgan128": "models.dcgan_128",
    "vgg64": "models.vgg_64",
    "vgg128": "models.vgg_128",
}
# Reference layer class -> ours; anything else holding a tensor is an error.
LAYERS = {
    "Conv2d": nn.Conv2d,
    "ConvTranspose2d": nn.ConvTranspose2d,
    "BatchNorm2d": nn.BatchNorm2d,
    "Linear": nn.Linear,
    "LSTMCell": nn.LSTM,
}
# Layer settings that change the function without changing a tensor's shape.
SETTINGS = {
    "Conv2d": ("kernel_size", "stride", "padding", "dilation", "groups"),
    "ConvTranspose2d": ("kernel_size", "stride", "padding", "dilation", "groups", "output_padding"),
    "BatchNorm2d": ("eps",),
}
_LSTM_HEADS = {"embed": "embed", "output": "output", "mu_net": "mu", "logvar_net": "logvar"}


def expected_classes(backbone: str) -> dict[str, str]:
    """Reference checkpoint entry -> the reference class it must hold."""
    mod = BACKBONE_MODULES[backbone]
    return {
        "encoder": f"{mod}.encoder",
        "decoder": f"{mod}.decoder",
        "frame_predictor": "models.lstm.lstm",
        "posterior": "models.lstm.gaussian_lstm",
        "prior": "models.lstm.gaussian_lstm",
    }


def flatten(module: ModuleStandIn, prefix: str = "") -> dict[str, tuple[torch.Tensor, object]]:
    """Every tensor of a pickled module tree as ``name -> (tensor, the layer holding it)``, named
    as ``state_dict`` names them."""
    out = {}
    for name, tensor in module.tensors().items():
        out[prefix + name] = (tensor, module)
    for name, child in module.children().items():
        if child is None:
            continue
        if not isinstance(child, ModuleStandIn):
            raise CheckpointError(f"{prefix + name} is a {type(child).__name__}, not a module")
        out.update(flatten(child, f"{prefix}{name}."))
    return out


def _stage(head: str, letter: str) -> int | None:
    m = re.fullmatch(rf"{letter}(\d+)", head)
    return int(m[1]) if m else None


def our_name(component: str, name: str, backbone: str, n_stages: int) -> str | None:
    """Our name (relative to ``svg.<component>``) of the reference tensor ``name`` of
    ``component``, or None when ours has no such tensor."""
    parts = [p for p in name.split(".") if p != "main"]
    head, rest = parts[0], parts[1:]
    if component == "encoder":
        i = _stage(head, "c")
        if i is None or not 1 <= i <= n_stages + 1:
            return None
        return ".".join((["stages", str(i - 1)] if i <= n_stages else ["code"]) + rest)
    if component == "decoder":
        i = _stage(head, "upc")
        if i is None or not 1 <= i <= n_stages + 1:
            return None
        if i == 1:
            return ".".join(["uncode", *rest])
        if backbone.startswith("dcgan") and i == n_stages + 1:
            if not rest or rest[0] != "0":  # Sequential(ConvTranspose2d, Sigmoid)
                return None
            rest = rest[1:]
        return ".".join(["stages", str(i - 2), *rest])
    if head == "lstm" and len(rest) == 2 and rest[0].isdigit():
        return f"lstm.{rest[1]}_l{rest[0]}"
    if head in _LSTM_HEADS:  # a head the module lacks gives a name that is not ours
        return ".".join([_LSTM_HEADS[head], *rest])
    return None


def _layer_kind(layer) -> str:
    return getattr(layer, "reference_name", "").rpartition(".")[2]


def _check_layer(ref_name: str, layer, ours: nn.Module, key: str) -> None:
    kind = _layer_kind(layer)
    if kind not in LAYERS or not isinstance(ours, LAYERS[kind]):
        raise CheckpointError(
            f"reference tensor {ref_name} belongs to a {kind or type(layer).__name__} but maps to "
            f"{key} of a {type(ours).__name__}"
        )
    for setting in SETTINGS.get(kind, ()):
        if setting not in layer.__dict__:
            continue
        theirs, mine = layer.__dict__[setting], getattr(ours, setting)
        if isinstance(mine, tuple):
            theirs = tuple(theirs) if isinstance(theirs, (list, tuple)) else theirs
        if theirs != mine:
            raise CheckpointError(
                f"reference layer of {ref_name} has {setting}={theirs!r}; the svg_lightning layer "
                f"({key}) has {mine!r}"
            )


def map_tensors(
    components: dict[str, ModuleStandIn], model: nn.Module, backbone: str, prefix: str = "svg."
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """``model``'s state dict filled from the reference ``components`` (entry name -> module),
    the mapping ``"component.reference_name" -> our key``, and the keys filled without a
    reference tensor (BatchNorm ``num_batches_tracked``, which PyTorch < 0.4.1 did not keep).

    Every one of our tensors is assigned exactly once and every reference tensor is used;
    anything else raises a CheckpointError naming the tensor."""
    target = model.state_dict()
    n_stages = len(model.get_submodule(f"{prefix}encoder").stages)
    state: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    for component, module in components.items():
        for name, (tensor, layer) in flatten(module).items():
            ref_name = f"{component}.{name}"
            mine = our_name(component, name, backbone, n_stages)
            key = None if mine is None else f"{prefix}{component}.{mine}"
            if key not in target:
                raise CheckpointError(
                    f"reference tensor {ref_name} has no counterpart in the svg_lightning "
                    f"{backbone} network"
                )
            if key in state:
                raise CheckpointError(f"{key} would be assigned twice (again from {ref_name})")
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"reference tensor {ref_name} is a {type(tensor).__name__}")
            want = target[key]
            if tuple(tensor.shape) != tuple(want.shape) or tensor.dtype != want.dtype:
                raise CheckpointError(
                    f"reference tensor {ref_name} is {tensor.dtype} {tuple(tensor.shape)}; "
                    f"{key} is {want.dtype} {tuple(want.shape)}"
                )
            owner = model.get_submodule(key.rpartition(".")[0])
            if not key.endswith("num_batches_tracked"):
                _check_layer(ref_name, layer, owner, key)
            state[key] = tensor.detach().clone().contiguous()
            mapping[ref_name] = key
    filled = []
    for key, want in target.items():
        if key in state:
            continue
        if not key.endswith(".num_batches_tracked"):
            raise CheckpointError(f"no reference tensor for {key}: the file lacks it")
        state[key] = torch.zeros_like(want)
        filled.append(key)
    return state, mapping, filled
