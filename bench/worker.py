"""Child-process entry point: call one function by import path and write its result as JSON.

    python -m bench.worker MODULE:FUNCTION ARGS_JSON RESULT_JSON

Every framework-touching piece of work (a cell, a parity probe) runs through here in its own process,
so that TensorFlow and PyTorch never share a process and a crash cannot take the caller down. The
result file contains {"status": "ok", "value": ...} or {"status": "failed" | "missing", "error": {...}};
"missing" means the function raised NotImplementedError. A process that dies writes nothing, and the
parent records the exit code or signal instead. The worker runs with the network guard of bench.safety
and dies with the process that started it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from bench.safety import exit_with_parent, forbid_network
from bench.store import STATUS_FAILED, STATUS_MISSING, STATUS_OK, write_json_atomic

log = logging.getLogger("bench.worker")

# Set by bench.runner.run_child to its own pid (kept in sync with bench.runner.PARENT_PID_ENV).
PARENT_PID_ENV = "TWINBENCH_PARENT_PID"


def error_info(error: BaseException) -> dict:
    return {
        "type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


def call(function_path: str, kwargs: dict) -> dict:
    module_name, _, function_name = function_path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        value = function(**kwargs)
    except NotImplementedError as error:
        log.warning("not implemented: %s", error)
        return {"status": STATUS_MISSING, "error": error_info(error)}
    except Exception as error:  # noqa: BLE001 - the parent records any failure of the child's work
        log.error("%s failed: %s: %s", function_path, type(error).__name__, error)
        return {"status": STATUS_FAILED, "error": error_info(error)}
    return {"status": STATUS_OK, "value": value}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bench.worker MODULE:FUNCTION ARGS_JSON RESULT_JSON", file=sys.stderr)
        return 2
    function_path, args_path, result_path = argv
    logging.basicConfig(
        level=os.environ.get("TWINBENCH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    quiet_library_loggers()
    parent_pid = os.environ.get(PARENT_PID_ENV)
    if parent_pid:
        exit_with_parent(int(parent_pid))
    forbid_network()
    kwargs = json.loads(Path(args_path).read_text(encoding="utf-8"))
    result = call(function_path, kwargs)
    write_json_atomic(Path(result_path), result)
    return 0


def quiet_library_loggers() -> None:
    """Keep third-party INFO chatter (ONNX exporters, absl) out of the progress log."""
    for name in ("onnxscript", "onnx_ir", "torch.onnx", "tf2onnx", "absl", "tensorflow", "h5py"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
