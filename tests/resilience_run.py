"""Run the fake-backend matrix in this process, for tests that interrupt or kill a real runner.

    python -m tests.resilience_run RUN_DIR TORCH_BACKEND TF_BACKEND [--resume]

Two seeds x two frameworks of the baseline strategy on the digits subset of the runner tests.
"""

import logging
import sys
from pathlib import Path

from bench.runner import run_profile
from bench.store import RunDir
from tests.test_runner import FAKE, fake_profile

SEEDS = (0, 1)


def main(argv: list[str]) -> int:
    run_dir, torch_backend, tf_backend, *flags = argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    summary = run_profile(
        fake_profile(seeds=SEEDS),
        RunDir(Path(run_dir)),
        backend_paths={"torch": FAKE + torch_backend, "tf": FAKE + tf_backend},
        resume="--resume" in flags,
    )
    print(f"statuses {summary.statuses} skipped {summary.skipped} interrupted_by {summary.interrupted_by}")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
