"""Classification quality and output agreement, computed with scikit-learn and numpy."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def predicted_labels(logits_or_predictions: np.ndarray) -> np.ndarray:
    """Return class indices: the argmax of 2-D logits (N, C), or 1-D predicted labels (N,) unchanged."""
    array = np.asarray(logits_or_predictions)
    if array.ndim == 2:
        return np.argmax(array, axis=1)
    if array.ndim == 1:
        return array
    raise ValueError(f"expected 2-D logits (N, C) or 1-D labels (N,), got shape {array.shape}")


def classification_metrics(
    labels: np.ndarray,
    logits_or_predictions: np.ndarray,
    num_classes: int,
) -> dict[str, Any]:
    """Compute accuracy, macro precision/recall/F1, per-class scores and the confusion matrix.

    Accepts 2-D logits (their argmax is the prediction) or 1-D predicted labels. Precision, recall and
    F1 of a class with no predicted or no true samples are 0 (scikit-learn's zero_division=0). The
    macro averages cover the classes that occur in `labels` or in the predictions, as scikit-learn does
    by default. `per_class` and `confusion_matrix` cover all `num_classes` classes, with support 0 for
    absent ones, so the mean of `per_class` can differ from the macro average.
    """
    # sklearn.metrics loads scipy and took 1.7 s to import on a 2-core container, so it is imported here
    # and only callers of this function pay that cost.
    import sklearn.metrics

    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    true = _check_labels("labels", labels, num_classes)
    predictions = np.asarray(logits_or_predictions)
    if predictions.ndim == 2 and predictions.shape[1] != num_classes:
        raise ValueError(f"logits have {predictions.shape[1]} columns, expected num_classes {num_classes}")
    predicted = _check_labels("predictions", predicted_labels(predictions), num_classes)
    if true.shape[0] != predicted.shape[0]:
        raise ValueError(f"{true.shape[0]} labels but {predicted.shape[0]} predictions")

    precision_macro, recall_macro, f1_macro, _ = sklearn.metrics.precision_recall_fscore_support(
        true, predicted, average="macro", zero_division=0
    )
    matrix = sklearn.metrics.confusion_matrix(true, predicted, labels=np.arange(num_classes))
    return {
        "accuracy": float(sklearn.metrics.accuracy_score(true, predicted)),
        "precision_macro": float(precision_macro),
        "recall_macro": float(recall_macro),
        "f1_macro": float(f1_macro),
        "per_class": _per_class_scores(true, predicted, num_classes),
        "confusion_matrix": matrix.tolist(),
    }


def label_agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Return the fraction of samples where both outputs predict the same class.

    Each input may be 2-D logits or 1-D predicted labels.
    """
    labels_a = predicted_labels(logits_a)
    labels_b = predicted_labels(logits_b)
    if labels_a.shape != labels_b.shape:
        raise ValueError(
            f"outputs cover different sample counts: {labels_a.shape[0]} and {labels_b.shape[0]}"
        )
    if labels_a.size == 0:
        raise ValueError("label_agreement needs at least one sample, got none")
    return float(np.mean(labels_a == labels_b))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Return max |a - b| over all elements, computed in float64.

    Returns 0.0 for empty arrays and NaN where either array contains NaN. The shapes must be equal, so
    broadcasting cannot hide a mismatch.
    """
    array_a = np.asarray(a, dtype=np.float64)
    array_b = np.asarray(b, dtype=np.float64)
    if array_a.shape != array_b.shape:
        raise ValueError(f"shapes differ: {array_a.shape} and {array_b.shape}")
    if array_a.size == 0:
        return 0.0
    return float(np.max(np.abs(array_a - array_b)))


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty, expected at least one sample")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"{name} must be in [0, {num_classes}), got values from {array.min()} to {array.max()}"
        )
    return array


def _per_class_scores(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[dict[str, Any]]:
    import sklearn.metrics

    precision, recall, f1, support = sklearn.metrics.precision_recall_fscore_support(
        true, predicted, labels=np.arange(num_classes), average=None, zero_division=0
    )
    return [
        {
            "class_index": class_index,
            "precision": float(precision[class_index]),
            "recall": float(recall[class_index]),
            "f1": float(f1[class_index]),
            "support": int(support[class_index]),
        }
        for class_index in range(num_classes)
    ]
