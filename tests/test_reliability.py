"""Reliability (issue 13): nothing the user names is destroyed, no hang, no traceback, the
documented exit status every time. Command-line cases run as a user runs them, in a fresh
process; bad input must be answered before JAX starts (so before any training)."""

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_output import NOTES, verdicts
from running import Running

from jaxreg import checkpoint, files
from jaxreg.cli import main
from jaxreg.config import TrainConfig
from jaxreg.sweep import sweep
from jaxreg.training import train

QUICK = ["--iterations", "50", "--log-every", "50"]
BEFORE_JAX = """
import sys
from jaxreg.cli import main
code = main(sys.argv[1:])
print(code, "jax" in sys.modules)
"""


def write_data(folder, m=40, scale=1.0, name="data.npz"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(m, 2)) * scale
    y = (X[:, :1] * X[:, 1:] > 0).astype(np.uint8)
    path = folder / name
    np.savez(path, X=X, y=y)
    return path


def jaxreg_cli(*argv, timeout=120, cwd=None):
    """``python -m jaxreg.cli ARGV`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "jaxreg.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def refused(*argv, message, cwd=None):
    """``jaxreg ARGV`` exits 2 with one line naming ``message``, before JAX starts (nothing trained)."""
    done = subprocess.run([sys.executable, "-c", BEFORE_JAX, *map(str, argv)], capture_output=True, text=True,
                          timeout=60, cwd=cwd)
    assert done.stdout.split()[-2:] == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    return done.stderr


def failed(done, message, status=2):
    """A finished command: ``status`` and one line on stderr naming ``message`` (beside its progress)."""
    err = verdicts(done.stderr)
    assert done.returncode == status and err.count("\n") == 1, done.stderr
    assert message in err and "Traceback" not in done.stderr, done.stderr
    return err


# ----------------------------------------------------------------------------- 1, 2: files the user names


def test_non_regular_outputs_are_refused_and_left_alone(tmp_path):
    data = write_data(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "to_fifo").symlink_to(fifo)
    cases = {fifo: "is a fifo", tmp_path / "sock": "is a socket", tmp_path / "folder": "is a directory",
             tmp_path / "to_fifo": "a symbolic link to"}
    try:
        os.mknod(tmp_path / "mynull", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        cases[tmp_path / "mynull"] = "is a character device"
    except PermissionError:
        pass  # not root: no device node to try
    for path, message in cases.items():
        flag = "--plot" if path.name == "folder" else "--save"
        refused("train", "--data", data, *QUICK, flag, path, message=message)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISSOCK(os.lstat(tmp_path / "sock").st_mode)
    assert os.path.islink(tmp_path / "to_fifo")
    if tmp_path / "mynull" in cases:
        assert stat.S_ISCHR(os.stat(tmp_path / "mynull").st_mode)
    refused("compare", "--data", data, "--plot", fifo, message="is a fifo")
    refused("sweep", "--data", data, "--out", data / "x", message=f"{data} is a regular file, expected a folder")


def test_a_pipe_behind_proc_self_fd_is_refused(tmp_path):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")  # the command's stdout, a pipe here
    if not os.path.exists("/proc/self/fd/1"):
        pytest.skip("no /proc")
    refused("train", "--data", write_data(tmp_path), *QUICK, "--plot", link, message="is a fifo")


def test_a_symbolic_link_to_a_regular_file_is_written_through(tmp_path):
    target = tmp_path / "real" / "run.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    files.atomic_write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link is kept
    assert target.read_bytes() == b"new" and stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert not [p for p in (tmp_path / "real").iterdir() if p.name.endswith(".tmp")]


def test_outputs_that_are_inputs_or_each_other_are_refused(tmp_path):
    data = write_data(tmp_path)
    original = data.read_bytes()
    (tmp_path / "via_link.npz").symlink_to(data)
    os.link(data, tmp_path / "hard.npz")
    cases = [
        (["--checkpoint", data], "--checkpoint"),
        (["--save", data], "--save"),
        (["--save", tmp_path / "via_link.npz"], "via_link.npz: is the same file as --data"),
        (["--plot", tmp_path / "hard.npz"], "hard.npz: is the same file as --data"),
        (["--checkpoint", tmp_path / "s.npz", "--save", tmp_path / "s.npz"], "is the same file as --checkpoint"),
        (["--save", tmp_path / "p.png", "--plot", tmp_path / "sub" / ".." / "p.png"], "is the same file as --save"),
    ]
    for flags, message in cases:
        refused("train", "--data", data, *QUICK, *flags, message=message)
    refused("compare", "--data", data, "--plot", data, message="--plot")
    csv = tmp_path / "out" / "sweep.csv"
    csv.parent.mkdir()
    csv.write_text("1,2,1\n2,1,0\n")
    refused("sweep", "--data", csv, "--out", csv.parent, message="--out")
    assert data.read_bytes() == original and csv.read_text() == "1,2,1\n2,1,0\n"


# ----------------------------------------------------------------------------- 3: another run's checkpoint


def test_an_existing_checkpoint_is_replaced_only_with_overwrite(tmp_path, capsys):
    data = write_data(tmp_path)
    ckpt = tmp_path / "prior.npz"
    dataset = np.load(data)
    train(dataset["X"].T, dataset["y"].T, [2, 4, 1], iterations=300, log_every=100, checkpoint=ckpt)
    before = ckpt.read_bytes()
    refused("train", "--data", data, *QUICK, "--checkpoint", ckpt, message="--resume to continue it or --overwrite")
    refused("train", "--data", data, *QUICK, "--checkpoint", ckpt, "--resume", "--overwrite", message="expected one")
    refused("train", "--data", data, *QUICK, "--overwrite", message="need --checkpoint")
    assert ckpt.read_bytes() == before
    assert main(["train", "--data", str(data), *QUICK, "--checkpoint", str(ckpt), "--overwrite"]) == 0
    tree, _ = checkpoint.load(ckpt)
    assert int(tree[".step"]) == 50
    capsys.readouterr()


# ----------------------------------------------------------------------------- 4, 8: signals
#
# Each case waits for the state it signals into, never for a length of time: the command's handlers
# in place (/proc/PID/status), JAX loading (jaxlib mapped into the process, /proc/PID/maps), or a
# line the command prints on stderr (its first progress line: training; a checkpoint note; its last
# progress line: after it, the command writes its files). What follows each sign lasts far longer
# than sending a signal takes, so the signal reaches a process still in that phase, and every case
# ends with 130 and one line, loaded machine or not.

PROGRESS_LINE = r": (member )?iterations? \d+/\d+"  # the first progress line: a chunk trained
SIGNAL_RUNS = int(os.environ.get("JAXREG_SIGNAL_RUNS", "1"))  # runs per case; more hunt races


def signalled(argv, sig, until, cwd, entry="module", timeout=120):
    """Run ``jaxreg ARGV``, wait ``until`` it is in a phase ("handlers", "jax" or a stderr line's
    pattern), send ``sig``: (status, stderr without its progress lines and checkpoint notes, whether
    the signal reached a running process)."""
    command = Running(argv, cwd, entry)
    try:
        command.wait(until)
        running = command.send(sig)
    finally:
        status, err = command.finish(timeout)
    return status, verdicts(err), running


def assert_interrupted_truthfully(status, err, running, folder, checkpoint_path=None):
    """The signal reached the command, which ended with 130 and one line; the checkpoint is what the
    line says; no temporary file is left."""
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert running, "the command had ended before the signal"
    assert status == 130 and err.count("\n") == 1 and err.startswith("jaxreg: interrupted"), (status, err)
    if checkpoint_path is not None:
        if "no checkpoint was written" in err:
            assert not checkpoint_path.exists()
        elif "iteration" in err:
            step = int(err.split("(iteration ")[1].split(")")[0])
            assert int(checkpoint.load(checkpoint_path)[0][".step"]) == step
    assert not [p for p in folder.rglob("*.tmp")]


LONG = ["--iterations", "100000000", "--log-every", "500"]  # never ends on its own
SHORT = ["--iterations", "2000", "--log-every", "500"]
TRAIN = ["--checkpoint", "ck.npz", "--checkpoint-every", "1000", "--plot", "p.png", "--save", "s.npz", "--overwrite"]
SWEEP = ["--lambd", "0", "0.5", "--out", "o"]
# One case per phase, one command per phase where the commands share its path: start-up (the
# handlers, the flags, the data, up to importing JAX) and JAX's start (import, backend, compiling) are
# the same code for every command; training runs train's and compare's runs through one driver, a
# sweep's members through another (train's own training phase: the two tests after this one); each
# command writes its own files. SIGINT and SIGTERM, the console script and `python -m jaxreg.cli`
# alternate over the cases.
PHASES = {
    "start-up": (["train", *LONG, *TRAIN], "handlers", signal.SIGTERM, "script"),
    "jax-start": (["compare", *LONG, "--plot", "c.png"], "jax", signal.SIGINT, "module"),
    "training-sweep": (["sweep", *LONG, *SWEEP], PROGRESS_LINE, signal.SIGTERM, "script"),
    "writing-train": (["train", *SHORT, *TRAIN], r"^training: iteration 2000/2000,", signal.SIGTERM, "module"),
    "writing-compare": (["compare", *SHORT, "--plot", "c.png"], r"^dropout, keep_prob [\d.]+: iteration 2000/2000,",
                        signal.SIGINT, "script"),
    "writing-sweep": (["sweep", *SHORT, *SWEEP], r"^sweep: member iterations (\d+)/\1,", signal.SIGINT, "module"),
}


@pytest.mark.parametrize("argv,until,sig,entry", PHASES.values(), ids=PHASES.keys())
def test_a_signal_in_each_phase_ends_the_command_with_130_and_one_line(tmp_path, argv, until, sig, entry):
    """JAXREG_SIGNAL_RUNS=50 hunts races."""
    for run in range(SIGNAL_RUNS):
        folder = tmp_path / str(run)
        folder.mkdir()
        status, err, running = signalled(argv, sig, until, folder, entry)
        assert_interrupted_truthfully(status, err, running, folder, folder / "ck.npz")
        if argv[0] == "train":  # its parameters and figure: both written, or neither
            assert (folder / "s.npz").exists() == (folder / "p.png").exists()


def test_sigterm_before_the_first_save_says_no_checkpoint_was_written(tmp_path):
    ckpt = tmp_path / "lat.npz"
    argv = ["train", "--iterations", "100000000", "--log-every", "1000", "--checkpoint", ckpt,
            "--checkpoint-every", "90000000"]
    status, err, running = signalled(argv, signal.SIGTERM, PROGRESS_LINE, tmp_path)  # training, before any save
    assert running and status == 130
    assert err == f"jaxreg: interrupted; no checkpoint was written to {ckpt} (interrupted before the first save)\n"
    assert not ckpt.exists()


def test_training_stops_at_the_next_chunk_and_names_its_last_checkpoint(tmp_path):
    from jaxreg.cli.interrupt import GRACE

    ckpt = tmp_path / "ck.npz"
    command = Running(["train", "--iterations", "100000000", "--log-every", "200", "--checkpoint", ckpt,
                       "--checkpoint-every", "200"], tmp_path)
    try:
        command.wait_for_line(NOTES[0])  # a checkpoint written: training, between saves
        sent = time.monotonic()
        assert command.send(signal.SIGINT)
    finally:
        status, err = command.finish(60)
    # A safe point after each chunk (milliseconds), not the watchdog's grace (which ends the process
    # no sooner than GRACE after the signal)
    assert time.monotonic() - sent < GRACE
    notes = [line for line in err.splitlines() if line.startswith(NOTES[0])]
    err = verdicts(err)
    assert status == 130 and err.count("\n") == 1, err
    step = int(checkpoint.load(ckpt)[0][".step"])
    assert err == f"jaxreg: interrupted; the last complete checkpoint (iteration {step}) is kept in {ckpt}\n"
    assert notes[-1] == f"{NOTES[0]}{step} ({ckpt})"  # the last save it said it wrote


IN_A_CHUNK = """
import sys
from jaxreg import members
from jaxreg.cli import main

