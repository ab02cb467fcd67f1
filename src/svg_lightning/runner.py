"""How every command runs, whatever its package: the messages of Lightning and torch that are
not true of this package silenced, the package's errors turned into one-line messages and exit
codes, and the command's W&B run finished.

The Hydra commands add their own layer on top (``hydra_entry``); this module imports no command
package and no config code, so every package's command line can use it, ``data.prepare``'s too
(``config`` sits above ``data``)."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Callable

from pytorch_lightning.utilities.warnings import PossibleUserWarning

from svg_lightning.devices import memory_error
from svg_lightning.errors import SVGError
from svg_lightning.files import output_error
from svg_lightning.loggers import finish_wandb

log = logging.getLogger("svg_lightning")

# Lightning's log line each time a checkpoint is saved without an explicit weights_only.
WEIGHTS_ONLY_NOTE = "`weights_only` was not set, defaulting to `False`."
NOT_RESUMABLE = (
    "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is "
    "not resumable"
)


class _DropMessage(logging.Filter):
    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


_WEIGHTS_ONLY_FILTER = _DropMessage(WEIGHTS_ONLY_NOTE)


def quiet_known_warnings() -> None:
    """Silence the messages of Lightning and torch that are not true of this package, and only
    those. Called when this module is imported (every command: also in the processes a ddp
    launcher starts) and by the Python API (``api.train``: tests and notebooks); calling it
    again puts the filters back in front of any added since."""
    # Lightning 2.6 calls a torch pytree API that torch 2.10+ deprecates; nothing to act on.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Under bf16-mixed the weights stay float32 (autocast casts per operation): the size the
    # model summary estimates "using 32 bits instead" is the true one.
    warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model")
    # Resuming is exact by design: training item i is a pure function of (seed, i) and the
    # sampler starts at step * batch size * world size (data/base.py), so a checkpoint taken in
    # the middle of an "epoch" continues with the very batches an uninterrupted run would see.
    warnings.filterwarnings(
        "ignore", message=re.escape(NOT_RESUMABLE), category=PossibleUserWarning
    )
    # Our checkpoints are full on purpose (optimizer and loop state, for an exact resume) and
    # hold only plain values: they load with weights_only=True.
    connector = logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector")
    if _WEIGHTS_ONLY_FILTER not in connector.filters:
        connector.addFilter(_WEIGHTS_ONLY_FILTER)


quiet_known_warnings()


# What to lower when memory runs out part-way, by command (a lower bound of what the settings
# need is checked before any work: memory_checks.py).
MEMORY_FIX = {
    "train": "lower data.batch_size or n_future (model.val_num_samples or summary.num_samples "
    "if it ran out while sampling)",
    "eval": "lower eval.batch_size or eval.sample_chunk",
    "sample": "lower sample_chunk or num_samples",
    "analyze": "lower batch_size",
}
MEMORY_FIX_ANY = "free memory on the device, or lower the sizes the command was given"


def guarded(command: Callable, *args, hydra_logging: bool = True, memory_fix: str | None = None):
    """Run ``command``; an SVGError becomes its one-line message and exit code (through the
    Hydra job log, or on stderr for the argparse commands), and so do a write that failed for
    lack of space or permission (``files.output_error``) and an allocation that failed
    (``devices.memory_error``, with ``memory_fix``). The W&B run is finished either way: each
    command, and each job of a multirun, gets its own."""
    try:
        return command(*args)
    except Exception as raised:
        err = (
            raised if isinstance(raised, SVGError)
            else output_error(raised) or memory_error(raised, memory_fix or MEMORY_FIX_ANY)
        )  # fmt: skip
        if err is None:
            raise
        if hydra_logging:
            log.error("%s", err)
        else:
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    finally:
        finish_wandb()


def returning_code(command: Callable, *args) -> tuple[int, object]:
    """For the argparse commands, which return their exit code: (0, result), or the error's
    code and None once ``guarded`` has printed its one line."""
    try:
        return 0, guarded(command, *args, hydra_logging=False)
    except SystemExit as stop:
        return stop.code, None
