"""results.json: the rows of results.csv with their units, and what the report was built from."""

from __future__ import annotations

import math

import pandas as pd

SCHEMA_VERSION = 1

# Units by column-name suffix; a column matching none is a count, a ratio or a label (see COLUMN_NOTES).
_SUFFIX_UNITS = (
    ("_samples_per_s", "samples/s"),
    ("_gflop_per_s", "GFLOP/s"),
    ("_bytes", "bytes"),
    ("_ms", "ms"),
    ("_s", "s"),
)
_LATENCY_MS = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99")
COLUMN_NOTES = {
    "accuracy": "fraction of test images, 0 to 1",
    "precision_macro": "fraction, 0 to 1",
    "recall_macro": "fraction, 0 to 1",
    "f1_macro": "fraction, 0 to 1",
    "robust_accuracy": "fraction of attacked test images, 0 to 1",
    "sparsity": "fraction of zero weights, 0 to 1",
    "fraction_of_peak": "fraction of the machine's peak FLOP/s, 0 to 1",
    "accuracy_drop_vs_fp32": "accuracy points, fp32 minus int8",
    "macs_dense": "multiply-accumulates per image",
    "macs_effective": "multiply-accumulates per image with nonzero weights",
    "compile_ms_by_batch": "ms per batch size",
    "time_to_accuracy_epochs": "epochs",
    "epochs": "epochs",
    "train_seconds_per_epoch": "s per epoch",
    "latency_cv": "coefficient of variation",
    "latency_robust_cv": "robust coefficient of variation",
}


def column_unit(name: str) -> str:
    if name in _LATENCY_MS:
        return "ms"
    if name in COLUMN_NOTES:
        return COLUMN_NOTES[name]
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def results_document(frame: pd.DataFrame, run_info: dict, sources: dict) -> dict:
    """Return the JSON document: sources (runs, command), column units and one object per row."""
    rows = [{key: _plain(value) for key, value in row.items()} for row in frame.to_dict("records")]
    return {
        "schema_version": SCHEMA_VERSION,
        **sources,
        "profile": (run_info.get("profile") or {}).get("name"),
        "command": run_info.get("command"),
        "columns": {name: column_unit(name) for name in frame.columns},
        "rows": rows,
    }


def _plain(value):
    """Turn pandas and numpy scalars into JSON values; NaN and missing become null."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