dispatch = members.run_chunk


def run_chunk(*args, **kwargs):
    out = dispatch(*args, **kwargs)  # compiled and dispatched: the chunk runs while this returns
    print("test: a chunk is running", file=sys.stderr, flush=True)
    return out


members.run_chunk = run_chunk
main()
"""


def test_a_signal_in_a_long_compiled_chunk_ends_the_process_within_the_grace(tmp_path):
    argv = ["train", "--iterations", "1000000000", "--log-every", "1000000000"]  # one chunk: minutes
    command = Running(argv, tmp_path, code=IN_A_CHUNK)
    try:
        command.wait_for_line("^test: a chunk is running")
        sent = time.monotonic()
        assert command.send(signal.SIGINT)
    finally:
        status, err = command.finish(30)
    assert status == 130 and err == "test: a chunk is running\njaxreg: interrupted\n", (status, err)
    assert time.monotonic() - sent < 10  # the watchdog's grace (a second), not the chunk's minutes


# ----------------------------------------------------------------------------- 5: stale temporary files


def test_stale_temporary_files_of_ours_are_removed_on_the_next_write(tmp_path):
    import fcntl

    target = tmp_path / "ck.npz"
    old = time.time() - files.STALE_SECONDS - 60
    stale, young, locked = (tmp_path / f".ck.npz.{name}.tmp" for name in ("abcd_123", "efgh4567", "ijkl8901"))
    others = [tmp_path / ".ck.npz.short.tmp", tmp_path / ".other.npz.abcd1234.tmp", tmp_path / "ck.npz.abcd1234.tmp"]
    for path in (stale, young, locked, *others):
        path.write_bytes(b"partial")
        if path is not young:
            os.utime(path, (old, old))
    holder = os.open(locked, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a writer still at work
    try:
        files.atomic_write(target, b"new")
    finally:
        os.close(holder)
    assert not stale.exists() and young.exists() and locked.exists() and all(p.exists() for p in others)
    assert target.read_bytes() == b"new"


KILLED_WRITER = """
import sys
from jaxreg.files import atomic_write
print("ready", flush=True)
while True:
    atomic_write(sys.argv[1], bytes(8 * 2**20))
