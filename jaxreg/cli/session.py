"""A command's session: its inputs (data, validation options), its outputs (checked before anything
runs), its resources (memory, checked before anything compiles), JAX's start (backend, cores,
precision, hosts, compilation cache) and the library's run with its progress.

Imports stay inside the functions that need them (JAX, the data readers): bad input is answered
before JAX starts.
"""

from __future__ import annotations

import os
import sys

from jaxreg import validate
from jaxreg.cli import interrupt
from jaxreg.cli.flags import UsageError
from jaxreg.cli.output import FIGURE_RESOLUTION

BACKENDS = {"cpu": "cpu", "gpu": "cuda"}  # --device -> JAX_PLATFORMS


class Session:
    """One command's run: ``args``, whether JAX's runtime joined several processes (``hosts``),
    and whether this process is the one that prints and writes (:meth:`is_main`)."""

    def __init__(self, args):
        self.args = args
        self.hosts = False  # jaxreg.hosts initialised several processes

    def is_main(self) -> bool:
        """True unless this is one of several processes and not the first (which alone prints and writes)."""
        if not self.hosts:
            return True
        from jaxreg import hosts

        return hosts.is_main()

    def finish(self) -> None:
        """The other processes wait for the first's output."""
        if self.hosts:
            from jaxreg import hosts

            hosts.sync("jaxreg: done")

    def start_jax(self, *, device_per_core: bool = False, figure: bool = False):
        """Start JAX for the command, once the environment is checked (:func:`check_environment`,
        ``figure``: one will be drawn): the backend ``--device`` names, one host device per CPU core
        where asked (a sweep's members then run side by side, see :mod:`jaxreg.cores`), float64
        where asked, several processes where the flags say so, the compilation cache unless
        ``--no-cache``. Returns a :class:`~jaxreg.compilation.CompileClock`."""
        import warnings

        from jaxreg import cores

        args = self.args
        check_environment(figure)
        if getattr(args, "device", None):
            os.environ["JAX_PLATFORMS"] = BACKENDS[args.device]
        if device_per_core:
            cores.host_device_per_core()
        import jax

        from jaxreg import compilation

        if getattr(args, "precision", None) == "float64":
            jax.config.update("jax_enable_x64", True)
        if hasattr(args, "coordinator"):  # before anything starts a backend
            from jaxreg import hosts

            self.hosts = hosts.initialize(args.coordinator, args.num_processes, args.process_id,
                                          auto=args.distributed)
        _check_backend(jax, getattr(args, "device", None))
        if not args.no_cache:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                compilation.enable_cache()
            for w in caught:
                print(f"jaxreg: warning: {w.message}", file=sys.stderr)
        interrupt.check()
        return compilation.CompileClock()


def _check_backend(jax, device: str | None) -> None:
    """The backend asked for (``--device``, ``$JAX_PLATFORMS``, or ``$XLA_FLAGS``' devices) starts,
    with at least one device: else one line naming what asked for it, exit 2."""
    try:
        devices = jax.devices()
    except Exception as err:  # RuntimeError, or an assertion inside JAX for a platform with no plugin
        devices, why = [], (str(err).splitlines() or [type(err).__name__])[0]
    else:
        why = "no devices"
    if not devices:
        asked = f"--device {device}" if device else next(
            (f"{name}={os.environ[name]}" for name in ("JAX_PLATFORMS", "XLA_FLAGS") if os.environ.get(name)),
            "the default backend")
        raise UsageError(f"jaxreg: {asked}: no backend could start ({why}); expected one JAX can start with a "
                         "device (install jaxreg[cuda] for a GPU, or use --device cpu)") from None


_SHOWN = "±—λ·"  # characters jaxreg's tables and messages print


