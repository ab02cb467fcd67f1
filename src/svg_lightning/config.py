"""Where the Hydra configs live, and the checks that run before any work starts: every numeric
setting of every command is checked here, in one place (types, ranges, and the relations between
the model's and the data's lengths), so a bad value is a one-line error naming it, not a crash
(or a silently wrong run) later. Whether this machine has the memory they need is
checked in ``memory_checks``."""

from __future__ import annotations

import inspect
import logging
import math
import os
from pathlib import Path

import torch
from hydra.utils import get_class, get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from svg_lightning.config_keys import leaf_keys
from svg_lightning.data.sources.videos import prepared_channels
from svg_lightning.devices import native_bf16
from svg_lightning.errors import ConfigError
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import sampling_errors, training_errors
from svg_lightning.module import SVGModule

log = logging.getLogger(__name__)

# No 64-bit precisions: the model's index_put of float32 frames fails under them.
PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
NAME_MAX = 255  # bytes in one folder name on Linux, macOS and Windows file systems
SEED_MAX = 2**32 - 1  # numpy's seeds (the data's and the analyses' generators) are 32-bit
# The LightningModule's own settings; the rest of ``model`` is the architecture (SVGConfig).
TRAINING_SETTINGS = tuple(inspect.signature(SVGModule.__init__).parameters)[1:-1]
# What model.channels is before `prepare videos` has written the index it reads: that command's
# default. The DataModule refuses to run on unprepared data, so no model is built with it.
UNPREPARED_CHANNELS = 3


def _prepared_channels(*, _root_) -> int:
    """``${prepared_channels:}``: the channels of the videos prepared into ``data.data_dir``, so
    the videos_* experiments' model takes the frames the data holds without a setting to keep in
    step (a ``???`` data_dir, not given yet, reads as unprepared)."""
    return prepared_channels(OmegaConf.select(_root_, "data.data_dir", default=None)) or (
        UNPREPARED_CHANNELS
    )


OmegaConf.register_new_resolver("prepared_channels", _prepared_channels, replace=True)


def dataset_channels(data_cfg, data_cls) -> int | None:
    """The channels of the dataset's frames: its class's, or for data whose channels are chosen
    when it is prepared (VideosDataModule), those of its index; None while it is not prepared
    (the DataModule then refuses)."""
    if data_cls.channels is not None:
        return data_cls.channels
    return data_cls.prepared_channels(data_cfg)


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

    def integer(self, name: str, value, low: int = 1, none_ok: bool = False,
                high: int | None = None) -> None:  # fmt: skip
        if value is None and none_ok:
            return
        ok = not isinstance(value, bool) and isinstance(value, int) and value >= low
        if not ok or high is not None and value > high:
            also = " or null" if none_ok else ""
            within = f"in [{low}, {high}]" if high is not None else f">= {low}"
            self.errors.append(f"{name}={value!r} must be an integer {within}{also}")

    def seed(self, name: str, value) -> None:
        self.integer(name, value, low=0, high=SEED_MAX)

    def boolean(self, name: str, value, none_ok: bool = False) -> None:
        """Hydra reads true/false as booleans; any other word (no, maybe, ...) stays a string,
        which Python would take as true."""
        if not isinstance(value, bool) and not (value is None and none_ok):
            also = ", or null" if none_ok else ""
            self.errors.append(f"{name}={value!r} must be true or false{also}")

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


def trainer_device(trainer_cfg) -> torch.device:
    """The device a Trainer with these settings computes on (its first, for memory checks)."""
    accelerator = str(trainer_cfg.get("accelerator"))
    gpu = accelerator in ("gpu", "cuda") or accelerator == "auto" and torch.cuda.is_available()
    return torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")


def frame_shape(arch: SVGConfig) -> tuple[int, int, int]:
    return arch.channels, arch.image_size, arch.image_size


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
    if precision.startswith("bf16") and trainer_device(trainer_cfg).type == "cpu":
        if not native_bf16():
            log.warning(
                "trainer.precision=%s on a CPU without native bf16 (avx512_bf16, amx_bf16): "
                "emulated in float32, 10-20x slower than trainer.precision=32 here",
                precision,
            )


