"""Report section for parameter-efficient fine-tuning: accuracy per trainable parameter, per framework.

Built from the records and the results frame alone, like every other section.
"""

from __future__ import annotations

import pandas as pd

from bench.report_compression import _fmt
from bench.spec import FRAMEWORKS
from bench.store import STATUS_OK

RUNTIME = "onnxruntime"


def peft_section(frame: pd.DataFrame, records: list[dict]) -> list[str]:
    """Tabulate each fine-tuning method: trainable parameters, target and source accuracy, merging."""
    finetuned = {}
    for record in records:
        step = _finetune_step(record)
        if record["status"] == STATUS_OK and step is not None:
            finetuned[record["cell_id"]] = (record, step)
    if not finetuned:
        return []
    rows = frame[(frame["status"] == STATUS_OK) & (frame["runtime"] == RUNTIME) & frame["cell_id"].isin(finetuned)]
    lines = [
        "## Parameter-efficient fine-tuning",
        "",
        "Each method starts from the same network pretrained on the source classes, replaces its head and",
        "fine-tunes on the target classes' labelled budget. Trainable parameters are the scalars the",
        "optimizer updates, counted by one rule and checked against each framework's own count; the",
        "percentage is of the full model with the new head. Target accuracy is ONNX Runtime's on every",
        "test image of the target classes; source accuracy is the pretrained network's on the source",
        "classes. LoRA is merged into the kernels before export, and the exported model is compared with",
        "the unmerged fine-tuned one.",
        "",
        "| method | framework | trainable params | % of full model | target accuracy | source accuracy "
        "| target train images | exported as | export vs unmerged max abs diff |",
        "|" + "---|" * 9,
    ]
    order = {f"peft-{name}": index for index, name in enumerate(("full", "linear-probe", "bitfit", "adapters", "lora"))}
    frameworks = {name: index for index, name in enumerate(FRAMEWORKS)}

    def position(row: dict) -> tuple:
        return (order.get(row["strategy"], 99), row["strategy"], frameworks.get(row["framework"], 99), row["seed"])

    ordered = sorted(rows.to_dict("records"), key=position)
    for row in ordered:
        record, step = finetuned[row["cell_id"]]
        trainable = step.get("trainable") or {}
        merged = record.get("merged_export") or {}
        if step.get("merged"):
            exported = "merged"
        elif step.get("method") == "adapters":
            exported = "with adapters"
        else:
            exported = "plain"
        lines.append(
            "| "
            + " | ".join(
                [
                    str(step.get("method", row["strategy"])),
                    row["framework"],
                    _fmt(trainable.get("count"), "{:,.0f}"),
                    _fmt(trainable.get("percent"), "{:.2f}%"),
                    _fmt(row["accuracy"], "{:.4f}"),
                    _fmt(step.get("source_test_accuracy"), "{:.4f}"),
                    _fmt(step.get("target_train_samples"), "{:,.0f}"),
                    exported,
                    _fmt(merged.get("onnx_vs_unmerged_max_abs_diff"), "{:.2g}"),
                ]
            )
            + " |"
        )
    return lines + [""]


def _finetune_step(record: dict) -> dict | None:
    return next((step for step in record.get("steps") or [] if step.get("step") == "finetune"), None)
