"""The package's errors. Each carries the exit code the command line maps it to, and a message
that names the file, setting or record at fault and the fix, so it prints as one line."""

from __future__ import annotations


class SVGError(Exception):
    """Base class: a problem with the user's input or settings, not a bug."""

    exit_code = 2


class ConfigError(SVGError, ValueError):
    """A setting the run cannot use; the message names the setting and the allowed values."""


class CheckpointError(SVGError, RuntimeError):
    """A checkpoint that is missing, damaged, foreign or of another architecture or version."""


class DataNotPreparedError(SVGError, FileNotFoundError):
    """A dataset whose prepared arrays are missing; the message gives the prepare command."""


class DataSourceError(SVGError, FileNotFoundError):
    """Missing or unusable raw inputs; the message says what is expected and where it comes from."""


class InputError(SVGError, ValueError):
    """A user's video or array that a command cannot use; the message names the file and fix."""


class NonFiniteLossError(SVGError, RuntimeError):
    """Training stopped on a NaN or inf loss before it reached the weights."""

    exit_code = 3


class PreemptedError(SVGError):
    """Training stopped by SIGTERM (what SLURM sends before preemption or a time limit) after
    saving its last checkpoint: a non-zero exit, so the job does not look finished."""

    exit_code = 143  # 128 + SIGTERM, what the shell reports for a process SIGTERM stopped


class StoppedByUserError(PreemptedError):
    """Training stopped by Ctrl-C (SIGINT) after saving its last checkpoint, or an evaluation
    stopped by it before writing anything."""

    exit_code = 130  # 128 + SIGINT, as the shell reports it


class OutputError(SVGError):
    """An output that cannot be written (a full disk, a read-only or forbidden place); the message
    names the path. Nothing half-written is left: outputs are written atomically (files.py)."""

    exit_code = 74  # EX_IOERR of sysexits.h


class OutOfMemoryError(SVGError, MemoryError):
    """An allocation the device could not serve, part-way through a command; the message says
    which settings size it."""

    exit_code = 2