# The arguments of each callback that its class only checks when training reaches them (after
# the run folder exists), by class name; the yaml files in conf/callbacks/ describe them.
CALLBACK_RULES = {
    "VideoSamples": {
        "num_sequences": lambda c, n, v: c.integer(n, v),
        "num_samples": lambda c, n, v: c.integer(n, v),
        "every_n_validations": lambda c, n, v: c.integer(n, v),
    },
    "LastCheckpoint": {"every_n_train_steps": lambda c, n, v: c.integer(n, v, none_ok=True)},
    "EarlyStopping": {
        "patience": lambda c, n, v: c.integer(n, v, low=0),
        "min_delta": lambda c, n, v: c.number(n, v, 0),
        "mode": lambda c, n, v: c.choice(n, v, ("min", "max")),
    },
    "ModelCheckpoint": {
        "save_top_k": lambda c, n, v: c.integer(n, v, low=-1),
        "mode": lambda c, n, v: c.choice(n, v, ("min", "max")),
        "every_n_train_steps": lambda c, n, v: c.integer(n, v, low=0, none_ok=True),
        "save_last": lambda c, n, v: c.choice(n, v, (True, False, None, "link")),
    },
}


def check_callbacks(c: Checks, callbacks_cfg) -> None:
    for name, node in (callbacks_cfg or {}).items():
        if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
            continue
        rules = CALLBACK_RULES.get(node._target_.rpartition(".")[2], {})
        for key, rule in rules.items():
            if key in node:
                rule(c, f"callbacks.{name}.{key}", node.get(key))


def _bool_kind(param: inspect.Parameter) -> str | None:
    """'strict' for an argument annotated bool, 'nullable' for Optional[bool], else None (a
    union with other types, e.g. Lightning's deterministic="warn", is the target's to check)."""
    a = param.annotation
    if a in (bool, "bool") or a is param.empty and isinstance(param.default, bool):
        return "strict"
    if a == bool | None or a in ("bool | None", "Optional[bool]"):
        return "nullable"
    return None


def boolean_arguments(target: str) -> dict[str, str]:
    """The arguments of ``target`` (a class or function path) that take a bool -> their kind."""
    try:
        obj = get_object(target)
    except Exception:  # Hydra raises several types; instantiating reports the bad path
        return {}
    params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    return {n: kind for n, p in params.items() if (kind := _bool_kind(p))}


# Booleans outside any _target_ node (those inside one are found from its signature).
PLAIN_BOOLEANS = ("summary.enabled", "extras.print_config", "eval.reference_ssim")


