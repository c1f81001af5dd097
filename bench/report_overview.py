"""The overview table: one row per strategy and framework, with the numbers of its best runtime."""

from __future__ import annotations

import pandas as pd

from bench.store import STATUS_OK

NATIVE_INT8_RUNTIMES = ("torch-int8-pt2e", "tflite-int8")


def best_runtime(rows: pd.DataFrame) -> str | None:
    """Name the runtime with the lowest median p90 latency over seeds, preferring rows whose timing is valid."""
    timed = rows[rows["latency_ms_p90"].notna()]
    if timed.empty:
        return None
    valid = timed[timed["latency_valid"] != False]  # noqa: E712 - pandas elementwise comparison
    pool = valid if not valid.empty else timed
    medians = pool.groupby("runtime")["latency_ms_p90"].median().sort_index()
    return str(medians.idxmin())


def overview_section(frame: pd.DataFrame) -> list[str]:
    measured = frame[(frame["status"] == STATUS_OK) & frame["accuracy"].notna()]
    if measured.empty:
        return []
    seeds = measured["seed"].nunique()
    lines = [
        "## Overview",
        "",
        "One row per strategy and framework. The best runtime is the one with the lowest p90 latency at batch 1 "
        "among those whose latency passed its validity check (all runtimes when none did). Its accuracy, macro "
        "F1, robust accuracy, gzip size of the model file it runs, p90 latency and throughput are shown"
        + (f", as mean ± standard deviation over {seeds} seeds." if seeds > 1 else "."),
        "",
        "| strategy | framework | best runtime | accuracy | F1 macro | robust accuracy | gzip KB | p90 ms | "
        "throughput samples/s | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (strategy, framework), rows in measured.groupby(["strategy", "framework"], sort=True):
        runtime = best_runtime(rows)
        if runtime is None:
            continue
        chosen = rows[rows["runtime"] == runtime]
        if runtime in NATIVE_INT8_RUNTIMES:
            # These run the framework's own int8 file, whose gzip size is not measured.
            size = _spread(chosen["size_int8_bytes"] / 1024, "{:.1f}") + " †"
        else:
            size = _spread(chosen["size_gzip_bytes"] / 1024, "{:.1f}")
        lines.append(
            f"| {strategy} | {framework} | {runtime} | {_spread(chosen['accuracy'], '{:.4f}')} | "
            f"{_spread(chosen['f1_macro'], '{:.4f}')} | {_spread(chosen['robust_accuracy'], '{:.4f}')} | "
            f"{size} | {_spread(chosen['latency_ms_p90'], '{:.3f}')} | "
            f"{_spread(chosen['throughput_samples_per_s'], '{:,.0f}')} | {chosen['seed'].nunique()} |"
        )
    lines += [
        "",
        "† the size of the serialized native int8 model that runtime loads, uncompressed: its gzip size is not "
        "measured.",
    ]
    return lines + [""]


def _spread(values: pd.Series, fmt: str) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "-"
    if len(values) == 1:
        return fmt.format(values.iloc[0])
    return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))}"
