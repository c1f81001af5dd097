"""Report section for the parity checks a run stores in RUN_DIR/parity.json (see bench.parity)."""

from __future__ import annotations

import json
from pathlib import Path

PARITY_FILE = "parity.json"

# (label, key in a comparison, key of its tolerance): the cross-framework rows of the table, with the
# tolerance bench.parity applies to each.
_COMPARISON_ROWS = (
    ("logits, same canonical weights and batch", "logits_max_abs_diff", "logits_across_frameworks"),
    ("weights after training epochs on the same batches", "trained_weights_max_abs_diff", "trained_weights_across_frameworks"),
    ("weights after magnitude pruning", "pruned_weights_max_abs_diff", "trained_weights_across_frameworks"),
    ("weights after one SGD step with L2", "l2_step_weights_max_abs_diff", "trained_weights_across_frameworks"),
    ("weights after a distillation epoch", "distill_epoch_weights_max_abs_diff", "trained_weights_across_frameworks"),
    ("weights after an FGSM-training epoch", "adversarial_epoch_weights_max_abs_diff", "trained_weights_across_frameworks"),
    ("FGSM adversarial batch", "fgsm_batch_max_abs_diff", "trained_weights_across_frameworks"),
    ("PGD adversarial batch", "pgd_batch_max_abs_diff", "trained_weights_across_frameworks"),
)


def read_parity(run_dir: Path, command: str | None = None) -> tuple[dict | None, str | None]:
    """Return (report, problem): the stored parity report, or why there is none to show.

    `command` is the run's command line from run.json: it distinguishes a run made with --no-parity from one
    that predates the parity step of `bench all`.
    """
    path = Path(run_dir) / PARITY_FILE
    if not path.exists():
        why = (
            "it ran with --no-parity"
            if command and "--no-parity" in command.split()
            else f"its directory has no {PARITY_FILE}; runs made before `bench all` ran the parity checks have none"
        )
        return None, f"this run has no parity report ({why}); `python -m bench parity` checks it"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path.name} is unreadable: {error}"
    if not isinstance(report, dict):
        return None, f"{path.name} does not contain a JSON object"
    return report, None


def parity_section(run_dir: Path, command: str | None = None) -> list[str]:
    """Build the "Parity" section: do both frameworks compute and train the same network?"""
    report, problem = read_parity(run_dir, command)
    lines = ["## Parity", ""]
    if report is None:
        return lines + [f"Not available: {problem}.", ""]

    verdict = "passed" if report.get("passed") else "**FAILED**"
    tolerances = report.get("tolerances") or {}
    lines += [
        f"Checked once per run, before the cells, on `{report.get('model', '?')}` "
        f"(architecture fingerprint `{report.get('fingerprint', '?')}`) with seed {report.get('seed', '?')} and a "
        f"batch of {report.get('batch_size', '?')} images: {verdict}. Both frameworks load the same canonical "
        "weights and train on the same batches; the values are the largest absolute differences.",
        "",
    ]
    frameworks = report.get("frameworks") or {}
    if frameworks:
        lines += [
            "| framework | parameters | weights round trip | ONNX vs native max abs diff | ONNX label agreement |",
            "|---|---|---|---|---|",
        ]
        for name, result in frameworks.items():
            lines.append(
                f"| {name} | {_count(result.get('parameters'))} | "
                f"{'exact' if result.get('weights_round_trip_exact') else 'not exact'} | "
                f"{_diff(result.get('onnx_max_abs_diff'))} (tolerance {_diff(tolerances.get('onnx_vs_native_logits'))}) | "
                f"{_share(result.get('onnx_label_agreement'))} |"
            )
        lines.append("")

    for comparison in report.get("comparisons") or []:
        first, second = comparison.get("frameworks", ("?", "?"))
        lines += [f"| {first} vs {second} | max abs diff | tolerance |", "|---|---|---|"]
        for label, key, tolerance_key in _COMPARISON_ROWS:
            tolerance = _diff(tolerances.get(tolerance_key))
            lines.append(f"| {label} | {_diff(comparison.get(key))} | {tolerance} |")
        masks = comparison.get("pruning_masks_equal")
        lines.append(f"| pruning masks | {'identical' if masks else 'different' if masks is not None else '-'} | identical |")
        for method, value in sorted((comparison.get("peft_logits_max_relative_diff") or {}).items()):
            logits_tolerance = _diff(tolerances.get("logits_across_frameworks"))
            lines.append(f"| fine-tuning logits, {method}, random weights (relative) | {_diff(value)} | {logits_tolerance} |")
        lines.append("")

    problems = report.get("problems") or []
    lines += [f"- problem: {text}" for text in problems]
    return lines + ([""] if problems else [])


def _diff(value) -> str:
    return "-" if value is None else f"{value:.2g}"


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def _share(value) -> str:
    return "-" if value is None else f"{value:.4f}"
