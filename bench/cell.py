"""One cell: a (framework, strategy, dataset, model, seed) combination, trained, exported and measured.

`run_cell` is what the child process runs (through bench.worker). It returns the measured part of the
cell's record; the runner adds status, timing and the error, and writes the record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.backend import InputRange, NativeRuntime, load_backend
from bench.data import to_model_input
from bench.measure import (
    classification_metrics,
    dense_fp32_bytes,
    label_agreement,
    max_abs_diff,
    measure_latency,
    measure_throughput,
    model_size,
    peak_rss_bytes,
)
from bench.spec import TimingSpec, TrainRecipe, get_model, get_strategy
from bench.spec.strategy import AttackParams
from bench.spec.weights import weights_digest
from bench.steps import CellState, run_steps
from bench.worker import error_info

log = logging.getLogger(__name__)

ONNX_RUNTIME = "onnxruntime"
EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class CellSpec:
    framework: str
    strategy: str
    dataset: str
    model: str
    seed: int

    @property
    def cell_id(self) -> str:
        return f"{self.framework}-{self.strategy}-{self.dataset}-{self.model}-s{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def run_cell(
    cell: dict,
    recipe: dict,
    timing: dict,
    threads: int,
    data_path: str,
    artifacts_dir: str,
    dataset_key: str = "",
    cache_dir: str | None = None,
    backend_path: str | None = None,
    robustness: dict | None = None,
    target_accuracy: float | None = None,
) -> dict:
    spec_cell = CellSpec(**cell)
    recipe_ = TrainRecipe(**recipe)
    timing_ = TimingSpec(**timing)
    strategy = get_strategy(spec_cell.strategy)
    artifacts = Path(artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    log.info("%s: starting", spec_cell.cell_id)

    # Data: the arrays the parent loaded once, turned into canonical model inputs.
    model_spec = get_model(spec_cell.model)
    with np.load(data_path, allow_pickle=False) as arrays:
        mean, std = float(arrays["mean"]), float(arrays["std"])
        size = model_spec.input_shape[1]
        train_images = to_model_input(arrays["train_images"], mean, std, size)
        train_labels = arrays["train_labels"].astype(np.int64)
        test_images = to_model_input(arrays["test_images"], mean, std, size)
        test_labels = arrays["test_labels"].astype(np.int64)
        hflip_preserves_label = bool(arrays["hflip_preserves_label"]) if "hflip_preserves_label" in arrays else False
    input_range = InputRange.from_normalization(mean, std)

    # Backend and the seed network; its parameter count must be the spec's in every framework.
    backend = load_backend(spec_cell.framework, backend_path)
    fairness = backend.configure(threads, recipe_.seed)
    model = backend.build(model_spec)
    framework_parameters = backend.count_parameters(model)
    if framework_parameters != model_spec.count_parameters():
        raise RuntimeError(
            f"{backend.name} backend reports {framework_parameters} parameters for {model_spec.name}, "
            f"the spec has {model_spec.count_parameters()}"
        )

    # Some strategies hold out a validation split from the training images (for their searches).
    validation = None
    if strategy.validation_fraction:
        count = max(1, round(strategy.validation_fraction * len(train_labels)))
        train_images, train_labels, validation = split_validation(train_images, train_labels, count, recipe_.seed)

    # Strategy steps.
    state = CellState(
        cell_id=spec_cell.cell_id,
        framework=spec_cell.framework,
        backend=backend,
        spec=model_spec,
        model=model,
        recipe=recipe_,
        train_images=train_images,
        train_labels=train_labels,
        dataset_key=dataset_key,
        cache_dir=Path(cache_dir) if cache_dir else None,
        artifacts_dir=artifacts,
        validation=validation,
        evaluation=(test_images, test_labels),
        input_range=input_range,
        hflip_preserves_label=hflip_preserves_label,
        dataset_name=spec_cell.dataset,
        normalization=(mean, std),
        target_accuracy=target_accuracy,
    )
    run_steps(state, strategy.steps)
    # A transfer cell ends on its target task: measure on that task's test images.
    test_images, test_labels = state.evaluation

    # Export and measure the final network.
    onnx_path = artifacts / "model.onnx"
    export_start = time.perf_counter()
    backend.export_onnx(state.model, state.spec, onnx_path)
    export_seconds = time.perf_counter() - export_start
    context = MeasureContext(state, onnx_path, artifacts, test_images, test_labels, timing_, threads)
    robust_report = None
    if robustness is not None:
        robust_report = craft_adversarial(context, robustness, input_range)
    runtimes = measure_runtimes(context)
    merged_export = _check_merged_export(state, onnx_path, threads)

    final_weights = backend.get_weights(state.model, state.spec)
    log.info("%s: finished", spec_cell.cell_id)
    return {
        "fairness": {**fairness, "onnxruntime_intra_op_threads": threads, "onnxruntime_inter_op_threads": 1},
        "versions": backend.versions(),
        "model": {
            "name": state.spec.name,
            "fingerprint": state.spec.fingerprint(),
            "spec": state.spec.to_dict(),
            "params": state.spec.count_parameters(),
            "framework_params": backend.count_parameters(state.model),
            "params_nonzero": int(sum(np.count_nonzero(value) for value in final_weights.values())),
            # Equal digests across runs prove bit-identical training (same seed, machine and versions).
            "weights_sha256": weights_digest(final_weights),
            "size_fp32_bytes": dense_fp32_bytes(state.spec.count_parameters()),
            **model_size(onnx_path),
            **_macs(onnx_path),
            "onnx_path": str(onnx_path),
            "export_seconds": export_seconds,
        },
        "training": state.training,
        "steps": state.steps,
        "runtimes": runtimes,
        "robustness": robust_report,
        "merged_export": merged_export,
        "target_dataset": state.target_provenance,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _check_merged_export(state: CellState, onnx_path: Path, threads: int) -> dict | None:
    """Compare the exported merged network with the unmerged one the fine-tuning step left logits of."""
    if state.reference_logits is None:
        return None
    from bench.onnx_runtime import create_session

    images, unmerged = state.reference_logits
    session = create_session(onnx_path, threads)
    exported = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(images)})[0]
    difference = float(np.max(np.abs(exported - unmerged)))
    log.info("%s: merged ONNX export vs unmerged native logits: max |diff| %.2g", state.cell_id, difference)
    return {"onnx_vs_unmerged_max_abs_diff": difference, "samples": len(images)}


def split_validation(images: np.ndarray, labels: np.ndarray, count: int, seed: int):
    """Hold out `count` training images, drawn from the seed, as a validation split."""
    if count >= len(labels):
        raise ValueError(
            f"validation_samples {count} must be smaller than the {len(labels)} training images; "
            "lower it or use more training data"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(labels))
    held_out, kept = np.sort(order[:count]), np.sort(order[count:])
    return images[kept], labels[kept], (images[held_out], labels[held_out])


def _macs(onnx_path: Path) -> dict:
    from bench.onnx_tools import count_macs

    counted = count_macs(onnx_path)
    return {"macs_dense": counted["macs_dense"], "macs_effective": counted["macs_effective"]}


@dataclass
class MeasureContext:
    state: CellState
    onnx_path: Path
    artifacts: Path
    images: np.ndarray
    labels: np.ndarray
    timing: TimingSpec
    threads: int
    # Adversarial copies of the first test images and their labels, crafted on the fp32 native model.
    adversarial: np.ndarray | None = None
    adversarial_labels: np.ndarray | None = None


def craft_adversarial(context: MeasureContext, robustness: dict, input_range: InputRange) -> dict:
    """Attack the final fp32 network in its own framework; every runtime is then scored on the result.

    The attack is white-box for the native fp32 runtimes and for ONNX Runtime on the fp32 export (the
    same function to rounding). int8 runtimes are scored on the same images: a transfer attack from
    the fp32 model, because their rounding has no useful gradient.
    """
    state = context.state
    settings = dict(robustness)
    samples = settings.pop("samples", None)
    attack = AttackParams(**settings)
    count = len(context.labels) if samples is None else min(samples, len(context.labels))
    images, labels = context.images[:count], context.labels[:count]
    report = {"attack": asdict(attack), "step_size": attack.resolved_step_size, "samples": count}
    attack_fn = getattr(state.backend, "attack", None)
    if attack_fn is None:
        error = NotImplementedError(f"{state.backend.name} backend: attack (robust accuracy) is not implemented")
        log.warning("%s: %s", state.cell_id, error)
        return {**report, "status": "missing", "error": error_info(error)}
    try:
        start = time.perf_counter()
        adversarial = attack_fn(state.model, images, labels, attack, input_range)
        report["seconds"] = time.perf_counter() - start
        clean = np.ascontiguousarray(images)
        report["max_perturbation_pixels"] = float(np.max(np.abs(adversarial - clean)) / input_range.scale)
    except Exception as error:  # noqa: BLE001 - the clean measurements still count
        log.error("%s: adversarial attack failed: %s: %s", state.cell_id, type(error).__name__, error)
        return {**report, "status": "failed", "error": error_info(error)}
    context.adversarial, context.adversarial_labels = adversarial, labels
    log.info(
        "%s: %s attack, epsilon %g, %d steps on %d test images in %.1f s",
        state.cell_id,
        attack.method,
        attack.epsilon,
        attack.steps,
        count,
        report["seconds"],
    )
    return {**report, "status": "ok"}


def measure_runtimes(context: MeasureContext) -> list[dict]:
    """Evaluate and time every runtime of the cell: native, ONNX Runtime, and the int8 ones if asked."""
    state = context.state
    rows = []
    reference_logits = None
    reference_accuracy = None

    for name, runtime in state.backend.runtimes(state.model, state.spec).items():
        row = _measure_one(name, "native", runtime, context, reference_logits)
        if reference_logits is None and "logits" in row:
            reference_logits = row["logits"]
            reference_accuracy = row["quality"]["accuracy"]
        rows.append(row)

    from bench.onnx_runtime import onnxruntime_cuda_runtime, onnxruntime_runtime

    ort_runtime = onnxruntime_runtime(context.onnx_path, context.threads)
    rows.append(_measure_one(ONNX_RUNTIME, "onnx", ort_runtime, context, reference_logits))
    ort_cuda = onnxruntime_cuda_runtime(context.onnx_path, context.threads)
    rows.append(_measure_one(f"{ONNX_RUNTIME}-cuda", "onnx", ort_cuda, context, reference_logits))

    if state.quantize is not None:
        rows += _measure_int8(context, reference_logits)
        for row in rows:
            if row.get("int8") and "quality" in row and reference_accuracy is not None:
                row["accuracy_drop_vs_fp32"] = reference_accuracy - row["quality"]["accuracy"]

    for row in rows:
        row.pop("logits", None)
    return rows


def _measure_int8(context: MeasureContext, reference_logits) -> list[dict]:
    """Quantize the fp32 network to int8 with ONNX Runtime and with the framework's own tool."""
    from bench.onnx_runtime import onnxruntime_runtime
    from bench.onnx_tools import count_macs, quantize_onnx_static

    state = context.state
    params = state.quantize
    calibration = np.ascontiguousarray(state.train_images[: params.calibration_samples])
    rows = []

    # Shared path: ONNX Runtime static QDQ quantization of this framework's fp32 export.
    int8_path = context.artifacts / "model-int8.onnx"
    try:
        start = time.perf_counter()
        coverage = quantize_onnx_static(context.onnx_path, int8_path, calibration, per_channel=params.per_channel)
        quantize_seconds = time.perf_counter() - start
        runtime = onnxruntime_runtime(int8_path, context.threads)
        row = _measure_one(f"{ONNX_RUNTIME}-int8", "onnx", runtime, context, reference_logits, int8=True)
        counted = count_macs(int8_path)
        row.update(
            {
                "int8": True,
                "model_size": {**model_size(int8_path), "size_int8_bytes": model_size(int8_path)["size_onnx_bytes"]},
                "macs": {"macs_dense": counted["macs_dense"], "macs_effective": counted["macs_effective"]},
                "coverage": coverage,
                "quantize_seconds": quantize_seconds,
            }
        )
    except Exception as error:  # noqa: BLE001 - the native int8 path is still measured
        log.error("%s: ONNX Runtime int8 quantization failed: %s: %s", state.cell_id, type(error).__name__, error)
        row = {"runtime": f"{ONNX_RUNTIME}-int8", "kind": "onnx", "int8": True, "status": "failed", "error": error_info(error)}
    rows.append(row)

    # Native path: the framework's own int8 tool, measured in its own runtime.
    if params.native:
        quantize_native = getattr(state.backend, "quantize_native", None)
        name = f"{state.backend.name}-int8"
        try:
            if quantize_native is None:
                raise NotImplementedError(f"{state.backend.name} backend: step 'quantize' (native int8) is not implemented")
            native = quantize_native(state.model, state.spec, calibration, context.artifacts, context.threads)
            name = native.runtime_name
            row = _measure_one(name, "native", native.runtime, context, reference_logits, int8=True)
            row.update(
                {
                    "int8": True,
                    "model_size": {"size_int8_bytes": native.size_bytes},
                    "coverage": native.coverage,
                    "quantize_seconds": native.setup_seconds,
                }
            )
        except NotImplementedError as error:
            log.warning("%s: %s", state.cell_id, error)
            row = {"runtime": name, "kind": "native", "int8": True, "status": "missing", "error": error_info(error)}
        except Exception as error:  # noqa: BLE001 - one runtime failing must not lose the others
            log.error("%s: native int8 quantization failed: %s: %s", state.cell_id, type(error).__name__, error)
            row = {"runtime": name, "kind": "native", "int8": True, "status": "failed", "error": error_info(error)}
        rows.append(row)
    return rows