def check_environment(figure: bool = False) -> None:
    """Environment variables that would make a run end in a traceback, an abort or a half-written
    result, refused in one line naming the variable, before anything trains: JAX's NaN checks
    (jaxreg finds a cost that is not finite itself, and keeps the last finite state), ``XLA_FLAGS``
    items that are not flags (XLA would abort), an output encoding that cannot show jaxreg's
    output, and, for a figure, a ``MPLBACKEND`` that matplotlib refuses."""
    for name in ("JAX_DEBUG_NANS", "JAX_DEBUG_INFS"):
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off"):
            raise UsageError(f"jaxreg: {name}={os.environ[name]}: expected it unset (jaxreg finds a cost that is "
                             "not finite itself: exit 1, the last finite state kept)")
    for item in os.environ.get("XLA_FLAGS", "").split():
        if not item.startswith("--"):
            raise UsageError(f"jaxreg: XLA_FLAGS={os.environ['XLA_FLAGS']}: {item!r} is not a flag, expected "
                             "--name=value items (XLA would take it for a file of flags and abort)")
    encoding = os.environ.get("PYTHONIOENCODING")
    for stream in (sys.stdout, sys.stderr):
        try:
            _SHOWN.encode(stream.encoding or "utf-8")
        except (UnicodeEncodeError, LookupError):
            named = f"PYTHONIOENCODING={encoding}" if encoding else f"the output's encoding, {stream.encoding}"
            raise UsageError(f"jaxreg: {named}: expected an encoding that can write jaxreg's output ({_SHOWN!a}), "
                             "such as utf-8 (PYTHONIOENCODING=utf-8)") from None
    if figure and os.environ.get("MPLBACKEND"):
        try:
            import matplotlib  # noqa: F401  (reads MPLBACKEND)
        except ValueError as err:
            raise UsageError(f"jaxreg: MPLBACKEND={os.environ['MPLBACKEND']}: {str(err).splitlines()[0]}") from None


# ----------------------------------------------------------------------------- inputs


def dataset(args, test_split: float | None = None):
    """The data the flags name, with ``--test-split`` (or ``test_split``, a command's default for data
    without a test set) held out as the test set."""
    from jaxreg import data

    if args.test_data and not args.data:
        raise UsageError("jaxreg: --test-data goes with --data")
    if args.data and args.data_seed is not None and args.test_split is None:
        raise UsageError("jaxreg: --data-seed seeds a built-in --dataset or --test-split, expected one of them "
                         "with --data")
    seed = validate.seed(0 if args.data_seed is None else args.data_seed, "data_seed")
    dataset = data.load(args.data, test_path=args.test_data) if args.data else data.make_dataset(args.dataset,
                                                                                                 seed=seed)
    if args.test_split is not None or (test_split is not None and dataset.X_test is None):
        fraction = args.test_split if args.test_split is not None else test_split
        dataset = data.test_split(dataset, fraction, seed)
    _check_range(dataset, args, getattr(args, "precision", "float64"))
    interrupt.check()
    return dataset


def _check_range(dataset, args, dtype: str) -> None:
    """Features the run's dtype cannot hold (float32 overflows above 3.4e38) are bad input."""
    import numpy as np

    test = ("--test-data", args.test_data) if args.test_data else ("--data", args.data)
    for (flag, path), a in ((("--data", args.data), dataset.X), (test, dataset.X_test)):
        if a is not None and np.abs(a).max() > np.finfo(dtype).max:
            raise ValueError(f"{flag} {path}: got features up to {np.abs(a).max():.3g}, expected at most "
                             f"{np.finfo(dtype).max:.3g} ({dtype} overflows above): scale the features or use "
                             "--precision float64")


def validation_options(args, Y) -> dict:
    """The library's validation keywords from the flags (the validation file loaded), checked
    for the training labels ``Y`` before JAX starts."""
    from jaxreg import data, splits

    options = {"split_seed": validate.seed(args.split_seed, "split_seed")}
    if args.validation_data:
        held = data.load(args.validation_data)
        options["validation"] = (held.X, held.Y)
    if args.validation_split is not None:
        options["validation_split"] = validate.fraction(args.validation_split)
    if getattr(args, "folds", None) is not None:
        options["folds"] = args.folds
        if args.folds != 0:
            splits.check_folds(args.folds, Y)
    return options


# ----------------------------------------------------------------------------- outputs and resources


