"""Choosing the torch device of the commands that run a model outside the Trainer, the memory
it has left, and whether its CPU computes bf16 natively."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from svg_lightning.errors import ConfigError, OutOfMemoryError


def pick_device(name: str) -> torch.device:
    """``auto`` = cuda when available, else cpu; a bad or unavailable device is a ConfigError
    naming the setting, not a crash half-way through."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use device=cpu")
    return device


FLOAT_BYTES = 4  # every frame tensor the commands hold is float32


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device``: the GPU's free memory, or the system's
    MemAvailable (what it can give without swapping), else its physical memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(frames: int, frame_shape, device: torch.device, what: str, fix: str) -> None:
    """ConfigError before any allocation when ``frames`` float32 frames of ``frame_shape``
    (C, H, W), which a setting makes a command hold at once on ``device``, exceed the memory
    left there: a lower bound of what it needs (the networks' activations come on top), so a
    refusal is never wrong, and the allocator's traceback (or a crash) never comes."""
    need = int(frames) * FLOAT_BYTES
    for dim in frame_shape:
        need *= int(dim)
    check_bytes(
        need, device, f"{what} holds {frames} frames of {tuple(frame_shape)} floats at once", fix
    )


def check_bytes(need: int, device: torch.device, what: str, fix: str) -> None:
    """ConfigError when ``need`` bytes, a lower bound of what ``what`` holds at once on
    ``device``, exceed the memory left there."""
    have = available_memory(device)
    if need > have:
        raise ConfigError(
            f"{what}: {need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of "
            f"{device.type} memory available; {fix}"
        )


CPU_ALLOCATOR_FAILURE = "can't allocate memory"  # the words of torch's CPU allocator


def memory_error(err: BaseException | None, fix: str) -> OutOfMemoryError | None:
    """The one-line error of an allocation that failed anywhere in ``err``'s chain (CUDA's
    OutOfMemoryError, or the CPU allocator's RuntimeError), with torch's own first sentences
    and ``fix``; else None. (A CPU process the kernel kills for memory ends before this.)"""
    while err is not None and not (
        isinstance(err, torch.OutOfMemoryError)
        or isinstance(err, RuntimeError)
        and CPU_ALLOCATOR_FAILURE in str(err)
    ):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    text = str(err).split(CPU_ALLOCATOR_FAILURE + ": ")[-1].splitlines()[0]
    # CUDA's: "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ..."; the CPU's:
    # "you tried to allocate N bytes. Error code 12 (...)".
    sentences = 2 if isinstance(err, torch.OutOfMemoryError) else 1
    said = ". ".join(text.split(". ")[:sentences]).rstrip(".")
    return OutOfMemoryError(f"out of memory: {said}; {fix}")


CPUINFO = Path("/proc/cpuinfo")
# Instructions that compute bf16 in hardware: AVX512-BF16 and AMX-BF16 (x86), the Armv8.6 BF16
# extension (aarch64). Without them bf16 is emulated: on an AVX2 host an autocast training step ran
# 10-20x slower than float32 (docs/performance.md).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (``flags`` on x86, ``Features`` on Arm);
    None where there is no /proc/cpuinfo."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively, so ``trainer.precision=bf16-mixed`` runs faster
    than float32 on it. Elsewhere than Linux, torch's own probe of the x86 instruction set,
    where this build has it; otherwise False (the slow guess only costs a warning)."""
    flags = cpu_flags()
    if flags is not None:
        return bool(flags & NATIVE_BF16_FLAGS)
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


# (video, sample) rows per sampling call under eval.sample_chunk=auto. A GPU takes large calls (the
# limit bounds its memory); a CPU is faster with small ones, whose activations stay in its caches:
# 64-row calls sampled the paper's SM-MNIST net about 1.5x faster than 800-row ones in
# benchmarks/bench_eval (8 videos, 2-core AVX2; docs/performance.md).
AUTO_SAMPLE_CHUNK = {"cpu": 64, "cuda": 800}


def sample_chunk(setting: int | str | None, device: torch.device) -> int | None:
    """The rows per sampling call that ``setting`` (rows, null for all at once, or ``auto``)
    means on ``device``."""
    if setting == "auto":
        return AUTO_SAMPLE_CHUNK.get(device.type, AUTO_SAMPLE_CHUNK["cuda"])
    return setting