def _measure_one(
    name: str, kind: str, runtime: NativeRuntime, context: MeasureContext, reference, int8: bool = False
) -> dict:
    images, labels, timing = context.images, context.labels, context.timing
    num_classes = context.state.spec.num_classes
    row: dict[str, Any] = {"runtime": name, "kind": kind, "description": runtime.description}
    if runtime.unavailable is not None:
        log.info("%s: skipped, %s", name, runtime.unavailable)
        return {**row, "status": "skipped", "reason": runtime.unavailable}
    try:
        # One-time costs, reported apart from steady-state latency: setup (session creation), compile
        # or trace time per batch size (in `prepare`, for compiling runtimes) and the first inference
        # (lazy initialization, and tracing for runtimes that trace on the first call).
        first_input = runtime.prepare(_repeat_to(images, timing.latency_batch_size))
        first_start = time.perf_counter()
        runtime.run(first_input)
        row["one_time"] = {
            "setup_ms": None if runtime.setup_seconds is None else runtime.setup_seconds * 1000,
            "first_inference_ms": (time.perf_counter() - first_start) * 1000,
        }

        logits = _evaluate(runtime, images)
        row["quality"] = classification_metrics(labels, logits, num_classes)
        if context.adversarial is not None:
            adversarial_logits = _evaluate(runtime, context.adversarial)
            row["robust"] = {
                "accuracy": float(np.mean(adversarial_logits.argmax(axis=1) == context.adversarial_labels)),
                "samples": len(context.adversarial_labels),
                "attack": "transfer from the fp32 model" if int8 else "white-box on the fp32 model",
            }
        if reference is not None:
            row["agreement"] = {
                "max_abs_diff_logits": max_abs_diff(logits, reference),
                "label_agreement": label_agreement(logits, reference),
            }
        log.info("%s: accuracy %.4f", name, row["quality"]["accuracy"])

        latency_input = runtime.prepare(_repeat_to(images, timing.latency_batch_size))
        row["latency"] = measure_latency(lambda: runtime.run(latency_input), timing)
        throughput_input = runtime.prepare(_repeat_to(images, timing.throughput_batch_size))
        row["throughput"] = measure_throughput(lambda: runtime.run(throughput_input), timing)
        if runtime.compile_seconds is not None:
            row["one_time"]["compile_ms"] = {
                str(size): seconds * 1000 for size, seconds in sorted(runtime.compile_seconds.items())
            }
        log.info(
            "%s: latency p50 %.3f ms at batch %d, throughput %.0f samples/s at batch %d",
            name,
            row["latency"]["latency_ms_p50"],
            timing.latency_batch_size,
            row["throughput"]["throughput_samples_per_s"],
            timing.throughput_batch_size,
        )
        row["status"] = "ok"
        row["logits"] = logits
    except Exception as error:  # noqa: BLE001 - one runtime failing must not lose the others
        log.error("%s: runtime failed: %s: %s", name, type(error).__name__, error)
        row["status"] = "failed"
        row["error"] = error_info(error)
    return row


def _evaluate(runtime: NativeRuntime, images: np.ndarray) -> np.ndarray:
    outputs = []
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        batch = runtime.prepare(images[start : start + EVAL_BATCH_SIZE])
        outputs.append(runtime.to_numpy(runtime.run(batch)))
    return np.concatenate(outputs)


def _repeat_to(images: np.ndarray, count: int) -> np.ndarray:
    """Take the first `count` images, cycling when there are fewer."""
    index = np.arange(count) % len(images)
    return np.ascontiguousarray(images[index])
