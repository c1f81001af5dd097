"""Report section for seeds: accuracy spread, torch vs tf, and each strategy vs its reference.

Built from the records alone, like every other section. The statistics are those of bench.compare.
"""

from __future__ import annotations

from bench.compare import (
    ALPHA,
    CONFIDENCE,
    SignificanceTest,
    format_p_value,
    native_accuracy,
    paired_t_test,
    summarize_accuracy,
)
from bench.spec import FRAMEWORKS, STRATEGIES
from bench.store import STATUS_OK

# The peft-* strategies are scored on the target classes, so they are compared with full fine-tuning on
# the same classes. Every other strategy is compared with the baseline.
PEFT_PREFIX = "peft-"
PEFT_REFERENCE = "peft-full"
BASELINE = "baseline"


def reference_strategy(strategy: str) -> str | None:
    """Return the strategy that `strategy` is compared with, or None for a reference itself."""
    if strategy in (BASELINE, PEFT_REFERENCE):
        return None
    return PEFT_REFERENCE if strategy.startswith(PEFT_PREFIX) else BASELINE


def native_accuracies(records: list[dict]) -> dict[tuple[str, str, str, str], dict[int, float]]:
    """Map (dataset, model, strategy, framework) to {seed: native runtime accuracy} over finished cells."""
    found: dict[tuple[str, str, str, str], dict[int, float]] = {}
    for record in records:
        if record["status"] != STATUS_OK:
            continue
        accuracy = native_accuracy(record)
        if accuracy is None:
            continue
        cell = record["cell"]
        key = (cell["dataset"], cell["model"], cell["strategy"], cell["framework"])
        found.setdefault(key, {})[cell["seed"]] = accuracy
    return found


def seeds_section(records: list[dict]) -> list[str]:
    """Tabulate each strategy's accuracy over seeds, with paired tests against its reference and across frameworks."""
    accuracies = native_accuracies(records)
    if not accuracies:
        return []
    seeds = sorted({seed for by_seed in accuracies.values() for seed in by_seed})
    several_datasets = len({(dataset, model) for dataset, model, _, _ in accuracies}) > 1

    lines = [
        "## Seeds and spread",
        "",
        "Test accuracy of each cell's native runtime (its first framework runtime, such as torch-eager or",
        "tf-eager) over the run's seeds: mean, sample standard deviation and the "
        f"{CONFIDENCE:.0%} Student-t confidence",
        "interval of the mean. For `quantize` and `compress` that is the fp32 network before int8",
        "quantization; the int8 runtimes' accuracies are in their own table. A seed fixes the initial",
        "weights and the batch order, the same for both frameworks, so torch vs tf and each strategy vs its",
        f"reference are paired by seed: a paired t-test over the seeds both have, significant at p < {ALPHA:g}.",
        "The `peft-*` strategies are scored on the target classes and compared with `peft-full`; every",
        "other strategy is compared with the `baseline` of its framework. Differences are in accuracy points.",
        "",
    ]
    if len(seeds) == 1:
        lines += [
            f"This run has one seed ({seeds[0]}), so it shows no spread and no test is possible: the `full` "
            "profile runs seeds 0, 1 and 2 (or pass `--seeds 0,1,2`).",
            "",
        ]
    lines += _spread_table(accuracies, several_datasets)
    lines += _framework_table(accuracies, several_datasets)
    return lines


def _spread_table(accuracies: dict, several_datasets: bool) -> list[str]:
    dataset_header = "dataset | " if several_datasets else ""
    lines = [
        f"| {dataset_header}strategy | framework | seeds | accuracy mean | std | {CONFIDENCE:.0%} interval "
        "| reference | vs reference (points) | p | verdict |",
        "|" + "---|" * (10 + several_datasets),
    ]
    for key in sorted(accuracies, key=_position):
        dataset, model, strategy, framework = key
        by_seed = accuracies[key]
        summary = summarize_accuracy([by_seed[seed] for seed in sorted(by_seed)])
        reference = reference_strategy(strategy)
        reference_seeds = accuracies.get((dataset, model, reference, framework)) if reference else None
        if reference_seeds is None:
            difference, test = None, None
        else:
            difference = _mean_difference(reference_seeds, by_seed)
            test = paired_t_test(reference_seeds, by_seed)
        interval = "1 seed" if summary.interval is None else f"[{summary.interval[0]:.4f}, {summary.interval[1]:.4f}]"
        cells = [
            *([f"{dataset} {model}"] if several_datasets else []),
            strategy,
            framework,
            ",".join(str(seed) for seed in sorted(by_seed)),
            f"{summary.mean:.4f}",
            "-" if summary.std is None else f"{summary.std:.4f}",
            interval,
            reference or "-",
            "-" if difference is None else f"{difference * 100:+.2f}",
            *_test_cells(test, reference),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _framework_table(accuracies: dict, several_datasets: bool) -> list[str]:
    groups = sorted(
        {(dataset, model, strategy) for dataset, model, strategy, _ in accuracies},
        key=lambda group: _position((*group, "")),
    )
    paired = [group for group in groups if all((*group, framework) in accuracies for framework in FRAMEWORKS)]
    if not paired:
        return []
    first, second = FRAMEWORKS
    dataset_header = "dataset | " if several_datasets else ""
    lines = [
        f"### {first} vs {second} across seeds",
        "",
        f"| {dataset_header}strategy | seeds paired | {first} mean | {second} mean "
        f"| {second} - {first} (points) | p | verdict |",
        "|" + "---|" * (7 + several_datasets),
    ]
    # Means are over the common seeds, so that their difference is the one the paired test checks.
    for dataset, model, strategy in paired:
        first_seeds = accuracies[(dataset, model, strategy, first)]
        second_seeds = accuracies[(dataset, model, strategy, second)]
        common = sorted(set(first_seeds) & set(second_seeds))
        test = paired_t_test(first_seeds, second_seeds)
        difference = _mean_difference(first_seeds, second_seeds)
        cells = [
            *([f"{dataset} {model}"] if several_datasets else []),
            strategy,
            ",".join(str(seed) for seed in common) or "none",
            _common_mean(first_seeds, common),
            _common_mean(second_seeds, common),
            "-" if difference is None else f"{difference * 100:+.2f}",
            *_test_cells(test, strategy),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _mean_difference(first: dict[int, float], second: dict[int, float]) -> float | None:
    """Return the mean of second - first over the seeds both have, the quantity the paired test checks."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return None
    return sum(second[seed] - first[seed] for seed in seeds) / len(seeds)


def _common_mean(by_seed: dict[int, float], seeds: list[int]) -> str:
    if not seeds:
        return "-"
    return f"{summarize_accuracy([by_seed[seed] for seed in seeds]).mean:.4f}"


def _test_cells(test: SignificanceTest | None, reference: str | None) -> list[str]:
    if reference is None:
        return ["-", "-"]
    if test is None:
        return ["-", f"no {reference} cell in this run"]
    return [format_p_value(test.p_value), test.verdict]


def _position(key: tuple[str, str, str, str]) -> tuple:
    dataset, model, strategy, framework = key
    strategies = {name: index for index, name in enumerate(STRATEGIES)}
    frameworks = {name: index for index, name in enumerate(FRAMEWORKS)}
    return (
        dataset,
        model,
        strategies.get(strategy, len(strategies)),
        strategy,
        frameworks.get(framework, len(frameworks)),
        framework,
    )
