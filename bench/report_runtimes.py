"""Report sections for the runtime measurements: timing, one-time costs, compute efficiency, skipped runtimes.

Built from the records and the results frame alone, like every other section.
"""

from __future__ import annotations

import pandas as pd

from bench.report_compression import _fmt
from bench.store import STATUS_OK

# A runtime that does not apply on the machine (no GPU, no compiler): listed apart, never as a number.
STATUS_SKIPPED = "skipped"


def compute_peak_of(record: dict) -> dict | None:
    """Return the peak FP32 FLOP/s a record's efficiency is measured against, with where it came from.

    The record's manifest contains the compute peak of the run (bench.measure.peak.compute_peak): a
    formula value and a measured SGEMM ceiling, and `reference` names the one fractions use.
    """
    peak = (record.get("manifest") or {}).get("compute_peak") or {}
    reference = peak.get("reference")
    chosen = peak.get(reference) if reference else None
    if not chosen or not chosen.get("flops"):
        return None
    return {"flops": float(chosen["flops"]), "source": reference}


def efficiency(macs_per_sample, samples_per_s, peak: dict | None) -> dict:
    """Compute the achieved GFLOP/s (2 x MACs x samples/s) of one throughput row and its fraction of the peak."""
    if macs_per_sample is None or pd.isna(macs_per_sample) or not samples_per_s:
        return {"achieved_gflop_per_s": None, "peak_gflop_per_s": None, "fraction_of_peak": None, "peak_source": None}
    achieved = 2.0 * float(macs_per_sample) * float(samples_per_s)
    return {
        "achieved_gflop_per_s": achieved / 1e9,
        "peak_gflop_per_s": None if peak is None else peak["flops"] / 1e9,
        "fraction_of_peak": None if peak is None else achieved / peak["flops"],
        "peak_source": None if peak is None else peak["source"],
    }


def runtime_section(frame: pd.DataFrame, records: list[dict]) -> list[str]:
    """List every measured runtime row: latency percentiles, validity, throughput, efficiency, one-time costs."""
    rows = frame[frame["status"] == STATUS_OK]
    if rows.empty:
        return []
    sources = sorted({str(source) for source in rows["peak_source"].dropna()})
    peaks = sorted({float(value) for value in rows["peak_gflop_per_s"].dropna()})
    peak_line = (
        f"Peak: {', '.join(f'{value:,.1f}' for value in peaks)} GFLOP/s FP32 ({', '.join(sources)}; "
        "the run's `manifest.compute_peak` has the inputs)."
        if peaks
        else "No compute peak is recorded for this run, so the fraction of peak is `-`."
    )
    lines = [
        "## Runtime measurements",
        "",
        "Every runtime of every cell. Latency percentiles are per call at batch 1; `valid` is the latency",
        "and throughput validity check (`no` rows are listed under the Results table with their reasons).",
        "Achieved GFLOP/s is 2 x the dense MACs of the ONNX graph per sample x samples/s at the throughput",
        "batch size. % of peak divides it by the machine's peak FP32 FLOP/s for the threads used, on float32",
        f"CPU rows only, because int8 and GPU rows have no CPU FP32 peak to compare with. {peak_line}",
        "One-time costs are never part of the latency: `setup` creates the session, `compile` traces and",
        "compiles (all batch sizes together; results.csv has each), and `first call` is the first inference",
        "after setup and compile.",
        "",
        "| framework | strategy | seed | runtime | p50 ms | p90 ms | p99 ms | latency valid | samples/s "
        "| throughput valid | GFLOP/s | % of peak | setup ms | compile ms | first call ms |",
        "|" + "---|" * 15,
    ]
    for row in rows.to_dict("records"):
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["framework"]),
                    str(row["strategy"]),
                    str(row["seed"]),
                    str(row["runtime"]),
                    _fmt(row["latency_ms_p50"], "{:.3f}"),
                    _fmt(row["latency_ms_p90"], "{:.3f}"),
                    _fmt(row["latency_ms_p99"], "{:.3f}"),
                    _valid(row["latency_valid"]),
                    _fmt(row["throughput_samples_per_s"], "{:,.0f}"),
                    _valid(row["throughput_valid"]),
                    _fmt(row["achieved_gflop_per_s"], "{:.2f}"),
                    _fmt(row["fraction_of_peak"], "{:.1f}", scale=100),
                    _fmt(row["setup_ms"], "{:.1f}"),
                    _fmt(row["compile_ms"], "{:,.0f}"),
                    _fmt(row["first_inference_ms"], "{:.2f}"),
                ]
            )
            + " |"
        )
    return lines + [""]


def not_measured_section(frame: pd.DataFrame) -> list[str]:
    """List the runtimes that do not apply on this machine, each with its reason and the cells it concerns."""
    skipped = frame[frame["status"] == STATUS_SKIPPED]
    if skipped.empty:
        return []
    lines = [
        "### Runtimes not measured on this machine",
        "",
        "These runtimes exist in the benchmark but could not run here; they have no numbers.",
        "",
        "| runtime | framework | cells | reason |",
        "|---|---|---|---|",
    ]
    grouped = skipped.groupby(["runtime", "framework", "skip_reason"], dropna=False, sort=True)
    for (runtime, framework, reason), group in grouped:
        lines.append(f"| {runtime} | {framework} | {len(group)} | {reason} |")
    return lines + [""]


def _valid(value) -> str:
    if value is None or pd.isna(value):
        return "-"
    return "yes" if bool(value) else "**no**"
