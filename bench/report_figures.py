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

from bench.report_seeds import PEFT_PREFIX
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
    from matplotlib.ticker import FuncFormatter

    # peft-* cells are scored on the 5 target classes of the transfer task: another axis of accuracy.
    points = model_points(measured[~measured["strategy"].str.startswith(PEFT_PREFIX)])
    if points.empty:
        return None
    frameworks = sorted(points["framework"].unique())
    figure, all_axes = plt.subplots(
        1, len(frameworks), figsize=(6 * len(frameworks), 5.5), layout="constrained", sharey=True, squeeze=False
    )
    labelled = []
    for axes, framework in zip(all_axes[0], frameworks, strict=True):
        group = points[points["framework"] == framework]
        color = FRAMEWORK_COLORS.get(framework, "gray")
        kb = group["size_gzip_bytes"].to_numpy() / 1024
        accuracy = group["accuracy"].to_numpy()
        int8 = (group["runtime"] == "onnxruntime-int8").to_numpy()
        axes.scatter(kb[~int8], accuracy[~int8], color=color, marker="o", label="fp32 export")
        axes.scatter(kb[int8], accuracy[int8], color=color, marker="^", label="int8 export")
        front = pareto_front(kb, accuracy)
        axes.step(kb[front], accuracy[front], where="post", color=color, alpha=0.6, label="Pareto front")
        labelled.append((axes, _point_labels(kb, accuracy, group["strategy"], int8)))
        axes.set_xscale("log")
        # Plain numbers on the log axis, all the same size: 20 and 50 read better than 2 x 10^1.
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(FuncFormatter(_sparse_log_label))
        axes.tick_params(axis="x", which="both", labelsize=7)
        axes.set_xlabel("gzip-compressed ONNX size (KB, log scale)")
        axes.set_title(framework)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8, loc="lower left")
    all_axes[0, 0].set_ylabel("test accuracy (ONNX Runtime)")
    # Labels are placed once the layout is fixed, so that their pixel boxes are final.
    figure.canvas.draw()
    for axes, labels in labelled:
        place_labels(axes, labels)
    path = _save(figure, directory, "accuracy_vs_size")
    return Figure(
        "accuracy_vs_size",
        "Accuracy against model size",
        "Each point is a strategy's ONNX export (circle fp32, triangle int8) run in ONNX Runtime, mean over seeds, "
        "one panel per framework. The step line is the framework's Pareto front: no model is both smaller and more "
        "accurate. Exports with the same size and accuracy share a label. The peft-* strategies are left out: "
        "they are scored on the 5 classes of the transfer task (see Parameter-efficient fine-tuning).",
        path,
    )


def _sparse_log_label(value: float, _position) -> str:
    """Label the minor ticks 20, 30 and 50 of each decade (and 2, 3, 5, ...), leaving the rest blank."""
    leading = f"{value:.0e}"[0]
    return f"{value:g}" if leading in "235" else ""


def _point_labels(kb: np.ndarray, accuracy: np.ndarray, strategies, int8: np.ndarray) -> list[tuple[float, float, str]]:
    """Build one label per distinct point, shared by strategies whose exports coincide (quantize's fp32 is the baseline)."""
    merged: dict[tuple[float, float], list[str]] = {}
    for x, y, strategy, quantized in zip(kb, accuracy, strategies, int8, strict=True):
        name = f"{strategy} int8" if quantized else strategy
        merged.setdefault((round(float(x), 1), round(float(y), 4)), []).append(name)
    return [(x, y, ", ".join(sorted(names))) for (x, y), names in merged.items()]


# Label offsets from the point, in points, tried in order: beside it first, then further above or below.
_LABEL_OFFSETS = [(4, 2), (4, -9), (-4, 2), (-4, -9)] + [
    (dx, dy) for step in (1, 2, 3) for dy in (2 + 10 * step, -9 - 10 * step) for dx in (4, -4)
]


