"""A command's config composed from its command line, strictly, before any work: Hydra's own
errors (an unknown group option, a missing mandatory value, bad override syntax) and keys that
nothing reads become one-line ConfigErrors that list the valid choices.

The command line's entry points call ``check_command_line`` before Hydra starts (so a refused
command leaves no run folder); the Python API composes with ``compose_config``."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from svg_lightning.config import check_command, config_dir
from svg_lightning.config_keys import check_keys
from svg_lightning.errors import ConfigError

# Config folders that are building blocks of the others, not options a user picks.
INTERNAL = ("base",)


def group_options(group: str, root: str | Path | None = None) -> list[str]:
    """The options of a config group (of the configs in ``root``, by default the package's) a
    user may pick: building blocks left out (``is_internal``)."""
    folder = Path(root or config_dir()) / group
    return sorted(
        p.relative_to(folder).with_suffix("").as_posix()
        for p in folder.rglob("*.yaml")
        if not is_internal(p.relative_to(folder).with_suffix("").as_posix())
    )


def is_internal(option: str) -> bool:
    return option.startswith("_") or option.split("/")[0] in INTERNAL


def is_group(key: str) -> bool:
    return (Path(config_dir()) / key.replace(".", "/")).is_dir()


def parse(overrides: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ConfigError(f"cannot read the override: {str(err).splitlines()[0]}") from None


def first_job(parsed: list[Override]) -> list[str]:
    """A multirun's overrides with each swept key at its first value: the first job, which
    shares its keys and groups with all the others."""
    lines = []
    for o in parsed:
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), "")
            prefix = "++" if o.is_force_add() else "+" if o.is_add() else ""
            lines.append(f"{prefix}{o.key_or_group}={first}")
        else:
            lines.append(o.input_line)
    return lines


def added_keys(parsed: list[Override]) -> list[str]:
    """The keys ``+key=value`` overrides add (not ``+group=option``, which picks a file)."""
    return [
        o.key_or_group
        for o in parsed
        if o.is_add() and not o.key_or_group.startswith("hydra") and not is_group(o.key_or_group)
    ]


def _hydra_error(err: Exception, parsed: list[Override], config_name: str) -> str:
    """One line for what Hydra refused, with the valid choices."""
    text = str(err)
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or key.startswith("hydra") or not is_group(key):
            continue
        value = None if o.is_sweep_override() else o.value()
        if value is None:
            return (
                f"{key}=null: a group cannot be set to null; drop it with ~{key}, or pick one of: "
                f"{', '.join(group_options(key))}"
            )
        if isinstance(err, MissingConfigException) and f"'{key}/{value}'" in text:
            return (
                f"{key}={value} is not an option of {key}; options: {', '.join(group_options(key))}"
            )
    if "Could not override '" in text:
        key = text.split("'")[1]
        top = list(_compose(config_name, []).keys())
        group = f"; it is a config group: {key}=OPTION" if is_group(key) else ""
        return (
            f"{key}: no such setting{group} (to add a key nothing declares, +{key}=VALUE; "
            f"top-level keys and groups: {', '.join(top)})"
        )
    return " ".join(text.replace("\t", " ").split("Config search path:")[0].split())


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """The config ``python -m svg_lightning[.evaluate] OVERRIDES`` builds (a later override of a
    key wins), its keys and group options checked as the command line checks them (values are
    checked by the command that runs it); ``config_name`` is the primary config: ``train``,
    ``eval``, ``analyze`` or ``sample``."""
    by_key = {o.split("=", 1)[0]: o for o in overrides}  # Hydra refuses repeated keys
    return checked_config(config_name, list(by_key.values()), complete=False)


def missing_keys(tree: dict, prefix: str = "") -> list[str]:
    """The ``???`` values of a config (unresolved: paths interpolate Hydra's run folder)."""
    found = []
    for key, value in tree.items():
        if value == "???":
            found.append(f"{prefix}{key}")
        elif isinstance(value, dict):
            found += missing_keys(value, f"{prefix}{key}.")
    return found


def checked_config(
    config_name: str, overrides: list[str], multirun: bool = False, complete: bool = True
) -> DictConfig:
    """Compose (a multirun's first job), or raise a one-line ConfigError: Hydra's refusals, an
    internal option picked, a key nothing reads, and (``complete``) a mandatory value left
    missing."""
    parsed = parse(overrides)
    for o in parsed:
        if is_group(o.key_or_group) and not o.is_delete() and not o.is_sweep_override():
            value = o.value()
            if isinstance(value, str) and is_internal(value):
                raise ConfigError(
                    f"{o.key_or_group}={value} is a building block of the other options, not one "
                    f"to pick; options: {', '.join(group_options(o.key_or_group))}"
                )
    try:
        lines = first_job(parsed) if multirun else [o.input_line for o in parsed]
        cfg = _compose(config_name, lines)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(_hydra_error(err, parsed, config_name)) from None
    check_keys(cfg, added_keys(parsed))
    check_command(cfg)
    missing = missing_keys(OmegaConf.to_container(cfg, resolve=False)) if complete else []
    if missing:
        raise ConfigError(
            "missing mandatory " + ", ".join(f"{k}=..." for k in missing)
            + f"; e.g. {' '.join(f'{k}=VALUE' for k in missing)} (see --help)"
        )  # fmt: skip
    return cfg
