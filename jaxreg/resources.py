"""Memory: what a run needs and what the machine has, compared before anything is compiled.

An allocation larger than the memory can fail in ways a command cannot answer (XLA waiting
forever for it, the kernel killing the process), so a program whose estimate does not fit
is refused with both figures. Estimates are generous (see
:func:`member_bytes`); the limit is the device's memory where it reports it
(GPUs, TPUs), else the host's (physical memory, or the container's limit where lower).
This module imports nothing heavy: the command line uses it before JAX starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxreg import validate

__all__ = ["MEMBER_HOST_BYTES", "MemoryLimit", "device_memory", "host_memory", "member_bytes", "require", "size",
           "sweep_host_bytes"]

MEMBER_HOST_BYTES = 4096  # host bytes a sweep member costs at least: its configuration, records and report entry
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


class MemoryLimit(ValueError):
    """A run refused because its estimate exceeds the memory it may use."""


def host_memory() -> int | None:
    """Bytes of host memory: physical memory, or the container's (cgroup) limit where lower; None
    where neither is known."""
    try:
        limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    except (AttributeError, ValueError, OSError):  # not POSIX
        limits = []
    for name in _CGROUP_LIMITS:
        try:
            with open(name) as f:
                limits.append(int(f.read().split()[0]))  # "max" (no limit) is not a number
        except (OSError, ValueError, IndexError):
            continue
    return min(limits, default=None)


def device_memory(device) -> tuple[int | None, str]:
    """``(bytes, words)``: the memory a program on ``device`` (a ``jax.Device``) may use."""
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory statistics (the CPU)
        limit = None
    if limit:
        return int(limit), f"the memory of device {device.device_kind}"
    return host_memory(), "the host's memory"


def size(n: float) -> str:
    """Bytes in words: ``"1.5 GiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require(what: str, need: int, limit: int | None, where: str, remedy: str) -> None:
    """Raise :class:`MemoryLimit` when ``need`` bytes exceed ``limit`` (None: unknown, no check)."""
    if limit is not None and need > limit:
        raise MemoryLimit(f"{what} needs about {size(need)} of memory, more than {where} ({size(limit)}); {remedy}")


def member_bytes(layer_dims: Sequence[int], m: int, *, dtype: str = "float32", optimizer: str = "sgd",
                 n_steps: int = 1, split: bool = False, early_stopping: bool = False) -> int:
    """A generous estimate of the device bytes one member of a sweep needs while training.

    Parameters, gradients, updates and the new parameters (4 copies; one more for early
    stopping's best) plus the optimizer's moments; per step the activations kept for the
    backward pass and their gradients (about 6 numbers per unit and example), the masks
    (5 bytes per hidden unit and example, generously), the block of packed mask bits that
    ``run_chunk`` draws ahead for per-step masks (at most 1 MiB; twice one step's bits,
    generously, where those are more), the ``n_steps`` costs and, with a validation split,
    its two weights per example."""
    from jaxreg.masks import mask_bits_bytes  # imports JAX: only where an estimate is made

    dims = validate.layer_dims(layer_dims)
    itemsize = np.dtype(dtype).itemsize
    n_params = sum(dims[l] * dims[l - 1] + dims[l] for l in range(1, len(dims)))
    copies = 4 + {"sgd": 0, "momentum": 1, "adam": 2}.get(optimizer, 2) + early_stopping
    units, hidden = sum(dims[1:]), sum(dims[1:-1])
    step_bits = mask_bits_bytes(dims, m)
    mask_block = max(min(2**20, step_bits * max(n_steps, 1)), 2 * step_bits)
    numbers = copies * n_params + 6 * units * m + n_steps + 2 * m * split
    return itemsize * numbers + 5 * hidden * m + mask_block


def sweep_host_bytes(members: int, state_bytes: int, logged: int) -> int:
    """Host bytes a sweep's results take: per member its final state (``state_bytes``), its two
    cost histories at ``logged`` iterations as arrays and as the report's ``[iteration, cost]``
    pairs (about 150 bytes each as Python objects and JSON), and :data:`MEMBER_HOST_BYTES`."""
    return members * (state_bytes + logged * 2 * (8 + 150) + MEMBER_HOST_BYTES)
