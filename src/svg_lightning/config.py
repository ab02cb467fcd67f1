"""Where the Hydra configs live, and the checks that run before any work starts: every numeric
setting of every command is checked here, in one place (types, ranges, and the relations between
the model's and the data's lengths), so a bad value is a one-line error naming it, not a crash
(or a silently wrong run) later."""

from __future__ import annotations

import difflib
import inspect
import math
from pathlib import Path

import torch
from hydra.utils import get_class, get_object
from omegaconf import DictConfig, OmegaConf

from svg_lightning.errors import ConfigError
from svg_lightning.models.batchnorm import BN_STATS
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import TIME_CHUNK_VALUES, is_time_chunk
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


class Checks:
    """Collects every problem, so one run of a command reports them all at once."""

    def __init__(self):
        self.errors: list[str] = []

    def integer(self, name: str, value, low: int = 1, none_ok: bool = False) -> None:
        if value is None and none_ok:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            also = " or null" if none_ok else ""
            self.errors.append(f"{name}={value!r} must be an integer >= {low}{also}")

    def number(self, name: str, value, low: float, high: float = math.inf, *,
               low_open: bool = False, high_open: bool = True) -> None:  # fmt: skip
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            self.errors.append(
                f"{name}={value!r} must be a finite number in {left}{low:g}, {high:g}{right}"
            )

    def choice(self, name: str, value, allowed) -> None:
        if value not in allowed:
            self.errors.append(f"{name}={value!r} is unknown; allowed: {list(allowed)}")

    def same(self, name: str, value, other_name: str, other) -> None:
        if value != other:
            self.errors.append(
                f"{name}={value!r} differs from {other_name}={other!r}; they must be equal "
                f"(leave {name} at its default, which follows {other_name})"
            )

    def raise_if_any(self, what: str) -> None:
        if self.errors:
            raise ConfigError(f"invalid {what}:\n  - " + "\n  - ".join(self.errors))


def architecture(model_cfg) -> SVGConfig:
    """The ``SVGConfig`` of a ``model`` config (its architecture fields; defaults elsewhere)."""
    names = set(SVGConfig.names())
    return SVGConfig(**{k: v for k, v in model_cfg.items() if k in names})


