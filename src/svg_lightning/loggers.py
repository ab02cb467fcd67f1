"""W&B logger that runs offline by itself when it cannot reach the service."""

from __future__ import annotations

import logging
import os
import socket

from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger(__name__)

WANDB_HOST = ("api.wandb.ai", 443)


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(WANDB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def wandb_logger(offline: bool | None = None, **kwargs) -> WandbLogger:
    """``offline=None`` decides: online only with an API key and a reachable service (or
    ``WANDB_MODE=online``); offline otherwise, and says how to sync the run later."""
    if offline is None:
        mode = os.environ.get("WANDB_MODE")
        offline = mode in ("offline", "disabled") or (
            mode != "online" and not (_has_api_key() and _reachable())
        )
    logger = WandbLogger(offline=offline, **kwargs)
    if offline:
        save_dir = kwargs.get("save_dir", ".")
        log.warning(
            "W&B runs offline (no API key or no network). Upload later with: "
            "wandb sync %s/wandb/offline-run-*",
            save_dir,
        )
    return logger
