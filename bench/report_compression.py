"""Report sections for compressed models: size and speed against the baseline, int8 against fp32, coverage.

Everything here is computed from the records and the results frame (bench.report.records_frame), so the
sections can be rebuilt from stored records alone.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.store import STATUS_OK

COMPRESSION_STRATEGIES = ("prune-unstructured", "prune-structured", "lowrank", "quantize", "compress")


def compression_section(frame: pd.DataFrame) -> list[str]:
    """Build the table of each strategy's ONNX Runtime rows against the baseline (accuracy, size, speed)."""
    rows = frame[
        (frame["status"] == STATUS_OK)
        & frame["runtime"].isin(["onnxruntime", "onnxruntime-int8"])
        & frame["strategy"].isin(("baseline", *COMPRESSION_STRATEGIES))
    ]
    if rows.empty or not (rows["strategy"] != "baseline").any():
        return []
    baseline_accuracy = {
        (row["framework"], row["dataset"], row["seed"]): row["accuracy"]
        for row in rows[(rows["strategy"] == "baseline") & (rows["runtime"] == "onnxruntime")].to_dict("records")
    }
    lines = [
        "## Compression against the baseline",
        "",
        "ONNX Runtime rows, so that every framework and strategy is timed by the same engine. Size is the",
        "gzip-compressed ONNX file; MACs are counted per sample from the ONNX graph, effective MACs skip",
        "zero weights. Speedups divide the baseline's onnxruntime latency p50 (batch 1) and throughput",
        "(large batch) by this row's, measured in the same run; theoretical speedup is the ratio of effective MACs.",
        "",
        "| strategy | framework | runtime | accuracy | vs baseline (points) | params | nonzero | gzip KB "
        "| MACs | effective MACs | theoretical speedup | speedup batch 1 | speedup large batch |",
        "|" + "---|" * 13,
    ]
    for row in rows.to_dict("records"):
        base = baseline_accuracy.get((row["framework"], row["dataset"], row["seed"]))
        delta = None if base is None or _missing(row["accuracy"]) else (row["accuracy"] - base) * 100
        lines.append(
            "| "
            + " | ".join(
                [
                    row["strategy"],
                    row["framework"],
                    row["runtime"],
                    _fmt(row["accuracy"], "{:.4f}"),
                    _fmt(delta, "{:+.2f}"),
                    _fmt(row["params"], "{:,.0f}"),
                    _fmt(row["params_nonzero"], "{:,.0f}"),
                    _fmt(row["size_gzip_bytes"], "{:.1f}", 1 / 1024),
                    _fmt(row["macs_dense"], "{:,.0f}"),
                    _fmt(row["macs_effective"], "{:,.0f}"),
                    _fmt(row["theoretical_speedup_vs_baseline"], "{:.2f}x"),
                    _fmt(row["speedup_latency_vs_baseline"], "{:.2f}x"),
                    _fmt(row["speedup_throughput_vs_baseline"], "{:.2f}x"),
                ]
            )
            + " |"
        )
    return lines + [""]