# Keys Hydra's instantiate reads in a node with a _target_, besides the target's arguments.
INSTANTIATE_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def target_arguments(target: str) -> set[str] | None:
    """The keyword arguments ``target`` (a class or function path) accepts, following ``**kwargs``
    up the package's own base classes; None when it accepts any (``**kwargs`` that leave the
    package, e.g. W&B's settings or SVGModule's architecture, which ``validate_config`` checks)."""
    try:
        obj = get_object(target)
    except Exception:  # Hydra raises several types; instantiating reports the bad path
        return None
    if inspect.isclass(obj):
        chain = [c for c in inspect.getmro(obj) if "__init__" in vars(c)]
    else:
        chain = [obj]
    names: set[str] = set()
    for fn in chain:
        if fn is object or not (fn.__module__ or "").startswith("svg_lightning") and fn is not obj:
            return None
        params = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every key path of ``cfg`` (``model.beta``, ``summary.num_samples``, ...)."""
    keys = []
    for key, value in cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else ():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, DictConfig):
            keys += leaf_keys(value, path + ".")
    return keys


def _unknown(path: str, allowed, everything: list[str]) -> str:
    parent, _, leaf = path.rpartition(".")
    where = f"{parent}." if parent else "top-level "
    others = [k for k in everything if k != path and not path.startswith(k + ".")
              and not k.startswith(path + ".")]  # fmt: skip
    others += [f"{where.strip()}{a}" if parent else a for a in allowed]
    close = difflib.get_close_matches(leaf, {k.rpartition(".")[2] for k in others}, cutoff=0.75)
    near = sorted((k for k in others if k.rpartition(".")[2] in close), key=lambda k: k.count("."))
    hint = f"; did you mean {' or '.join(dict.fromkeys(near[:2]))}?" if near else ""
    return f"{path}: no part of the program reads it{hint} (allowed {where}keys: {sorted(allowed)})"


def _topmost_added(path: str, keys: list[str], added: set[str]) -> str:
    """The highest node on ``path`` that only ``+`` overrides put there (``+eval.x=1`` adds
    ``eval``, not just ``eval.x``)."""
    while "." in path:
        parent = path.rpartition(".")[0]
        below = [k for k in keys if k.startswith(parent + ".")]
        if not all(k in added or any(a.startswith(k + ".") for a in added) for k in below):
            break
        path = parent
    return path


def check_keys(cfg: DictConfig, added: list[str] = ()) -> None:
    """ConfigError naming every key nothing reads: in a node with a ``_target_``, one that its
    target does not take; elsewhere, one that a ``+key=value`` override ``added`` (the yaml
    files declare every other key)."""
    keys, added = leaf_keys(cfg), set(added)
    targets = {}
    for path in keys:
        node = OmegaConf.select(cfg, path, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and isinstance(node.get("_target_"), str):
            targets[path] = target_arguments(node._target_)
    unknown = {}
    for path in keys:
        parent, _, key = path.rpartition(".")
        if parent in targets:
            allowed = targets[parent]
            if allowed is not None and key not in allowed | INSTANTIATE_KEYS:
                unknown[path] = allowed
        elif path in added and not any(path.startswith(t + ".") for t in targets):
            path = _topmost_added(path, keys, added)
            parent = path.rpartition(".")[0]
            siblings = OmegaConf.select(cfg, parent) if parent else cfg
            unknown[path] = [k for k in siblings if f"{parent}.{k}".lstrip(".") not in added]
            unknown[path] = [k for k in unknown[path] if k != path.rpartition(".")[2]]
    if unknown:
        everything = [k for k in keys if k not in added]
        errors = [_unknown(path, allowed, everything) for path, allowed in unknown.items()]
        raise ConfigError("unknown settings:\n  - " + "\n  - ".join(errors))


def check_accelerator(c: Checks, trainer_cfg) -> None:
    accelerator = str(trainer_cfg.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        c.errors.append(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU; use "
            "trainer=cpu (or trainer.accelerator=auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        c.errors.append("trainer.accelerator=mps but MPS is not available here; use trainer=cpu")
    precision = str(trainer_cfg.get("precision"))
    c.choice("trainer.precision", precision, PRECISIONS)


def check_data(c: Checks, data_cfg, data_cls, n_past: int, n_future: int) -> None:
    d = data_cfg
    c.integer("data.batch_size", d.get("batch_size"))
    c.integer("data.num_workers", d.get("num_workers"), low=0)
    batch = d.get("batch_size")
    # drop_last: an epoch shorter than one batch would never train.
    low = batch if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0 else 1
    c.integer("data.train_length", d.get("train_length"), low=low)
    c.integer("data.val_videos", d.get("val_videos"))
    c.integer("data.test_videos", d.get("test_videos"), none_ok=True)
    c.integer("data.train_seed", d.get("train_seed"), low=0)
    if "num_digits" in d:
        c.integer("data.num_digits", d.get("num_digits"))
    if d.get("image_size") not in data_cls.image_sizes:
        c.errors.append(
            f"data.image_size={d.get('image_size')} is not available for this dataset; "
            f"allowed: {list(data_cls.image_sizes)}"
        )
    c.same("data.n_past", d.get("n_past"), "n_past", n_past)
    c.same("data.n_future", d.get("n_future"), "n_future", n_future)


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every bad setting of a training config."""
    c = Checks()
    m = OmegaConf.to_container(cfg.model, resolve=True)
    allowed = set(TRAINING_SETTINGS) | set(SVGConfig.names())
    unknown = sorted(set(m) - allowed - {"_target_"})
    if unknown:
        c.errors.append(f"unknown model settings {unknown}; allowed: {sorted(allowed)}")
    arch = architecture(m)
    c.errors += arch.errors()
    c.integer("n_past", cfg.n_past)
    c.integer("n_future", cfg.n_future)
    c.integer("seed", cfg.get("seed"), low=0)
    c.same("model.n_past", m.get("n_past"), "n_past", cfg.n_past)
    c.same("model.n_future", m.get("n_future"), "n_future", cfg.n_future)
    c.integer("model.val_num_samples", m.get("val_num_samples"))
    c.integer("model.sample_chunk", m.get("sample_chunk"), none_ok=True)
    c.number("model.lr", m.get("lr"), 0, low_open=True)
    c.number("model.beta", m.get("beta"), 0)
    c.number("model.adam_beta1", m.get("adam_beta1"), 0, 1)
    c.number("model.adam_beta2", m.get("adam_beta2"), 0, 1)
    c.choice("model.bn_stats", m.get("bn_stats", BN_STATS[0]), BN_STATS)
    if m.get("bn_stats", BN_STATS[0]) == "per_step" and cfg.data.get("batch_size") == 1:
        c.errors.append(
            "data.batch_size=1 with model.bn_stats=per_step: each time step is normalised over "
            "the batch's videos, which needs at least 2; use a larger batch"
        )
    chunk = m.get("time_chunk", "auto")
    if not is_time_chunk(chunk):
        c.errors.append(f"model.time_chunk={chunk!r} must be {TIME_CHUNK_VALUES}")
    elif chunk not in (None, "auto") and m.get("bn_stats", BN_STATS[0]) != "per_step":
        c.errors.append(
            "model.time_chunk with model.bn_stats=joint would normalise each chunk on its own "
            "(another function); use model.bn_stats=per_step or model.time_chunk=auto"
        )

    data_cls = get_class(cfg.data._target_)
    check_data(c, cfg.data, data_cls, cfg.n_past, cfg.n_future)
    if arch.channels != data_cls.channels:
        c.errors.append(
            f"model.channels={arch.channels} does not match the dataset, which has "
            f"{data_cls.channels} channel(s); set model.channels={data_cls.channels}"
        )
    if data_cls.max_seq_len and cfg.n_past + cfg.n_future > data_cls.max_seq_len:
        c.errors.append(
            f"n_past + n_future = {cfg.n_past + cfg.n_future} is longer than the dataset's "
            f"{data_cls.max_seq_len}-frame videos"
        )
    t = cfg.trainer
    check_accelerator(c, t)
    c.integer("trainer.log_every_n_steps", t.get("log_every_n_steps"))
    if t.get("max_steps") != -1:
        c.integer("trainer.max_steps", t.get("max_steps"))
    interval = t.get("val_check_interval")
    if isinstance(interval, float):
        c.number("trainer.val_check_interval", interval, 0, 1, low_open=True, high_open=False)
    else:
        c.integer("trainer.val_check_interval", interval, none_ok=True)
    if cfg.get("summary"):
        c.integer("summary.num_samples", cfg.summary.get("num_samples"))
        c.integer("summary.grid_videos", cfg.summary.get("grid_videos"), low=0)
        c.integer("summary.grid_samples", cfg.summary.get("grid_samples"), low=0)
    c.raise_if_any("configuration")


