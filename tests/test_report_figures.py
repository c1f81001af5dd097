"""The report's figures: label placement, merged labels and drawing from the committed run."""

from pathlib import Path

import numpy as np

from bench.report import records_frame
from bench.report_figures import _overlaps, _point_labels, _sparse_log_label, draw_figures, place_labels
from bench.store import RunDir, published_run_dir

COMMITTED_RUN = published_run_dir(Path(__file__).resolve().parent.parent / "results" / "runs").path


def test_crowded_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 10)
    # Five points a few pixels apart, as baseline, distill and regularize sit at one size.
    labels = [(5.0, 5.0 + 0.05 * number, f"strategy-{number}") for number in range(5)]
    figure.canvas.draw()
    boxes = place_labels(axes, labels)
    plt.close(figure)
    assert len(boxes) == 5
    for first in range(len(boxes)):
        for second in range(first + 1, len(boxes)):
            assert not _overlaps(boxes[first], boxes[second]), (boxes[first], boxes[second])


def test_coinciding_exports_share_a_label():
    kb = np.array([225.8, 225.8, 63.1])
    accuracy = np.array([0.9074, 0.9074, 0.9057])
    labels = _point_labels(kb, accuracy, ["quantize", "baseline", "quantize"], np.array([False, False, True]))
    assert sorted(text for _, _, text in labels) == ["baseline, quantize", "quantize int8"]


def test_minor_log_ticks_labelled_sparsely():
    assert _sparse_log_label(20.0, None) == "20"
    assert _sparse_log_label(50.0, None) == "50"
    assert _sparse_log_label(70.0, None) == ""
    assert _sparse_log_label(300.0, None) == "300"


def test_committed_run_draws_every_figure(tmp_path):
    records, _ = RunDir(COMMITTED_RUN).read_records()
    figures = draw_figures(records_frame(records), tmp_path)
    assert [figure.name for figure in figures] == [
        "accuracy_vs_size",
        "latency_by_runtime",
        "torch_vs_tf_accuracy",
        "fraction_of_peak",
    ]
    for figure in figures:
        assert figure.path.stat().st_size > 10_000, figure.path
    assert "peft-* strategies are left out" in figures[0].caption