def int8_section(frame: pd.DataFrame) -> list[str]:
    """Build the table of int8 against fp32 speed (faster or slower), per runtime and cell."""
    from bench.report import FP32_COUNTERPART

    int8 = frame[frame["runtime"].isin(list(FP32_COUNTERPART)) & (frame["status"] == STATUS_OK)]
    if int8.empty:
        return []
    fp32 = {
        (row["cell_id"], row["runtime"]): row
        for row in frame[frame["status"] == STATUS_OK].to_dict("records")
    }
    lines = [
        "## int8 against fp32",
        "",
        "The int8 model and its fp32 source measured in the same cell, with the thread count shown.",
        "",
        "| strategy | framework | int8 runtime | fp32 runtime | threads | fp32 p50 ms | int8 p50 ms | batch 1 | "
        "fp32 samples/s | int8 samples/s | large batch | accuracy drop (points) | int8 bytes |",
        "|" + "---|" * 13,
    ]
    for row in int8.to_dict("records"):
        counterpart = FP32_COUNTERPART[row["runtime"]]
        reference = fp32.get((row["cell_id"], counterpart))
        if reference is None:
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    row["strategy"],
                    row["framework"],
                    row["runtime"],
                    counterpart,
                    _fmt(row["threads"], "{:.0f}"),
                    _fmt(reference["latency_ms_p50"], "{:.3f}"),
                    _fmt(row["latency_ms_p50"], "{:.3f}"),
                    _verdict(reference["latency_ms_p50"], row["latency_ms_p50"], lower_is_better=True),
                    _fmt(reference["throughput_samples_per_s"], "{:,.0f}"),
                    _fmt(row["throughput_samples_per_s"], "{:,.0f}"),
                    _verdict(reference["throughput_samples_per_s"], row["throughput_samples_per_s"], lower_is_better=False),
                    _fmt(row["accuracy_drop_vs_fp32"], "{:+.2f}", 100),
                    _fmt(row["size_int8_bytes"], "{:,.0f}"),
                ]
            )
            + " |"
        )
    return lines + [""]


def coverage_section(records: list[dict]) -> list[str]:
    """List the layers each step pruned, factorized or quantized, per cell."""
    lines: list[str] = []
    for record in sorted(records, key=lambda r: (r["cell"]["strategy"], r["cell"]["framework"])):
        if record["status"] != STATUS_OK:
            continue
        details = _coverage_lines(record)
        if details:
            lines.append(f"- **{record['cell_id']}**")
            lines += [f"  - {detail}" for detail in details]
    if not lines:
        return []
    return ["## Coverage", "", "What each compression step changed, layer by layer.", "", *lines, ""]


def _coverage_lines(record: dict) -> list[str]:
    details = []
    for step in record.get("steps") or []:
        name = step.get("step")
        if name == "prune":
            layers = (step.get("sparsity") or {}).get("layers") or {}
            parts = [f"{layer} {info.get('sparsity', 0):.0%}" for layer, info in layers.items()]
            details.append("pruned (sparsity per kernel): " + ", ".join(parts))
        elif name in ("prune-structured", "lowrank"):
            layers = (step.get("report") or {}).get("layers") or {}
            parts = [f"{layer}: {_layer_summary(info)}" for layer, info in layers.items()]
            details.append(f"{name}: " + "; ".join(parts))
    for runtime in record.get("runtimes") or []:
        coverage = runtime.get("coverage")
        if runtime.get("int8") and coverage:
            quantized = coverage.get("quantized_nodes") or coverage.get("int8_layers") or []
            floating = coverage.get("not_quantized_nodes") or coverage.get("float_layers") or []
            details.append(
                f"{runtime['runtime']}: int8 {_names(quantized)}; float {_names(floating) or 'none'}"
            )
    return details


def _layer_summary(info: dict) -> str:
    if "full_rank" in info:
        if not info.get("factorized"):
            return f"not factorized ({info.get('reason')})"
        return f"rank {info['rank']}/{info['full_rank']}, energy {info.get('energy_kept', 0):.3f}"
    if "kept_channels" in info:
        return f"kept {info['kept_channels']}/{info['original_channels']} channels"
    return str(info)


def _names(items) -> str:
    names = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("node") or item.get("name") or item.get("layer") or str(item)
        names.append(str(item))
    return ", ".join(names)


def _verdict(fp32_value, int8_value, *, lower_is_better: bool) -> str:
    if _missing(fp32_value) or _missing(int8_value) or not fp32_value or not int8_value:
        return "-"
    ratio = fp32_value / int8_value if lower_is_better else int8_value / fp32_value
    word = "faster" if ratio > 1 else "slower"
    return f"{ratio:.2f}x ({word})"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, fmt: str, scale: float = 1.0) -> str:
    if _missing(value):
        return "-"
    return fmt.format(value * scale)
