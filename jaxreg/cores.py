"""The CPU cores, and JAX's set-up for them, decided before JAX starts (so this module imports no JAX).

On a CPU, XLA runs a small network's kernels faster on one thread than split over several,
and a sweep's members need no communication: with one host device per core
(``--xla_force_host_platform_device_count``), a sweep runs its members' shares side by
side, a core each. Only where the run will be on the CPU: with an accelerator first in
``JAX_PLATFORMS``, or an accelerator's JAX plugin installed and ``JAX_PLATFORMS`` unset, the
members are sharded over the accelerators JAX sees, and the CPU is left as it is.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["DEVICE_COUNT_FLAG", "ACCELERATOR_PLUGINS", "count", "on_cpu", "host_device_per_core"]

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
ACCELERATOR_PLUGINS = ("jax_cuda13_plugin", "jax_cuda12_plugin", "jax_rocm7_plugin", "jax_rocm60_plugin", "libtpu")


def count() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def on_cpu(platforms: str | None = None) -> bool:
    """Whether JAX will run on the CPU: ``platforms`` (default ``$JAX_PLATFORMS``) names the CPU
    first, or names nothing and no accelerator's JAX plugin is installed (JAX then prefers it)."""
    platforms = os.environ.get("JAX_PLATFORMS", "") if platforms is None else platforms
    first = platforms.split(",")[0].strip().lower()
    if first:
        return first == "cpu"
    return not any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)


def host_device_per_core() -> bool:
    """Ask XLA for one host device per core, where the run is on the CPU (:func:`on_cpu`), JAX has
    not started and ``XLA_FLAGS`` sets no count. Returns whether it asked."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or DEVICE_COUNT_FLAG in flags or count() < 2 or not on_cpu():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={count()}".strip()
    return True
