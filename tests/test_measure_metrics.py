"""Tests for bench.measure.metrics and bench.measure.size on hand-computed cases."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from bench.measure.metrics import classification_metrics, label_agreement, max_abs_diff
from bench.measure.size import dense_fp32_bytes, model_size

# Six samples of three classes. num_classes is 4, so class 3 occurs nowhere.
LABELS = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64)
PREDICTIONS = np.array([0, 1, 1, 1, 2, 0], dtype=np.int64)
NUM_CLASSES = 4

# Per class (precision, recall, F1), counted by hand:
# class 0: TP 1, FP 1, FN 1 -> 1/2, 1/2, 1/2
# class 1: TP 2, FP 1, FN 0 -> 2/3, 1, 4/5
# class 2: TP 1, FP 0, FN 1 -> 1, 1/2, 2/3
EXPECTED_PER_CLASS = [
    (0.5, 0.5, 0.5, 2),
    (2 / 3, 1.0, 0.8, 2),
    (1.0, 0.5, 2 / 3, 2),
    (0.0, 0.0, 0.0, 0),
]


def one_hot_logits(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    logits = np.full((predictions.size, num_classes), -1.0, dtype=np.float32)
    logits[np.arange(predictions.size), predictions] = 3.0
    return logits


# --- classification_metrics ---


def test_metrics_accuracy_and_macro_scores() -> None:
    metrics = classification_metrics(LABELS, PREDICTIONS, NUM_CLASSES)

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # Macro averages over the classes present (0, 1, 2), not over the absent class 3.
    assert metrics["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert metrics["recall_macro"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert metrics["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_metrics_per_class() -> None:
    per_class = classification_metrics(LABELS, PREDICTIONS, NUM_CLASSES)["per_class"]

    assert [row["class_index"] for row in per_class] == [0, 1, 2, 3]
    for row, (precision, recall, f1, support) in zip(per_class, EXPECTED_PER_CLASS, strict=True):
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support


def test_metrics_confusion_matrix() -> None:
    matrix = classification_metrics(LABELS, PREDICTIONS, NUM_CLASSES)["confusion_matrix"]

    # Rows are true classes, columns predicted classes.
    assert matrix == [
        [1, 1, 0, 0],
        [0, 2, 0, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ]


def test_metrics_logits_match_labels() -> None:
    from_labels = classification_metrics(LABELS, PREDICTIONS, NUM_CLASSES)
    from_logits = classification_metrics(LABELS, one_hot_logits(PREDICTIONS, NUM_CLASSES), NUM_CLASSES)

    assert from_logits == from_labels


def test_metrics_perfect_predictions() -> None:
    metrics = classification_metrics(LABELS, LABELS, 3)

    assert metrics["accuracy"] == 1.0
    assert metrics["f1_macro"] == 1.0


def test_metrics_reject_invalid_input() -> None:
    with pytest.raises(ValueError, match="columns"):
        classification_metrics(LABELS, one_hot_logits(PREDICTIONS, 3), NUM_CLASSES)
    with pytest.raises(ValueError, match=r"must be in \[0, 2\)"):
        classification_metrics(LABELS, PREDICTIONS, 2)
    with pytest.raises(ValueError, match="6 labels but 5 predictions"):
        classification_metrics(LABELS, PREDICTIONS[:5], NUM_CLASSES)
    with pytest.raises(ValueError, match="integer"):
        classification_metrics(LABELS, PREDICTIONS.astype(np.float32), NUM_CLASSES)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(LABELS[:0], PREDICTIONS[:0], NUM_CLASSES)
    with pytest.raises(ValueError, match="2-D logits"):
        classification_metrics(LABELS, np.zeros((6, 4, 1)), NUM_CLASSES)


# --- agreement and differences ---


def test_label_agreement_of_logits() -> None:
    logits_a = one_hot_logits(np.array([0, 1, 2, 3]), 4)
    logits_b = one_hot_logits(np.array([0, 1, 2, 0]), 4)

    assert label_agreement(logits_a, logits_b) == 0.75
    assert label_agreement(logits_a, logits_a) == 1.0


def test_label_agreement_mixed_inputs() -> None:
    logits = one_hot_logits(np.array([0, 1, 2, 3]), 4)

    assert label_agreement(logits, np.array([0, 1, 1, 1])) == 0.5


def test_label_agreement_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="different sample counts"):
        label_agreement(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="at least one sample"):
        label_agreement(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


def test_max_abs_diff() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[1.0, 2.5], [3.0, 3.0]], dtype=np.float32)

    assert max_abs_diff(a, b) == 1.0
    assert max_abs_diff(a, a) == 0.0
    assert max_abs_diff(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_max_abs_diff_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        max_abs_diff(np.zeros((2, 3)), np.zeros((3,)))


# --- size ---


def test_model_size_of_written_file(tmp_path) -> None:
    data = b"twinbench weights " * 1000 + bytes(range(256))
    path = tmp_path / "model.onnx"
    path.write_bytes(data)

    size = model_size(path)

    assert size["size_onnx_bytes"] == len(data)
    assert size["size_gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))
    assert size["size_gzip_bytes"] < len(data)


def test_model_size_gzip_is_reproducible(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 4, size=10_000, dtype=np.uint8).tobytes()
    first = tmp_path / "first.onnx"
    second = tmp_path / "other_name.onnx"
    first.write_bytes(data)
    second.write_bytes(data)

    assert model_size(first) == model_size(first)
    assert model_size(first) == model_size(second)


def test_model_size_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        model_size(tmp_path / "missing.onnx")


def test_dense_fp32_bytes() -> None:
    assert dense_fp32_bytes(61_706) == 246_824
    assert dense_fp32_bytes(0) == 0
    with pytest.raises(ValueError, match="num_parameters"):
        dense_fp32_bytes(-1)
