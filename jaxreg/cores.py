"""The CPU cores, and JAX's set-up for them, decided before JAX starts (so this module imports no JAX).

On a CPU, XLA runs a small network's kernels faster on one thread than split over several,
and a sweep's members need no communication: with one host device per core
(``--xla_force_host_platform_device_count``), a sweep runs its members' shares side by
side, a core each. The flag only shapes the CPU platform; GPUs and TPUs are untouched.
"""

from __future__ import annotations

import os
import sys

__all__ = ["DEVICE_COUNT_FLAG", "count", "host_device_per_core"]

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def count() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def host_device_per_core() -> bool:
    """Ask XLA for one host device per core, unless JAX has started or ``XLA_FLAGS`` already
    sets a count. Returns whether it asked."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or DEVICE_COUNT_FLAG in flags or count() < 2:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={count()}".strip()
    return True
