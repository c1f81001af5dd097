"""The transfer steps: pretrain on the source task, then fine-tune on the target task by one method.

Both steps run inside a cell (bench.steps.run_steps). `pretrain` trains the network on the source
classes (cached per framework and seed like any training, so the five methods share it) and measures
its source-task accuracy. `finetune` swaps the head, adds adapters or LoRA, freezes what the method
does not train, checks the trainable count against the spec's rule, trains on the labelled budget,
and merges LoRA into the kernels. From then on the cell's training and test data are the target task's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from bench.data.transfer import class_subset, label_budget
from bench.spec.peft import PeftParams, TransferTask, adapted_spec, finetune_weights, merge_lora, trainable_names, with_head
from bench.spec.strategy import TrainParams

log = logging.getLogger(__name__)

# Target test images whose logits are kept to compare the merged and the exported model with the
# unmerged one.
MERGE_CHECK_SAMPLES = 256


@dataclass
class TransferState:
    task: TransferTask
    source_test_accuracy: float


def step_pretrain(state, task: TransferTask) -> None:
    """Train the network on the source classes, with a head of that many outputs."""
    from bench.steps import step_train

    if state.evaluation is None:
        raise ValueError("step 'pretrain' needs the test split to measure the source-task accuracy")
    train_images, train_labels = class_subset(state.train_images, state.train_labels, task.source_classes)
    test_images, test_labels = class_subset(*state.evaluation, task.source_classes)
    spec = with_head(state.spec, len(task.source_classes))
    source = replace(
        state,
        spec=spec,
        model=state.backend.build(spec),
        recipe=replace(state.recipe, epochs=task.pretrain_epochs or state.recipe.epochs),
        train_images=train_images,
        train_labels=train_labels,
        training={},
        steps=[],
        cell_id=f"{state.cell_id}/pretrain",
        target_accuracy=None,
    )
    step_train(source, TrainParams())
    accuracy = float(np.mean(state.backend.predict(source.model, test_images).argmax(axis=1) == test_labels))
    log.info("%s: source task accuracy %.4f on %d test images", state.cell_id, accuracy, len(test_labels))

    state.spec, state.model, state.training = source.spec, source.model, source.training
    state.transfer = TransferState(task, accuracy)
    state.steps.append(
        {
            "step": "pretrain",
            "params": task.to_dict(),
            "cache_key": source.steps[0]["cache_key"],
            "from_cache": source.steps[0]["from_cache"],
            "source_train_samples": len(train_labels),
            "source_test_samples": len(test_labels),
            "source_test_accuracy": accuracy,
        }
    )


def step_finetune(state, params: PeftParams) -> None:
    """Fine-tune the pretrained network on the target task's labelled budget by `params.method`."""
    from bench.steps import _finetune_recipe, _replace_network, _train

    transfer = state.transfer
    if transfer is None:
        raise ValueError("step 'finetune' needs a 'pretrain' step before it")
    task = transfer.task
    train_images, train_labels, test_images, test_labels = _target_data(state, task)
    budget = label_budget(train_labels, task.examples_per_class, state.recipe.seed)
    train_images, train_labels = train_images[budget], train_labels[budget]

    pretrained_spec = state.spec
    pretrained = state.backend.get_weights(state.model, pretrained_spec)
    head_spec = with_head(pretrained_spec, len(task.target_classes))
    spec = adapted_spec(head_spec, params)
    weights = finetune_weights(pretrained_spec, pretrained, spec, state.recipe.seed)

    # Adapters and LoRA start as the identity: the adapted network computes what the plain one does.
    plain = state.backend.build(head_spec)
    state.backend.set_weights(plain, head_spec, {name: weights[name] for name in head_spec.parameter_shapes()})
    probe = test_images[:MERGE_CHECK_SAMPLES]
    plain_logits = state.backend.predict(plain, probe)
    _replace_network(state, spec, weights)
    start_diff = float(np.max(np.abs(state.backend.predict(state.model, probe) - plain_logits)))

    names = trainable_names(spec, params.method)
    state.backend.set_trainable(state.model, spec, names)
    expected = params.trainable_parameters(head_spec)
    counted = state.backend.count_trainable(state.model)
    if counted != expected["total"]:
        raise RuntimeError(
            f"{state.backend.name} backend trains {counted} parameters for {params.method}, the spec's rule "
            f"gives {expected['total']} ({expected})"
        )
    log.info(
        "%s: %s trains %d of %d parameters (%.2f%%) on %d target images",
        state.cell_id,
        params.method,
        counted,
        head_spec.count_parameters(),
        100.0 * counted / head_spec.count_parameters(),
        len(train_labels),
    )

    state.train_images, state.train_labels = train_images, train_labels
    state.evaluation = (test_images, test_labels)
    state.validation = None
    recipe = _finetune_recipe(state, task)
    finetune = _train(state, recipe, f"{params.method} fine-tune")

    merge = {"merged": False}
    if params.method == "lora":
        unmerged = state.backend.predict(state.model, probe)
        merged_spec, merged_weights = merge_lora(state.spec, state.backend.get_weights(state.model, state.spec))
        _replace_network(state, merged_spec, merged_weights)
        merged_logits = state.backend.predict(state.model, probe)
        merge = {"merged": True, "merged_vs_unmerged_max_abs_diff": float(np.max(np.abs(merged_logits - unmerged)))}
        state.reference_logits = (probe, unmerged)
    elif params.method == "adapters":
        merge = {"merged": False, "why": "an adapter has a ReLU between its projections, so it cannot fold into a kernel"}

    state.steps.append(
        {
            "step": "finetune",
            "params": params.to_dict(),
            "method": params.method,
            "adapted_layers": list(params.adapted_layers(head_spec)) if params.method in ("adapters", "lora") else [],
            "trainable": {
                "count": counted,
                "by_group": expected,
                "full_model_parameters": head_spec.count_parameters(),
                "percent": 100.0 * counted / head_spec.count_parameters(),
            },
            "start_max_abs_diff": start_diff,
            "target_train_samples": len(train_labels),
            "target_test_samples": len(test_labels),
            "source_test_accuracy": transfer.source_test_accuracy,
            "finetune": finetune,
            **merge,
        }
    )


def _target_data(state, task: TransferTask):
    """Return the target task's training and test arrays, relabelled, from the cell's or another dataset."""
    if task.target_dataset is None or task.target_dataset == state.dataset_name:
        train = class_subset(state.train_images, state.train_labels, task.target_classes)
        test = class_subset(*state.evaluation, task.target_classes)
        return (*train, *test)
    from bench.data import load_dataset, to_model_input

    dataset = load_dataset(task.target_dataset, state.data_dir)
    mean, std = state.normalization
    size = state.spec.input_shape[1]
    # The pretrained network expects the source's normalization, so the target images get it too.
    train = class_subset(to_model_input(dataset.train_images, mean, std, size), dataset.train_labels.astype(np.int64), task.target_classes)
    test = class_subset(to_model_input(dataset.test_images, mean, std, size), dataset.test_labels.astype(np.int64), task.target_classes)
    state.target_provenance = dataset.provenance
    return (*train, *test)
