"""``python -m svg_lightning.analyze {prior,trajectories} ckpt_path=... [overrides]``.

The subcommand is taken off the command line before Hydra sees it and stored as ``command``.
"""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from omegaconf import DictConfig

from svg_lightning.checkpoint import CheckpointError
from svg_lightning.config import ConfigError, config_dir

log = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")

USAGE = "usage: python -m svg_lightning.analyze {prior,trajectories} ckpt_path=PATH [key=value ...]"


def analyze(cfg: DictConfig) -> dict:
    """Run ``cfg.command``; returns the paths it wrote."""
    from svg_lightning.analyze.prior import analyze_prior
    from svg_lightning.analyze.trajectories import analyze_trajectories

    commands = {"prior": analyze_prior, "trajectories": analyze_trajectories}
    if cfg.command not in commands:
        raise ConfigError(f"command={cfg.command!r} is unknown; allowed: {list(commands)}")
    return commands[cfg.command](cfg)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="analyze")
def main(cfg: DictConfig) -> None:
    try:
        analyze(cfg)
    except (CheckpointError, ConfigError) as err:
        log.error("%s", err)
        raise SystemExit(2) from None
    finally:
        from svg_lightning.train import finish_wandb

        finish_wandb()


def cli(argv: list[str]) -> None:
    """Moves the subcommand from argv[1] into a ``command=`` override, then runs Hydra."""
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if len(argv) >= 2 else 2)
    if argv[1] not in ("prior", "trajectories"):
        print(f"unknown command {argv[1]!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    command = argv.pop(1)
    argv.append(f"command={command}")
    main()


if __name__ == "__main__":
    cli(sys.argv)
