"""The timing gate on a real callable: unchanged code passes twice in a row, a 25% slowdown fails.

Each case runs an inner pytest process with timing enabled, whatever the outer run's options, and with
its own baseline directory under tmp_path. The inner test times a single-threaded numpy sort through the
same `timing_gate` fixture as the inference gates (loaded with `-p bench.gates.pytest_plugin`), so it
needs neither framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.gates import BASELINE_DIR_ENV, RECORD_ENV, THREADS_ENV
from bench.measure import RUN_TO_RUN_THRESHOLD

REPO_DIR = Path(__file__).resolve().parents[2]
GATE_NAME = "selftest/numpy-sort"
SLOWDOWN_ENV = "GATE_SELFTEST_SLOWDOWN"
INNER_TIMEOUT_S = 180

INNER_TEST = textwrap.dedent(
    f'''
    import os
    import time

    import numpy as np

    VALUES = np.random.default_rng(0).standard_normal(20_000)


    def with_slowdown(fn, fraction):
        """Call fn, then busy-wait `fraction` of the time that call took."""

        def slowed():
            start = time.perf_counter()
            fn()
            deadline = time.perf_counter() + fraction * (time.perf_counter() - start)
            while time.perf_counter() < deadline:
                pass

        return slowed


    def test_sort_gate(timing_gate):
        fn = lambda: np.sort(VALUES)
        slowdown = float(os.environ.get("{SLOWDOWN_ENV}", "0"))
        if slowdown:
            fn = with_slowdown(fn, slowdown)
        timing_gate.measure("{GATE_NAME}", fn, batch_size=1)
    '''
)


def run_inner(
    work_dir: Path, *, record: bool = False, slowdown: float = 0.0, timing: bool = True, threads: int | None = None
) -> subprocess.CompletedProcess:
    """Run the inner test once in a fresh pytest process, with its baselines under work_dir."""
    (work_dir / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (work_dir / "test_inner_gate.py").write_text(INNER_TEST, encoding="utf-8")

    # The outer run's gate settings and pytest options must not reach the inner run.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TWINBENCH_GATES_") and name != "PYTEST_ADDOPTS"
    }
    env[BASELINE_DIR_ENV] = str(work_dir / "baselines")
    env[RECORD_ENV] = "1" if record else "0"
    env[SLOWDOWN_ENV] = str(slowdown)
    if threads is not None:
        env[THREADS_ENV] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(path for path in (str(REPO_DIR), env.get("PYTHONPATH")) if path)
    # One BLAS and OpenMP thread, although np.sort uses neither, so that nothing else runs in parallel.
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})

    command = [
        sys.executable, "-m", "pytest", "test_inner_gate.py", "-p", "bench.gates.pytest_plugin",
        "-p", "no:cacheprovider", "-rs", "--benchmark-enable" if timing else "--benchmark-disable",
    ]  # fmt: skip
    return subprocess.run(
        command, check=False, cwd=work_dir, env=env, capture_output=True, text=True, timeout=INNER_TIMEOUT_S
    )


def output_of(result: subprocess.CompletedProcess) -> str:
    return f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"


def baseline_files(work_dir: Path) -> list[Path]:
    return sorted((work_dir / "baselines").glob("*.json"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A work directory whose baseline of the inner gate was recorded by one inner run."""
    work_dir = tmp_path_factory.mktemp("gate-selftest")
    result = run_inner(work_dir, record=True)
    assert result.returncode == 0, output_of(result)
    assert f"recorded: gate {GATE_NAME}" in result.stdout, output_of(result)
    return work_dir


def test_record_writes_baseline(recorded):
    files = baseline_files(recorded)
    assert len(files) == 1

    content = json.loads(files[0].read_text(encoding="utf-8"))
    entry = content["benchmarks"][GATE_NAME]
    assert content["hardware_fingerprint"] == files[0].stem
    assert set(content["fingerprint_inputs"]) == {"cpu_model", "logical_cores", "physical_cores", "timing_packages"}
    assert entry["median_s"] > 0
    assert entry["rounds"] == 50
    assert entry["threads"] >= 1
    assert entry["command"].startswith(f"{RECORD_ENV}=1 python -m pytest")
    assert "recorded_at" in entry


def test_unchanged_callable_passes_twice(recorded):
    for run in (1, 2):
        result = run_inner(recorded)
        assert result.returncode == 0, f"run {run}: {output_of(result)}"
        assert f"ok: gate {GATE_NAME}" in result.stdout, f"run {run}: {output_of(result)}"


def test_slowdown_of_25_percent_fails(recorded):
    assert RUN_TO_RUN_THRESHOLD < 0.25, "a threshold of 25% or more lets this slowdown pass"

    result = run_inner(recorded, slowdown=0.25)

    assert result.returncode == 1, output_of(result)
    assert f"REGRESSION: gate {GATE_NAME}" in result.stdout, output_of(result)
    assert "slower than the baseline" in result.stdout, output_of(result)
    assert "1 failed" in result.stdout, output_of(result)


def test_missing_baseline_skips_with_record_hint(tmp_path):
    result = run_inner(tmp_path)

    assert result.returncode == 0, output_of(result)
    assert "1 skipped" in result.stdout, output_of(result)
    assert f"no timing baseline for gate {GATE_NAME}" in result.stdout, output_of(result)
    assert f"{RECORD_ENV}=1 python -m pytest tests/benchmarks" in result.stdout, output_of(result)
    assert baseline_files(tmp_path) == []


def test_disabled_timing_calls_once_and_records_nothing(tmp_path):
    result = run_inner(tmp_path, record=True, timing=False)

    assert result.returncode == 0, output_of(result)
    assert "1 passed" in result.stdout, output_of(result)
    assert baseline_files(tmp_path) == []


def test_other_thread_count_skips_comparison(recorded):
    recorded_threads = json.loads(baseline_files(recorded)[0].read_text(encoding="utf-8"))["benchmarks"][GATE_NAME]["threads"]
    other_threads = recorded_threads + 1

    result = run_inner(recorded, threads=other_threads)

    assert result.returncode == 0, output_of(result)
    assert "1 skipped" in result.stdout, output_of(result)
    assert f"threads {recorded_threads} in the baseline, {other_threads} now" in result.stdout, output_of(result)