def place_labels(axes, labels: list[tuple[float, float, str]], fontsize: float = 7) -> list[tuple]:
    """Annotate each (x, y, text) at the first offset whose text box overlaps no earlier box or point.

    Call it after `figure.canvas.draw()`, when the axes have their final pixel size. A label moved away
    from its point gets a thin leader line. Returns the pixel boxes, for tests.
    """
    points_per_pixel = 72 / axes.figure.dpi
    height = fontsize / points_per_pixel
    pixels = [axes.transData.transform((x, y)) for x, y, _ in labels]
    # Each marker is an obstacle too, about 6 points across.
    marker = 3 / points_per_pixel
    taken = [(px - marker, py - marker, px + marker, py + marker) for px, py in pixels]
    boxes = []
    for (x, y, text), (px, py) in sorted(zip(labels, pixels, strict=True), key=lambda item: (-item[1][1], item[1][0])):
        width = 0.6 * fontsize * len(text) / points_per_pixel
        for dx, dy in _LABEL_OFFSETS:
            left = px + dx / points_per_pixel - (width if dx < 0 else 0)
            bottom = py + dy / points_per_pixel
            box = (left, bottom, left + width, bottom + height)
            if not any(_overlaps(box, other) for other in taken):
                break
        else:
            dx, dy = _LABEL_OFFSETS[0]
            left, bottom = px + dx / points_per_pixel, py + dy / points_per_pixel
            box = (left, bottom, left + width, bottom + height)
        taken.append(box)
        boxes.append(box)
        far = abs(dy) > 10
        axes.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=fontsize,
            ha="right" if dx < 0 else "left",
            va="bottom",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.4"} if far else None,
        )
    return boxes


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# One colour per kind of runtime, the same in every panel, so that torch and tf bars compare by eye.
RUNTIME_KINDS = {
    "torch-eager": "eager (torch-eager, tf-eager)",
    "tf-eager": "eager (torch-eager, tf-eager)",
    "tf-function": "graph (tf-function)",
    "torch-compile": "compiled (torch-compile, tf-xla)",
    "tf-xla": "compiled (torch-compile, tf-xla)",
    "onnxruntime": "ONNX Runtime fp32",
    "onnxruntime-int8": "ONNX Runtime int8",
    "torch-int8-pt2e": "native int8 (torch-int8-pt2e, tflite-int8)",
    "tflite-int8": "native int8 (torch-int8-pt2e, tflite-int8)",
}
KIND_COLORS = {
    "eager (torch-eager, tf-eager)": "#ff7f0e",
    "graph (tf-function)": "#8c564b",
    "compiled (torch-compile, tf-xla)": "#2ca02c",
    "ONNX Runtime fp32": "#1f77b4",
    "ONNX Runtime int8": "#9ecae1",
    "native int8 (torch-int8-pt2e, tflite-int8)": "#9467bd",
}
OTHER_KIND_COLOR = "#7f7f7f"


def _kind_order(runtime: str) -> tuple[int, str]:
    """Sort runtimes by kind, in KIND_COLORS order, so that each kind takes the same slot in every panel."""
    kinds = list(KIND_COLORS)
    kind = RUNTIME_KINDS.get(runtime)
    return (kinds.index(kind) if kind in kinds else len(kinds), runtime)


