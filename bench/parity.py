"""Parity checks: both backends build, run and train the same network.

Each framework runs in its own child process (`probe`). The probe loads the canonical initial weights
of a seed and computes logits on one random batch. It exports ONNX and runs the export in ONNX Runtime.
Then it trains a fresh copy for a few SGD steps on a small random dataset in the shared batch order,
and prunes that copy during two more epochs with masks computed in numpy from its own weights. The
parent compares logits, trained weights, masks and pruned weights across frameworks, and each export
against its own framework.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.spec import FRAMEWORKS, TrainRecipe, get_model, initial_weights
from bench.spec.strategy import AdversarialParams, AttackParams, DistillParams, PruneParams

# Tolerances, float32 on CPU: the frameworks sum in different orders (oneDNN versus ATen kernels), so
# results agree to rounding, not bit for bit.
FRAMEWORK_LOGITS_ATOL = 1e-5
TRAINED_WEIGHTS_ATOL = 1e-5
ONNX_LOGITS_ATOL = 1e-4

# The pruning probe: from the trained weights, 2 fine-tuning epochs with sparsity rising to 0.75.
PRUNE_PARAMS = PruneParams(sparsity=0.75, finetune_epochs=2, finetune_learning_rate=0.01, end_fraction=1.0)

# The training probe: 3 epochs of 8 SGD steps (256 samples, batch 32). The cosine schedule changes the
# learning rate between epochs, which checks the tf backend's momentum rescaling too.
TRAINING_SAMPLES = 256
TRAINING_RECIPE = {"batch_size": 32, "epochs": 3, "learning_rate": 0.05, "momentum": 0.9, "lr_schedule": "cosine"}


# The training-strategy probes. L2: one SGD step of batch 32 with lambda 0.05, large enough that the
# penalty moves the weights visibly. Distillation and FGSM adversarial training: one epoch of 8 steps.
# Attacks: FGSM and 5-step PGD on the parity batch, with a pixel range of [-2, 2] in input units.
L2_PROBE = 0.05
DISTILL_PROBE = DistillParams(temperature=4.0, alpha=0.7)
ADVERSARIAL_PROBE = AdversarialParams(attack=AttackParams(method="fgsm", epsilon=0.1, steps=1), ratio=0.5)
PGD_PROBE = AttackParams(method="pgd", epsilon=0.1, steps=5)
PROBE_RANGE = (-2.0, 2.0)
DISTILL_LOSS_RTOL = 1e-5

# The fine-tuning probe: LeNet-5 with a 5-class head. Zero-initialized adapters and LoRA must change the
# logits by at most PEFT_START_ATOL, and the merged LoRA export must match the unmerged network within
# ONNX_LOGITS_ATOL.
PEFT_CLASSES = 5
PEFT_START_ATOL = 1e-6


def parity_batch(model_name: str, seed: int, batch_size: int) -> np.ndarray:
    spec = get_model(model_name)
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal((batch_size, *spec.input_shape)).astype(np.float32)


def training_set(model_name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    spec = get_model(model_name)
    rng = np.random.default_rng([seed, 2])
    images = rng.standard_normal((TRAINING_SAMPLES, *spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, spec.num_classes, TRAINING_SAMPLES).astype(np.int64)
    return images, labels


def probe(framework: str, model: str, seed: int, batch_size: int, out_dir: str, backend_path: str | None = None) -> dict:
    """Child side: one framework's logits, ONNX logits and trained weights from the canonical start."""
    from bench.backend import TrainData, load_backend
    from bench.data import batch_indices
    from bench.onnx_runtime import create_session

    spec = get_model(model)
    backend = load_backend(framework, backend_path)
    backend.configure(threads=1, seed=seed)
    weights = initial_weights(spec, seed)

    # Architecture: the same weights and batch give the same logits.
    network = backend.build(spec)
    backend.set_weights(network, spec, weights)
    round_trip = backend.get_weights(network, spec)
    images = parity_batch(model, seed, batch_size)
    logits = backend.predict(network, images)

    # Export: the ONNX model gives the framework's own logits.
    onnx_path = Path(out_dir) / f"{framework}.onnx"
    backend.export_onnx(network, spec, onnx_path)
    session = create_session(onnx_path, threads=1)
    onnx_logits = session.run(None, {session.get_inputs()[0].name: images})[0]

    # Training: the same recipe and batch order give the same weights.
    recipe = TrainRecipe(seed=seed, **TRAINING_RECIPE)
    train_images, train_labels = training_set(model, seed)
    trained = backend.build(spec)
    backend.set_weights(trained, spec, weights)
    data = TrainData(
        train_images,
        train_labels,
        lambda epoch: batch_indices(TRAINING_SAMPLES, recipe.batch_size, recipe.seed, epoch),
    )
    result = backend.train(trained, spec, recipe, data, lambda report: None)

    # Pruning: masks computed in numpy from each framework's own weights, re-applied every step.
    pruned = backend.build(spec)
    backend.set_weights(pruned, spec, backend.get_weights(trained, spec))
    pruning_masks: dict[str, np.ndarray] = {}

    def masks_for_epoch(epoch: int) -> dict[str, np.ndarray]:
        from bench.compress import global_magnitude_masks, polynomial_sparsity, prunable_kernels

        current = backend.get_weights(pruned, spec)
        masks = global_magnitude_masks(current, polynomial_sparsity(epoch, PRUNE_PARAMS), prunable_kernels(spec))
        pruning_masks.update({f"mask-epoch{epoch}/{name}": mask for name, mask in masks.items()})
        return masks

    prune_recipe = TrainRecipe(
        seed=seed,
        batch_size=recipe.batch_size,
        epochs=PRUNE_PARAMS.finetune_epochs,
        learning_rate=PRUNE_PARAMS.finetune_learning_rate,
        lr_schedule="cosine",
    )
    backend.train(pruned, spec, prune_recipe, data, lambda report: None, masks_for_epoch)

    strategies = _strategy_probes(backend, spec, weights, seed, images, train_images, train_labels)
    peft_outputs, peft_report = _peft_probes(backend, seed, images, Path(out_dir) / framework)

    outputs_path = Path(out_dir) / f"{framework}-outputs.npz"
    np.savez(
        outputs_path,
        logits=logits,
        **{f"trained/{k}": v for k, v in backend.get_weights(trained, spec).items()},
        **{f"pruned/{k}": v for k, v in backend.get_weights(pruned, spec).items()},
        **pruning_masks,
        **strategies,
        **peft_outputs,
    )
    return {
        "framework": framework,
        "parameters": backend.count_parameters(network),
        "weights_round_trip_exact": all(np.array_equal(weights[k], round_trip[k]) for k in weights),
        "outputs_path": str(outputs_path),
        "onnx_max_abs_diff": float(np.max(np.abs(onnx_logits - logits))),
        "onnx_label_agreement": float(np.mean(onnx_logits.argmax(1) == logits.argmax(1))),
        "training_epoch_losses": result.epoch_losses,
        "peft": peft_report,
        "versions": backend.versions(),
    }


