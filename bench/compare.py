"""Accuracy across seeds, significance tests, and what changed between two runs (`bench compare`).

A cell's seed fixes its initial weights and its batch order, and both frameworks get the same ones.
So two results with the same seed are paired: torch vs tf for one strategy, or a strategy vs its
reference strategy in one framework, is tested with a paired t-test over the seeds both have. Between
two runs, the same key is tested with Welch's t-test on per-seed accuracies when both runs have at
least 2 seeds. With 1 seed on either side there is no spread to test, so the fallback is a
two-proportion z-test on the test-set counts. That test covers test-set sampling only, not training
randomness. Every test uses ALPHA.

Both backends train with deterministic algorithms, so the same seed and code are expected to give
the same gzip-compressed ONNX file on one machine, to within SIZE_TOLERANCE. A timing (latency p50 at batch 1, throughput at the large batch) is a change only when both
values passed their validity check, both runs come from one machine, and the median moved by more than
RUN_TO_RUN_THRESHOLD.

Everything here is computed from stored records with scipy; no framework is imported.
"""

from __future__ import annotations

import math
import statistics
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from scipy import stats

from bench.measure.stats import RUN_TO_RUN_THRESHOLD
from bench.spec import FRAMEWORKS, STRATEGIES
from bench.store import STATUS_OK, RunDir

# Significance level of every test, and the confidence of the interval around a mean accuracy.
ALPHA = 0.05
CONFIDENCE = 0.95

VERDICT_SIGNIFICANT = "significant"
VERDICT_NOT_SIGNIFICANT = "not significant"
VERDICT_ONE_SEED = "not testable (1 seed)"

# Accuracies are multiples of 1 / test images (1e-4 for 10,000 images), so two accuracies or two
# differences closer than this are equal and only float rounding separates them.
EQUAL_TOLERANCE = 1e-9

# Profile fields whose difference between two runs is printed as a warning.
PROFILE_FIELDS = (
    "name",
    "dataset",
    "model",
    "epochs",
    "seeds",
    "batch_size",
    "learning_rate",
    "train_limit",
    "test_limit",
    "timing",
)


# ---------------------------------------------------------------------------------------------------
# Statistics on per-seed accuracies


@dataclass(frozen=True)
class AccuracySummary:
    """Accuracy of one key over its seeds: count, mean, sample std (ddof 1) and Student-t interval."""

    n: int
    mean: float | None
    std: float | None
    interval: tuple[float, float] | None

    def describe(self) -> str:
        """Format as "0.9074 (1 seed)" or "0.9050 ± 0.0020, 95% CI [0.9000, 0.9100], 3 seeds"."""
        if self.n == 0:
            return "no accuracy"
        if self.n == 1:
            return f"{self.mean:.4f} (1 seed)"
        low, high = self.interval
        return f"{self.mean:.4f} ± {self.std:.4f}, {CONFIDENCE:.0%} CI [{low:.4f}, {high:.4f}], {self.n} seeds"


def summarize_accuracy(values: Sequence[float]) -> AccuracySummary:
    """Summarize per-seed accuracies: mean, std with ddof 1, and a 95% Student-t confidence interval.

    With one value, std and interval are None, because one seed shows no spread. Identical values give
    std 0 and an interval of zero width. The statistics module computes exactly, so identical floats
    give exactly 0, not a rounding residue.
    """
    values = [float(value) for value in values]
    if not values:
        return AccuracySummary(0, None, None, None)
    mean = statistics.fmean(values)
    if len(values) == 1:
        return AccuracySummary(1, mean, None, None)

    std = statistics.stdev(values)
    half_width = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return AccuracySummary(len(values), mean, std, (mean - half_width, mean + half_width))


@dataclass(frozen=True)
class SignificanceTest:
    """Outcome of one test: its name, p-value and verdict. Test and p_value are None when not testable."""

    test: str | None
    p_value: float | None
    verdict: str
    note: str | None = None

    @property
    def significant(self) -> bool:
        return self.verdict == VERDICT_SIGNIFICANT

    def describe(self, with_note: bool = True) -> str:
        """Format as "paired t-test p=0.012, significant" or the verdict alone when not testable."""
        if self.test is None:
            return self.verdict
        p_value = format_p_value(self.p_value)
        text = f"{self.test} p{'' if p_value.startswith('<') else '='}{p_value}, {self.verdict}"
        return f"{text} ({self.note})" if self.note and with_note else text


