"""Report section for the training strategies (augment, regularize, adversarial, distill).

Built from the records and the results frame alone, like every other section.
"""

from __future__ import annotations

import pandas as pd

from bench.report_compression import _fmt
from bench.store import STATUS_OK

RUNTIME = "onnxruntime"


def training_section(frame: pd.DataFrame, records: list[dict]) -> list[str]:
    """Compare each training strategy with the baseline: accuracy, robust accuracy and training cost."""
    notes = {record["cell_id"]: _note(record) for record in records if record["status"] == STATUS_OK}
    trained = {cell_id for cell_id, note in notes.items() if note is not None}
    rows = frame[(frame["status"] == STATUS_OK) & (frame["runtime"] == RUNTIME)]
    chosen = rows[rows["cell_id"].isin(trained)]
    if chosen.empty:
        return []
    baseline = {
        (row["framework"], row["dataset"], row["model"], row["seed"]): row
        for row in rows[rows["strategy"] == "baseline"].to_dict("records")
    }
    lines = [
        "## Training strategies against the baseline",
        "",
        "ONNX Runtime rows of the strategies that change how the network is trained; the exported network",
        "is the baseline's architecture in every case. Differences are in accuracy points against the",
        "baseline of the same framework, dataset and seed (`-` where the run has no such baseline cell).",
        "Robust accuracy uses the attack named above the Results table.",
        "",
        "| strategy | framework | accuracy | vs baseline (points) | robust accuracy | vs baseline (points) "
        "| train s/epoch | training |",
        "|" + "---|" * 8,
    ]
    for row in chosen.to_dict("records"):
        base = baseline.get((row["framework"], row["dataset"], row["model"], row["seed"]))
        lines.append(
            "| "
            + " | ".join(
                [
                    row["strategy"],
                    row["framework"],
                    _fmt(row["accuracy"], "{:.4f}"),
                    _fmt(_delta(row, base, "accuracy"), "{:+.2f}"),
                    _fmt(row["robust_accuracy"], "{:.4f}"),
                    _fmt(_delta(row, base, "robust_accuracy"), "{:+.2f}"),
                    _fmt(row["train_seconds_per_epoch"], "{:.1f}"),
                    notes[row["cell_id"]],
                ]
            )
            + " |"
        )
    return lines + [""]


def _delta(row: dict, base: dict | None, column: str) -> float | None:
    if base is None or pd.isna(row[column]) or pd.isna(base[column]):
        return None
    return (row[column] - base[column]) * 100


def _note(record: dict) -> str | None:
    """Describe a record's training step options, or None when it trained plainly."""
    train = next((step for step in record.get("steps") or [] if step.get("step") == "train"), None)
    if not train or not train.get("params"):
        return None
    params = train["params"]
    parts = []
    if params.get("augment"):
        augment = params["augment"]
        parts.append(
            f"crop pad {augment['crop_padding']}, rotation ±{augment['rotation_degrees']:g}°, "
            f"translation ±{augment['translation']:g}, flip {(train.get('augment') or {}).get('horizontal_flip', '-')}"
        )
    if params.get("regularize"):
        regularize = params["regularize"]
        parts.append(f"L2 {regularize['l2']:g} on kernels, dropout {regularize['dropout']:g}")
    if params.get("adversarial"):
        adversarial = params["adversarial"]
        attack = adversarial["attack"]
        parts.append(
            f"{attack['method'].upper()} eps {attack['epsilon']:g} ({attack['steps']} step"
            f"{'s' if attack['steps'] != 1 else ''}), adversarial weight {adversarial['ratio']:g}"
        )
    if params.get("distill"):
        distill = params["distill"]
        teacher = train.get("teacher") or {}
        accuracy = teacher.get("test_accuracy")
        parts.append(
            f"T {distill['temperature']:g}, alpha {distill['alpha']:g}; teacher {distill['teacher']} "
            f"({teacher.get('params', 0):,} params, {teacher.get('epochs', '?')} epochs, test accuracy "
            f"{'-' if accuracy is None else f'{accuracy:.4f}'})"
        )
    return "; ".join(parts)


def trained_in_cell(record: dict) -> bool:
    """Return whether the cell's train step trained its network, rather than loading it from the run's cache."""
    train = next((step for step in record.get("steps") or [] if step.get("step") == "train"), None)
    return train is not None and not train.get("from_cache")


def time_to_accuracy_section(records: list[dict]) -> list[str]:
    """Training seconds to the profile's target test accuracy, for each cell that trained its own network.

    Cells that loaded a network trained earlier in the run (the compression strategies start from the
    baseline's) would repeat the baseline's numbers, so only the cell that trained is listed.
    """
    rows = []
    for record in records:
        if record["status"] != STATUS_OK:
            continue
        reached = (record.get("training") or {}).get("time_to_accuracy")
        if not trained_in_cell(record) or not reached:
            continue
        rows.append((record["cell"], record["training"], reached))
    if not rows:
        return []
    targets = sorted({reached["target_accuracy"] for _, _, reached in rows})
    lines = [
        "## Time to accuracy",
        "",
        f"Training seconds until the test accuracy first reached {' / '.join(f'{t:g}' for t in targets)} (the",
        "profile's `target_accuracy`, or `--target-accuracy`), checked after every epoch on the test split",
        "and no longer once reached. The seconds are the",
        "optimizer epochs' own time, without the evaluations and without augmentation. Only cells that",
        "trained their network are listed: `prune-*`, `lowrank` and `quantize` load their baseline's, and",
        "`peft-*` fine-tune a shared pretrained network (see Parameter-efficient fine-tuning). `compress`",
        "trains its own on 90% of the training images, because it holds out 10% for its search. Accuracies",
        "are rounded to 4 decimals; the check uses the unrounded value.",
        "",
        "| strategy | framework | seed | target | reached after epoch | training seconds | epochs trained "
        "| accuracy by epoch, until reached |",
        "|" + "---|" * 8,
    ]
    for cell, training, reached in sorted(rows, key=lambda item: (item[0]["strategy"], item[0]["framework"], item[0]["seed"])):
        by_epoch = ", ".join(f"{accuracy:.4f}" for accuracy in reached.get("test_accuracy_by_epoch") or [])
        lines.append(
            f"| {cell['strategy']} | {cell['framework']} | {cell['seed']} | {reached['target_accuracy']:g} | "
            f"{reached['epochs'] if reached['reached'] else 'not reached'} | "
            f"{_fmt(reached['train_seconds'], '{:.1f}')} | {training.get('epochs', '-')} | {by_epoch} |"
        )
    return lines + [""]
