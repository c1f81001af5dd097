"""Figures of a report, drawn with matplotlib from the results frame into OUT_DIR/figures/*.png.

The PNG files carry no timestamp or software version in their metadata, so that redrawing the same
records with the same matplotlib version gives the same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.store import STATUS_OK

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"
FRAMEWORK_COLORS = {"torch": "#d62728", "tf": "#1f77b4"}
_PNG_METADATA = {"Software": None}
_DPI = 100


@dataclass(frozen=True)
class Figure:
    name: str  # file stem under figures/
    title: str
    caption: str
    path: Path


def draw_figures(frame: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Draw every figure the frame has data for; return them in report order."""
    import matplotlib

    matplotlib.use("Agg")
    directory = Path(out_dir) / FIGURES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    measured = frame[(frame["status"] == STATUS_OK) & frame["accuracy"].notna()]
    figures = []
    for draw in (_accuracy_vs_size, _latency_by_runtime, _torch_vs_tf_accuracy, _fraction_of_peak):
        figure = draw(measured, directory)
        if figure is not None:
            figures.append(figure)
    return figures


def pareto_front(sizes: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """Return the indices of the points no other point beats: smaller or equal size and higher accuracy."""
    order = np.lexsort((-accuracies, sizes))
    front, best = [], -np.inf
    for index in order:
        if accuracies[index] > best:
            front.append(index)
            best = accuracies[index]
    return np.array(front, dtype=int)


def model_points(measured: pd.DataFrame) -> pd.DataFrame:
    """Average each ONNX export (fp32 and int8) over seeds: one point per framework, strategy and model file."""
    onnx = measured[measured["runtime"].isin(["onnxruntime", "onnxruntime-int8"]) & measured["size_gzip_bytes"].notna()]
    return (
        onnx.groupby(["framework", "strategy", "runtime"], as_index=False)
        .agg(accuracy=("accuracy", "mean"), size_gzip_bytes=("size_gzip_bytes", "mean"), seeds=("seed", "nunique"))
        .sort_values(["framework", "size_gzip_bytes"], kind="stable")
    )


def _save(figure, directory: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = directory / f"{name}.png"
    figure.savefig(path, dpi=_DPI, metadata=_PNG_METADATA)
    plt.close(figure)
    return path


def _accuracy_vs_size(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    points = model_points(measured)
    if points.empty:
        return None
    figure, axes = plt.subplots(figsize=(9, 5.5), layout="constrained")
    for framework, group in points.groupby("framework", sort=True):
        color = FRAMEWORK_COLORS.get(framework, "gray")
        kb = group["size_gzip_bytes"].to_numpy() / 1024
        accuracy = group["accuracy"].to_numpy()
        int8 = (group["runtime"] == "onnxruntime-int8").to_numpy()
        axes.scatter(kb[~int8], accuracy[~int8], color=color, marker="o", label=f"{framework} fp32")
        axes.scatter(kb[int8], accuracy[int8], color=color, marker="^", label=f"{framework} int8")
        front = pareto_front(kb, accuracy)
        axes.step(kb[front], accuracy[front], where="post", color=color, alpha=0.6, label=f"{framework} Pareto front")
        for x, y, strategy in zip(kb, accuracy, group["strategy"], strict=True):
            axes.annotate(strategy, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_xscale("log")
    # Plain numbers on the log axis: 20 and 50 read better than 2 x 10^1 and 5 x 10^1.
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(ScalarFormatter())
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_xlabel("gzip-compressed ONNX size (KB, log scale)")
    axes.set_ylabel("test accuracy (ONNX Runtime)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    path = _save(figure, directory, "accuracy_vs_size")
    return Figure(
        "accuracy_vs_size",
        "Accuracy against model size",
        "Each point is a strategy's ONNX export (circle fp32, triangle int8) run in ONNX Runtime, mean over seeds. "
        "The step line is each framework's Pareto front: no model is both smaller and more accurate.",
        path,
    )


def _latency_by_runtime(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    timed = measured[measured["latency_ms_p50"].notna()]
    if timed.empty:
        return None
    table = timed.groupby(["framework", "strategy", "runtime"], as_index=False)[["latency_ms_p50", "latency_ms_p90"]].median()
    frameworks = sorted(table["framework"].unique())
    figure, all_axes = plt.subplots(
        len(frameworks), 1, figsize=(11, 4.2 * len(frameworks)), layout="constrained", squeeze=False
    )
    for axes, framework in zip(all_axes[:, 0], frameworks, strict=True):
        part = table[table["framework"] == framework]
        strategies = sorted(part["strategy"].unique())
        runtimes = sorted(part["runtime"].unique())
        width = 0.8 / len(runtimes)
        for number, runtime in enumerate(runtimes):
            rows = part[part["runtime"] == runtime].set_index("strategy").reindex(strategies)
            x = np.arange(len(strategies)) + number * width
            p50 = rows["latency_ms_p50"].to_numpy()
            p90 = rows["latency_ms_p90"].to_numpy()
            axes.bar(x, p50, width, label=runtime)
            # The whisker reaches p90; a missing p90 (too few values) draws none.
            axes.errorbar(x, p50, yerr=[np.zeros_like(p50), np.nan_to_num(p90 - p50)], fmt="none", ecolor="black", lw=0.8)
        axes.set_xticks(np.arange(len(strategies)) + 0.4 - width / 2, strategies, rotation=30, ha="right", fontsize=8)
        axes.set_yscale("log")
        axes.set_ylabel("latency at batch 1 (ms, log)")
        axes.set_title(framework)
        axes.grid(True, axis="y", which="both", alpha=0.3)
        axes.legend(fontsize=7, ncol=4)
    path = _save(figure, directory, "latency_by_runtime")
    return Figure(
        "latency_by_runtime",
        "Latency by runtime",
        "Bars are the p50 latency per call at batch 1, whiskers reach p90 (median over seeds).",
        path,
    )


def _torch_vs_tf_accuracy(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    # fp32 accuracy of each cell, from ONNX Runtime: one runtime that both frameworks share.
    cells = measured[measured["runtime"] == "onnxruntime"]
    if cells.empty:
        return None
    table = cells.groupby(["strategy", "framework"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    strategies = sorted(table["strategy"].unique())
    frameworks = sorted(table["framework"].unique())
    width = 0.8 / len(frameworks)
    figure, axes = plt.subplots(figsize=(11, 4.5), layout="constrained")
    for number, framework in enumerate(frameworks):
        rows = table[table["framework"] == framework].set_index("strategy").reindex(strategies)
        x = np.arange(len(strategies)) + number * width
        axes.bar(
            x,
            rows["mean"].to_numpy(),
            width,
            yerr=rows["std"].fillna(0).to_numpy(),
            capsize=3,
            color=FRAMEWORK_COLORS.get(framework, "gray"),
            label=framework,
        )
    means = table["mean"].to_numpy()
    axes.set_ylim(max(0.0, float(np.nanmin(means)) - 0.05), min(1.0, float(np.nanmax(means)) + 0.02))
    axes.set_xticks(np.arange(len(strategies)) + 0.4 - width / 2, strategies, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("test accuracy")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend()
    seeds = int(table["count"].max())
    path = _save(figure, directory, "torch_vs_tf_accuracy")
    return Figure(
        "torch_vs_tf_accuracy",
        "torch against tf accuracy",
        f"Mean test accuracy of each strategy's fp32 ONNX export over {seeds} seed(s); error bars are one standard "
        "deviation over seeds (none with one seed).",
        path,
    )


def _fraction_of_peak(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    rated = measured[measured["fraction_of_peak"].notna()]
    if rated.empty:
        return None
    table = rated.groupby(["framework", "runtime"])["fraction_of_peak"].agg(["median", "min", "max"]).reset_index()
    table = table.sort_values(["framework", "runtime"])
    labels = [f"{row.framework}\n{row.runtime}" for row in table.itertuples()]
    median = table["median"].to_numpy() * 100
    figure, axes = plt.subplots(figsize=(10, 4.2), layout="constrained")
    colors = [FRAMEWORK_COLORS.get(framework, "gray") for framework in table["framework"]]
    axes.bar(
        np.arange(len(table)),
        median,
        yerr=[median - table["min"].to_numpy() * 100, table["max"].to_numpy() * 100 - median],
        capsize=3,
        color=colors,
    )
    axes.set_xticks(np.arange(len(table)), labels, fontsize=8)
    axes.set_ylabel("% of the machine's peak FLOP/s")
    axes.grid(True, axis="y", alpha=0.3)
    source = ", ".join(sorted(rated["peak_source"].dropna().astype(str).unique())) or "unknown"
    path = _save(figure, directory, "fraction_of_peak")
    return Figure(
        "fraction_of_peak",
        "Throughput as a fraction of peak",
        "Achieved GFLOP/s at the throughput batch size (2 x dense MACs x samples/s) as a percentage of the "
        f"machine's peak ({source}), fp32 CPU runtimes; bars are the median over strategies and seeds, whiskers "
        "the range.",
        path,
    )