def check_booleans(c: Checks, cfg: DictConfig) -> None:
    """Every boolean setting must be true or false: ``summary.enabled=no`` would run the
    summary, as the string 'no' is true."""
    for path in leaf_keys(cfg):
        node = OmegaConf.select(cfg, path, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and isinstance(node.get("_target_"), str):
            for key, kind in boolean_arguments(node._target_).items():
                if key in node and not OmegaConf.is_missing(node, key):
                    c.boolean(f"{path}.{key}", node.get(key), none_ok=kind == "nullable")
    for path in PLAIN_BOOLEANS:
        if OmegaConf.select(cfg, path, default=None) is not None:
            c.boolean(path, OmegaConf.select(cfg, path))


def check_task_name(c: Checks, cfg: DictConfig) -> None:
    """task_name is one folder name under logs/: a separator or '..' would put the run
    elsewhere."""
    name = cfg.get("task_name")
    if name is None:
        return
    name = str(name)
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        c.errors.append(
            f"task_name={name!r} must be a plain folder name (no '/', '\\', '.' or '..'): the "
            "runs go to logs/<task_name>/runs/"
        )
    elif len(name.encode()) > NAME_MAX:
        c.errors.append(
            f"task_name is {len(name.encode())} bytes long; a folder name may have at most "
            f"{NAME_MAX} (the file system's limit): the runs go to logs/<task_name>/runs/"
        )


def check_command(cfg: DictConfig) -> None:
    """The checks every command's composed config gets before Hydra makes its run folder."""
    c = Checks()
    check_task_name(c, cfg)
    check_booleans(c, cfg)
    c.raise_if_any("configuration")


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
    c.seed("data.train_seed", d.get("train_seed"))
    if "val_seed" in d:
        c.seed("data.val_seed", d.get("val_seed"))
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
    c.seed("seed", cfg.get("seed"))
    c.same("model.n_past", m.get("n_past"), "n_past", cfg.n_past)
    c.same("model.n_future", m.get("n_future"), "n_future", cfg.n_future)
    c.integer("model.val_num_samples", m.get("val_num_samples"))
    c.integer("model.sample_chunk", m.get("sample_chunk"), none_ok=True)
    c.number("model.lr", m.get("lr"), 0, low_open=True)
    c.number("model.beta", m.get("beta"), 0)
    c.number("model.adam_beta1", m.get("adam_beta1"), 0, 1)
    c.number("model.adam_beta2", m.get("adam_beta2"), 0, 1)
    bn_stats = m.get("bn_stats", "per_step")
    c.errors += training_errors(bn_stats, m.get("time_chunk", "auto"))
    if bn_stats == "per_step" and cfg.data.get("batch_size") == 1:
        c.errors.append(
            "data.batch_size=1 with model.bn_stats=per_step: each time step is normalised over "
            "the batch's videos, which needs at least 2; use a larger batch"
        )

    data_cls = get_class(cfg.data._target_)
    check_data(c, cfg.data, data_cls, cfg.n_past, cfg.n_future)
    channels = dataset_channels(cfg.data, data_cls)
    if channels is not None and arch.channels != channels:
        c.errors.append(
            f"model.channels={arch.channels} does not match the dataset, which has "
            f"{channels} channel(s); set model.channels={channels}"
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
    if t.get("max_epochs") not in (-1, None):
        # 0 would stop before the first step: no checkpoint, an untrained model scored.
        c.integer("trainer.max_epochs", t.get("max_epochs"))
    interval = t.get("val_check_interval")
    if isinstance(interval, float) and t.get("check_val_every_n_epoch") is not None:
        c.number("trainer.val_check_interval", interval, 0, 1, low_open=True, high_open=False)
    else:  # validation by optimizer steps (the default): Lightning takes no fraction then
        c.integer("trainer.val_check_interval", interval, none_ok=True)
    devices = t.get("devices")  # a count, -1 (every GPU), a list of GPU indices or "auto"
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        c.errors.append(f"trainer.devices={devices} must be >= 1 (devices per machine), or -1")
    if cfg.get("summary"):
        c.integer("summary.num_samples", cfg.summary.get("num_samples"))
        c.integer("summary.grid_videos", cfg.summary.get("grid_videos"))
        c.integer("summary.grid_samples", cfg.summary.get("grid_samples"), low=0)
    check_callbacks(c, cfg.get("callbacks"))
    check_task_name(c, cfg)
    check_booleans(c, cfg)
    c.raise_if_any("configuration")


def check_eval(e, protocol_word: str, num_videos) -> None:
    """The ``eval`` settings of an evaluation; ``protocol_word`` is the value of eval.n_past and
    eval.n_future that means the dataset's protocol, ``num_videos`` the videos it scores."""
    c = Checks()
    for key in ("n_past", "n_future"):
        if e.get(key) not in (None, protocol_word):
            c.integer(f"eval.{key}", e.get(key))
    c.integer("eval.num_samples", e.get("num_samples"))
    c.integer("eval.num_videos", e.get("num_videos"), none_ok=True)
    c.integer("eval.batch_size", e.get("batch_size"))
    if e.get("sample_chunk") != "auto":
        c.integer("eval.sample_chunk", e.get("sample_chunk"), none_ok=True)
    c.seed("eval.seed", e.get("seed"))
    c.integer("eval.grid_videos", e.get("grid_videos"))
    c.integer("eval.grid_samples", e.get("grid_samples"), low=0)
    for key in ("lpips", "fvd"):
        if e.get(key) not in (None, True, False):
            c.errors.append(f"eval.{key}={e.get(key)!r} must be true, false or null (auto)")
    c.integer("eval.fvd_draws", e.get("fvd_draws"))
    c.errors += sampling_errors(e.get("bn"))
    batch = e.get("batch_size")
    # Batch statistics need 2 videos in every batch, the last one included (once every setting
    # above is valid, so these are numbers).
    if not c.errors and e.get("bn") == "batch" and (batch == 1 or num_videos % batch == 1):
        c.errors.append(
            f"eval.bn=batch normalises over the videos of a batch, but with "
            f"eval.num_videos={num_videos} and eval.batch_size={batch} a batch holds a single "
            "video; pick a batch size that leaves at least 2 in the last batch"
        )
    c.raise_if_any("evaluation settings")


def check_analyze(cfg) -> None:
    """The settings of ``analyze prior`` and ``analyze trajectories`` (both read the shared ones;
    the defaults of the other command's are valid)."""
    c = Checks()
    c.seed("seed", cfg.get("seed"))
    for key in ("batch_size", "num_videos", "num_test_videos", "num_samples", "num_true",
                "plot_steps"):  # fmt: skip
        c.integer(key, cfg.get(key))
    for key in ("n_past", "n_future"):  # null = the model's; 0 is not null
        c.integer(key, cfg.get(key), none_ok=True)
    seq_len, burn_in = cfg.get("seq_len"), cfg.get("burn_in")
    c.integer("seq_len", seq_len, low=3)
    lags = cfg.get("lags")
    if not isinstance(lags, (list, tuple, ListConfig)):
        c.errors.append(f"lags={lags!r} must be a list of integers, e.g. lags=[-1,0,1]")
    seq_ok = isinstance(seq_len, int) and not isinstance(seq_len, bool) and seq_len >= 3
    if seq_ok:
        # The prior's seq_len - 1 outputs predict frames 2..seq_len (frames from 1); burn_in
        # leaves out the first ones, and at least one must remain.
        c.integer("burn_in", burn_in, low=0, high=seq_len - 2)
    burn_ok = seq_ok and isinstance(burn_in, int) and 0 <= burn_in <= seq_len - 2
    if burn_ok and isinstance(lags, (list, tuple, ListConfig)):
        # Output s (from 0) is paired with a collision at frame s - lag: only lags in this
        # range pair some output s >= burn_in with a frame of the video (else all-null numbers).
        for i, lag in enumerate(lags):
            c.integer(f"lags[{i}]", lag, low=burn_in - seq_len + 1, high=seq_len - 2)
    c.raise_if_any("analysis settings")


def check_sample(cfg, n_past: int, n_future: int) -> None:
    """The settings of ``sample``, with ``n_past``/``n_future`` resolved (null: the model's)."""
    c = Checks()
    for key, value, low in (
        ("n_past", n_past, 1), ("n_future", n_future, 1), ("num_samples", cfg.num_samples, 1),
        ("start", cfg.start, 0), ("fps", cfg.fps, 1),
    ):  # fmt: skip
        c.integer(key, value, low=low)
    c.integer("sample_chunk", cfg.sample_chunk, none_ok=True)
    c.seed("seed", cfg.seed)  # the same rule as eval.seed
    c.raise_if_any("sampling settings")


def check_model_fits_data(hparams, data_cfg, data_cls, source: str, stored=None) -> None:
    """A checkpoint's network must take the frames of the dataset it is evaluated on, and
    (``stored``: the training config the checkpoint carries) come from that dataset: KTH and
    SM-MNIST frames have the same size and channels."""
    size, channels = hparams.get("image_size"), hparams.get("channels")
    data_channels = dataset_channels(data_cfg, data_cls)
    if channels != (data_channels or channels) or size != data_cfg.get("image_size"):
        raise ConfigError(
            f"the checkpoint's network takes {channels}-channel {size}x{size} frames, but "
            f"{source} describes {data_cls.__name__} with {data_channels}-channel "
            f"{data_cfg.get('image_size')}x{data_cfg.get('image_size')} frames; point "
            "train_config= at the config the checkpoint was trained with"
        )
    target = ((stored or {}).get("data") or {}).get("_target_")
    try:
        trained_on = get_class(target) if target else None
    except Exception:  # Hydra raises several types; a foreign path cannot be compared
        trained_on = None
    if trained_on is not None and not issubclass(data_cls, trained_on):
        raise ConfigError(
            f"the checkpoint was trained on {trained_on.__name__}, but {source} describes "
            f"{data_cls.__name__}; point train_config= at the config the checkpoint was "
            "trained with (or leave it out: the checkpoint carries it)"
        )
