"""The transfer task, the fine-tuning methods and the one trainable-parameter rule."""

import numpy as np
import pytest

from bench.data.transfer import class_subset, label_budget
from bench.spec import lenet5
from bench.spec.peft import PEFT_METHODS, PeftParams, TransferTask


def test_transfer_default_splits_fashion_classes():
    task = TransferTask()
    assert task.source_classes == (0, 1, 2, 3, 4)
    assert task.target_classes == (5, 6, 7, 8, 9)
    assert task.target_dataset is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source_classes": (1,)}, "source_classes"),
        ({"target_classes": (5, 5)}, "target_classes"),
        ({"source_classes": (0, -1)}, "source_classes"),
        ({"source_classes": (0, 5), "target_classes": (5, 6)}, "overlap"),
        ({"examples_per_class": 0}, "examples_per_class"),
        ({"pretrain_epochs": 0}, "pretrain_epochs"),
        ({"finetune_epochs": 0}, "finetune_epochs"),
        ({"finetune_learning_rate": 0.0}, "finetune_learning_rate"),
    ],
)
def test_transfer_rejects_invalid_values(changes, field):
    with pytest.raises(ValueError, match=field):
        TransferTask(**changes)


def test_transfer_allows_overlap_across_datasets():
    task = TransferTask(source_classes=(0, 1), target_classes=(0, 1), target_dataset="mnist")
    assert task.target_dataset == "mnist"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"method": "prefix"}, "method"),
        ({"rank": 0}, "rank"),
        ({"lora_alpha": 0.0}, "lora_alpha"),
        ({"adapter_units": 0}, "adapter_units"),
        ({"adapter_channels": 0}, "adapter_channels"),
        ({"layers": ()}, "layers"),
        ({"layers": ("fc1", "")}, "layers"),
    ],
)
def test_peft_rejects_invalid_values(changes, field):
    with pytest.raises(ValueError, match=field):
        PeftParams(**changes)


def test_peft_rejects_unknown_layer_names():
    params = PeftParams(method="lora", layers=("fc1", "fc9"))
    with pytest.raises(ValueError, match=r"fc9.*valid layers for lenet5: conv1, conv2, fc1, fc2"):
        params.adapted_layers(lenet5())


def test_peft_rejects_the_head_as_adapted_layer():
    with pytest.raises(ValueError, match="fc3"):
        PeftParams(method="adapters", layers=("fc3",)).adapted_layers(lenet5())


def test_peft_eligible_layers_skip_head():
    assert PeftParams().eligible_layers(lenet5()) == ("conv1", "conv2", "fc1", "fc2")


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_trainable_counts_add_up(method):
    counts = PeftParams(method=method).trainable_parameters(lenet5(num_classes=5))
    assert counts["total"] == sum(value for key, value in counts.items() if key != "total")
    assert counts["head"] == 84 * 5 + 5


def test_trainable_counts_per_method():
    spec = lenet5(num_classes=5)
    total = spec.count_parameters()
    counts = {method: PeftParams(method=method).trainable_parameters(spec)["total"] for method in PEFT_METHODS}
    assert counts["full"] == total
    assert counts["linear-probe"] == 425
    # Biases of conv1 (6), conv2 (16), fc1 (120), fc2 (84), plus the head.
    assert counts["bitfit"] == 425 + 6 + 16 + 120 + 84
    # Rank 4: conv1 4*(1*25 + 6), conv2 4*(6*25 + 16), fc1 4*(400 + 120), fc2 4*(120 + 84).
    assert counts["lora"] == 425 + 4 * (31 + 166 + 520 + 204)
    # Adapters: 1x1 conv bottlenecks of 4 after conv1 (6 channels) and conv2 (16), dense of 16 after
    # fc1 (120) and fc2 (84); each is down (with bias) and up (with bias).
    adapters = (2 * 6 * 4 + 4 + 6) + (2 * 16 * 4 + 4 + 16) + (2 * 120 * 16 + 16 + 120) + (2 * 84 * 16 + 16 + 84)
    assert counts["adapters"] == 425 + adapters
    assert counts["linear-probe"] < counts["bitfit"] < counts["lora"] < counts["adapters"] < counts["full"]


def test_lora_count_follows_layers_and_rank():
    spec = lenet5(num_classes=5)
    counts = PeftParams(method="lora", rank=2, layers=("fc1",)).trainable_parameters(spec)
    assert counts["lora"] == 2 * (400 + 120)


def test_class_subset_relabels_in_given_order():
    images = np.arange(20)
    labels = np.array(list(range(10)) * 2)
    kept, relabelled = class_subset(images, labels, (9, 5))
    assert kept.tolist() == [5, 9, 15, 19]
    assert relabelled.tolist() == [1, 0, 1, 0]


def test_class_subset_names_absent_classes():
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"classes \[7\] have no samples"):
        class_subset(np.zeros(3), labels, (1, 7))


def test_label_budget_takes_k_per_class():
    labels = np.repeat(np.arange(3), 50)
    chosen = label_budget(labels, 10, seed=0)
    assert len(chosen) == 30
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10]
    assert np.all(np.diff(chosen) > 0)


def test_label_budget_depends_on_seed():
    labels = np.repeat(np.arange(3), 50)
    assert not np.array_equal(label_budget(labels, 10, seed=0), label_budget(labels, 10, seed=1))
    assert np.array_equal(label_budget(labels, 10, seed=4), label_budget(labels, 10, seed=4))


@pytest.mark.parametrize("budget", [0, -1, True, 2.5])
def test_label_budget_rejects_empty_budget(budget):
    with pytest.raises(ValueError, match="examples_per_class"):
        label_budget(np.repeat(np.arange(3), 5), budget, seed=0)


def test_label_budget_names_short_class():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match="class 1 has 1 training samples"):
        label_budget(labels, 2, seed=0)


def test_target_data_from_another_dataset():
    from types import SimpleNamespace

    from bench.spec import lenet5
    from bench.steps_peft import _target_data

    state = SimpleNamespace(
        dataset_name="digits",
        data_dir=None,
        normalization=(0.2, 0.3),
        spec=lenet5(num_classes=5),
        target_provenance=None,
    )
    task = TransferTask(source_classes=(0, 1), target_classes=(0, 1), target_dataset="mnist-5k")
    train_images, train_labels, test_images, test_labels = _target_data(state, task)
    assert train_images.shape[1:] == (1, 32, 32)
    assert test_images.shape[1:] == (1, 32, 32)
    assert set(train_labels.tolist()) == {0, 1}
    assert set(test_labels.tolist()) == {0, 1}
    assert len(train_images) == len(train_labels)
    assert state.target_provenance["name"] == "mnist-5k"


def test_target_data_from_the_cell_dataset():
    from types import SimpleNamespace

    from bench.steps_peft import _target_data

    images = np.arange(40, dtype=np.float32).reshape(10, 1, 2, 2)
    labels = np.arange(10)
    state = SimpleNamespace(
        dataset_name="fashion-mnist",
        train_images=images,
        train_labels=labels,
        evaluation=(images[::-1], labels[::-1]),
    )
    train_images, train_labels, test_images, test_labels = _target_data(state, TransferTask())
    assert train_labels.tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(train_images, images[5:])
    assert test_labels.tolist() == [4, 3, 2, 1, 0]