INPUTS = ("--data", "--test-data", "--validation-data")  # every file a command reads (a resumed checkpoint too)


def check_paths(args, outputs) -> None:
    """Every output path (``{flag: path}`` or pairs) checked before anything runs: a file's path
    (not a folder's), writable, a regular file or new, and not the same file as an input (every
    file the command reads) or another output."""
    from jaxreg import files

    inputs = {flag: getattr(args, flag[2:].replace("-", "_"), None) for flag in INPUTS}
    files.check_outputs(outputs, inputs)


def check_memory(config, dataset, figure: bool = False) -> None:
    """Refuse a run whose network does not fit in the device's memory, before anything is compiled
    (a failed allocation can hang in XLA): one run of ``config`` on the dataset (and a figure's grid)."""
    import jax
    import numpy as np

    from jaxreg import resources
    from jaxreg.resources import member_bytes

    sets = [a for a in (dataset.X, dataset.X_test) if a is not None]
    m = max([a.shape[1] for a in sets] + [FIGURE_RESOLUTION**2 if figure else 0])
    need = member_bytes(config.layer_dims, m, dtype=config.dtype, optimizer=config.optimizer,
                        n_steps=min(config.log_every, max(config.iterations, 1)))
    need += sum(a.size + a.shape[1] for a in sets) * np.dtype(config.dtype).itemsize
    limit, where = resources.device_memory(jax.devices()[0])
    resources.require(f"layers {list(config.layer_dims)} on {m} examples", need, limit, where,
                      "expected a smaller network (--layers) or fewer examples")


def check_sweep(args, config, dataset, members: int, mc_points: int) -> None:
    """A sweep's memory, before anything is compiled: its results on the host (``members`` runs),
    one member on the device, ``--memory-budget`` and the Monte Carlo figure (``mc_points``)."""
    import jax
    import numpy as np

    from jaxreg import resources
    from jaxreg.resources import member_bytes

    state = member_bytes(config.layer_dims, 0, dtype=config.dtype, optimizer=config.optimizer, n_steps=0)
    logged = -(-config.iterations // config.log_every) + 1
    resources.require(f"a sweep of {members} runs", resources.sweep_host_bytes(members, state, logged),
                      resources.host_memory(), "the host's memory", "expected fewer seeds or grid values")
    check_memory(config, dataset)
    limit, where = resources.device_memory(jax.devices()[0])
    if limit is not None and args.memory_budget is not None and args.memory_budget * 2**20 > limit:
        raise ValueError(f"--memory-budget: got {args.memory_budget:g} MiB, expected at most {limit // 2**20} MiB "
                         f"({where})")
    resources.require(f"--mc-samples {args.mc_samples}", 2 * args.mc_samples * mc_points *
                      np.dtype(config.dtype).itemsize, limit, where, "expected fewer samples")


# ----------------------------------------------------------------------------- the run


def fit(dataset, config, seed, progress, data_parallel: bool = False, **options):
    """:func:`jaxreg.train` on the dataset (``options``: its other keywords; with ``data_parallel``
    the examples split over every device), closing the progress bar however it ends; its user
    warnings (e.g. a learning rate changed on resuming) on stderr, one line each. A cost that is not
    finite before any update is bad input: no learning rate could help."""
    import warnings

    from jaxreg.errors import TrainingDiverged
    from jaxreg.training import train, train_data_parallel

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            run = train_data_parallel if data_parallel else train
            return run(dataset.X, dataset.Y, config, seed=seed, X_test=dataset.X_test, Y_test=dataset.Y_test,
                       on_chunk=progress, on_costs=progress.costs, **options)
    except TrainingDiverged as err:
        if err.iteration != 0:
            raise
        raise ValueError(
            f"the cost of the initial network is not finite (at iteration 0, before any update): the data or the "
            f"regularization overflow {config.dtype}; expected values it represents (scale the features, use a "
            "smaller --lambd or --precision float64)") from None
    finally:
        progress.close()
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"jaxreg: warning: {w.message}", file=sys.stderr)
