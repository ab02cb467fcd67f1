"""Where the Hydra configs live, and the checks that run before any training starts."""

from __future__ import annotations

import inspect
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from svg_lightning.errors import ConfigError
from svg_lightning.models.batchnorm import BN_STATS
from svg_lightning.models.config import SVGConfig
from svg_lightning.module import SVGModule

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "64", "64-true", "16-true", "bf16-true")
# The LightningModule's own settings; the rest of ``model`` is the architecture (SVGConfig).
TRAINING_SETTINGS = tuple(inspect.signature(SVGModule.__init__).parameters)[1:-1]


def config_dir() -> str:
    """Configs shipped inside the package (non-editable install) or the repository's ``conf/``."""
    shipped = Path(__file__).parent / "conf"
    if (shipped / "train.yaml").is_file():
        return str(shipped)
    return str(Path(__file__).resolve().parents[2] / "conf")


def _at_least(errors: list[str], name: str, value, minimum=1) -> None:
    if not isinstance(value, (int, float)) or value < minimum:
        errors.append(f"{name}={value!r} must be >= {minimum}")


def architecture(model_cfg) -> SVGConfig:
    """The ``SVGConfig`` of a ``model`` config (its architecture fields; defaults elsewhere)."""
    names = set(SVGConfig.names())
    return SVGConfig(**{k: v for k, v in model_cfg.items() if k in names})


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every bad setting (lengths, sizes, names, ranges)."""
    errors: list[str] = []
    m, d = OmegaConf.to_container(cfg.model, resolve=True), cfg.data
    allowed = set(TRAINING_SETTINGS) | set(SVGConfig.names())
    unknown = sorted(set(m) - allowed - {"_target_"})
    if unknown:
        errors.append(f"unknown model settings {unknown}; allowed: {sorted(allowed)}")
    arch = architecture(m)
    errors += arch.errors()
    _at_least(errors, "n_past", cfg.n_past)
    _at_least(errors, "n_future", cfg.n_future)
    _at_least(errors, "data.batch_size", d.get("batch_size"))
    _at_least(errors, "model.val_num_samples", m.get("val_num_samples"))
    if not (isinstance(m.get("lr"), (int, float)) and m["lr"] > 0):
        errors.append(f"model.lr={m.get('lr')!r} must be > 0")
    if m.get("bn_stats", BN_STATS[0]) not in BN_STATS:
        errors.append(f"model.bn_stats={m.get('bn_stats')!r} is unknown; allowed: {list(BN_STATS)}")
    if not (isinstance(m.get("beta"), (int, float)) and m["beta"] >= 0):
        errors.append(f"model.beta={m.get('beta')!r} must be >= 0")

    data_cls = get_class(d._target_)
    size = d.get("image_size")
    if size not in data_cls.image_sizes:
        errors.append(
            f"data.image_size={size} is not available for this dataset; "
            f"allowed: {list(data_cls.image_sizes)}"
        )
    if arch.channels != data_cls.channels:
        errors.append(
            f"model.channels={arch.channels} does not match the dataset, which has "
            f"{data_cls.channels} channel(s); set model.channels={data_cls.channels}"
        )
    if data_cls.max_seq_len and cfg.n_past + cfg.n_future > data_cls.max_seq_len:
        errors.append(
            f"n_past + n_future = {cfg.n_past + cfg.n_future} is longer than the dataset's "
            f"{data_cls.max_seq_len}-frame videos"
        )
    precision = str(cfg.trainer.get("precision"))
    if precision not in PRECISIONS:
        errors.append(f"trainer.precision={precision} is unknown; allowed: {list(PRECISIONS)}")
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
