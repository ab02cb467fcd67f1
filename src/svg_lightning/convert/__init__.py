"""Convert the SVG checkpoints released with the reference code (Denton & Fergus, ICML 2018;
``pretrained_models/svglp_bair.pth``, ``svglp_smmnist2.pth``) into svg_lightning checkpoints;
``python -m svg_lightning.convert FILE --out OUT`` (or ``svg convert``) is its command line.

The released files are what later papers evaluated as "SVG-LP". They hold whole pickled modules
of PyTorch 0.3/0.4 (read without running them, see ``legacy``) and the training script's options
(``opt``). The options give the architecture (``opt.model`` and ``opt.image_width`` the backbone,
``opt.last_frame_skip`` the skip source: the previous frame, else the reference's frame
n_past-2), the dataset and the training lengths; a file without a ``prior`` entry is SVG-FP.
Every reference tensor is mapped onto ours (see ``mapping``) and the result is an ordinary
checkpoint: it evaluates, samples and resumes training without a run folder, because it carries
the training config ``python -m svg_lightning +experiment=<dataset>_<variant>`` composes for that
setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

import svg_lightning
from svg_lightning.config import config_dir, validate_config
from svg_lightning.convert.legacy import ModuleStandIn, Options, StandIn, load_reference
from svg_lightning.convert.mapping import BACKBONE_MODULES, expected_classes, map_tensors
from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.files import atomic_path, sha256
from svg_lightning.module import SVGModule
from svg_lightning.runs import CHECKPOINT_FORMAT, META_KEY

NETWORKS = ("encoder", "decoder", "frame_predictor", "posterior")  # + "prior" for SVG-LP
# The reference's dataset names; SM-MNIST, KTH and BAIR are the paper's three.
DATASETS = {"smmnist": "smmnist", "kth": "kth", "bair": "bair"}
# The reference's DCGAN backbones hard-code their base width.
REFERENCE_NF = 64


@dataclass
class Conversion:
    """What ``convert`` read and wrote."""

    source: Path
    sha256: str
    out: Path
    dataset: str
    hyper_parameters: dict
    # The overrides of ``python -m svg_lightning`` that train this setting (resuming included).
    train_overrides: list[str]
    # "entry.reference_name" -> our state-dict key, for every reference tensor.
    mapping: dict[str, str] = field(default_factory=dict)
    filled: list[str] = field(default_factory=list)  # ours without a reference tensor

    def lines(self) -> list[str]:
        hp = self.hyper_parameters
        layers = f"predictor {hp['predictor_layers']}, posterior {hp['posterior_layers']}"
        if hp["variant"] == "lp":
            layers += f", prior {hp['prior_layers']}"
        skips = {
            "reference": "frame n_past-2 (the reference's default)",
            "previous": "the previous frame (last_frame_skip)",
        }.get(hp["skip"], hp["skip"])
        return [
            f"wrote {self.out}",
            f"  from {self.source} (sha256 {self.sha256[:16]}...)",
            f"  architecture: SVG-{hp['variant'].upper()}, {hp['backbone']} backbone, "
            f"{hp['channels']} channel(s), |g|={hp['g_dim']}, |z|={hp['z_dim']}, "
            f"{hp['rnn_size']}-unit LSTMs ({layers} layers), decoder skips from {skips}",
            f"  dataset: {self.dataset}; trained with n_past={hp['n_past']}, "
            f"n_future={hp['n_future']}, beta={hp['beta']}",
            f"  tensors: {len(self.mapping)} reference tensors mapped one to one; "
            f"{len(self.filled)} BatchNorm num_batches_tracked counters (absent in PyTorch 0.3/0.4 "
            "files) set to 0",
            f"  evaluate: python -m svg_lightning.evaluate ckpt_path={self.out}",
            f"  train further: python -m svg_lightning {' '.join(self.train_overrides)} "
            f"ckpt_path={self.out}",
        ]


def _plain(value):
    """An option value as a plain Python value (the optimizer class becomes its name)."""
    if isinstance(value, StandIn) or isinstance(value, type) and issubclass(value, StandIn):
        return value.reference_name
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _option(path: Path, opt: dict, *names: str, kind: type | tuple = int, default=None):
    """The first of ``names`` that ``opt`` has, checked to be of ``kind``."""
    for name in names:
        if name in opt:
            value = opt[name]
            if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
                raise CheckpointError(f"{path}: opt.{name}={value!r} is not a valid setting")
            return value
    if default is None:
        raise CheckpointError(f"{path}: its options (opt) have no {' or '.join(names)}")
    return default


def _components(path: Path, data) -> tuple[dict[str, ModuleStandIn], dict]:
    """The pickled networks by entry name, and the options as a dict."""
    allowed = {*NETWORKS, "prior", "opt"}
    keys = set(data) if isinstance(data, dict) else set()
    if not isinstance(data, dict) or not {*NETWORKS, "opt"} <= keys or keys - allowed:
        found = sorted(map(str, keys)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not a checkpoint of the SVG reference code: expected a dict of "
            f"{', '.join(NETWORKS)}, [prior,] opt; found {found}"
        )
    if not isinstance(data["opt"], Options):
        raise CheckpointError(f"{path}: its opt is not the training script's argparse options")
    nets = {k: data[k] for k in (*NETWORKS, "prior") if k in data}
    for name, net in nets.items():
        if not isinstance(net, ModuleStandIn):
            raise CheckpointError(f"{path}: its {name} entry is not a pickled module")
    return nets, {k: _plain(v) for k, v in vars(data["opt"]).items()}


def _settings(path: Path, nets: dict[str, ModuleStandIn], opt: dict) -> tuple[str, str, list]:
    """(backbone, dataset, the training-config overrides) of a reference checkpoint."""
    model = _option(path, opt, "model", kind=str)
    width = _option(path, opt, "image_width")
    backbone = f"{model}{width}"
    if backbone not in BACKBONE_MODULES:
        raise CheckpointError(
            f"{path}: opt.model={model!r} with opt.image_width={width} is no reference backbone; "
            f"known: {sorted(BACKBONE_MODULES)}"
        )
    variant = "lp" if "prior" in nets else "fp"
    for name, expected in expected_classes(backbone).items():
        if name in nets and nets[name].reference_name != expected:
            raise CheckpointError(
                f"{path}: its {name} is a {nets[name].reference_name}, but opt describes a "
                f"{backbone} model (expected {expected})"
            )
    dataset = _option(path, opt, "dataset", kind=str)
    if dataset not in DATASETS:
        raise CheckpointError(
            f"{path}: trained on opt.dataset={dataset!r}; svg_lightning has {sorted(DATASETS)}"
        )
    dataset = DATASETS[dataset]

    def layers(entry: str) -> int:
        default = nets[entry].__dict__.get("n_layers")  # when opt predates the per-LSTM counts
        key = {"frame_predictor": "predictor", "posterior": "posterior", "prior": "prior"}[entry]
        return _option(path, opt, f"{key}_rnn_layers", "rnn_layers", default=default)

    number = (int, float)
    overrides = [
        f"+experiment={dataset}_{variant}",
        f"n_past={_option(path, opt, 'n_past')}",
        f"n_future={_option(path, opt, 'n_future')}",
        f"data.image_size={width}",
        f"model.backbone={backbone}",
        f"model.channels={_option(path, opt, 'channels')}",
        f"model.g_dim={_option(path, opt, 'g_dim')}",
        f"model.z_dim={_option(path, opt, 'z_dim')}",
        f"model.rnn_size={_option(path, opt, 'rnn_size')}",
        f"model.predictor_layers={layers('frame_predictor')}",
        f"model.posterior_layers={layers('posterior')}",
        f"model.nf={REFERENCE_NF}",
        f"model.skip={'previous' if opt.get('last_frame_skip') else 'reference'}",
        f"model.beta={float(_option(path, opt, 'beta', kind=number))!r}",
        f"model.lr={float(_option(path, opt, 'lr', kind=number, default=2e-3))!r}",
        f"model.adam_beta1={float(_option(path, opt, 'beta1', kind=number, default=0.9))!r}",
    ]
    if variant == "lp":
        overrides.append(f"model.prior_layers={layers('prior')}")
    if dataset == "smmnist":
        overrides.append(f"data.num_digits={_option(path, opt, 'num_digits', default=2)}")
    return backbone, dataset, overrides


def train_config(path: Path, overrides: list[str], out: Path) -> dict:
    """The resolved training config ``python -m svg_lightning OVERRIDES`` composes, as plain
    values; ``paths.output_dir`` (set by Hydra when a run starts) is the output's folder."""
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out.resolve().parent)
        validate_config(cfg)
        return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError as err:
        reasons = "; ".join(s.strip(" -") for s in str(err).splitlines()[1:]) or str(err)
        raise CheckpointError(
            f"{path}: its options make no valid training config: {reasons}"
        ) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise CheckpointError(
            f"{path}: its options make no valid training config: {str(err).splitlines()[0]}"
        ) from None


