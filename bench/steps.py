"""The steps a strategy is made of, run inside a cell's process on one backend.

Compression transforms (masks, structured pruning, factorization) are computed in numpy on canonical
weights (bench.compress), so both frameworks get the same smaller or sparser network from the same
weights. Each backend only builds, trains and exports. Quantization is recorded here and
carried out after the fp32 export (bench.cell).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.backend import Backend, EpochReport, InputRange, TrainData, TrainOptions
from bench.data import batch_indices
from bench.spec import (
    ModelSpec,
    TrainRecipe,
    check_weights,
    get_model,
    initial_weights,
    load_weights,
    save_weights,
)
from bench.spec.model import with_dropout, without_dropout
from bench.spec.strategy import (
    DistillParams,
    FinetuneParams,
    LowRankParams,
    PruneParams,
    QuantizeParams,
    SearchParams,
    StepSpec,
    StructuredPruneParams,
    TrainParams,
)
from bench.store import write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class CellState:
    """State shared by the steps of one cell: the backend, the current network and the step reports."""

    cell_id: str
    framework: str
    backend: Backend
    spec: ModelSpec
    model: Any
    recipe: TrainRecipe
    train_images: np.ndarray
    train_labels: np.ndarray
    dataset_key: str
    cache_dir: Path | None = None
    artifacts_dir: Path | None = None
    validation: tuple[np.ndarray, np.ndarray] | None = None
    # The test split, used only to report a distillation teacher's accuracy.
    evaluation: tuple[np.ndarray, np.ndarray] | None = None
    input_range: InputRange | None = None
    hflip_preserves_label: bool = False
    # The transfer steps (bench.steps_peft): the cell's dataset, where to find another one, the
    # normalization of the inputs, and what pretraining left for fine-tuning.
    dataset_name: str = ""
    data_dir: str | None = None
    normalization: tuple[float, float] | None = None
    transfer: Any = None
    target_provenance: dict | None = None
    # Inputs and logits of the unmerged fine-tuned network, to check the merged export against.
    reference_logits: tuple[np.ndarray, np.ndarray] | None = None
    training: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    quantize: QuantizeParams | None = None
    # The `train` step evaluates on `evaluation` after each epoch until this accuracy is reached, and
    # records the training seconds it took (time to accuracy). None turns the check off.
    target_accuracy: float | None = None


def run_steps(state: CellState, steps: tuple[StepSpec, ...]) -> None:
    from bench.steps_peft import step_finetune, step_pretrain

    handlers = {
        "pretrain": step_pretrain,
        "finetune": step_finetune,
        "train": step_train,
        "prune": step_prune,
        "prune-structured": step_prune_structured,
        "lowrank": step_lowrank,
        "quantize": step_quantize,
        "search": step_search,
    }
    for step in steps:
        handler = handlers.get(step.name)
        if handler is None:
            raise NotImplementedError(f"{state.backend.name} backend: step {step.name!r} is not implemented")
        log.info("%s: step %s", state.cell_id, step.name)
        handler(state, step.params)


def _epoch_logger(state: CellState, phase: str):
    def on_epoch(report: EpochReport) -> None:
        log.info(
            "%s: %s epoch %d/%d loss %.4f, %.1f s, %.0f samples/s",
            state.cell_id,
            phase,
            report.epoch + 1,
            report.epochs,
            report.loss,
            report.seconds,
            report.samples / report.seconds if report.seconds > 0 else float("nan"),
        )

    return on_epoch


def _train(
    state: CellState,
    recipe: TrainRecipe,
    phase: str,
    masks_for_epoch=None,
    options: TrainOptions | None = None,
    images_for_epoch=None,
    teacher_logits: np.ndarray | None = None,
    target_accuracy: float | None = None,
) -> dict:
    labels = state.train_labels
    data = TrainData(
        images=state.train_images,
        labels=labels,
        batch_order=lambda epoch: batch_indices(len(labels), recipe.batch_size, recipe.seed, epoch),
        images_for_epoch=images_for_epoch,
        teacher_logits=teacher_logits,
    )
    extra = {} if options is None else {"options": options}
    on_epoch = _epoch_logger(state, phase)
    tracker = None
    if target_accuracy is not None and state.evaluation is not None:
        tracker = TimeToAccuracy(state, target_accuracy, on_epoch)
        on_epoch = tracker.on_epoch
    result = state.backend.train(state.model, state.spec, recipe, data, on_epoch, masks_for_epoch, **extra)
    seconds_per_epoch = float(np.mean(result.epoch_seconds))
    return {
        **({} if tracker is None else {"time_to_accuracy": tracker.summary()}),
        "epochs": recipe.epochs,
        "learning_rate": recipe.learning_rate,
        "lr_schedule": recipe.lr_schedule,
        "samples_per_epoch": result.samples_per_epoch,
        "epoch_seconds": result.epoch_seconds,
        "epoch_losses": result.epoch_losses,
        "train_seconds_per_epoch": seconds_per_epoch,
        "train_samples_per_s": result.samples_per_epoch / seconds_per_epoch if seconds_per_epoch else None,
    }


class TimeToAccuracy:
    """Training seconds until the test accuracy first reaches a target, checked after every epoch.

    The evaluation runs outside each epoch's timer and stops once the target is reached, so it costs
    one inference pass over the test images per epoch until then and changes no training number.
    """

    def __init__(self, state: CellState, target: float, then) -> None:
        self.state, self.target, self.then = state, target, then
        self.seconds = 0.0
        self.accuracies: list[float] = []
        self.reached_epoch: int | None = None
        self.reached_seconds: float | None = None

    def on_epoch(self, report: EpochReport) -> None:
        self.then(report)
        self.seconds += report.seconds
        if self.reached_epoch is not None:
            return
        images, labels = self.state.evaluation
        logits = self.state.backend.predict(self.state.model, images)
        accuracy = float(np.mean(logits.argmax(axis=1) == labels))
        self.accuracies.append(accuracy)
        if accuracy >= self.target:
            self.reached_epoch, self.reached_seconds = report.epoch + 1, self.seconds
            log.info(
                "%s: test accuracy %.4f reached the target %.4f after epoch %d, %.1f training seconds",
                self.state.cell_id,
                accuracy,
                self.target,
                self.reached_epoch,
                self.seconds,
            )

    def summary(self) -> dict:
        return {
            "target_accuracy": self.target,
            "reached": self.reached_epoch is not None,
            "epochs": self.reached_epoch,
            "train_seconds": self.reached_seconds,
            "test_accuracy_by_epoch": self.accuracies,
            "test_samples": len(self.state.evaluation[1]),
        }


# --- train ---------------------------------------------------------------------------------------


def training_cache_key(state: CellState, params: TrainParams | None = None) -> str:
    """Identify a trained network: framework, architecture, data, recipe, training options, initial weights.

    The training labels' digest is part of the key, so a cell that holds out a validation split never
    loads a network that was trained on its validation images.
    """
    payload = json.dumps(
        {
            "framework": state.framework,
            "backend": state.backend.name,
            "model": state.spec.fingerprint(),
            "data": state.dataset_key,
            "train_samples": len(state.train_labels),
            "train_labels_sha256": hashlib.sha256(np.ascontiguousarray(state.train_labels).tobytes()).hexdigest(),
            "recipe": state.recipe.to_dict(),
            "train_params": asdict(params or TrainParams()),
            "initial_weights": "glorot-uniform-v1",
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def step_train(state: CellState, params: TrainParams) -> None:
    """Train from the canonical initial weights, or reuse the same training from earlier in the run.

    Strategies that compress start from the trained baseline, so a run trains it once per framework
    and seed and later cells load the cached weights (bench all runs the baseline cells first).
    `params` can add augmentation, L2 and dropout, adversarial batches or distillation. Dropout layers
    exist only while training: the network that leaves this step is the original architecture.
    """
    params = params or TrainParams()
    base_spec = state.spec
    regularize = params.regularize
    if regularize is not None and regularize.dropout > 0:
        state.spec = with_dropout(base_spec, regularize.dropout)
        state.model = state.backend.build(state.spec)

    key = training_cache_key(state, params)
    record: dict[str, Any] = {"step": "train", "cache_key": key}
    if not params.is_plain:
        record["params"] = _params_dict(params)
    cached = _load_cached_training(state, key)
    if cached is not None and cached.get("trained_by_cell") == state.cell_id:
        # This cell trained the network before its run was interrupted: the training is the cell's own, so
        # its record reports it as trained here, as an uninterrupted run would.
        cached.pop("trained_by_cell")
        state.training = cached
        record.update(from_cache=False, resumed_from_own_cache=True, **cached.pop("step_details", {}))
    elif cached is not None:
        state.training = cached
        record.update(from_cache=True, **cached.pop("step_details", {}))
    else:
        details = _train_with_params(state, params)
        record.update(from_cache=False, **details)
        _save_cached_training(state, key, details)
    state.steps.append(record)

    if state.spec is not base_spec:
        _replace_network(state, without_dropout(state.spec), state.backend.get_weights(state.model, state.spec))


def _train_with_params(state: CellState, params: TrainParams) -> dict:
    """Train the current network from its initial weights; return what the step record should add."""
    details: dict[str, Any] = {}
    teacher_logits = None
    if params.distill is not None:
        details["teacher"], teacher_logits = _teacher(state, params.distill)

    images_for_epoch = None
    if params.augment is not None:
        images_for_epoch, details["augment"] = _augmentation(state, params)

    if params.adversarial is not None and state.input_range is None:
        raise ValueError("adversarial training needs the input range of the normalized pixels (CellState.input_range)")
    options = TrainOptions(
        l2=params.regularize.l2 if params.regularize else 0.0,
        adversarial=params.adversarial,
        distill=params.distill,
        input_range=state.input_range,
    )
    state.backend.set_weights(state.model, state.spec, initial_weights(state.spec, state.recipe.seed))
    state.training = _train(
        state,
        state.recipe,
        "train",
        options=None if params.is_plain else options,
        images_for_epoch=images_for_epoch,
        teacher_logits=teacher_logits,
        target_accuracy=state.target_accuracy,
    )
    return details


def _augmentation(state: CellState, params: TrainParams):
    """Return the per-epoch augmentation both frameworks train on, and the details for the step record."""
    from bench.augment import augment_epoch

    if state.input_range is None:
        raise ValueError("augmentation needs the input range of the normalized pixels (CellState.input_range)")
    augment = params.augment
    flip = augment.horizontal_flip and state.hflip_preserves_label
    seed = state.recipe.seed
    fill = state.input_range.low

    def images_for_epoch(epoch: int) -> np.ndarray:
        images, _ = augment_epoch(state.train_images, augment, seed, epoch, flip, fill)
        return images

    if augment.horizontal_flip and not flip:
        flip_note = "off: the dataset does not declare horizontal flips label-preserving"
    else:
        flip_note = "on" if flip else "off"
    log.info("%s: augmentation %s, horizontal flip %s", state.cell_id, _params_dict(augment), flip_note)
    return images_for_epoch, {"horizontal_flip": flip_note, "implementation": "bench.augment (numpy, shared)"}


def _teacher(state: CellState, distill: DistillParams) -> tuple[dict, np.ndarray]:
    """Train (or load) the distillation teacher in this framework; return its report and training logits."""
    teacher_spec = get_model(distill.teacher)
    if teacher_spec.input_shape != state.spec.input_shape or teacher_spec.num_classes != state.spec.num_classes:
        raise ValueError(
            f"teacher {distill.teacher!r} takes {teacher_spec.input_shape} and predicts "
            f"{teacher_spec.num_classes} classes; the student takes {state.spec.input_shape} and predicts "
            f"{state.spec.num_classes}"
        )
    recipe = replace(state.recipe, epochs=distill.teacher_epochs or state.recipe.epochs)
    teacher = replace(
        state,
        spec=teacher_spec,
        model=state.backend.build(teacher_spec),
        recipe=recipe,
        training={},
        steps=[],
        cell_id=f"{state.cell_id}/teacher",
        target_accuracy=None,
    )
    step_train(teacher, TrainParams())
    logits = state.backend.predict(teacher.model, state.train_images)
    report = {
        "model": teacher_spec.name,
        "params": teacher_spec.count_parameters(),
        "epochs": recipe.epochs,
        "from_cache": teacher.steps[0]["from_cache"],
        "training": teacher.training,
        "train_accuracy": float(np.mean(logits.argmax(axis=1) == state.train_labels)),
    }
    if state.evaluation is not None:
        images, labels = state.evaluation
        report["test_accuracy"] = float(np.mean(state.backend.predict(teacher.model, images).argmax(axis=1) == labels))
    log.info(
        "%s: teacher %s (%d parameters): test accuracy %s",
        state.cell_id,
        teacher_spec.name,
        report["params"],
        f"{report['test_accuracy']:.4f}" if "test_accuracy" in report else "not measured",
    )
    return report, np.ascontiguousarray(logits, dtype=np.float32)


def _load_cached_training(state: CellState, key: str) -> dict | None:
    if state.cache_dir is None:
        return None
    weights_path = state.cache_dir / f"{key}.npz"
    info_path = state.cache_dir / f"{key}.json"
    if not (weights_path.exists() and info_path.exists()):
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        weights = load_weights(weights_path)
        check_weights(state.spec, weights)
        training = info["training"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        # A damaged cache entry (say, from a machine crash) costs a retraining, never the cell.
        log.warning("%s: cached training %s is unreadable (%s); training again", state.cell_id, key, error)
        return None
    state.backend.set_weights(state.model, state.spec, weights)
    log.info("%s: trained weights loaded from %s (trained by %s)", state.cell_id, weights_path, info["cell_id"])
    return {**training, "trained_by_cell": info["cell_id"], "step_details": info.get("step_details", {})}


def _save_cached_training(state: CellState, key: str, details: dict | None = None) -> None:
    if state.cache_dir is None:
        return
    state.cache_dir.mkdir(parents=True, exist_ok=True)
    weights_path = state.cache_dir / f"{key}.npz"
    temporary = state.cache_dir / f".{key}.{os.getpid()}.npz"
    with temporary.open("wb") as handle:
        save_weights(handle, state.backend.get_weights(state.model, state.spec))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, weights_path)
    write_json_atomic(
        state.cache_dir / f"{key}.json",
        {"cell_id": state.cell_id, "training": state.training, "step_details": details or {}},
    )


# --- compression steps ---------------------------------------------------------------------------


def _finetune_recipe(state: CellState, params) -> TrainRecipe:
    """Return the recipe of a fine-tuning phase: `params.finetune_epochs` at a cosine-decayed rate."""
    return replace(
        state.recipe,
        epochs=params.finetune_epochs,
        learning_rate=params.finetune_learning_rate,
        lr_schedule="cosine",
    )


def step_prune(state: CellState, params: PruneParams) -> None:
    """Global magnitude pruning, sparsity rising by the polynomial schedule during fine-tuning."""
    from bench.compress import global_magnitude_masks, polynomial_sparsity, prunable_kernels, sparsity_report

    names = prunable_kernels(state.spec, params.layers)
    schedule: list[float] = []

    def masks_for_epoch(epoch: int) -> dict[str, np.ndarray]:
        sparsity = polynomial_sparsity(epoch, params)
        schedule.append(sparsity)
        weights = state.backend.get_weights(state.model, state.spec)
        log.info("%s: prune epoch %d: target sparsity %.3f", state.cell_id, epoch + 1, sparsity)
        return global_magnitude_masks(weights, sparsity, names)

    finetune = _train(state, _finetune_recipe(state, params), "prune fine-tune", masks_for_epoch)
    weights = state.backend.get_weights(state.model, state.spec)
    state.steps.append(
        {
            "step": "prune",
            "params": _params_dict(params),
            "sparsity_schedule": schedule,
            "sparsity": sparsity_report(weights, names),
            "finetune": finetune,
        }
    )


def step_prune_structured(state: CellState, params: StructuredPruneParams) -> None:
    """Remove the lowest-L1 channels and neurons, rebuild the smaller network, fine-tune."""
    from bench.compress import prune_structured

    def transform(weights, decision):
        spec, new_weights, report = prune_structured(
            state.spec, weights, params, kept=decision["kept"] if decision else None
        )
        kept = {name: layer["kept_indices"] for name, layer in report["layers"].items() if layer["selected"]}
        return spec, new_weights, report, {"kept": kept}

    _structural_step(state, "prune-structured", params, transform, "structured fine-tune")


def step_lowrank(state: CellState, params: LowRankParams) -> None:
    """Factorize dense and conv layers by truncated SVD, rebuild, fine-tune."""
    from bench.compress import factorize

    def transform(weights, decision):
        spec, new_weights, report = factorize(state.spec, weights, params, ranks=decision["ranks"] if decision else None)
        ranks = {name: layer["rank"] for name, layer in report["layers"].items() if layer["factorized"]}
        return spec, new_weights, report, {"ranks": ranks}

    _structural_step(state, "lowrank", params, transform, "low-rank fine-tune")


def _structural_step(state: CellState, step: str, params: FinetuneParams, transform, phase: str) -> None:
    """Apply a transform that changes the architecture (with the run's shared decision), then fine-tune.

    `transform(weights, decision)` returns (spec, weights, report, decision); `decision` is None when
    this cell is the first to reach the step and makes the decision itself.
    """
    key = _decision_key(state, step, params)
    loaded = _load_decision(state, key)
    spec, new_weights, report, decision = transform(state.backend.get_weights(state.model, state.spec), loaded)
    source = loaded["source"] if loaded else _save_decision(state, key, decision)["source"]
    _replace_network(state, spec, new_weights)
    finetune = _train(state, _finetune_recipe(state, params), phase)
    state.steps.append(
        {"step": step, "params": _params_dict(params), "decision": source, "report": report, "finetune": finetune}
    )


# Structural decisions (which channels to keep, which ranks) are shared by the frameworks of a run. The
# first cell to reach a step with the same inputs computes them from its own trained weights and saves
# them. The other framework then cuts its own weights to the same architecture, because two nearly
# equal singular values or L1 norms could otherwise give the two rows of a strategy different networks.


def _decision_key(state: CellState, step: str, params: Any) -> str:
    payload = json.dumps(
        {
            "step": step,
            "params": _params_dict(params),
            "model": state.spec.fingerprint(),
            "data": state.dataset_key,
            "train_samples": len(state.train_labels),
            "recipe": state.recipe.to_dict(),
        },
        sort_keys=True,
    )
    return "decision-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def _load_decision(state: CellState, key: str) -> dict | None:
    if state.cache_dir is None or not (state.cache_dir / f"{key}.json").exists():
        return None
    decision = json.loads((state.cache_dir / f"{key}.json").read_text(encoding="utf-8"))
    log.info("%s: structural decision loaded from %s (made by %s)", state.cell_id, key, decision["cell_id"])
    return {**decision, "source": f"loaded from {decision['cell_id']}"}


def _save_decision(state: CellState, key: str, decision: dict) -> dict:
    record = {**decision, "cell_id": state.cell_id}
    if state.cache_dir is not None:
        write_json_atomic(state.cache_dir / f"{key}.json", record)
    return {**record, "source": "computed here"}


def step_quantize(state: CellState, params: QuantizeParams) -> None:
    """Record the request; bench.cell quantizes after the fp32 export, where the runtimes are measured."""
    state.quantize = params
    state.steps.append({"step": "quantize", "params": _params_dict(params)})


def _replace_network(state: CellState, spec: ModelSpec, weights) -> None:
    log.info(
        "%s: network %s -> %s: %d -> %d parameters",
        state.cell_id,
        state.spec.name,
        spec.name,
        state.spec.count_parameters(),
        spec.count_parameters(),
    )
    state.spec = spec
    state.model = state.backend.build(spec)
    state.backend.set_weights(state.model, spec, weights)


def _params_dict(params: Any) -> dict:
    return asdict(params)


# --- search ---------------------------------------------------------------------------------------


def step_search(state: CellState, params: SearchParams) -> None:
    """Run every candidate pipeline from the trained network; keep the smallest accurate one."""
    from bench.measure import model_size

    if state.validation is None:
        raise ValueError("step 'search' needs a validation split: set StrategySpec.validation_fraction > 0")
    if state.artifacts_dir is None:
        raise ValueError("step 'search' needs an artifacts directory for its candidate exports")
    start_spec = state.spec
    start_weights = state.backend.get_weights(state.model, state.spec)
    start_accuracy = validation_accuracy(state)
    log.info("%s: search: trained network, validation accuracy %.4f", state.cell_id, start_accuracy)

    results = []
    networks = []
    for index, candidate in enumerate(params.candidates):
        _replace_network(state, start_spec, start_weights)
        outer_steps, state.steps = state.steps, []
        _run_candidate(state, candidate, params)
        candidate_steps, state.steps = state.steps, outer_steps

        onnx_path = state.artifacts_dir / f"search-candidate-{index}.onnx"
        state.backend.export_onnx(state.model, state.spec, onnx_path)
        accuracy = validation_accuracy(state)
        result = {
            "candidate": asdict(candidate),
            "validation_accuracy": accuracy,
            "accuracy_drop": start_accuracy - accuracy,
            "qualifies": start_accuracy - accuracy <= params.max_accuracy_drop,
            "params": state.spec.count_parameters(),
            **model_size(onnx_path),
            "steps": candidate_steps,
        }
        log.info(
            "%s: search candidate %d/%d %s: validation accuracy %.4f, %d gzip bytes%s",
            state.cell_id,
            index + 1,
            len(params.candidates),
            asdict(candidate),
            accuracy,
            result["size_gzip_bytes"],
            "" if result["qualifies"] else " (too inaccurate)",
        )
        results.append(result)
        networks.append((state.spec, state.backend.get_weights(state.model, state.spec)))

    chosen = _choose_candidate(results)
    _replace_network(state, *networks[chosen])
    state.steps.append(
        {
            "step": "search",
            "params": {"max_accuracy_drop": params.max_accuracy_drop, "finetune_epochs": params.finetune_epochs},
            "validation_samples": len(state.validation[1]),
            "start_validation_accuracy": start_accuracy,
            "candidates": results,
            "chosen": chosen,
            "chosen_qualifies": results[chosen]["qualifies"],
        }
    )


def _run_candidate(state: CellState, candidate, params: SearchParams) -> None:
    finetune = {"finetune_epochs": params.finetune_epochs, "finetune_learning_rate": params.finetune_learning_rate}
    if candidate.structured_ratio > 0:
        step_prune_structured(state, StructuredPruneParams(ratio=candidate.structured_ratio, **finetune))
    if candidate.lowrank_energy is not None:
        step_lowrank(state, LowRankParams(energy=candidate.lowrank_energy, **finetune))
    if candidate.sparsity > 0:
        step_prune(state, PruneParams(sparsity=candidate.sparsity, **finetune))


def _choose_candidate(results: list[dict]) -> int:
    """Index of the smallest qualifying candidate by gzip size, else of the most accurate one."""
    qualifying = [index for index, result in enumerate(results) if result["qualifies"]]
    if qualifying:
        return min(qualifying, key=lambda index: results[index]["size_gzip_bytes"])
    return max(range(len(results)), key=lambda index: results[index]["validation_accuracy"])


def validation_accuracy(state: CellState) -> float:
    images, labels = state.validation
    logits = state.backend.predict(state.model, images)
    return float(np.mean(logits.argmax(axis=1) == labels))
