"""benchmarks/gpu_check.py (issue 21's acceptance check) at its smoke sizes, on the CPU, as CI runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = ["textbook", "steady_state", "sweep", "throughput", "gradcheck"]


def test_gpu_check_smoke_passes_and_reports_every_section(course_data, tmp_path):
    out = tmp_path / "gpu.json"
    # JAX's own settings for the suite's compilation cache (the script turns none on): a warm run
    # loads its programs instead of compiling them
    folder = os.environ.get("JAXREG_CACHE_DIR")
    cache = {"JAX_COMPILATION_CACHE_DIR": folder, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"} if folder else {}
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **cache}
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASSED" in done.stdout

    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["passed"] is True and report["failed"] == []
    env = report["environment"]
    assert env["backend"] == "cpu" and env["device_count"] >= 1 and env["device_kind"]
    assert env["packages"]["jax"] and env["packages"]["jaxlib"]
    assert list(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("error"))
        assert section["method"] and section["section_seconds"] > 0

    textbook = report["sections"]["textbook"]
    assert [row["run"] for row in textbook["rows"]] == ["no regularization", "L2, lambd 0.7", "dropout, keep_prob 0.86"]
    assert textbook["passed"] and all(row["passed"] for row in textbook["rows"])
    assert all(row["worst_cost_difference"] <= 1e-9 for row in textbook["rows"])

    steady = report["sections"]["steady_state"]["regimes"]
    assert set(steady) == {"none", "L2", "dropout"}
    assert all(r["us_per_iteration"]["median"] > 0 for r in steady.values())

    sweep = report["sections"]["sweep"]
    assert sweep["members"] == 4 and sweep["diverged"] == 0 and sweep["us_per_member_step"] > 0

    scale = report["sections"]["throughput"]
    assert scale["peak_flops_per_second"]["default"] > 0
    assert all(r["flops_per_second"] > 0 and r["share_of_peak"] > 0 for r in scale["sizes"])

    gradcheck = report["sections"]["gradcheck"]
    assert gradcheck["passed"] and [r["passed"] for r in gradcheck["rows"]] == [True, True]


def test_one_host_device_per_core_only_where_the_run_is_on_the_cpu(monkeypatch):
    """The CPU-only setting steps aside on an accelerator: named first in JAX_PLATFORMS, or (none named)
    found installed as a JAX plugin, JAX will use it, and XLA_FLAGS is left as it was."""
    from jaxreg import cores

    assert cores.on_cpu("cpu") and cores.on_cpu("cpu,cuda")
    assert not cores.on_cpu("cuda") and not cores.on_cpu("tpu,cpu") and not cores.on_cpu("rocm")
    monkeypatch.setattr(cores.importlib.util, "find_spec", lambda name: name == "jax_cuda12_plugin" or None)
    assert not cores.on_cpu("")  # nothing named, a CUDA plugin installed: JAX takes the GPU
    monkeypatch.setattr(cores.importlib.util, "find_spec", lambda name: None)
    assert cores.on_cpu("")
    monkeypatch.delitem(sys.modules, "jax")  # as before JAX starts
    monkeypatch.setattr(cores, "count", lambda: 4)
    for platforms, asked in (("cuda", False), ("cpu", True)):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
        assert cores.host_device_per_core() is asked
        assert (cores.DEVICE_COUNT_FLAG in os.environ["XLA_FLAGS"]) is asked
