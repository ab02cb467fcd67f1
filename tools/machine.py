"""The machine and code a docs measurement ran on, as the docs state it next to wall times
(times depend on the CPU, the threads and the load)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def machine() -> dict:
    """Where and on what code a reproduction ran: times depend on it (and on the load)."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
         if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )  # fmt: skip
    # the cores this process may use, as nproc counts them
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain"):
        commit += " with uncommitted changes"
    return {
        "cpus": len(cpus),
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "commit": commit,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str | None:
    """A read-only git query in the repository of these tools; None outside one."""
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def describe(m: dict) -> str:
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ", no GPU"
    load = m["load_average"]
    load = "" if load is None else f", load average {load:.1f} at the start"
    code = f"; code: commit {m['commit']}" if m["commit"] else ""
    return (
        f"{m['cpus']} CPU cores ({m['cpu']}, {m['cpu_capability']} kernels){gpu}, torch threads: "
        f"{m['torch_threads']}{load}{code}"
    )
