"""Build the report from stored records alone: README.md, results.csv, results.json, report.html, figures.

One row per (cell, runtime). A cell that failed, crashed, timed out or is missing has one row with
its status and no numbers, so a gap is visible as a gap and never as a number.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.measure.timing import epoch_timing_validity
from bench.report_claim import claim_section
from bench.report_compression import compression_section, coverage_section, int8_section
from bench.report_figures import FIGURES_DIR, Figure, draw_figures
from bench.report_html import render_html
from bench.report_json import results_document
from bench.report_overview import overview_section
from bench.report_parity import parity_section
from bench.report_peft import peft_section
from bench.report_runtimes import STATUS_SKIPPED, compute_peak_of, efficiency, not_measured_section, runtime_section
from bench.report_seeds import seeds_section
from bench.report_training import time_to_accuracy_section, trained_in_cell, training_section
from bench.spec import FRAMEWORKS
from bench.store import RUN_FILE, STATUS_OK, RunDir, RunFileError

log = logging.getLogger(__name__)

# A torch-vs-tf accuracy gap wider than this (in accuracy points, 0.01 = 1 point) is flagged.
FRAMEWORK_GAP_FLAG = 0.01

# Column order of results.csv; names carry their units.
COLUMNS = [
    "framework",
    "strategy",
    "model",
    "dataset",
    "runtime",
    "seed",
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "robust_accuracy",
    "robust_attack",
    "params",
    "params_nonzero",
    "size_fp32_bytes",
    "size_onnx_bytes",
    "size_gzip_bytes",
    "size_int8_bytes",
    "macs_dense",
    "macs_effective",
    "sparsity",
    "accuracy_drop_vs_fp32",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_n_values",
    "latency_cv",
    "latency_robust_cv",
    "latency_outliers",
    "latency_valid",
    "latency_invalid_reasons",
    "setup_ms",
    "compile_ms",
    "compile_ms_by_batch",
    "first_inference_ms",
    "throughput_first_call_ms",
    "throughput_samples_per_s",
    "throughput_batch_size",
    "throughput_valid",
    "throughput_invalid_reasons",
    "achieved_gflop_per_s",
    "peak_gflop_per_s",
    "fraction_of_peak",
    "peak_source",
    "speedup_latency_vs_baseline",
    "speedup_throughput_vs_baseline",
    "theoretical_speedup_vs_baseline",
    "train_seconds_per_epoch",
    "train_samples_per_s",
    "train_timing_valid",
    "train_timing_invalid_reasons",
    "epochs",
    "target_accuracy",
    "time_to_accuracy_s",
    "time_to_accuracy_epochs",
    "max_abs_diff_logits",
    "label_agreement",
    "peak_rss_bytes",
    "threads",
    "status",
    "error",
    "skip_reason",
    "cell_id",
    "run_id",
    "model_fingerprint",
]


def record_rows(record: dict) -> list[dict]:
    cell = record["cell"]
    base = {
        "framework": cell["framework"],
        "strategy": cell["strategy"],
        "model": cell["model"],
        "dataset": cell["dataset"],
        "seed": cell["seed"],
        "status": record["status"],
        "cell_id": record["cell_id"],
        "run_id": record.get("run_id"),
        "threads": (record.get("fairness") or {}).get("threads"),
        "peak_rss_bytes": record.get("peak_rss_bytes"),
    }
    model = record.get("model") or {}
    training = record.get("training") or {}
    base.update(
        {
            "params": model.get("params"),
            "params_nonzero": model.get("params_nonzero"),
            "size_fp32_bytes": model.get("size_fp32_bytes"),
            "size_onnx_bytes": model.get("size_onnx_bytes"),
            "size_gzip_bytes": model.get("size_gzip_bytes"),
            "macs_dense": model.get("macs_dense"),
            "macs_effective": model.get("macs_effective"),
            "sparsity": _sparsity(model),
            "model_fingerprint": model.get("fingerprint"),
            "train_seconds_per_epoch": training.get("train_seconds_per_epoch"),
            "train_samples_per_s": training.get("train_samples_per_s"),
            **_train_timing(training),
            "epochs": training.get("epochs"),
            **_time_to_accuracy(training, trained_in_cell(record)),
        }
    )
    peak = compute_peak_of(record)
    if record["status"] != STATUS_OK or not record.get("runtimes"):
        error = record.get("error") or {}
        return [{**base, "runtime": None, "error": error.get("message")}]

    attack = _attack_label(record.get("robustness") or {})
    rows = []
    for runtime in record["runtimes"]:
        quality = runtime.get("quality") or {}
        robust = runtime.get("robust") or {}
        latency = runtime.get("latency") or {}
        throughput = runtime.get("throughput") or {}
        agreement = runtime.get("agreement") or {}
        # An int8 runtime runs its own quantized model, with its own size and MAC count.
        own_model = {**(runtime.get("model_size") or {}), **(runtime.get("macs") or {})}
        one_time = runtime.get("one_time") or {}
        compile_ms = one_time.get("compile_ms") or {}
        macs = own_model.get("macs_dense", base["macs_dense"])
        rows.append(
            {
                **base,
                **own_model,
                **efficiency(macs, throughput.get("throughput_samples_per_s"), peak if _fp32_cpu(runtime) else None),
                "skip_reason": runtime.get("reason"),
                "compile_ms": sum(compile_ms.values()) if compile_ms else None,
                "compile_ms_by_batch": "; ".join(f"batch {size}: {ms:.0f}" for size, ms in compile_ms.items()) or None,
                "throughput_first_call_ms": throughput.get("first_call_ms"),
                "accuracy_drop_vs_fp32": runtime.get("accuracy_drop_vs_fp32"),
                "runtime": runtime["runtime"],
                "status": runtime.get("status", record["status"]),
                "error": (runtime.get("error") or {}).get("message"),
                "accuracy": quality.get("accuracy"),
                "precision_macro": quality.get("precision_macro"),
                "recall_macro": quality.get("recall_macro"),
                "f1_macro": quality.get("f1_macro"),
                "robust_accuracy": robust.get("accuracy"),
                "robust_attack": f"{attack}, {robust['attack']}" if robust and attack else None,
                "latency_ms_p50": latency.get("latency_ms_p50"),
                "latency_ms_p90": latency.get("latency_ms_p90"),
                "latency_ms_p99": latency.get("latency_ms_p99"),
                "latency_n_values": latency.get("n_values"),
                "latency_cv": latency.get("cv"),
                "latency_robust_cv": latency.get("robust_cv"),
                "latency_outliers": latency.get("outliers"),
                "latency_valid": latency.get("valid"),
                "latency_invalid_reasons": "; ".join(latency.get("invalid_reasons") or []) or None,
                "setup_ms": (runtime.get("one_time") or {}).get("setup_ms"),
                "first_inference_ms": (runtime.get("one_time") or {}).get("first_inference_ms"),
                "throughput_samples_per_s": throughput.get("throughput_samples_per_s"),
                "throughput_batch_size": throughput.get("batch_size"),
                "throughput_valid": throughput.get("valid"),
                "throughput_invalid_reasons": "; ".join(throughput.get("invalid_reasons") or []) or None,
                "max_abs_diff_logits": agreement.get("max_abs_diff_logits"),
                "label_agreement": agreement.get("label_agreement"),
            }
        )
    return rows


def _train_timing(training: dict) -> dict:
    """Judge the stored epoch times, so that the report applies the current rule to any record."""
    epoch_seconds = training.get("epoch_seconds")
    if not epoch_seconds:
        return {"train_timing_valid": None, "train_timing_invalid_reasons": None}
    judged = epoch_timing_validity(epoch_seconds)
    return {
        "train_timing_valid": judged["valid"],
        "train_timing_invalid_reasons": "; ".join(judged["invalid_reasons"]) or None,
    }


def _fp32_cpu(runtime: dict) -> bool:
    """Return whether a runtime row computes in float32 on the CPU, the only rows the CPU FP32 peak applies to."""
    name = str(runtime.get("runtime", ""))
    return not runtime.get("int8") and not name.endswith(("-cuda", "-gpu"))


def _time_to_accuracy(training: dict, trained: bool) -> dict:
    """Return the time to accuracy of a cell that trained its network; a cell that loaded it has none."""
    reached = training.get("time_to_accuracy") or {} if trained else {}
    return {
        "target_accuracy": reached.get("target_accuracy"),
        "time_to_accuracy_s": reached.get("train_seconds"),
        "time_to_accuracy_epochs": reached.get("epochs"),
    }


def _attack_label(robustness: dict) -> str | None:
    """Describe a record's robustness attack, e.g. "PGD eps 0.1, 10 steps of 0.025, 10000 images"."""
    attack = robustness.get("attack")
    if robustness.get("status") != "ok" or not attack:
        return None
    steps = attack["steps"]
    return (
        f"{attack['method'].upper()} eps {attack['epsilon']:g}, {steps} step{'s' if steps != 1 else ''} "
        f"of {robustness['step_size']:g}, {robustness['samples']} images"
    )