def _strategy_probes(backend, spec, weights, seed, batch, train_images, train_labels) -> dict[str, np.ndarray]:
    """One-step and one-epoch checks of L2, distillation, FGSM training and the attacks themselves."""
    from bench.backend import InputRange, TrainData, TrainOptions
    from bench.data import batch_indices

    bounds = InputRange(*PROBE_RANGE)
    rng = np.random.default_rng([seed, 3])
    batch_labels = rng.integers(0, spec.num_classes, len(batch)).astype(np.int64)
    teacher_logits = (4.0 * rng.standard_normal((len(train_labels), spec.num_classes))).astype(np.float32)
    outputs: dict[str, np.ndarray] = {}

    def train(name, count, options, teacher=None):
        recipe = TrainRecipe(seed=seed, batch_size=32, epochs=1, learning_rate=0.05, momentum=0.9)
        network = backend.build(spec)
        backend.set_weights(network, spec, weights)
        data = TrainData(
            train_images[:count],
            train_labels[:count],
            lambda epoch: batch_indices(count, recipe.batch_size, recipe.seed, epoch),
            teacher_logits=None if teacher is None else teacher[:count],
        )
        backend.train(network, spec, recipe, data, lambda report: None, None, options)
        outputs.update({f"{name}/{k}": v for k, v in backend.get_weights(network, spec).items()})

    train("l2-step", 32, TrainOptions(l2=L2_PROBE))
    train("distill-epoch", len(train_labels), TrainOptions(distill=DISTILL_PROBE), teacher_logits)
    train("adversarial-epoch", len(train_labels), TrainOptions(adversarial=ADVERSARIAL_PROBE, input_range=bounds))

    network = backend.build(spec)
    backend.set_weights(network, spec, weights)
    fgsm = AttackParams(method="fgsm", epsilon=0.1, steps=1)
    outputs["attack/fgsm"] = backend.attack(network, batch, batch_labels, fgsm, bounds)
    outputs["attack/pgd"] = backend.attack(network, batch, batch_labels, PGD_PROBE, bounds)
    student = backend.predict(network, batch)
    loss = backend.distillation_loss(student, teacher_logits[: len(batch)], batch_labels, DISTILL_PROBE)
    outputs["distill-loss"] = np.array(loss, dtype=np.float64)
    return outputs


