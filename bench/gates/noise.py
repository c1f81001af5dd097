"""Measure the run-to-run noise of the timing gates on this machine.

    python -m bench.gates.noise --runs 5

Records a baseline into a fresh directory with one run of the gates, then runs the gates `--runs` more
times back to back against it, each run a separate `python -m pytest` process. For every gate it prints
each run's median divided by the baseline's: the gate's value (the lowest of its attempts) and its
first attempt's. The largest slowdown of the gates' values is the noise that
bench.measure.RUN_TO_RUN_THRESHOLD must stay above. Unchanged code is timed every time, so each
deviation is noise: other processes, CPU frequency, cache and memory placement.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.gates.baselines import BASELINE_DIR_ENV, RECORD_ENV, THREADS_ENV
from bench.measure import RUN_TO_RUN_THRESHOLD

log = logging.getLogger("bench.gates.noise")

REPO_DIR = Path(__file__).resolve().parents[2]
GATES_PATH = "tests/benchmarks/test_inference_gates.py"


def run_gates(baseline_dir: Path, json_path: Path, record: bool) -> int:
    """Run the timing gates once in a pytest process; return its exit code."""
    env = dict(os.environ)
    env[BASELINE_DIR_ENV] = str(baseline_dir)
    env[RECORD_ENV] = "1" if record else "0"
    command = [
        sys.executable, "-m", "pytest", GATES_PATH, "--benchmark-enable", f"--benchmark-json={json_path}",
        "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    completed = subprocess.run(command, check=False, cwd=REPO_DIR, env=env, capture_output=True, text=True)
    if completed.returncode not in (0, 1):
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
    return completed.returncode


def ratios_by_gate(json_path: Path) -> dict[str, tuple[float, float]]:
    """Read each compared gate's (first attempt, gate) median / baseline median from pytest-benchmark JSON.

    The gate's median is the lowest of its attempts; a run within the threshold has one attempt.
    """
    if not json_path.exists():
        return {}
    content = json.loads(json_path.read_text(encoding="utf-8"))
    ratios = {}
    for benchmark in content.get("benchmarks", []):
        info = benchmark.get("extra_info", {})
        if "baseline_ratio" in info:
            first_s = info["attempt_medians_s_per_call"][0]
            ratios[info["gate"]] = (first_s / info["baseline_median_s"], float(info["baseline_ratio"]))
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gates.noise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="compared runs after the recording run (>= 2)")
    parser.add_argument("--json", type=Path, help="also write the ratios per gate and run to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error(f"--runs must be >= 2, got {args.runs}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    ratios: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gates-noise-") as work:
        work_dir = Path(work)
        log.info("recording a baseline into %s (threads: %s)", work_dir, os.environ.get(THREADS_ENV, "default"))
        if run_gates(work_dir, work_dir / "record.json", record=True) != 0:
            log.error("the recording run failed")
            return 1
        for run in range(1, args.runs + 1):
            exit_code = run_gates(work_dir, work_dir / f"run{run}.json", record=False)
            run_ratios = ratios_by_gate(work_dir / f"run{run}.json")
            for gate, pair in run_ratios.items():
                ratios.setdefault(gate, []).append(pair)
            slowest = max((gate_ratio for _, gate_ratio in run_ratios.values()), default=float("nan"))
            log.info("run %d of %d: pytest exit code %d, slowest gate at %.3f x baseline", run, args.runs, exit_code, slowest)

    if not ratios:
        log.error("no compared gates in the runs")
        return 1
    print("median / baseline median of each run: the gate's value (lowest attempt), first attempt in brackets")
    for gate, pairs in sorted(ratios.items()):
        runs_text = " ".join(f"{gate_ratio:.3f}({first:.3f})" for first, gate_ratio in pairs)
        print(f"{gate:32} {runs_text}")
    firsts = [first for pairs in ratios.values() for first, _ in pairs]
    gates = [gate_ratio for pairs in ratios.values() for _, gate_ratio in pairs]
    print(
        f"{len(ratios)} gates x {args.runs} runs: max slowdown {max(gates) - 1.0:+.3f} "
        f"(first attempts {max(firsts) - 1.0:+.3f}), max speedup {min(gates) - 1.0:+.3f}; "
        f"RUN_TO_RUN_THRESHOLD is {RUN_TO_RUN_THRESHOLD:.2f}"
    )
    if args.json:
        content = {"runs": args.runs, "ratios": {gate: [list(pair) for pair in pairs] for gate, pairs in ratios.items()}}
        args.json.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
