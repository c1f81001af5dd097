"""Parity checks: both backends build the same network from the same canonical weights.

Each framework runs in its own child process (`probe`), loads the canonical initial weights of a seed,
computes logits on one random batch, exports ONNX and runs the export in ONNX Runtime. The parent
compares the logits across frameworks and each export against its own framework.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.spec import FRAMEWORKS, get_model, initial_weights

# Tolerances, float32 on CPU: the two frameworks sum in different orders (oneDNN vs ATen kernels).
FRAMEWORK_LOGITS_ATOL = 1e-5
ONNX_LOGITS_ATOL = 1e-4


def parity_batch(model_name: str, seed: int, batch_size: int) -> np.ndarray:
    spec = get_model(model_name)
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal((batch_size, *spec.input_shape)).astype(np.float32)


def probe(framework: str, model: str, seed: int, batch_size: int, out_dir: str, backend_path: str | None = None) -> dict:
    """Child side: logits of the canonical weights in one framework, native and through ONNX Runtime."""
    from bench.backend import load_backend
    from bench.onnx_runtime import create_session

    spec = get_model(model)
    backend = load_backend(framework, backend_path)
    backend.configure(threads=1, seed=seed)
    network = backend.build(spec)
    weights = initial_weights(spec, seed)
    backend.set_weights(network, spec, weights)
    round_trip = backend.get_weights(network, spec)
    images = parity_batch(model, seed, batch_size)
    logits = backend.predict(network, images)

    onnx_path = Path(out_dir) / f"{framework}.onnx"
    backend.export_onnx(network, spec, onnx_path)
    session = create_session(onnx_path, threads=1)
    onnx_logits = session.run(None, {session.get_inputs()[0].name: images})[0]

    logits_path = Path(out_dir) / f"{framework}-logits.npy"
    np.save(logits_path, logits)
    return {
        "framework": framework,
        "parameters": backend.count_parameters(network),
        "weights_round_trip_exact": all(np.array_equal(weights[k], round_trip[k]) for k in weights),
        "logits_path": str(logits_path),
        "onnx_max_abs_diff": float(np.max(np.abs(onnx_logits - logits))),
        "onnx_label_agreement": float(np.mean(onnx_logits.argmax(1) == logits.argmax(1))),
        "versions": backend.versions(),
    }


def check_architecture_parity(
    model: str = "lenet5",
    seed: int = 0,
    batch_size: int = 32,
    frameworks: tuple[str, ...] = FRAMEWORKS,
    backend_paths: dict[str, str] | None = None,
) -> dict:
    """Run `probe` for each framework in its own process and compare; returns a JSON-ready report."""
    from bench.runner import child_environment, run_child

    backend_paths = backend_paths or {}
    spec = get_model(model)
    report: dict = {
        "model": model,
        "fingerprint": spec.fingerprint(),
        "spec_parameters": spec.count_parameters(),
        "seed": seed,
        "batch_size": batch_size,
        "tolerance_frameworks": FRAMEWORK_LOGITS_ATOL,
        "tolerance_onnx": ONNX_LOGITS_ATOL,
        "frameworks": {},
        "problems": [],
    }
    with tempfile.TemporaryDirectory(prefix="twinbench-parity-") as temp:
        logits = {}
        for framework in frameworks:
            outcome = run_child(
                "bench.parity:probe",
                {
                    "framework": framework,
                    "model": model,
                    "seed": seed,
                    "batch_size": batch_size,
                    "out_dir": temp,
                    "backend_path": backend_paths.get(framework),
                },
                Path(temp) / framework,
                timeout_s=600,
                env=child_environment(1),
            )
            if outcome.status != "ok":
                message = (outcome.error or {}).get("message", "")
                report["problems"].append(f"{framework}: probe {outcome.status}: {message}")
                continue
            result = outcome.value
            logits[framework] = np.load(result.pop("logits_path"))
            report["frameworks"][framework] = result
            _check_probe(report, framework, result, spec.count_parameters())

        names = list(logits)
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                diff = float(np.max(np.abs(logits[first] - logits[second])))
                report[f"max_abs_diff_{first}_vs_{second}"] = diff
                if diff > FRAMEWORK_LOGITS_ATOL:
                    report["problems"].append(
                        f"{first} vs {second}: logits differ by {diff:.3g} > {FRAMEWORK_LOGITS_ATOL}"
                    )
    report["passed"] = not report["problems"] and len(report["frameworks"]) == len(frameworks)
    return report


def _check_probe(report: dict, framework: str, result: dict, expected_parameters: int) -> None:
    if result["parameters"] != expected_parameters:
        report["problems"].append(
            f"{framework}: {result['parameters']} parameters, spec has {expected_parameters}"
        )
    if not result["weights_round_trip_exact"]:
        report["problems"].append(f"{framework}: canonical weights changed on import and export")
    if result["onnx_max_abs_diff"] > ONNX_LOGITS_ATOL:
        report["problems"].append(
            f"{framework}: ONNX export differs from native logits by {result['onnx_max_abs_diff']:.3g} "
            f"> {ONNX_LOGITS_ATOL}"
        )