def _optimizers(model: SVGModule) -> list:
    """The optimizers ``configure_optimizers`` returns (an optimizer, a list, or a dict)."""
    conf = model.configure_optimizers()
    if isinstance(conf, dict):
        conf = conf["optimizer"]
    return list(conf) if isinstance(conf, (list, tuple)) else [conf]


def convert(src: str | Path, out: str | Path) -> Conversion:
    """Convert the reference checkpoint ``src`` into the svg_lightning checkpoint ``out``
    (written atomically). CheckpointError, with nothing written, for a file that is missing, is
    not a reference checkpoint, names a global outside the reference's (see ``legacy``), or whose
    tensors do not map one to one onto the network its options describe."""
    src, out = Path(src), Path(out)
    if out.exists() and out.is_dir():
        raise CheckpointError(f"--out {out} is a folder; give the checkpoint's file name")
    if src.is_file() and out.exists() and out.resolve() == src.resolve():
        raise CheckpointError(f"--out {out} is the reference checkpoint itself")
    nets, opt = _components(src, load_reference(src))
    backbone, dataset, overrides = _settings(src, nets, opt)
    config = train_config(src, overrides, out)
    model = SVGModule(**{k: v for k, v in config["model"].items() if k != "_target_"})
    state, mapping, filled = map_tensors(nets, model, backbone)
    model.load_state_dict(state)  # strict: every key of ours, nothing else
    digest = sha256(src)
    checkpoint = {
        # A fresh start from the released weights: the file holds no optimizer state.
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": pl.__version__,
        "state_dict": state,
        "optimizer_states": [o.state_dict() for o in _optimizers(model)],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dict(model.hparams),
        META_KEY: {
            "version": svg_lightning.__version__,
            "format": CHECKPOINT_FORMAT,
            "converted_from": {"file": src.name, "sha256": digest},
            "train_config": config,
            "reference_options": opt,
        },
    }
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    return Conversion(src, digest, out, dataset, dict(model.hparams), overrides, mapping, filled)
