"""Which keys of a composed config some part of the program reads: a key in a node with a
``_target_`` must be an argument its target takes, and one that only a ``+key=value`` override
put there must be declared by the yaml files. Anything else is a typo, refused with the keys
beside it and the closest names (``compose.checked_config`` runs it before any work)."""

from __future__ import annotations

import difflib
import inspect

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from svg_lightning.errors import ConfigError

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
    # Keys beside it first, then the closest (from a sorted list: a set's order would change
    # the hint from run to run).
    leaves = sorted({k.rpartition(".")[2] for k in others})
    close = difflib.get_close_matches(leaf, leaves, cutoff=0.75)
    rank = lambda k: (k.rpartition(".")[0] != parent, close.index(k.rpartition(".")[2]), k)
    near = sorted((k for k in others if k.rpartition(".")[2] in close), key=rank)
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