def format_p_value(p_value: float | None) -> str:
    if p_value is None:
        return "-"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3g}"


def _verdict(test: str, p_value: float, note: str | None = None) -> SignificanceTest:
    if math.isnan(p_value):
        return SignificanceTest(test, None, "not testable (p-value undefined)", note)
    verdict = VERDICT_SIGNIFICANT if p_value < ALPHA else VERDICT_NOT_SIGNIFICANT
    return SignificanceTest(test, float(p_value), verdict, note)


def _constant(values: Sequence[float]) -> bool:
    return max(values) - min(values) <= EQUAL_TOLERANCE


def _without_spread(test: str, difference: float, note: str) -> SignificanceTest:
    """Decide a test whose samples have no spread, where scipy's statistic is 0/0 or x/0.

    A zero difference gives p = 1. A nonzero difference with no spread is the limit of an infinite t
    statistic, so p = 0.
    """
    p_value = 1.0 if abs(difference) <= EQUAL_TOLERANCE else 0.0
    return _verdict(test, p_value, note)


def paired_t_test(first: Mapping[int, float], second: Mapping[int, float]) -> SignificanceTest:
    """Test second - first with a paired t-test (scipy.stats.ttest_rel) over the seeds both contain.

    `first` and `second` map seed to accuracy. Fewer than 2 common seeds cannot be tested. When every
    seed gives the same difference, scipy's statistic is undefined and the difference decides.
    """
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return SignificanceTest(None, None, "not testable (no common seed)")
    if len(seeds) < 2:
        return SignificanceTest(None, None, VERDICT_ONE_SEED)

    differences = [second[seed] - first[seed] for seed in seeds]
    if _constant(differences):
        return _without_spread("paired t-test", statistics.fmean(differences), "every seed gives the same difference")
    with warnings.catch_warnings():
        # scipy warns about precision loss for nearly identical values; the spread was checked above.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel([second[seed] for seed in seeds], [first[seed] for seed in seeds])
    return _verdict("paired t-test", float(result.pvalue))