def _latency_by_runtime(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    timed = measured[measured["latency_ms_p50"].notna()].copy()
    if timed.empty:
        return None
    timed["latency_invalid"] = timed["latency_valid"].eq(False)
    table = timed.groupby(["framework", "strategy", "runtime"], as_index=False).agg(
        latency_ms_p50=("latency_ms_p50", "median"),
        latency_ms_p90=("latency_ms_p90", "median"),
        invalid=("latency_invalid", "any"),
    )
    frameworks = sorted(table["framework"].unique())
    figure, all_axes = plt.subplots(
        len(frameworks), 1, figsize=(12, 4.2 * len(frameworks)), layout="constrained", squeeze=False, sharey=True
    )
    kinds_shown: dict[str, str] = {}
    for axes, framework in zip(all_axes[:, 0], frameworks, strict=True):
        part = table[table["framework"] == framework]
        strategies = sorted(part["strategy"].unique())
        runtimes = sorted(part["runtime"].unique(), key=_kind_order)
        width = 0.8 / len(runtimes)
        for number, runtime in enumerate(runtimes):
            rows = part[part["runtime"] == runtime].set_index("strategy").reindex(strategies)
            x = np.arange(len(strategies)) + number * width
            p50 = rows["latency_ms_p50"].to_numpy()
            p90 = rows["latency_ms_p90"].to_numpy()
            kind = RUNTIME_KINDS.get(runtime, runtime)
            color = KIND_COLORS.get(kind, OTHER_KIND_COLOR)
            kinds_shown[kind] = color
            hatches = ["////" if invalid is True else "" for invalid in rows["invalid"].tolist()]
            axes.bar(x, p50, width, color=color, hatch=hatches, edgecolor="white", linewidth=0)
            # The whisker reaches p90; a missing p90 (too few values) draws none.
            axes.errorbar(x, p50, yerr=[np.zeros_like(p50), np.nan_to_num(p90 - p50)], fmt="none", ecolor="black", lw=0.8)
        axes.set_xticks(np.arange(len(strategies)) + 0.4 - width / 2, strategies, rotation=30, ha="right", fontsize=8)
        axes.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        axes.set_ylabel("latency at batch 1 (ms, log)")
        axes.set_title(framework)
        axes.grid(True, axis="y", which="both", alpha=0.3)
    handles = [Patch(color=color, label=kind) for kind, color in kinds_shown.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="latency failed its validity check"))
    figure.legend(handles=handles, loc="outside right upper", fontsize=8)
    path = _save(figure, directory, "latency_by_runtime")
    return Figure(
        "latency_by_runtime",
        "Latency by runtime",
        "Bars are the p50 latency per call at batch 1, whiskers reach p90 (median over seeds); one colour per kind "
        "of runtime in both panels, which share their scale. A hatched bar failed its validity check in at least "
        "one seed. Each cell is timed in its own process at its own time, so differences between cells below "
        "about 2x can be machine noise; compare runtimes within one strategy first.",
        path,
    )


def _torch_vs_tf_accuracy(measured: pd.DataFrame, directory: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    # fp32 accuracy of each cell, from ONNX Runtime: one runtime that both frameworks share.
    cells = measured[measured["runtime"] == "onnxruntime"]
    if cells.empty:
        return None
    table = cells.groupby(["strategy", "framework"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    names = table["strategy"].unique()
    same_task = sorted(name for name in names if not name.startswith(PEFT_PREFIX))
    transfer = sorted(name for name in names if name.startswith(PEFT_PREFIX))
    strategies = same_task + transfer
    frameworks = sorted(table["framework"].unique())
    spread = 0.3
    figure, axes = plt.subplots(figsize=(11, 4.5), layout="constrained")
    for number, framework in enumerate(frameworks):
        rows = table[table["framework"] == framework].set_index("strategy").reindex(strategies)
        x = np.arange(len(strategies)) + (number - (len(frameworks) - 1) / 2) * spread / max(1, len(frameworks) - 1)
        # With one seed there is no spread to show, so no error bar is drawn.
        errors = rows["std"].where(rows["count"] > 1).to_numpy()
        axes.errorbar(
            x,
            rows["mean"].to_numpy(),
            yerr=None if np.isnan(errors).all() else np.nan_to_num(errors),
            fmt="o",
            capsize=3,
            color=FRAMEWORK_COLORS.get(framework, "gray"),
            label=framework,
        )
    if same_task and transfer:
        axes.axvline(len(same_task) - 0.5, color="0.5", lw=0.8, ls="--")
        axes.text(len(same_task) - 0.4, 1.0, "transfer task, 5 target classes", transform=axes.get_xaxis_transform(),
                  fontsize=8, va="top", color="0.3")
    axes.set_xticks(np.arange(len(strategies)), strategies, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("test accuracy (fp32 ONNX export)")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    seeds = int(table["count"].max())
    path = _save(figure, directory, "torch_vs_tf_accuracy")
    return Figure(
        "torch_vs_tf_accuracy",
        "torch against tf accuracy",
        f"Mean test accuracy of each strategy's fp32 ONNX export over {seeds} seed(s), torch and tf side by side; "
        "error bars are one standard deviation over seeds (none with one seed). The axis does not start at zero: "
        "read the gaps on its scale. The peft-* strategies, right of the dashed line, are scored on the 5 target "
        "classes of the transfer task.",
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