def check_eval(e, protocol_word: str) -> None:
    """The ``eval`` settings of an evaluation; ``protocol_word`` is the value of eval.n_past and
    eval.n_future that means the dataset's protocol."""
    c = Checks()
    for key in ("n_past", "n_future"):
        if e.get(key) not in (None, protocol_word):
            c.integer(f"eval.{key}", e.get(key))
    c.integer("eval.num_samples", e.get("num_samples"))
    c.integer("eval.num_videos", e.get("num_videos"), none_ok=True)
    c.integer("eval.batch_size", e.get("batch_size"))
    c.integer("eval.sample_chunk", e.get("sample_chunk"), none_ok=True)
    c.integer("eval.seed", e.get("seed"), low=0)
    c.integer("eval.grid_videos", e.get("grid_videos"), low=0)
    c.integer("eval.grid_samples", e.get("grid_samples"), low=0)
    for key in ("lpips", "fvd"):
        if e.get(key) not in (None, True, False):
            c.errors.append(f"eval.{key}={e.get(key)!r} must be true, false or null (auto)")
    c.integer("eval.fvd_draws", e.get("fvd_draws"))
    c.raise_if_any("evaluation settings")


def check_model_fits_data(hparams, data_cfg, data_cls, source: str) -> None:
    """A checkpoint's network must take the frames of the dataset it is evaluated on."""
    size, channels = hparams.get("image_size"), hparams.get("channels")
    if channels != data_cls.channels or size != data_cfg.get("image_size"):
        raise ConfigError(
            f"the checkpoint's network takes {channels}-channel {size}x{size} frames, but "
            f"{source} describes {data_cls.__name__} with {data_cls.channels}-channel "
            f"{data_cfg.get('image_size')}x{data_cfg.get('image_size')} frames; point "
            "train_config= at the config the checkpoint was trained with"
        )
