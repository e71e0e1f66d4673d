"""Several processes or hosts, on JAX's own runtime (``jax.distributed``).

Every process runs the same command on the same data; the devices of all of them form
one mesh (``jax.devices()``). Inputs become global arrays from each process's host copy
(:func:`global_array`: a process supplies the shards its own devices hold), results come
back to every host (:func:`to_host`), quantities that decide shapes are agreed
(:func:`agreed_min`), and only the first process prints and writes (:func:`is_main`),
the others waiting for it at the end (:func:`sync`). With one process all of this is the
plain single-process path.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxreg.errors import ConfigError

__all__ = ["COORDINATOR_ENV", "PROCESSES_ENV", "PROCESS_ID_ENV", "initialize", "is_main", "global_array",
           "to_host", "agreed_min", "sync"]

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
PROCESSES_ENV = "JAXREG_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXREG_PROCESS_ID"


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, auto: bool = False) -> bool:
    """Join the processes of one run: ``coordinator`` (``HOST:PORT``, process 0's), their number
    and this one's index, each defaulting to its environment variable; or ``auto`` to let
    ``jax.distributed.initialize()`` find them (SLURM, Open MPI, Kubernetes). Returns whether
    the run has several processes (nothing is done for one)."""
    coordinator = coordinator or os.environ.get(COORDINATOR_ENV)
    num_processes = num_processes if num_processes is not None else _env_int(PROCESSES_ENV)
    process_id = process_id if process_id is not None else _env_int(PROCESS_ID_ENV)
    if auto:
        _native_output_to_stderr()
        jax.distributed.initialize()
        return jax.process_count() > 1
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if all(v is None for v in given.values()) or num_processes == 1:
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: missing, expected the coordinator (HOST:PORT), the number of "
                         f"processes and this process's index together (or {COORDINATOR_ENV}, {PROCESSES_ENV}, "
                         f"{PROCESS_ID_ENV})")
    if not 0 <= process_id < num_processes:
        name = PROCESS_ID_ENV if os.environ.get(PROCESS_ID_ENV) == str(process_id) else "process_id"
        raise ConfigError(name, process_id, f"0 to {num_processes - 1}")
    _native_output_to_stderr()
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def _native_output_to_stderr() -> None:
    """Send what native code writes to the standard output (the CPU collectives announce their
    connections there) to the standard error: ``sys.stdout`` keeps the real standard output,
    which then carries only jaxreg's results (one JSON object with ``--json``)."""
    sys.stdout.flush()
    results = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = os.fdopen(results, "w", buffering=1, encoding=sys.stdout.encoding)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: got {value!r}, expected an integer") from None


def is_main() -> bool:
    """True in the process that prints and writes (the first)."""
    return jax.process_index() == 0


def global_array(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """``host`` (the same on every process) as one array laid out by ``sharding``: each process
    puts the shards its own devices hold (``jax.device_put`` cannot reach other hosts)."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree):
    """Host NumPy copies of a pytree of (possibly sharded, possibly multi-host) arrays; typed keys
    stay typed keys (copied by their data)."""
    def copy(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(copy(jax.random.key_data(a)), impl=str(jax.random.key_impl(a)))
        if jax.process_count() > 1 and isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree_util.tree_map(copy, tree)


def agreed_min(value: int) -> int:
    """The smallest ``value`` over the processes, so that each decides the same shapes."""
    if jax.process_count() == 1:
        return value
    return int(np.min(multihost_utils.process_allgather(np.asarray(value, np.int64))))


def sync(name: str) -> None:
    """Wait until every process gets here (e.g. the first has written its files)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
