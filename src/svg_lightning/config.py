"""Where the Hydra configs live, and the checks that run before any training starts."""

from __future__ import annotations

import inspect
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig

from svg_lightning.models.backbones import BACKBONE_SIZES
from svg_lightning.models.svg import SKIP_SOURCES, VARIANTS

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "64", "64-true", "16-true", "bf16-true")


def config_dir() -> str:
    """Configs shipped inside the package (non-editable install) or the repository's ``conf/``."""
    shipped = Path(__file__).parent / "conf"
    if (shipped / "train.yaml").is_file():
        return str(shipped)
    return str(Path(__file__).resolve().parents[2] / "conf")


class ConfigError(ValueError):
    """A setting the run cannot use; the message names the setting and the allowed values."""


def _positive(errors: list[str], name: str, value, minimum=1) -> None:
    if not isinstance(value, (int, float)) or value < minimum:
        errors.append(f"{name}={value!r} must be >= {minimum}")


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every bad setting (n_past, sizes, channels, names, ranges)."""
    from svg_lightning.module import SVGModule

    errors: list[str] = []
    m, d = cfg.model, cfg.data
    allowed = set(inspect.signature(SVGModule.__init__).parameters) - {"self"}
    unknown = sorted(set(m) - allowed - {"_target_"})
    if unknown:
        errors.append(f"unknown model settings {unknown}; allowed: {sorted(allowed)}")
    _positive(errors, "n_past", cfg.n_past)
    _positive(errors, "n_future", cfg.n_future)
    for key in (
        "g_dim",
        "z_dim",
        "rnn_size",
        "predictor_layers",
        "posterior_layers",
        "prior_layers",
        "nf",
    ):
        _positive(errors, f"model.{key}", m.get(key))
    _positive(errors, "data.batch_size", d.get("batch_size"))
    _positive(errors, "model.val_num_samples", m.get("val_num_samples"))
    if not (isinstance(m.get("lr"), (int, float)) and m.lr > 0):
        errors.append(f"model.lr={m.get('lr')!r} must be > 0")
    if not (isinstance(m.get("beta"), (int, float)) and m.beta >= 0):
        errors.append(f"model.beta={m.get('beta')!r} must be >= 0")
    if m.get("variant") not in VARIANTS:
        errors.append(f"model.variant={m.get('variant')!r} is unknown; allowed: {list(VARIANTS)}")
    if m.get("skip") not in SKIP_SOURCES:
        errors.append(f"model.skip={m.get('skip')!r} is unknown; allowed: {list(SKIP_SOURCES)}")

    data_cls = get_class(d._target_)
    size = d.get("image_size")
    if size not in data_cls.image_sizes:
        errors.append(
            f"data.image_size={size} is not available for this dataset; "
            f"allowed: {list(data_cls.image_sizes)}"
        )
    backbone = m.get("backbone")
    if backbone not in BACKBONE_SIZES:
        errors.append(f"model.backbone={backbone!r} is unknown; allowed: {sorted(BACKBONE_SIZES)}")
    elif BACKBONE_SIZES[backbone] != m.get("image_size"):
        fits = [b for b, s in BACKBONE_SIZES.items() if s == m.get("image_size")]
        errors.append(
            f"model.backbone={backbone} works on "
            f"{BACKBONE_SIZES[backbone]}x{BACKBONE_SIZES[backbone]} "
            f"frames but the image size is {m.get('image_size')}; backbones for that size: {fits}"
        )
    if m.get("channels") != data_cls.channels:
        errors.append(
            f"model.channels={m.get('channels')} does not match the dataset, which has "
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