def _sparsity(model: dict) -> float | None:
    params, nonzero = model.get("params"), model.get("params_nonzero")
    if not params or nonzero is None:
        return None
    return 1.0 - nonzero / params


def records_frame(records: list[dict]) -> pd.DataFrame:
    rows = [row for record in records for row in record_rows(record)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    add_speedups(frame)
    # torch before tf, and each framework's native runtimes before ONNX Runtime.
    order = {name: index for index, name in enumerate(FRAMEWORKS)}
    frame["_framework_order"] = frame["framework"].map(lambda name: order.get(name, len(order)))
    frame["_runtime_order"] = frame["runtime"].fillna("").str.startswith("onnxruntime").astype(int)
    frame = frame.sort_values(
        ["dataset", "strategy", "seed", "_framework_order", "framework", "_runtime_order", "runtime"],
        na_position="last",
    )
    return frame.drop(columns=["_framework_order", "_runtime_order"]).reset_index(drop=True)


# The fp32 runtime an int8 runtime is compared with.
FP32_COUNTERPART = {"onnxruntime-int8": "onnxruntime", "torch-int8-pt2e": "torch-eager", "tflite-int8": "tf-function"}


def add_speedups(frame: pd.DataFrame) -> None:
    """Fill the speedup columns: each row against the baseline strategy's row of the same runtime.

    Same framework, dataset, model and seed; an int8 runtime is compared with its fp32 counterpart in
    the baseline (onnxruntime-int8 with onnxruntime, ...). Measured speedups use latency p50 at batch 1
    and throughput at the throughput batch size; the theoretical one uses effective MACs.
    """
    baseline = frame[(frame["strategy"] == "baseline") & (frame["status"] == STATUS_OK)]
    index = {
        (row["framework"], row["dataset"], row["model"], row["seed"], row["runtime"]): row
        for row in baseline.to_dict("records")
    }
    for position, row in frame.iterrows():
        runtime = FP32_COUNTERPART.get(row["runtime"], row["runtime"])
        reference = index.get((row["framework"], row["dataset"], row["model"], row["seed"], runtime))
        if reference is None or row["status"] != STATUS_OK:
            continue
        frame.at[position, "speedup_latency_vs_baseline"] = _ratio(reference["latency_ms_p50"], row["latency_ms_p50"])
        frame.at[position, "speedup_throughput_vs_baseline"] = _ratio(
            row["throughput_samples_per_s"], reference["throughput_samples_per_s"]
        )
        frame.at[position, "theoretical_speedup_vs_baseline"] = _ratio(reference["macs_effective"], row["macs_effective"])


def _ratio(numerator, denominator) -> float | None:
    if _missing(numerator) or _missing(denominator) or not denominator:
        return None
    return float(numerator) / float(denominator)


def build_report(
    run_dir: RunDir, out_dir: Path, claim_runs: tuple[RunDir, ...] = (), *, relative_to: Path | None = None
) -> dict:
    """Write README.md, results.csv, results.json, report.html and figures/ for `run_dir` into `out_dir`.

    `claim_runs` are further runs (say, on the mnist-5k sample) whose records feed only the claim check.
    Paths in the files are relative to `relative_to` (default `out_dir`), so that a report built in a
    scratch directory can be compared with the one in the results directory. Return the paths written,
    the unreadable files (`problems`) and the planned cells without a record.
    """
    base = Path(relative_to or out_dir)
    records, problems = run_dir.read_records()
    try:
        info = run_dir.read_run_info()
    except RunFileError as error:
        # The tables come from the records; a damaged run.json only loses the run's header lines.
        info = {}
        problems.append((run_dir.path / RUN_FILE, f"{error.reason}; the header lines of the report are missing"))
    for path, problem in problems:
        log.warning("%s: %s; it is listed under 'Cells without numbers' in the report", path, problem)
    if not records and not problems:
        raise FileNotFoundError(f"no records in {run_dir.records_dir}; run `python -m bench all` first")
    unfinished = unfinished_cells(info, records, problems)
    if unfinished:
        log.warning(
            "%d planned cell(s) have no record, so the run is incomplete; `python -m bench all --resume %s` runs them",
            len(unfinished),
            run_dir.path,
        )

    claim_records = []
    for claim_run in claim_runs:
        more, more_problems = claim_run.read_records()
        claim_records += more
        problems += more_problems

    frame = records_frame(records)
    claim_frame = pd.concat([frame, records_frame(claim_records)], ignore_index=True) if claim_records else frame
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    frame.to_csv(csv_path, index=False, float_format="%.6g")
    figures = draw_figures(frame, out_dir)
    sources = report_sources(run_dir, claim_runs, base)
    json_path = out_dir / "results.json"
    json_path.write_text(
        json.dumps(results_document(frame, info, sources), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    markdown_path = out_dir / "README.md"
    markdown = render_markdown(
        frame, run_dir, records, problems, base, info, figures=figures, claim_frame=claim_frame, sources=sources
    )
    markdown_path.write_text(markdown, encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(markdown, out_dir), encoding="utf-8")
    return {
        "csv": csv_path,
        "markdown": markdown_path,
        "json": json_path,
        "html": html_path,
        "figures": [figure.path for figure in figures],
        "problems": problems,
        "unfinished": unfinished,
    }


def report_sources(run_dir: RunDir, claim_runs: tuple[RunDir, ...], base: Path) -> dict:
    """Name the runs a report was built from, relative to `base`, so that `report --check` can rebuild it."""
    import matplotlib

    def location(path: Path) -> str:
        # Relative when the run is inside `base` (a committed results directory), else absolute.
        resolved = Path(path).resolve()
        try:
            return str(resolved.relative_to(Path(base).resolve()))
        except ValueError:
            return str(resolved)

    return {
        "run_dir": location(run_dir.path),
        "claim_run_dirs": [location(claim.path) for claim in claim_runs],
        # PNG bytes depend on the matplotlib version; `report --check` compares them only under the same one.
        "matplotlib_version": matplotlib.__version__,
    }


def unfinished_cells(info: dict, records: list[dict], problems) -> list[str]:
    """List the cells run.json planned that have neither a record nor an unreadable record file."""
    seen = {record["cell_id"] for record in records} | {Path(path).stem for path, _ in problems}
    return [cell_id for cell_id in info.get("cells") or [] if cell_id not in seen]


def render_markdown(
    frame: pd.DataFrame,
    run_dir: RunDir,
    records: list[dict],
    problems,
    out_dir: Path,
    info: dict | None = None,
    *,
    figures: list[Figure] = (),
    claim_frame: pd.DataFrame | None = None,
    sources: dict | None = None,
) -> str:
    info = run_dir.read_run_info() if info is None else info
    claim_frame = frame if claim_frame is None else claim_frame
    claim_run_ids = [Path(path).name for path in (sources or {}).get("claim_run_dirs", [])]
    env = info.get("environment") or {}
    profile = info.get("profile") or {}
    lines = [
        "# twinbench results",
        "",
        "Generated by `python -m bench report` from the records in "
        f"`{_relative(run_dir.path, out_dir)}`; do not edit by hand.",
        "",
        f"- run: `{run_dir.run_id}`, command: `{info.get('command', 'unknown')}`",
        f"- profile: `{profile.get('name', '?')}` ({profile.get('epochs', '?')} epochs, "
        f"batch {profile.get('batch_size', '?')}, seeds {profile.get('seeds', '?')}), "
        f"threads per framework: {info.get('threads', '?')}",
        f"- dataset: {_dataset_line(info.get('dataset') or {})}",
        f"- wall time: {wall_time_line(info, records)}",
        f"- machine: {_machine_line(env)}",
        "",
        *overview_section(frame),
        *figures_section(figures),
        "## Results",
        "",
        "One row per framework, strategy and runtime, in one table per strategy. Accuracy and macro F1 are computed on the test split",
        "from that runtime's own outputs. Robust accuracy is that runtime's accuracy on adversarial test",
        f"images: {_robustness_line(records)}.",
        "`train s/epoch` is the cell's first training phase: the baseline training, or the pretraining of a",
        "`peft-*` cell (its fine-tuning epochs are in the record's steps). `peak RSS` is the most resident",
        "memory the cell's process held, training and measurement included.",
        "Latency is per call at batch 1 (MLPerf percentile rule, warmup",
        f"discarded); throughput is at batch {_throughput_batch(frame)}. `!` marks a latency or throughput",
        "value whose validity check failed (reasons below the table), and so does train s/epoch when its",
        "epochs' times vary by more than the same limit. `-` is a value that was not measured, or a p90 or",
        "p99 that needs more values (64 and 662).",
        "",
        *_tables_by_strategy(frame),
    ]
    lines += _invalid_section(frame)
    lines += runtime_section(frame, records)
    lines += not_measured_section(frame)
    lines += training_section(frame, records)
    lines += time_to_accuracy_section(records)
    lines += peft_section(frame, records)
    lines += compression_section(frame)
    lines += int8_section(frame)
    lines += _framework_section(records)
    lines += parity_section(run_dir.path, info.get("command"))
    lines += seeds_section(records)
    lines += coverage_section(records)
    lines += claim_section(claim_frame, claim_run_ids)
    lines += _failure_section(frame, problems, unfinished_cells(info, records, problems), run_dir)
    lines += _environment_section(env, records)
    return "\n".join(lines) + "\n"


def _robustness_line(records: list[dict]) -> str:
    """Describe the run's attacks once each, with the image counts they ran on."""
    attacks: dict[str, set[int]] = {}
    for record in records:
        robustness = record.get("robustness") or {}
        label = _attack_label(robustness)
        if label:
            attacks.setdefault(label.rsplit(", ", 1)[0], set()).add(int(robustness["samples"]))
    if not attacks:
        return "not measured in this run"
    parts = [
        f"{label}, on {' or '.join(f'{count:,}' for count in sorted(counts))} test images of the cell's task"
        for label, counts in sorted(attacks.items())
    ]
    return (
        "; ".join(parts) + ". A fine-tuning cell's task is its target classes. Epsilon and step size are in [0, 1] "
        "pixel units. The images are crafted on each cell's fp32 model in its own framework, so the attack is "
        "white-box for the fp32 runtimes and a transfer attack for the int8 ones"
    )


def _throughput_batch(frame: pd.DataFrame) -> str:
    sizes = sorted({int(size) for size in frame["throughput_batch_size"].dropna()})
    return ", ".join(str(size) for size in sizes) or "-"


def figures_section(figures) -> list[str]:
    if not figures:
        return []
    lines = ["## Figures", ""]
    for figure in figures:
        lines += [f"### {figure.title}", "", f"![{figure.title}]({FIGURES_DIR}/{figure.path.name})", "", figure.caption, ""]
    return lines


def _tables_by_strategy(frame: pd.DataFrame) -> list[str]:
    lines = []
    for strategy in sorted(frame["strategy"].dropna().unique()):
        lines += [f"### {strategy}", "", _main_table(frame[frame["strategy"] == strategy]), ""]
    return lines


def _main_table(frame: pd.DataFrame) -> str:
    header = (
        "| framework | strategy | dataset | runtime | seed | accuracy | F1 macro | robust accuracy | params "
        "| ONNX KB | gzip KB | p50 ms | p90 ms | p99 ms | throughput samples/s | train s/epoch | peak RSS MiB "
        "| status |"
    )
    lines = [header, "|" + "---|" * 18]
    for row in frame[frame["status"] != STATUS_SKIPPED].to_dict("records"):
        flag = " !" if row.get("latency_valid") is False else ""
        throughput_flag = " !" if row.get("throughput_valid") is False else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["framework"]),
                    str(row["strategy"]),
                    str(row["dataset"]),
                    _text(row["runtime"]),
                    str(row["seed"]),
                    _number(row["accuracy"], "{:.4f}"),
                    _number(row["f1_macro"], "{:.4f}"),
                    _number(row["robust_accuracy"], "{:.4f}"),
                    _number(row["params"], "{:,.0f}"),
                    _number(row["size_onnx_bytes"], "{:.1f}", scale=1 / 1024),
                    _number(row["size_gzip_bytes"], "{:.1f}", scale=1 / 1024),
                    _number(row["latency_ms_p50"], "{:.3f}") + flag,
                    _number(row["latency_ms_p90"], "{:.3f}"),
                    _number(row["latency_ms_p99"], "{:.3f}"),
                    _number(row["throughput_samples_per_s"], "{:,.0f}") + throughput_flag,
                    _number(row["train_seconds_per_epoch"], "{:.1f}") + (" !" if row.get("train_timing_valid") is False else ""),
                    _number(row["peak_rss_bytes"], "{:,.0f}", scale=1 / 2**20),
                    str(row["status"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _invalid_section(frame: pd.DataFrame) -> list[str]:
    latency = frame[frame["latency_valid"] == False]  # noqa: E712 - pandas elementwise comparison
    throughput = frame[frame["throughput_valid"] == False]  # noqa: E712
    training = frame[frame["train_timing_valid"] == False].drop_duplicates("cell_id")  # noqa: E712
    if latency.empty and throughput.empty and training.empty:
        return []
    lines = ["### Timings that failed their validity check", ""]
    for row in training.to_dict("records"):
        lines.append(f"- {row['cell_id']}, train s/epoch: {row['train_timing_invalid_reasons']}")
    for row in latency.to_dict("records"):
        lines.append(f"- {row['cell_id']} / {row['runtime']}, latency: {row['latency_invalid_reasons']}")
    for row in throughput.to_dict("records"):
        lines.append(f"- {row['cell_id']} / {row['runtime']}, throughput: {_text(row['throughput_invalid_reasons'])}")
    return lines + [""]


def _framework_section(records: list[dict]) -> list[str]:
    """Compare torch and tf cell by cell: native accuracy, gap and final training loss."""
    cells: dict[tuple, dict[str, dict]] = {}
    for record in records:
        if record["status"] != STATUS_OK:
            continue
        cell = record["cell"]
        key = (cell["strategy"], cell["dataset"], cell["model"], cell["seed"])
        cells.setdefault(key, {})[cell["framework"]] = record
    pairs = {key: frameworks for key, frameworks in cells.items() if {"torch", "tf"} <= set(frameworks)}
    if not pairs:
        return []

    lines = [
        "## torch vs tf",
        "",
        "Accuracy of each framework's native runtime on the same test split, from the same initial weights",
        f"and batch order. A gap wider than {FRAMEWORK_GAP_FLAG * 100:.0f} point is flagged `!`.",
        "",
        "| strategy | dataset | seed | torch accuracy | tf accuracy | gap (tf - torch, points) "
        "| torch robust accuracy | tf robust accuracy | torch final train loss | tf final train loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (strategy, dataset, _model, seed), frameworks in sorted(pairs.items()):
        torch_accuracy = _native_accuracy(frameworks["torch"])
        tf_accuracy = _native_accuracy(frameworks["tf"])
        gap = None if torch_accuracy is None or tf_accuracy is None else tf_accuracy - torch_accuracy
        flag = " !" if gap is not None and abs(gap) > FRAMEWORK_GAP_FLAG else ""
        lines.append(
            f"| {strategy} | {dataset} | {seed} | {_number(torch_accuracy, '{:.4f}')} | "
            f"{_number(tf_accuracy, '{:.4f}')} | {_number(gap, '{:+.2f}', scale=100)}{flag} | "
            f"{_number(_native_robust(frameworks['torch']), '{:.4f}')} | "
            f"{_number(_native_robust(frameworks['tf']), '{:.4f}')} | "
            f"{_number(_final_loss(frameworks['torch']), '{:.4f}')} | {_number(_final_loss(frameworks['tf']), '{:.4f}')} |"
        )
    return lines + [""]


def _native_accuracy(record: dict) -> float | None:
    for runtime in record.get("runtimes") or []:
        if runtime.get("kind") == "native" and runtime.get("quality"):
            return runtime["quality"]["accuracy"]
    return None


def _native_robust(record: dict) -> float | None:
    for runtime in record.get("runtimes") or []:
        if runtime.get("kind") == "native" and runtime.get("robust"):
            return runtime["robust"]["accuracy"]
    return None


def _final_loss(record: dict) -> float | None:
    """Return the last epoch's training loss: of the last fine-tuning if a step fine-tuned, else of training."""
    losses = (record.get("training") or {}).get("epoch_losses") or []
    for step in record.get("steps") or []:
        losses = (step.get("finetune") or {}).get("epoch_losses") or losses
    return losses[-1] if losses else None


def _failure_section(frame: pd.DataFrame, problems, unfinished: list[str], run_dir: RunDir) -> list[str]:
    failed = frame[(frame["status"] != STATUS_OK) & (frame["status"] != STATUS_SKIPPED)]
    if failed.empty and not problems and not unfinished:
        return []
    lines = ["## Cells without numbers", ""]
    for row in failed.to_dict("records"):
        where = row["cell_id"] + (f" / {row['runtime']}" if not _missing(row["runtime"]) else "")
        lines.append(f"- {where}: **{row['status']}**: {_text(row['error'])}")
    for path, problem in problems:
        lines.append(f"- `{Path(path).name}`: **unreadable**: {problem}")
    for cell_id in unfinished:
        lines.append(
            f"- {cell_id}: **not run**: planned in run.json but without a record (the run was interrupted or "
            f"is still running; `python -m bench all --resume {run_dir.path}` runs it)"
        )
    return lines + [""]


def _environment_section(env: dict, records: list[dict]) -> list[str]:
    versions: dict[str, str] = {}
    for record in records:
        versions.update((record.get("environment") or {}).get("framework_versions") or {})
    packages = env.get("packages") or {}
    lines = ["## Environment", "", "| item | value |", "|---|---|"]
    for key in ("cpu_model", "physical_cores", "logical_cores", "memory_total_bytes", "platform", "python_version"):
        if key in env:
            lines.append(f"| {key} | {env[key]} |")
    for name, version in sorted({**{k: v for k, v in packages.items() if v}, **versions}.items()):
        lines.append(f"| {name} | {version} |")
    return lines + [""]


def wall_time_line(info: dict, records: list[dict]) -> str:
    """Describe how long the run took: from its start to its last record, and the cells' own sum.

    The span includes any pause between an interruption and `--resume`, so the sum of the cells'
    wall_seconds is given beside it.
    """
    finished = [record["finished_at"] for record in records if record.get("finished_at")]
    started_at = info.get("started_at")
    if not started_at or not finished:
        return "unknown (run.json has no start time or no record has a finish time)"
    start = datetime.fromisoformat(started_at).astimezone(timezone.utc)
    end = max(datetime.fromisoformat(stamp) for stamp in finished).astimezone(timezone.utc)
    cells_s = sum(record.get("wall_seconds") or 0.0 for record in records)
    resumed = len(info.get("resumed_at") or [])
    resumed_text = {0: "", 1: ", resumed once"}.get(resumed, f", resumed {resumed} times")
    return (
        f"{_duration((end - start).total_seconds())} from the start ({start:%Y-%m-%d %H:%M} UTC) to the last "
        f"record ({end:%Y-%m-%d %H:%M} UTC){resumed_text}; the {len(records)} cells' own times add up to "
        f"{_duration(cells_s)}"
    )


def _machine_line(env: dict) -> str:
    memory = env.get("memory_total_bytes")
    memory_text = f", {memory / 2**30:.1f} GiB RAM" if memory else ""
    dirty = {True: " (the tree had uncommitted or untracked files)", None: " (tree state unknown)"}
    return (
        f"{env.get('cpu_model', '?')}, {env.get('physical_cores', '?')} physical cores{memory_text}, "
        f"{env.get('platform', '?')}, Python {env.get('python_version', '?')}, "
        f"git commit {str(env.get('git_commit') or '?')[:12]}{dirty.get(env.get('git_dirty'), '')}"
    )


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _dataset_line(dataset: dict) -> str:
    if not dataset:
        return "unknown"
    return (
        f"`{dataset.get('name', '?')}` from {dataset.get('source', '?')}, "
        f"{dataset.get('train_size', '?')} train / {dataset.get('test_size', '?')} test images"
    )


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value, fmt: str, scale: float = 1.0) -> str:
    if _missing(value):
        return "-"
    return fmt.format(value * scale)


def _text(value) -> str:
    return "-" if _missing(value) else str(value)
