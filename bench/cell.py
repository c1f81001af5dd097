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

from bench.backend import EpochReport, NativeRuntime, TrainData, load_backend
from bench.data import batch_indices, to_model_input
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
from bench.spec import TimingSpec, TrainRecipe, get_model, get_strategy, initial_weights

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
    backend_path: str | None = None,
) -> dict:
    spec_cell = CellSpec(**cell)
    recipe_ = TrainRecipe(**recipe)
    timing_ = TimingSpec(**timing)
    artifacts = Path(artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    log.info("%s: starting", spec_cell.cell_id)

    # Data: the arrays the parent loaded once, turned into canonical model inputs.
    with np.load(data_path, allow_pickle=False) as arrays:
        mean, std = float(arrays["mean"]), float(arrays["std"])
        model_spec = get_model(spec_cell.model)
        size = model_spec.input_shape[1]
        train_images = to_model_input(arrays["train_images"], mean, std, size)
        train_labels = arrays["train_labels"].astype(np.int64)
        test_images = to_model_input(arrays["test_images"], mean, std, size)
        test_labels = arrays["test_labels"].astype(np.int64)

    # Backend and model from the canonical initial weights of this seed.
    backend = load_backend(spec_cell.framework, backend_path)
    fairness = backend.configure(threads, recipe_.seed)
    model = backend.build(model_spec)
    backend.set_weights(model, model_spec, initial_weights(model_spec, recipe_.seed))
    framework_parameters = backend.count_parameters(model)
    if framework_parameters != model_spec.count_parameters():
        raise RuntimeError(
            f"{backend.name} backend reports {framework_parameters} parameters for {model_spec.name}, "
            f"the spec has {model_spec.count_parameters()}"
        )

    # Strategy steps.
    training = _run_steps(backend, model, spec_cell, recipe_, train_images, train_labels)

    # Export and measure.
    onnx_path = artifacts / "model.onnx"
    export_start = time.perf_counter()
    backend.export_onnx(model, model_spec, onnx_path)
    export_seconds = time.perf_counter() - export_start
    runtimes = _measure_runtimes(backend, model, model_spec, onnx_path, test_images, test_labels, timing_, threads)

    final_weights = backend.get_weights(model, model_spec)
    nonzero = int(sum(np.count_nonzero(value) for value in final_weights.values()))
    log.info("%s: finished", spec_cell.cell_id)
    return {
        "fairness": {**fairness, "onnxruntime_intra_op_threads": threads, "onnxruntime_inter_op_threads": 1},
        "versions": backend.versions(),
        "model": {
            "name": model_spec.name,
            "fingerprint": model_spec.fingerprint(),
            "params": model_spec.count_parameters(),
            "framework_params": framework_parameters,
            "params_nonzero": nonzero,
            "size_fp32_bytes": dense_fp32_bytes(model_spec.count_parameters()),
            **model_size(onnx_path),
            "onnx_path": str(onnx_path),
            "export_seconds": export_seconds,
        },
        "training": training,
        "runtimes": runtimes,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _run_steps(backend, model, cell: CellSpec, recipe: TrainRecipe, images, labels) -> dict:
    training: dict[str, Any] = {}
    for step in get_strategy(cell.strategy).steps:
        if step.name != "train":
            raise NotImplementedError(f"{backend.name} backend: step {step.name!r} is not implemented")

        def on_epoch(report: EpochReport) -> None:
            log.info(
                "%s: epoch %d/%d loss %.4f, %.1f s, %.0f samples/s",
                cell.cell_id,
                report.epoch + 1,
                report.epochs,
                report.loss,
                report.seconds,
                report.samples / report.seconds if report.seconds > 0 else float("nan"),
            )

        data = TrainData(
            images=images,
            labels=labels,
            batch_order=lambda epoch: batch_indices(len(labels), recipe.batch_size, recipe.seed, epoch),
        )
        result = backend.train(model, recipe, data, on_epoch)
        seconds_per_epoch = float(np.mean(result.epoch_seconds))
        training = {
            "epochs": recipe.epochs,
            "samples_per_epoch": result.samples_per_epoch,
            "epoch_seconds": result.epoch_seconds,
            "epoch_losses": result.epoch_losses,
            "train_seconds_per_epoch": seconds_per_epoch,
            "train_samples_per_s": result.samples_per_epoch / seconds_per_epoch if seconds_per_epoch else None,
        }
    return training


def _measure_runtimes(backend, model, spec, onnx_path, images, labels, timing: TimingSpec, threads) -> list[dict]:
    rows = []
    reference_logits = None

    for name, runtime in backend.runtimes(model, spec).items():
        row = _measure_one(name, "native", runtime, images, labels, timing, spec.num_classes, reference_logits)
        if reference_logits is None and "logits" in row:
            reference_logits = row["logits"]
        rows.append(row)

    from bench.onnx_runtime import onnxruntime_runtime

    ort_runtime = onnxruntime_runtime(onnx_path, threads)
    rows.append(_measure_one(ONNX_RUNTIME, "onnx", ort_runtime, images, labels, timing, spec.num_classes, reference_logits))

    for row in rows:
        row.pop("logits", None)
    return rows


def _measure_one(name, kind, runtime: NativeRuntime, images, labels, timing: TimingSpec, num_classes, reference) -> dict:
    row: dict[str, Any] = {"runtime": name, "kind": kind, "description": runtime.description}
    try:
        # One-time costs, reported apart from steady-state latency: setup (session creation) and the
        # first inference (tracing, graph compilation, lazy initialization).
        first_input = runtime.prepare(_repeat_to(images, timing.latency_batch_size))
        first_start = time.perf_counter()
        runtime.run(first_input)
        row["one_time"] = {
            "setup_ms": None if runtime.setup_seconds is None else runtime.setup_seconds * 1000,
            "first_inference_ms": (time.perf_counter() - first_start) * 1000,
        }

        logits = _evaluate(runtime, images)
        row["quality"] = classification_metrics(labels, logits, num_classes)
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
        from bench.worker import error_info

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
