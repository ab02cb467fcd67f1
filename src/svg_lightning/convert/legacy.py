"""Reading the checkpoints released with the SVG reference code without running their pickles.

Those files are ``torch.save`` of PyTorch 0.3/0.4 holding WHOLE pickled modules: a pickle names
every class and function it needs and calls them while loading, so loading one as torch does by
default runs whatever the file names. Here every name is looked up in ``ALLOWED``: the reference
code's module classes and the torch.nn layers they are built from become inert stand-ins (plain
attribute holders, never the real classes: nothing of the reference code is imported and no
``forward`` can run), tensors and storages are rebuilt by torch's own rebuild functions, and any
other name is refused.

torch's ``weights_only=True`` loader cannot read these files: the legacy serialization of
PyTorch < 1.6 stores the first use of every ``nn.Module`` class as a ``('module', class, source
file, source)`` persistent id, which that loader refuses ("Only persistent_load of storage is
allowed"). So the restriction is a ``pickle.Unpickler`` whose ``find_class`` allows only the
names below, handed to ``torch.load`` as its ``pickle_module``; it reads both serialization
formats (the legacy one and the zip one of PyTorch >= 1.6), and ``map_location="cpu"`` loads
CUDA storages onto the CPU.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from svg_lightning.errors import CheckpointError
from svg_lightning.metrics.fvd import is_torchscript

# The reference code's module classes (models/dcgan_64.py, dcgan_128.py, vgg_64.py, vgg_128.py,
# lstm.py). The building blocks (dcgan_conv, dcgan_upconv, vgg_layer) are pickled by name too.
REFERENCE_CLASSES = {
    "models.dcgan_64": ("encoder", "decoder", "dcgan_conv", "dcgan_upconv"),
    "models.dcgan_128": ("encoder", "decoder", "dcgan_conv", "dcgan_upconv"),
    "models.vgg_64": ("encoder", "decoder", "vgg_layer"),
    "models.vgg_128": ("encoder", "decoder", "vgg_layer"),
    "models.lstm": ("lstm", "gaussian_lstm"),
}
# The torch.nn layers those classes are built from.
TORCH_LAYERS = {
    "torch.nn.modules.conv": ("Conv2d", "ConvTranspose2d"),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.activation": ("LeakyReLU", "Tanh", "Sigmoid"),
    "torch.nn.modules.container": ("Sequential", "ModuleList"),
    "torch.nn.modules.linear": ("Linear",),
    "torch.nn.modules.rnn": ("LSTMCell",),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.upsampling": ("UpsamplingNearest2d",),
}
# The training script stores the optimizer class itself in ``opt.optimizer``.
OPTIMIZERS = ("torch.optim.adam.Adam", "torch.optim.rmsprop.RMSprop", "torch.optim.sgd.SGD")


class StandIn:
    """An object of a class the file names, rebuilt as its pickled attributes and nothing else."""

    reference_name = ""
    # torch's legacy loader reads this when a saved class's source differs from the loaded one's;
    # True would make it write a patch file.
    dump_patches = False

    def __repr__(self) -> str:
        return f"<stand-in for {self.reference_name}>"


class ModuleStandIn(StandIn):
    """A pickled ``nn.Module``: ``_parameters``, ``_buffers`` and ``_modules`` as saved."""

    def children(self) -> dict[str, ModuleStandIn]:
        return dict(self.__dict__.get("_modules") or {})

    def tensors(self) -> dict[str, torch.Tensor]:
        """This module's own parameters, then its buffers (None entries are unset slots)."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.__dict__.get(group) or {}).items():
                if value is not None:
                    out[name] = value
        return out


class Options(StandIn):
    """The training script's ``argparse.Namespace``."""

    reference_name = "argparse.Namespace"


class LegacyVariable(StandIn):
    """A PyTorch 0.3 ``Variable`` (the LSTMs' ``hidden`` state): pickled as Variable(data) plus
    (requires_grad, volatile, hooks)."""

    reference_name = "torch.autograd.variable.Variable"

    def __init__(self, data=None, *args):
        self.data = data

    def __setstate__(self, state) -> None:
        self.state = state


def _no_backend() -> None:
    """Modules of PyTorch <= 0.4 pickle their THNN backend as a call of this function."""
    return None


def _stand_in(full_name: str, base: type[StandIn]) -> type[StandIn]:
    qualname = full_name.rpartition(".")[2]
    return type(qualname, (base,), {"reference_name": full_name, "__module__": __name__})


def _allowed() -> dict[str, object]:
    allowed: dict[str, object] = {
        "collections.OrderedDict": OrderedDict,
        "builtins.set": set,
        "argparse.Namespace": Options,
        "torch.Size": torch.Size,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,  # 0.3/0.4: Parameter(data, grad)
        "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,  # 0.3
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,  # >= 0.4
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,  # >= 1.0
        "torch.autograd.variable.Variable": LegacyVariable,
        "torch.nn.backends.thnn._get_thnn_function_backend": _no_backend,
    }
    for module, names in (REFERENCE_CLASSES | TORCH_LAYERS).items():
        for name in names:
            full = f"{module}.{name}"
            allowed[full] = _stand_in(full, ModuleStandIn)
    for full in OPTIMIZERS:
        allowed[full] = _stand_in(full, StandIn)
    return allowed


ALLOWED = _allowed()


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of ``ALLOWED``. (torch's loader resolves storage type names such
    as ``torch.cuda.FloatStorage`` to dtype descriptors before asking this one.)"""

    def find_class(self, module: str, name: str):
        # Protocol-2 pickles name builtins as Python 2 did (``__builtin__.set``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full not in ALLOWED:
            raise RefusedGlobal(full)
        return ALLOWED[full]


def _load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# What ``torch.load(pickle_module=...)`` uses of a pickle module.
restricted_pickle = types.ModuleType("svg_lightning_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _load


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_reference(path: str | Path):
    """The object stored in ``path`` with every global resolved through ``ALLOWED``;
    CheckpointError (one line) for a missing or unreadable file or a refused global."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference checkpoint {path} does not exist")
    if is_torchscript(path):  # torch.load would hand it to torch.jit.load, which runs its code
        raise CheckpointError(f"refusing {path}: it is a TorchScript archive, not a checkpoint")
    try:
        with warnings.catch_warnings():
            # The legacy format compares each saved class's source with the loaded class's and
            # warns about the stand-ins, which have none.
            warnings.simplefilter("ignore")
            # torch insists on weights_only=False with a pickle_module of one's own; the
            # restriction is RestrictedUnpickler, which every global of the file goes through.
            return torch.load(
                path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False
            )
    except RefusedGlobal as err:
        raise CheckpointError(
            f"refusing {path}: it names the global {err.name}, which is not part of an SVG "
            "reference checkpoint (only the reference's module classes, torch.nn layers, tensors "
            "and argparse options are allowed; nothing of the file is run)"
        ) from None
    except Exception as err:  # torch and pickle raise many types for a file of another kind
        raise CheckpointError(
            f"{path} cannot be read as a torch.save file: {type(err).__name__}: {_first_line(err)}"
        ) from None