"""


def test_temporary_files_left_by_sigkill_are_removed_once_stale(tmp_path):
    target = tmp_path / "big.bin"
    leftovers = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(0.2)
        proc.kill()
        proc.wait()
        leftovers += [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    if not leftovers:
        pytest.skip("no SIGKILL landed inside a write in 3 tries")
    files.atomic_write(target, b"x")  # not stale yet: kept
    assert all(p.exists() for p in leftovers)
    old = time.time() - files.STALE_SECONDS - 1
    for p in leftovers:
        os.utime(p, (old, old))
    files.atomic_write(target, b"y")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] and target.read_bytes() == b"y"


# ----------------------------------------------------------------------------- 6, 9: memory, before compiling


def test_a_network_larger_than_memory_is_refused_before_compiling(tmp_path):
    start = time.monotonic()
    done = jaxreg_cli("train", "--data", write_data(tmp_path), *QUICK, "--layers", "100000,100000", timeout=120)
    failed(done, "needs about 149 GiB of memory, more than")
    assert time.monotonic() - start < 60


def test_memory_limits_come_from_the_device_where_it_reports_them():
    from jaxreg import resources

    class Device:
        device_kind = "H100"

        def memory_stats(self):
            return {"bytes_limit": 80 * 2**30}

    assert resources.device_memory(Device()) == (80 * 2**30, "the memory of device H100")
    assert resources.device_memory(jax.devices("cpu")[0]) == (resources.host_memory(), "the host's memory")
    with pytest.raises(resources.MemoryLimit, match=r"x needs about 2 GiB of memory, more than y \(1 GiB\); z"):
        resources.require("x", 2 * 2**30, 2**30, "y", "z")
    resources.require("x", 2 * 2**30, None, "y", "z")  # unknown: no refusal


def test_huge_sweeps_are_refused_at_once(tmp_path):
    data = write_data(tmp_path)
    start = time.monotonic()
    failed(jaxreg_cli("sweep", "--data", data, *QUICK, "--seeds", "100000000", "--folds", "0", "--out", tmp_path),
           "a sweep of 100000000 runs needs about")
    failed(jaxreg_cli("sweep", "--data", data, *QUICK, "--keep-prob", "0.8", "--mc-samples", "100000000",
                      "--out", tmp_path), "--mc-samples 100000000 needs about")
    assert time.monotonic() - start < 30 and not (tmp_path / "sweep.json").exists()
    X, Y = np.load(data)["X"].T, np.load(data)["y"].T
    with pytest.raises(ValueError, match="seeds: got 1000000000000, expected a count >= 1 and <="):
        sweep(X, Y, [2, 3, 1], seeds=10**12, iterations=10)


def test_a_sweep_writes_all_its_files_or_none(tmp_path, monkeypatch, capsys):
    from jaxreg import plotting

    def broken(*args, **kwargs):
        raise ValueError("the uncertainty figure failed")

    monkeypatch.setattr(plotting, "uncertainty_figure", broken)
    out = tmp_path / "out"
    argv = ["sweep", "--data", str(write_data(tmp_path)), *QUICK, "--keep-prob", "0.8", "--mc-samples", "2",
            "--out", str(out)]
    assert main(argv) == 2
    assert "the uncertainty figure failed" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


# ----------------------------------------------------------------------------- 7: no traceback


@pytest.mark.parametrize("argv,message", [
    (["train", "--iterations", "3000000000", "--log-every", "3000000000"], "iterations: got 3000000000"),
    (["train", "--iterations", "100000000000000", "--log-every", "1000"], "iterations: got 100000000000000"),
    (["train", "--iterations", "2147483700", "--log-every", "2147483600"], "<= 2147483647"),
    (["train", "--seed", "99999999999999999999999"], "--seed: got 99999999999999999999999"),
    (["sweep", "--seeds", "99999999999999999999"], "--seeds: got 99999999999999999999"),
    (["sweep", "--seeds", "3", "99999999999999999999"], "< 2**64"),
    (["sweep", "--seeds", "0:99999999999999999999"], "--seeds: got 0:99999999999999999999"),
    (["sweep", "--memory-budget", "inf"], "--memory-budget: got inf"),
    (["sweep", "--mc-samples", "-1"], "--mc-samples: got -1"),
], ids=["iterations_overflow", "iterations_huge", "iterations_int32", "seed", "seeds_count", "seeds_list",
        "seeds_range", "memory_budget_inf", "mc_samples"])
def test_former_tracebacks_are_one_line_before_jax(tmp_path, argv, message):
    refused(*argv, "--out", tmp_path, message=message) if argv[0] == "sweep" else refused(*argv, message=message)


def test_library_seeds_beyond_64_bits_are_refused():
    X, Y = np.ones((2, 4)), np.array([[0.0, 1, 0, 1]])
    with pytest.raises(ValueError, match="seed: got 10000000000000000000000000000000"):
        train(X, Y, [2, 3, 1], seed=10**31, iterations=1)
    with pytest.raises(ValueError, match=r"seeds: got 18446744073709551616, expected an integer >= 0 and < 2\*\*64"):
        sweep(X, Y, [2, 3, 1], seeds=[1, 2**64], iterations=1)


def forge(path, change):
    """Rewrite the checkpoint at ``path`` with ``change(meta)`` applied and the checksum recomputed."""
    entries = dict(np.load(path, allow_pickle=False))
    meta = json.loads(entries.pop("jaxreg_meta").tobytes())
    change(meta)
    meta.pop("sha256", None)
    arrays = [entries[f"leaf_{i}"] for i in range(len(entries))]
    meta["sha256"] = checkpoint._checksum(meta, arrays)
    np.savez(path, jaxreg_meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **entries)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def run_checkpoint(tmp_path):
    X, Y = np.random.default_rng(0).normal(size=(2, 30)), (np.arange(30) % 2)[None].astype(float)
    path = tmp_path / "run.npz"
    train(X, Y, [2, 4, 1], iterations=20, log_every=10, checkpoint=path)
    return path, X, Y


@pytest.mark.parametrize("change,message", [
    (lambda m: m.pop("leaves"), "no 'leaves'"),
    (lambda m: m.update(leaves=7), "metadata 'leaves': got 7, expected a list"),
    (lambda m: m["leaves"].__setitem__(0, "x"), r"leaves\[0\]: got 'x', expected a JSON object"),
    (lambda m: m["leaves"][0].pop("shape"), r"leaves\[0\]\['shape'\]: got None"),
    (lambda m: m["leaves"][0].update(path=3), r"leaves\[0\]\['path'\]: got 3, expected a string"),
    (lambda m: m["leaves"][0].update(storage="pickle"), "expected one of array, raw_bytes, key_data"),
    (lambda m: m.update(config=[1]), "metadata 'config': got \\[1\\]"),
    (lambda m: m["config"].update(deep=nested(40)), "nested more than 32 levels"),
], ids=["no_leaves", "leaves_int", "leaf_str", "no_shape", "path_int", "storage", "config_list", "deep"])
def test_forged_metadata_with_a_valid_checksum_is_refused_in_words(run_checkpoint, change, message):
    path, _, _ = run_checkpoint
    forge(path, change)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(path)


def test_metadata_nested_100000_deep_is_refused(run_checkpoint):
    path, _, _ = run_checkpoint
    entries = dict(np.load(path, allow_pickle=False))
    entries["jaxreg_meta"] = np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8)
    np.savez(path, **entries)
    with pytest.raises(checkpoint.CheckpointError, match="nested too deeply"):
        checkpoint.load(path)


@pytest.mark.parametrize("history,message", [
    (7, "malformed history"),
    ({"iterations": [0, 10], "costs": [0.5], "clean_costs": [0.5, 0.4]}, "malformed history"),
    ({"iterations": [10, 0], "costs": [0.5, 0.4], "clean_costs": [0.5, 0.4]}, "ascending"),
    ({"iterations": [0, 10], "costs": ["a", 0.4], "clean_costs": [0.5, 0.4]}, "lists of numbers"),
], ids=["int", "lengths", "order", "strings"])
def test_forged_history_is_refused_on_resume(run_checkpoint, history, message):
    path, X, Y = run_checkpoint
    forge(path, lambda m: m["config"].update(history=history))
    with pytest.raises(checkpoint.CheckpointError, match=message):
        train(X, Y, [2, 4, 1], iterations=40, log_every=10, checkpoint=path, resume=True)


def test_forged_checkpoint_on_the_command_line_is_one_line(tmp_path):
    data = write_data(tmp_path)
    X, Y = np.load(data)["X"].T, np.load(data)["y"].T.astype(float)
    path = tmp_path / "run.npz"
    train(X, Y, [2, 20, 3, 1], iterations=50, log_every=50, checkpoint=path)
    forge(path, lambda m: m["config"].update(history=7))
    failed(jaxreg_cli("train", "--data", data, "--iterations", "100", "--log-every", "50", "--checkpoint", path,
                      "--resume"), "malformed history")


# ----------------------------------------------------------------------------- 11: values the dtype cannot hold


def test_values_float32_cannot_hold_are_bad_input(tmp_path):
    data = write_data(tmp_path)
    refused("train", "--data", data, "--lambd", "1e308", message="--lambd: got 1e+308, expected at most 3.4e+38")
    refused("train", "--data", data, "--keep-prob", "1e-320",
            message="--keep-prob: got 1e-320, expected at least 2**-16")
    refused("train", "--data", data, "--learning-rate", "1e-50", message="--learning-rate: got 1e-50")
    refused("train", "--data", write_data(tmp_path, scale=1e39, name="huge.npz"),
            message="--data " + str(tmp_path / "huge.npz") + ": got features up to")
    assert TrainConfig((2, 3, 1), lambd=1e308, dtype="float64").lambd == 1e308  # float64 holds it


def test_a_first_cost_that_is_not_finite_is_bad_input_not_divergence(tmp_path):
    done = jaxreg_cli("train", "--data", write_data(tmp_path), *QUICK, "--lambd", "3.4e38", "--layers", "100")
    failed(done, "the cost of the initial network is not finite (at iteration 0, before any update)")


# ----------------------------------------------------------------------------- 12: resuming


def test_resume_refuses_another_seed_and_allows_another_learning_rate(tmp_path, capsys):
    data = write_data(tmp_path)
    ckpt = tmp_path / "ck.npz"
    common = ["train", "--data", str(data), "--log-every", "50", "--checkpoint", str(ckpt)]
    assert main(common + ["--iterations", "100", "--seed", "0"]) == 0
    assert main(common + ["--iterations", "200", "--seed", "5", "--resume"]) == 2
    assert "its run started from seed 0, this run's from seed 5" in capsys.readouterr().err
    assert main(common + ["--iterations", "100", "--learning-rate", "3000", "--lambd", "2", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "--resume and a smaller --learning-rate" in err
    assert main(common + ["--iterations", "200", "--learning-rate", "0.01", "--lambd", "2", "--resume",
                          "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["config"]["learning_rate"] == 0.01
    assert captured.err.startswith("jaxreg: warning: checkpoint") and captured.err.count("\n") == 1
    assert "with learning_rate 0.01 (its run used 3000.0 before)" in captured.err


# ----------------------------------------------------------------------------- 13: the library's boundary


def test_nan_parameters_complex_data_and_key_batches_are_refused():
    from jaxreg import accuracy, dropout_masks, init_params, loss, predict, predict_proba

    params = init_params(jax.random.key(0), [2, 3, 1])
    X, Y = jnp.ones((2, 4)), jnp.array([[0.0, 1, 0, 1]])
    nan = {**params, "W1": np.asarray(params["W1"]).copy()}
    nan["W1"][0, 0] = np.nan

    for f in (predict, predict_proba, lambda p, X: accuracy(p, X, Y), lambda p, X: loss(p, X, Y)):
        with pytest.raises(ValueError, match=r"params\['W1'\]: got NaN or infinite values \(1 of 6\)"):
            f(nan, X)
    with pytest.raises(TypeError, match="X: got dtype complex128, expected real numbers"):
        train(np.ones((2, 4)) + 1j, np.asarray(Y), [2, 3, 1], iterations=1)
    with pytest.raises(TypeError, match="a batch of keys of shape"):
        dropout_masks(jax.random.split(jax.random.key(0), 3), [2, 3, 1], 4, 0.5)


def test_predict_proba_refuses_features_float32_cannot_hold():
    code = ("import jax, numpy as np, jaxreg\n"
            "p = jaxreg.init_params(jax.random.key(0), [2, 3, 1])\n"
            "X = np.random.default_rng(0).normal(size=(2, 5))\n"
            "try:\n    jaxreg.predict_proba(p, X * 3e38)\nexcept ValueError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "overflows float32, scale the features), expected finite numbers" in done.stdout, done.stdout + done.stderr


def test_numpy_and_jax_scalars_and_arrays_are_accepted(tmp_path):
    config = TrainConfig((2, 3, 1), learning_rate=jnp.float32(0.5), lambd=np.float64(0.1),
                         iterations=jnp.int32(20), log_every=np.int64(10))
    assert (config.learning_rate, config.iterations, config.log_every) == (0.5, 20, 10)
    X, Y = np.random.default_rng(0).normal(size=(2, 30)), (np.arange(30) % 2)[None].astype(float)
    run = train(X, Y, config, seed=jnp.uint32(3), checkpoint=tmp_path / "c.npz", checkpoint_every=np.int64(10))
    assert run.train_accuracy == train(X, Y, config, seed=3).train_accuracy
    options = dict(iterations=20, log_every=10, folds=0)  # every sweep below: 4 members, one program
    grid = sweep(X, Y, [2, 3, 1], lambd=jnp.array([0.0, 0.5]), keep_prob=np.array([1.0]), seeds=jnp.array([0, 1]),
                 **options)
    plain = sweep(X, Y, [2, 3, 1], lambd=[0.0, 0.5], keep_prob=[1.0], seeds=[0, 1], **options)
    np.testing.assert_array_equal(grid.train_accuracy, plain.train_accuracy)
    assert sweep(X, Y, [2, 3, 1], lambd=jnp.float32(0.5), seeds=jnp.int32(4), **options).lambd.tolist() == [0.5] * 4


# ----------------------------------------------------------------------------- 14: messages name the path and cause


def test_data_that_is_not_a_regular_file_is_named_without_hanging(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    refused("train", "--data", fifo, message=f"{fifo}: is a fifo (named pipe), expected a data file")
    refused("train", "--data", "/dev/zero", message="/dev/zero: is a character device, expected a data file")
    with pytest.raises(checkpoint.CheckpointError, match="is a fifo"):
        checkpoint.load(fifo)


def test_a_sparse_matrix_in_a_mat_file_is_read_dense(tmp_path):
    from scipy import io as sio
    from scipy import sparse

    from jaxreg import data

    X = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5], [1.5, 0.0]])
    sio.savemat(tmp_path / "d.mat", {"X": sparse.csr_matrix(X), "y": np.array([[0], [1], [0], [1]])})
    np.testing.assert_array_equal(data.load(tmp_path / "d.mat").X, X.T)
    sio.savemat(tmp_path / "c.mat", {"X": np.array([[1, "a"]], dtype=object), "y": np.array([[0], [1]])})
    with pytest.raises(ValueError, match="c.mat: X: a MATLAB cell array, struct or object, expected a numeric"):
        data.load(tmp_path / "c.mat")


def test_a_full_disk_names_the_path(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"\[Errno 28\] .*ck\.npz: cannot be written: No space left on device"):
        files.atomic_write(tmp_path / "ck.npz", b"data")
    assert not list(tmp_path.iterdir())


FILE_SIZE_LIMIT = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.argv = ["jaxreg", *sys.argv[1:]]
runpy.run_module("jaxreg.cli", run_name="__main__")
"""


def test_a_write_that_fails_names_the_users_path(tmp_path):
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, "train", *QUICK, "--layers", "64,64", "--save",
                           str(tmp_path / "p.npz")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAXREG_CACHE_DIR": ""})
    failed(done, f"{tmp_path / 'p.npz'}: cannot be written: File too large")
    assert not list(tmp_path.iterdir())


def test_output_paths_and_figures_are_checked_before_training(tmp_path):
    rows = np.column_stack([np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2])
    np.savetxt(tmp_path / "f3.csv", rows, delimiter=",")
    refused("train", "--data", tmp_path / "f3.csv", "--plot", tmp_path / "x.png", "--save", tmp_path / "p.npz",
            message="--plot: the data has 3 features, expected 2")
    blocker = tmp_path / "file"
    blocker.write_text("")
    refused("compare", "--plot", blocker / "c.png", message=f"{blocker} is a regular file, expected a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f3.csv", "file"]