def welch_t_test(first: Sequence[float], second: Sequence[float]) -> SignificanceTest:
    """Test the mean of second against first with Welch's t-test (unequal variances), unpaired.

    Needs at least 2 values on each side. When neither side has any spread, scipy's statistic is
    undefined and the difference of the means decides.
    """
    if len(first) < 2 or len(second) < 2:
        return SignificanceTest(None, None, VERDICT_ONE_SEED)
    if _constant(first) and _constant(second):
        difference = statistics.fmean(second) - statistics.fmean(first)
        return _without_spread("Welch's t-test", difference, "no spread across seeds in either run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(list(second), list(first), equal_var=False)
    return _verdict("Welch's t-test", float(result.pvalue))


def two_proportion_z_test(accuracy_a: float, samples_a: int, accuracy_b: float, samples_b: int) -> SignificanceTest:
    """Test two accuracies as proportions of test samples with the pooled two-proportion z-test.

    It tests whether test-set sampling alone could explain the difference, so it gives no measure of how
    much another training seed would move either accuracy. It treats the two evaluations as independent
    samples. When both ran on the same test images the counts are positively correlated, which makes this
    test conservative.
    """
    for name, value in (("samples_a", samples_a), ("samples_b", samples_b)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive number of test samples, got {value!r}")
    for name, value in (("accuracy_a", accuracy_a), ("accuracy_b", accuracy_b)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")

    note = "covers test-set sampling only, not training randomness"
    pooled = (accuracy_a * samples_a + accuracy_b * samples_b) / (samples_a + samples_b)
    standard_error = math.sqrt(pooled * (1.0 - pooled) * (1.0 / samples_a + 1.0 / samples_b))
    if standard_error == 0.0:
        # Both accuracies are 0 or both are 1.
        return _without_spread("two-proportion z-test", accuracy_b - accuracy_a, note)
    z = (accuracy_b - accuracy_a) / standard_error
    return _verdict("two-proportion z-test", float(2.0 * stats.norm.sf(abs(z))), note)


def accuracy_change_test(
    first: Sequence[float], samples_a: int | None, second: Sequence[float], samples_b: int | None
) -> SignificanceTest:
    """Test one key's accuracy between two runs: Welch on per-seed values, else the z-test on counts.

    `first` and `second` are the per-seed accuracies of each run and `samples_*` the test images behind
    each accuracy. With 1 seed on either side, the z-test compares the mean accuracies, each as a
    proportion of one evaluation's test samples.
    """
    if not first or not second:
        return SignificanceTest(None, None, "not testable (no accuracy)")
    if len(first) >= 2 and len(second) >= 2:
        return welch_t_test(first, second)
    if not samples_a or not samples_b:
        return SignificanceTest(None, None, "not testable (1 seed and no test-set size)")
    return two_proportion_z_test(statistics.fmean(first), samples_a, statistics.fmean(second), samples_b)


# ---------------------------------------------------------------------------------------------------
# Reading records


def native_runtime(record: dict) -> dict | None:
    """Return the record's first runtime of kind "native" that has quality numbers (torch-eager, tf-eager)."""
    for runtime in record.get("runtimes") or []:
        if runtime.get("kind") == "native" and runtime.get("quality"):
            return runtime
    return None


def native_accuracy(record: dict) -> float | None:
    """Return the accuracy of the record's native runtime: on the target classes for a peft-* cell."""
    runtime = native_runtime(record)
    return None if runtime is None else runtime["quality"].get("accuracy")


def count_test_samples(quality: dict) -> int | None:
    """Count the test images behind an accuracy: the per-class supports, else the confusion matrix total."""
    per_class = quality.get("per_class") or []
    if per_class and all("support" in entry for entry in per_class):
        return int(sum(entry["support"] for entry in per_class))
    matrix = quality.get("confusion_matrix") or []
    if matrix:
        return int(sum(sum(row) for row in matrix))
    return None


class RowKey(NamedTuple):
    """Identity of a result row across runs. The seeds of one key are its repeats."""

    framework: str
    strategy: str
    dataset: str
    model: str
    runtime: str | None

    def label(self) -> str:
        return " / ".join(part for part in self if part is not None)


@dataclass(frozen=True)
class RuntimeRow:
    """The numbers `bench compare` reads from one runtime of one cell record."""

    key: RowKey
    seed: int
    accuracy: float | None
    test_samples: int | None
    size_gzip_bytes: int | None
    latency_ms_p50: float | None
    latency_valid: bool | None
    throughput_samples_per_s: float | None
    throughput_valid: bool | None


def record_runtime_rows(record: dict) -> tuple[list[RuntimeRow], dict[RowKey, str]]:
    """Return the record's measured runtime rows, and why each unmeasured runtime or cell has no numbers.

    A cell that did not finish has no runtimes, so its reason is keyed with runtime None. The size is the
    runtime's own model where it has one (int8 runtimes), else the cell's exported model.
    """
    cell = record["cell"]
    seed = cell["seed"]
    base = (cell["framework"], cell["strategy"], cell["dataset"], cell["model"])
    if record["status"] != STATUS_OK:
        message = (record.get("error") or {}).get("message")
        reason = f"s{seed} {record['status']}" + (f": {message}" if message else "")
        return [], {RowKey(*base, None): reason}

    rows, unmeasured = [], {}
    cell_size = (record.get("model") or {}).get("size_gzip_bytes")
    for runtime in record.get("runtimes") or []:
        key = RowKey(*base, runtime["runtime"])
        status = runtime.get("status", STATUS_OK)
        if status != STATUS_OK:
            detail = runtime.get("reason") or (runtime.get("error") or {}).get("message")
            unmeasured[key] = f"s{seed} {status}" + (f": {detail}" if detail else "")
            continue
        quality = runtime.get("quality") or {}
        latency = runtime.get("latency") or {}
        throughput = runtime.get("throughput") or {}
        rows.append(
            RuntimeRow(
                key=key,
                seed=seed,
                accuracy=quality.get("accuracy"),
                test_samples=count_test_samples(quality),
                size_gzip_bytes=(runtime.get("model_size") or {}).get("size_gzip_bytes", cell_size),
                latency_ms_p50=latency.get("latency_ms_p50"),
                latency_valid=latency.get("valid"),
                throughput_samples_per_s=throughput.get("throughput_samples_per_s"),
                throughput_valid=throughput.get("valid"),
            )
        )
    return rows, unmeasured


@dataclass
class RunData:
    """One run as `bench compare` reads it: rows grouped by key, and what could not be read."""

    run_dir: RunDir
    info: dict
    rows: dict[RowKey, list[RuntimeRow]]
    unmeasured: dict[RowKey, list[str]]
    problems: list[tuple[Path, str]]
    hardware_fingerprints: set[str]


def resolve_run_dir(text: str | Path, runs_root: Path) -> RunDir:
    """Find a run directory given as a path, or as a run id under `runs_root`."""
    path = Path(text)
    if path.is_dir():
        return RunDir(path)
    candidate = Path(runs_root) / str(text)
    if candidate.is_dir():
        return RunDir(candidate)
    raise FileNotFoundError(
        f"run directory {text} not found, and no run {text} under {runs_root}; pass a run directory such "
        f"as results/runs/RUN_ID, or a run id that exists under {runs_root}"
    )


def load_run(run_dir: RunDir) -> RunData:
    """Read a run's records and run.json. Raise FileNotFoundError when it contains no readable record."""
    records, problems = run_dir.read_records()
    if not records:
        unreadable = f" ({len(problems)} unreadable, first: {problems[0][0].name}: {problems[0][1]})" if problems else ""
        raise FileNotFoundError(
            f"no readable records in {run_dir.records_dir}{unreadable}; pass a run directory made by "
            "`python -m bench all`, or run it first"
        )

    rows: dict[RowKey, list[RuntimeRow]] = {}
    unmeasured: dict[RowKey, list[str]] = {}
    fingerprints = set()
    for record in records:
        try:
            measured, reasons = record_runtime_rows(record)
        except (KeyError, TypeError) as error:
            path = run_dir.record_path(str(record["cell_id"]))
            problems.append((path, f"record without the expected fields ({type(error).__name__}: {error})"))
            continue
        for row in measured:
            rows.setdefault(row.key, []).append(row)
        for key, reason in reasons.items():
            unmeasured.setdefault(key, []).append(reason)
        fingerprint = (record.get("environment") or {}).get("hardware_fingerprint")
        if fingerprint:
            fingerprints.add(fingerprint)
    for key_rows in rows.values():
        key_rows.sort(key=lambda row: row.seed)
    return RunData(run_dir, run_dir.read_run_info(), rows, unmeasured, problems, fingerprints)


# ---------------------------------------------------------------------------------------------------
# Comparing two runs


@dataclass(frozen=True)
class MetricChange:
    """One metric of one key in run A and run B, with the ratio B / A."""

    value_a: float | None
    value_b: float | None
    ratio: float | None
    verdict: str
    changed: bool = False
    worse: bool = False


@dataclass(frozen=True)
class KeyComparison:
    """Comparison of one key that both runs measured: accuracy, size, latency and throughput."""

    key: RowKey
    seeds_a: list[int]
    seeds_b: list[int]
    accuracy_a: AccuracySummary
    accuracy_b: AccuracySummary
    accuracy_difference: float | None
    accuracy_test: SignificanceTest
    size: MetricChange
    latency: MetricChange
    throughput: MetricChange

    def regressions(self) -> list[str]:
        """Name the metrics of this key that changed for the worse."""
        found = []
        if self.accuracy_test.significant and self.accuracy_difference is not None and self.accuracy_difference < 0:
            found.append("accuracy")
        for name, change in (("size", self.size), ("latency", self.latency), ("throughput", self.throughput)):
            if change.changed and change.worse:
                found.append(name)
        return found


@dataclass
class RunComparison:
    """The result of `bench compare RUN_A RUN_B`."""

    run_a: str
    run_b: str
    run_a_summary: str
    run_b_summary: str
    threshold: float
    same_hardware: bool
    warnings: list[str]
    keys: list[KeyComparison]
    only_in_a: list[tuple[RowKey, str]]
    only_in_b: list[tuple[RowKey, str]]
    without_numbers: list[str]
    problems: list[str] = field(default_factory=list)

    def regressions(self) -> list[tuple[RowKey, str]]:
        # NOTE: a key that run A measured and run B lacks (a failed cell, an unreadable record) is listed
        # under only_in_a, not counted here, so --fail-on-regression passes on it.
        return [(item.key, name) for item in self.keys for name in item.regressions()]

    def counts(self) -> dict[str, int]:
        """Count the changes by metric, and how many of each are worse."""
        return {
            "accuracy_significant": sum(item.accuracy_test.significant for item in self.keys),
            "accuracy_lower": sum("accuracy" in item.regressions() for item in self.keys),
            "size_changed": sum(item.size.changed for item in self.keys),
            "size_larger": sum(item.size.changed and item.size.worse for item in self.keys),
            "latency_changed": sum(item.latency.changed for item in self.keys),
            "latency_slower": sum(item.latency.changed and item.latency.worse for item in self.keys),
            "throughput_changed": sum(item.throughput.changed for item in self.keys),
            "throughput_lower": sum(item.throughput.changed and item.throughput.worse for item in self.keys),
            "only_in_one_run": len(self.only_in_a) + len(self.only_in_b),
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        for item, source in zip(data["keys"], self.keys):
            item["key"] = source.key._asdict()
            item["regressions"] = source.regressions()
        for name in ("only_in_a", "only_in_b"):
            data[name] = [{"key": key._asdict(), "reason": reason} for key, reason in getattr(self, name)]
        data["counts"] = self.counts()
        data["alpha"] = ALPHA
        return data


# tf2onnx names constants with a process-wide counter, so two exports of the same weights can differ
# in a name (const_axes__27 against const_axes__30) and their gzip sizes by a few bytes. A size that
# moved by less than this fraction on every common seed is reported as unchanged.
SIZE_TOLERANCE = 0.001


def size_change(sizes_a: Mapping[int, int], sizes_b: Mapping[int, int]) -> MetricChange:
    """Compare gzip ONNX bytes seed by seed: a difference above SIZE_TOLERANCE on a common seed is a change.

    The values shown are the means over the common seeds, because sizes vary by a few bytes from seed
    to seed and only the same seed is expected to give the same file.
    """
    seeds = sorted(set(sizes_a) & set(sizes_b))
    if not sizes_a or not sizes_b:
        return MetricChange(None, None, None, "not measured")
    if not seeds:
        return MetricChange(None, None, None, "not comparable (no common seed)")
    mean_a = statistics.fmean(sizes_a[seed] for seed in seeds)
    mean_b = statistics.fmean(sizes_b[seed] for seed in seeds)
    if all(sizes_a[seed] == sizes_b[seed] for seed in seeds):
        return MetricChange(mean_a, mean_b, 1.0, "unchanged")
    if all(abs(sizes_b[seed] - sizes_a[seed]) <= SIZE_TOLERANCE * sizes_a[seed] for seed in seeds):
        return MetricChange(mean_a, mean_b, mean_b / mean_a if mean_a else None, "within export jitter (0.1%)")
    ratio = mean_b / mean_a if mean_a else None
    if mean_b > mean_a:
        verdict = "larger"
    elif mean_b < mean_a:
        verdict = "smaller"
    else:
        # The seeds changed in opposite directions by the same total.
        verdict = "changed"
    return MetricChange(mean_a, mean_b, ratio, verdict, changed=True, worse=mean_b > mean_a)


def timing_change(
    rows_a: Sequence[tuple[float | None, bool | None]],
    rows_b: Sequence[tuple[float | None, bool | None]],
    *,
    higher_is_better: bool,
    threshold: float,
    same_hardware: bool,
) -> MetricChange:
    """Compare one timing between runs: a change when both are valid and the median moved past `threshold`.

    Each side is a list of (value, valid) pairs, one per seed. The value of a run is the median over
    its valid seeds. Values from different machines are shown but never called a change.
    """
    measured_a = [value for value, _ in rows_a if value is not None]
    measured_b = [value for value, _ in rows_b if value is not None]
    if not measured_a or not measured_b:
        return MetricChange(None, None, None, "not measured")
    valid_a = [value for value, valid in rows_a if value is not None and valid]
    valid_b = [value for value, valid in rows_b if value is not None and valid]
    if not valid_a or not valid_b:
        value_a, value_b = statistics.median(measured_a), statistics.median(measured_b)
        return MetricChange(value_a, value_b, _ratio(value_b, value_a), "not comparable (invalid timing)")

    value_a, value_b = statistics.median(valid_a), statistics.median(valid_b)
    ratio = _ratio(value_b, value_a)
    if not same_hardware:
        return MetricChange(value_a, value_b, ratio, "not comparable (different hardware)")
    if ratio is None or abs(ratio - 1.0) <= threshold:
        return MetricChange(value_a, value_b, ratio, "within noise")
    if higher_is_better:
        verdict, worse = ("higher", False) if ratio > 1.0 else ("lower", True)
    else:
        verdict, worse = ("slower", True) if ratio > 1.0 else ("faster", False)
    return MetricChange(value_a, value_b, ratio, verdict, changed=True, worse=worse)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def compare_key(
    key: RowKey, rows_a: list[RuntimeRow], rows_b: list[RuntimeRow], *, threshold: float, same_hardware: bool
) -> KeyComparison:
    accuracies_a = [row.accuracy for row in rows_a if row.accuracy is not None]
    accuracies_b = [row.accuracy for row in rows_b if row.accuracy is not None]
    summary_a, summary_b = summarize_accuracy(accuracies_a), summarize_accuracy(accuracies_b)
    difference = None if summary_a.mean is None or summary_b.mean is None else summary_b.mean - summary_a.mean
    return KeyComparison(
        key=key,
        seeds_a=[row.seed for row in rows_a],
        seeds_b=[row.seed for row in rows_b],
        accuracy_a=summary_a,
        accuracy_b=summary_b,
        accuracy_difference=difference,
        accuracy_test=accuracy_change_test(
            accuracies_a, _test_samples(rows_a), accuracies_b, _test_samples(rows_b)
        ),
        size=size_change(
            {row.seed: row.size_gzip_bytes for row in rows_a if row.size_gzip_bytes is not None},
            {row.seed: row.size_gzip_bytes for row in rows_b if row.size_gzip_bytes is not None},
        ),
        latency=timing_change(
            [(row.latency_ms_p50, row.latency_valid) for row in rows_a],
            [(row.latency_ms_p50, row.latency_valid) for row in rows_b],
            higher_is_better=False,
            threshold=threshold,
            same_hardware=same_hardware,
        ),
        throughput=timing_change(
            [(row.throughput_samples_per_s, row.throughput_valid) for row in rows_a],
            [(row.throughput_samples_per_s, row.throughput_valid) for row in rows_b],
            higher_is_better=True,
            threshold=threshold,
            same_hardware=same_hardware,
        ),
    )


def _test_samples(rows: list[RuntimeRow]) -> int | None:
    """Return the test-set size of a key's rows; every seed evaluates on the same test split."""
    counts = {row.test_samples for row in rows if row.test_samples is not None}
    return min(counts) if counts else None


def compare_runs(run_a: RunData, run_b: RunData, threshold: float = RUN_TO_RUN_THRESHOLD) -> RunComparison:
    """Compare every key both runs measured, and list the keys only one of them measured."""
    same_hardware, run_warnings = _hardware_check(run_a, run_b)
    run_warnings += _profile_differences(run_a, run_b)

    keys = [
        compare_key(key, run_a.rows[key], run_b.rows[key], threshold=threshold, same_hardware=same_hardware)
        for key in _ordered(set(run_a.rows) & set(run_b.rows))
    ]
    only_in_a = [(key, _absence_reason(key, run_b)) for key in _ordered(set(run_a.rows) - set(run_b.rows))]
    only_in_b = [(key, _absence_reason(key, run_a)) for key in _ordered(set(run_b.rows) - set(run_a.rows))]
    without_numbers = [
        f"{label}: {key.label()}: {reason}"
        for label, run in (("A", run_a), ("B", run_b))
        for key in _ordered(run.unmeasured)
        if key.runtime is None
        for reason in run.unmeasured[key]
    ]
    problems = [
        f"{label}: {path}: {problem}"
        for label, run in (("A", run_a), ("B", run_b))
        for path, problem in run.problems
    ]
    return RunComparison(
        run_a=str(run_a.run_dir.path),
        run_b=str(run_b.run_dir.path),
        run_a_summary=_run_summary(run_a),
        run_b_summary=_run_summary(run_b),
        threshold=threshold,
        same_hardware=same_hardware,
        warnings=run_warnings,
        keys=keys,
        only_in_a=only_in_a,
        only_in_b=only_in_b,
        without_numbers=without_numbers,
        problems=problems,
    )


def _ordered(keys) -> list[RowKey]:
    """Sort keys like the report: by strategy in profile order, torch before tf, native runtimes first."""
    strategies = {name: index for index, name in enumerate(STRATEGIES)}
    frameworks = {name: index for index, name in enumerate(FRAMEWORKS)}

    def position(key: RowKey) -> tuple:
        runtime = key.runtime or ""
        return (
            key.dataset,
            key.model,
            strategies.get(key.strategy, len(strategies)),
            key.strategy,
            frameworks.get(key.framework, len(frameworks)),
            key.framework,
            runtime.startswith("onnxruntime"),
            runtime,
        )

    return sorted(keys, key=position)


def _run_summary(run: RunData) -> str:
    profile = run.info.get("profile") or {}
    seeds = sorted({row.seed for rows in run.rows.values() for row in rows})
    hardware = ", ".join(sorted(run.hardware_fingerprints)) or "not recorded"
    return (
        f"profile {profile.get('name', '?')}, {profile.get('epochs', '?')} epochs, "
        f"seeds {','.join(map(str, seeds)) or '-'}, hardware {hardware}"
    )


def _absence_reason(key: RowKey, other: RunData) -> str:
    """Explain why the other run has no numbers for `key`: its runtime or cell had no numbers, or no cell."""
    reasons = other.unmeasured.get(key) or other.unmeasured.get(key._replace(runtime=None))
    return "; ".join(reasons) if reasons else "no such cell or runtime"


def _hardware_check(run_a: RunData, run_b: RunData) -> tuple[bool, list[str]]:
    """Decide whether timings of the two runs are comparable, with a warning for each doubt."""
    found = []
    for label, run in (("A", run_a), ("B", run_b)):
        if len(run.hardware_fingerprints) > 1:
            found.append(
                f"run {label} has records from {len(run.hardware_fingerprints)} machines "
                f"({', '.join(sorted(run.hardware_fingerprints))}); its timings are not compared"
            )
    if found:
        return False, found
    if not run_a.hardware_fingerprints or not run_b.hardware_fingerprints:
        return True, ["a run records no hardware fingerprint; timings are compared as if from one machine"]
    if run_a.hardware_fingerprints != run_b.hardware_fingerprints:
        return False, [
            f"different hardware fingerprints ({next(iter(run_a.hardware_fingerprints))} in A, "
            f"{next(iter(run_b.hardware_fingerprints))} in B): timings from different machines are not "
            "comparable, so latency and throughput are shown but never called a change"
        ]
    return True, []


def _profile_differences(run_a: RunData, run_b: RunData) -> list[str]:
    profile_a = run_a.info.get("profile")
    profile_b = run_b.info.get("profile")
    missing = [
        f"no run.json profile in {run.run_dir.path}"
        for run, profile in ((run_a, profile_a), (run_b, profile_b))
        if not profile
    ]
    if missing:
        return [f"{text}; the two profiles could not be checked for differences" for text in missing]
    return [
        f"profiles differ: {name} {profile_a.get(name)!r} in A, {profile_b.get(name)!r} in B"
        for name in PROFILE_FIELDS
        if profile_a.get(name) != profile_b.get(name)
    ]


# ---------------------------------------------------------------------------------------------------
# Text output


def format_comparison(comparison: RunComparison) -> str:
    """Render the comparison as the text `bench compare` prints: header, one block per key, summary."""
    rules = (
        f"Accuracy changes are significant at p < {ALPHA:g}: Welch's t-test on per-seed accuracies when "
        "both runs have at least 2 seeds, else a two-proportion z-test on test-set counts, which covers "
        "test-set sampling only, not training randomness. Size is the gzip-compressed ONNX file of the "
        f"same seed, and a difference above {SIZE_TOLERANCE:.1%} is a change. Latency p50 (batch 1) and throughput change "
        "when both values are valid, both runs come from one machine and the median moved by more than "
        f"{comparison.threshold:.0%}."
    )
    lines = [
        f"A: {comparison.run_a} ({comparison.run_a_summary})",
        f"B: {comparison.run_b} ({comparison.run_b_summary})",
        *textwrap.wrap(rules, width=100),
    ]
    lines += [f"warning: {text}" for text in comparison.warnings]
    lines += [f"left out of the comparison: {text}" for text in comparison.problems]
    lines.append("")

    for item in comparison.keys:
        lines += _key_lines(item)
    for label, entries in (("only in A", comparison.only_in_a), ("only in B", comparison.only_in_b)):
        if entries:
            other = "B" if label == "only in A" else "A"
            lines.append(f"{label} ({len(entries)}):")
            lines += [f"  {key.label()} ({other}: {reason})" for key, reason in entries]
            lines.append("")
    if comparison.without_numbers:
        lines.append("cells without numbers:")
        lines += [f"  {text}" for text in comparison.without_numbers]
        lines.append("")

    lines.append(summary_line(comparison))
    return "\n".join(lines)


def summary_line(comparison: RunComparison) -> str:
    counts = comparison.counts()
    return (
        f"summary: {len(comparison.keys)} keys compared; "
        f"{_plural(counts['accuracy_significant'], 'significant accuracy change')} ({counts['accuracy_lower']} lower), "
        f"{_plural(counts['size_changed'], 'size change')} ({counts['size_larger']} larger), "
        f"{_plural(counts['latency_changed'], 'latency change')} ({counts['latency_slower']} slower), "
        f"{_plural(counts['throughput_changed'], 'throughput change')} ({counts['throughput_lower']} lower); "
        f"{_plural(counts['only_in_one_run'], 'key')} only in one run"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _key_lines(item: KeyComparison) -> list[str]:
    seeds = f"seeds {_seed_list(item.seeds_a)} | {_seed_list(item.seeds_b)}"
    accuracy = (
        f"{_text(item.accuracy_a.mean, '{:.4f}')} → {_text(item.accuracy_b.mean, '{:.4f}')}  "
        f"{_text(item.accuracy_difference, '{:+.2f}', 100)} points  {item.accuracy_test.describe(with_note=False)}"
    )
    spread = [
        f"    {label}: {summary.describe()}"
        for label, summary in (("A", item.accuracy_a), ("B", item.accuracy_b))
        if summary.n > 1
    ]
    size = item.size
    return [
        f"{item.key.label()} ({seeds})",
        f"  accuracy     {accuracy}",
        *spread,
        f"  size         {_text(size.value_a, '{:,.0f}')} → {_text(size.value_b, '{:,.0f}')} gzip bytes  "
        f"{_size_difference(size)}{size.verdict}",
        f"  latency p50  {_text(item.latency.value_a, '{:.3f}')} → {_text(item.latency.value_b, '{:.3f}')} ms  "
        f"{_text(item.latency.ratio, 'x{:.2f}')}  {item.latency.verdict}",
        f"  throughput   {_text(item.throughput.value_a, '{:,.0f}')} → {_text(item.throughput.value_b, '{:,.0f}')} "
        f"samples/s  {_text(item.throughput.ratio, 'x{:.2f}')}  {item.throughput.verdict}",
        "",
    ]


def _seed_list(seeds: list[int]) -> str:
    return ",".join(str(seed) for seed in seeds) or "-"


def _size_difference(size: MetricChange) -> str:
    """Format a changed size as "+9 bytes (+0.0039%)  "; unchanged or missing sizes get nothing."""
    if not size.changed or size.value_a is None or size.value_b is None:
        return ""
    percent = "" if size.ratio is None else f" ({(size.ratio - 1.0) * 100:+.2g}%)"
    return f"{size.value_b - size.value_a:+,.0f} bytes{percent}  "


def _text(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else fmt.format(value * scale)