def _peft_probes(backend, seed, batch, out_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Check each fine-tuning method on LeNet-5 with a 5-class head, in one framework.

    Zero-initialized adapters and LoRA must leave the logits unchanged, the framework's trainable
    count must equal the spec's rule, and the merged LoRA export must match the unmerged network.
    Random values in every parameter (adapters and LoRA included) give logits that the parent
    compares across frameworks, which checks the weight layouts.
    """
    from bench.onnx_runtime import create_session
    from bench.spec.peft import PEFT_METHODS, PeftParams, adapted_spec, finetune_weights, merge_lora, trainable_names, with_head

    # The pretrained network already has the target's number of classes, so its head spec is itself.
    pretrained = head_spec = with_head(get_model("lenet5"), PEFT_CLASSES)
    pretrained_weights = initial_weights(pretrained, seed)
    plain = backend.build(head_spec)
    outputs: dict[str, np.ndarray] = {}
    report: dict = {}
    for method in PEFT_METHODS:
        params = PeftParams(method=method)
        spec = adapted_spec(head_spec, params)
        weights = finetune_weights(pretrained, pretrained_weights, spec, seed)
        network = backend.build(spec)
        backend.set_weights(network, spec, weights)
        backend.set_weights(plain, head_spec, {name: weights[name] for name in head_spec.parameter_shapes()})
        start_diff = float(np.max(np.abs(backend.predict(network, batch) - backend.predict(plain, batch))))
        backend.set_trainable(network, spec, trainable_names(spec, method))
        entry = {
            "start_max_abs_diff": start_diff,
            "trainable": backend.count_trainable(network),
            "expected_trainable": params.trainable_parameters(head_spec)["total"],
        }

        rng = np.random.default_rng([seed, 4, PEFT_METHODS.index(method)])
        random = {name: (0.1 * rng.standard_normal(value.shape)).astype(np.float32) for name, value in weights.items()}
        backend.set_weights(network, spec, random)
        logits = backend.predict(network, batch)
        outputs[f"peft/{method}"] = logits
        if method == "lora":
            merged_spec, merged_weights = merge_lora(spec, random)
            merged = backend.build(merged_spec)
            backend.set_weights(merged, merged_spec, merged_weights)
            path = out_dir / "lora-merged.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            backend.export_onnx(merged, merged_spec, path)
            session = create_session(path, threads=1)
            exported = session.run(None, {session.get_inputs()[0].name: batch})[0]
            entry["merged_onnx_vs_unmerged_max_abs_diff"] = float(np.max(np.abs(exported - logits)))
        report[method] = entry
    return outputs, report


def check_parity(
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
        "training_recipe": TRAINING_RECIPE,
        "tolerances": {
            "logits_across_frameworks": FRAMEWORK_LOGITS_ATOL,
            "trained_weights_across_frameworks": TRAINED_WEIGHTS_ATOL,
            "onnx_vs_native_logits": ONNX_LOGITS_ATOL,
        },
        "frameworks": {},
        "comparisons": [],
        "problems": [],
    }
    with tempfile.TemporaryDirectory(prefix="twinbench-parity-") as temp:
        outputs = {}
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
            with np.load(result.pop("outputs_path"), allow_pickle=False) as archive:
                outputs[framework] = {name: archive[name] for name in archive.files}
            report["frameworks"][framework] = result
            _check_probe(report, framework, result, spec.count_parameters())
            _check_peft(report, framework, result.get("peft") or {})

        names = list(outputs)
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                report["comparisons"].append(_compare(report, first, second, outputs[first], outputs[second]))
    report["passed"] = not report["problems"] and len(report["frameworks"]) == len(frameworks)
    return report


def _compare(report: dict, first: str, second: str, a: dict, b: dict) -> dict:
    logits_diff = float(np.max(np.abs(a["logits"] - b["logits"])))
    trained = [name for name in a if name.startswith("trained/")]
    weights_diff = max(float(np.max(np.abs(a[name] - b[name]))) for name in trained)
    pruned = [name for name in a if name.startswith("pruned/")]
    pruned_diff = max(float(np.max(np.abs(a[name] - b[name]))) for name in pruned)
    masks = [name for name in a if name.startswith("mask-epoch")]
    masks_equal = bool(masks) and all(np.array_equal(a[name], b[name]) for name in masks)
    zero_patterns_equal = all(np.array_equal(a[name] == 0, b[name] == 0) for name in pruned if name.endswith(".weight"))
    strategies = _compare_strategies(report, first, second, a, b)
    strategies.update(_compare_peft(report, first, second, a, b))
    if not masks_equal:
        report["problems"].append(f"{first} vs {second}: pruning masks differ")
    if not zero_patterns_equal:
        report["problems"].append(f"{first} vs {second}: pruned weights have different zero patterns")
    if pruned_diff > TRAINED_WEIGHTS_ATOL:
        report["problems"].append(
            f"{first} vs {second}: pruned fine-tuned weights differ by {pruned_diff:.3g} > {TRAINED_WEIGHTS_ATOL}"
        )
    if logits_diff > FRAMEWORK_LOGITS_ATOL:
        report["problems"].append(f"{first} vs {second}: logits differ by {logits_diff:.3g} > {FRAMEWORK_LOGITS_ATOL}")
    if weights_diff > TRAINED_WEIGHTS_ATOL:
        report["problems"].append(
            f"{first} vs {second}: trained weights differ by {weights_diff:.3g} > {TRAINED_WEIGHTS_ATOL}"
        )
    return {
        "frameworks": [first, second],
        "logits_max_abs_diff": logits_diff,
        "trained_weights_max_abs_diff": weights_diff,
        "pruning_masks_equal": masks_equal,
        "pruned_zero_patterns_equal": zero_patterns_equal,
        "pruned_weights_max_abs_diff": pruned_diff,
        **strategies,
    }


def _compare_strategies(report: dict, first: str, second: str, a: dict, b: dict) -> dict:
    def weights_diff(prefix: str) -> float | None:
        names = [name for name in a if name.startswith(prefix + "/")]
        if not names or any(name not in b for name in names):
            return None
        return max(float(np.max(np.abs(a[name] - b[name]))) for name in names)

    result = {
        "l2_step_weights_max_abs_diff": weights_diff("l2-step"),
        "distill_epoch_weights_max_abs_diff": weights_diff("distill-epoch"),
        "adversarial_epoch_weights_max_abs_diff": weights_diff("adversarial-epoch"),
        "fgsm_batch_max_abs_diff": _array_diff(a, b, "attack/fgsm"),
        "pgd_batch_max_abs_diff": _array_diff(a, b, "attack/pgd"),
        "distill_loss": [float(a["distill-loss"]), float(b["distill-loss"])] if "distill-loss" in a and "distill-loss" in b else None,
    }
    for key, value in result.items():
        if key == "distill_loss":
            if value is None or abs(value[0] - value[1]) > DISTILL_LOSS_RTOL * max(1.0, abs(value[0])):
                report["problems"].append(f"{first} vs {second}: distillation losses differ: {value}")
        elif value is None or value > TRAINED_WEIGHTS_ATOL:
            label = key.replace("_max_abs_diff", "").replace("_", " ")
            shown = "missing" if value is None else f"{value:.3g} > {TRAINED_WEIGHTS_ATOL}"
            report["problems"].append(f"{first} vs {second}: {label} differs: {shown}")
    return result


def _compare_peft(report: dict, first: str, second: str, a: dict, b: dict) -> dict:
    """Compare each fine-tuning method's logits with random weights across frameworks (relative)."""
    names = sorted(name for name in a if name.startswith("peft/"))
    differences = {name.split("/", 1)[1]: _relative_diff(a, b, name) for name in names}
    for method, value in differences.items():
        if value is None or value > FRAMEWORK_LOGITS_ATOL:
            shown = "missing" if value is None else f"{value:.3g} > {FRAMEWORK_LOGITS_ATOL}"
            report["problems"].append(f"{first} vs {second}: {method} logits with random weights differ: {shown}")
    return {"peft_logits_max_relative_diff": differences}


def _relative_diff(a: dict, b: dict, name: str) -> float | None:
    """Return max |a - b| / max(1, max |a|): random adapter weights make logits large."""
    if name not in a or name not in b:
        return None
    return float(np.max(np.abs(a[name] - b[name])) / max(1.0, float(np.max(np.abs(a[name])))))


def _array_diff(a: dict, b: dict, name: str) -> float | None:
    if name not in a or name not in b:
        return None
    return float(np.max(np.abs(a[name] - b[name])))


def _check_peft(report: dict, framework: str, peft: dict) -> None:
    for method, entry in peft.items():
        if entry["trainable"] != entry["expected_trainable"]:
            report["problems"].append(
                f"{framework}: {method} trains {entry['trainable']} parameters, the spec's rule gives "
                f"{entry['expected_trainable']}"
            )
        if entry["start_max_abs_diff"] > PEFT_START_ATOL:
            report["problems"].append(
                f"{framework}: {method} changes the pretrained logits by {entry['start_max_abs_diff']:.3g} before "
                f"training (> {PEFT_START_ATOL})"
            )
        merged = entry.get("merged_onnx_vs_unmerged_max_abs_diff")
        if merged is not None and merged > ONNX_LOGITS_ATOL:
            report["problems"].append(
                f"{framework}: merged {method} export differs from the unmerged network by {merged:.3g} "
                f"(> {ONNX_LOGITS_ATOL})"
            )


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
