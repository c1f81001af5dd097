"""Seed statistics and `bench compare`, on hand-made numbers and synthetic run directories."""

import json
import math
import warnings
from pathlib import Path

import pytest
from scipy import stats

from bench import compare
from bench.cli import main
from bench.compare import (
    VERDICT_NOT_SIGNIFICANT,
    VERDICT_ONE_SEED,
    VERDICT_SIGNIFICANT,
    accuracy_change_test,
    count_test_samples,
    paired_t_test,
    size_change,
    summarize_accuracy,
    timing_change,
    two_proportion_z_test,
    welch_t_test,
)
from bench.measure.stats import RUN_TO_RUN_THRESHOLD
from bench.store import RunDir, published_run_dir

# The published run committed under results/runs (the newest quick or full run).
COMMITTED_RUN = published_run_dir(Path(__file__).resolve().parent.parent / "results" / "runs").path


# --- statistics -------------------------------------------------------------------------------------


def test_summary_of_three_seeds():
    summary = summarize_accuracy([0.90, 0.91, 0.92])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.91)
    assert summary.std == pytest.approx(0.01)
    low, high = stats.t.interval(0.95, 2, loc=0.91, scale=0.01 / math.sqrt(3))
    assert summary.interval[0] == pytest.approx(low)
    assert summary.interval[1] == pytest.approx(high)
    # t(0.975, 2 degrees of freedom) = 4.3027, so the half width is 4.3027 * 0.01 / sqrt(3).
    assert summary.interval[1] - summary.mean == pytest.approx(0.024841, abs=1e-6)
    assert "3 seeds" in summary.describe()


def test_summary_of_one_seed():
    summary = summarize_accuracy([0.9074])
    assert summary.n == 1
    assert summary.mean == pytest.approx(0.9074)
    assert summary.std is None
    assert summary.interval is None
    assert summary.describe() == "0.9074 (1 seed)"


def test_summary_of_identical_values():
    summary = summarize_accuracy([0.9074, 0.9074, 0.9074])
    assert summary.std == 0.0
    assert summary.interval == (summary.mean, summary.mean)


def test_summary_of_nothing():
    summary = summarize_accuracy([])
    assert summary.n == 0
    assert summary.mean is None
    assert summary.describe() == "no accuracy"


def test_paired_test_matches_scipy():
    first = {0: 0.901, 1: 0.905, 2: 0.899, 3: 0.903}
    second = {0: 0.906, 1: 0.907, 2: 0.905, 3: 0.910}
    expected = stats.ttest_rel([second[s] for s in range(4)], [first[s] for s in range(4)]).pvalue
    result = paired_t_test(first, second)
    assert result.test == "paired t-test"
    assert result.p_value == pytest.approx(expected)
    assert result.verdict == (VERDICT_SIGNIFICANT if expected < 0.05 else VERDICT_NOT_SIGNIFICANT)


def test_paired_test_uses_common_seeds_only():
    first = {0: 0.90, 1: 0.91, 2: 0.92, 7: 0.50}
    second = {0: 0.905, 1: 0.911, 2: 0.93, 9: 0.99}
    expected = stats.ttest_rel([0.905, 0.911, 0.93], [0.90, 0.91, 0.92]).pvalue
    assert paired_t_test(first, second).p_value == pytest.approx(expected)


def test_paired_test_one_pair_not_testable():
    result = paired_t_test({0: 0.90, 1: 0.91}, {0: 0.50, 2: 0.52})
    assert result.verdict == VERDICT_ONE_SEED
    assert result.p_value is None
    assert not result.significant


def test_paired_test_no_common_seed():
    result = paired_t_test({0: 0.90}, {1: 0.91})
    assert result.verdict == "not testable (no common seed)"
    assert not result.significant


def test_paired_test_identical_values_not_significant():
    result = paired_t_test({0: 0.9, 1: 0.91, 2: 0.92}, {0: 0.9, 1: 0.91, 2: 0.92})
    assert result.p_value == 1.0
    assert result.verdict == VERDICT_NOT_SIGNIFICANT


def test_paired_test_constant_difference_is_significant():
    # scipy returns an infinite statistic or NaN here; every seed moving by the same amount is the limit p = 0.
    result = paired_t_test({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.91, 1: 0.92, 2: 0.93})
    assert result.p_value == 0.0
    assert result.verdict == VERDICT_SIGNIFICANT
    assert result.note == "every seed gives the same difference"


def test_nan_p_value_is_not_testable(monkeypatch):
    class Result:
        pvalue = float("nan")

    monkeypatch.setattr(compare.stats, "ttest_rel", lambda *args, **kwargs: Result())
    result = paired_t_test({0: 0.90, 1: 0.95}, {0: 0.91, 1: 0.93})
    assert result.verdict == "not testable (p-value undefined)"
    assert result.p_value is None
    assert not result.significant


def test_welch_matches_scipy():
    first = [0.901, 0.905, 0.899]
    second = [0.880, 0.884, 0.879, 0.885]
    expected = stats.ttest_ind(second, first, equal_var=False).pvalue
    result = welch_t_test(first, second)
    assert result.test == "Welch's t-test"
    assert result.p_value == pytest.approx(expected)
    assert result.verdict == VERDICT_SIGNIFICANT


def test_welch_one_side_constant_matches_scipy():
    first = [0.90, 0.90, 0.90]
    second = [0.89, 0.91, 0.92]
    with warnings.catch_warnings():
        # scipy warns that the constant side has nearly identical values; its variance is 0 all the same.
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ttest_ind(second, first, equal_var=False).pvalue
    assert welch_t_test(first, second).p_value == pytest.approx(expected)


def test_welch_without_spread():
    assert welch_t_test([0.9, 0.9], [0.9, 0.9]).p_value == 1.0
    assert welch_t_test([0.9, 0.9], [0.9, 0.9]).verdict == VERDICT_NOT_SIGNIFICANT
    assert welch_t_test([0.9, 0.9], [0.8, 0.8]).p_value == 0.0


def test_welch_one_seed_not_testable():
    assert welch_t_test([0.9], [0.5, 0.6]).verdict == VERDICT_ONE_SEED


def test_z_test_by_hand():
    # pooled 0.905, standard error sqrt(0.905 * 0.095 * 2 / 10000), z = 0.01 / that = 2.4116
    result = two_proportion_z_test(0.90, 10_000, 0.91, 10_000)
    standard_error = math.sqrt(0.905 * 0.095 * (2 / 10_000))
    z = 0.01 / standard_error
    assert z == pytest.approx(2.4116, abs=1e-4)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.verdict == VERDICT_SIGNIFICANT
    assert "test-set sampling only" in result.note


def test_z_test_small_difference_not_significant():
    result = two_proportion_z_test(0.9074, 10_000, 0.9055, 10_000)
    assert 0.05 < result.p_value < 1.0
    assert result.verdict == VERDICT_NOT_SIGNIFICANT


def test_z_test_equal_and_degenerate():
    assert two_proportion_z_test(0.9074, 10_000, 0.9074, 10_000).p_value == pytest.approx(1.0)
    assert two_proportion_z_test(1.0, 500, 1.0, 500).p_value == 1.0
    assert two_proportion_z_test(0.0, 500, 0.0, 800).p_value == 1.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((0.9, 0, 0.9, 100), "samples_a"),
        ((0.9, 100, 0.9, -1), "samples_b"),
        ((1.2, 100, 0.9, 100), "accuracy_a"),
        ((0.9, 100, -0.1, 100), "accuracy_b"),
    ],
)
def test_z_test_rejects_invalid_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        two_proportion_z_test(*arguments)


def test_change_test_picks_welch_or_z():
    assert accuracy_change_test([0.9, 0.91], 10_000, [0.8, 0.81], 10_000).test == "Welch's t-test"
    assert accuracy_change_test([0.9], 10_000, [0.8, 0.81, 0.82], 10_000).test == "two-proportion z-test"
    assert accuracy_change_test([0.9, 0.91], 10_000, [0.8], 10_000).test == "two-proportion z-test"
    assert accuracy_change_test([0.9], None, [0.8], 10_000).verdict == "not testable (1 seed and no test-set size)"
    assert accuracy_change_test([], 10_000, [0.8], 10_000).verdict == "not testable (no accuracy)"


def test_test_samples_from_supports_or_matrix():
    assert count_test_samples({"per_class": [{"support": 600}, {"support": 400}]}) == 1000
    assert count_test_samples({"confusion_matrix": [[3, 1], [0, 4]]}) == 8
    assert count_test_samples({"accuracy": 0.9}) is None


def test_size_change_by_seed():
    assert size_change({0: 1000, 1: 1004}, {0: 1000, 1: 1004}).verdict == "unchanged"
    larger = size_change({0: 1000}, {0: 1009})
    assert (larger.verdict, larger.changed, larger.worse) == ("larger", True, True)
    smaller = size_change({0: 1000, 1: 1004}, {0: 900, 1: 904, 2: 5})
    assert (smaller.verdict, smaller.changed, smaller.worse) == ("smaller", True, False)
    assert smaller.value_b == pytest.approx(902)
    opposite = size_change({0: 1000, 1: 1000}, {0: 1010, 1: 990})
    assert (opposite.verdict, opposite.changed, opposite.worse) == ("changed", True, False)
    # A byte of tf2onnx naming jitter on a 228 KB export is no change.
    jitter = size_change({0: 228_554}, {0: 228_555})
    assert (jitter.verdict, jitter.changed) == ("within export jitter (0.1%)", False)
    assert size_change({0: 1000}, {1: 1000}).verdict == "not comparable (no common seed)"
    assert size_change({}, {0: 1000}).verdict == "not measured"


def test_timing_change_rules():
    def latency(a, b, same_hardware=True):
        return timing_change(a, b, higher_is_better=False, threshold=0.15, same_hardware=same_hardware)

    slower = latency([(1.0, True)], [(1.2, True)])
    assert (slower.verdict, slower.changed, slower.worse) == ("slower", True, True)
    assert slower.ratio == pytest.approx(1.2)
    assert latency([(1.0, True)], [(0.8, True)]).verdict == "faster"
    assert latency([(1.0, True)], [(1.1, True)]).verdict == "within noise"
    assert latency([(1.0, True)], [(2.0, False)]).verdict == "not comparable (invalid timing)"
    assert not latency([(1.0, True)], [(2.0, False)]).changed
    assert latency([(1.0, True)], [(2.0, True)], same_hardware=False).verdict == "not comparable (different hardware)"
    assert latency([(None, None)], [(2.0, True)]).verdict == "not measured"
    # The median over valid seeds: the invalid 9.0 is left out.
    assert latency([(1.0, True), (1.1, True), (9.0, False)], [(1.0, True)]).value_a == pytest.approx(1.05)

    lower = timing_change([(100.0, True)], [(80.0, True)], higher_is_better=True, threshold=0.15, same_hardware=True)
    assert (lower.verdict, lower.worse) == ("lower", True)


# --- synthetic run directories ---------------------------------------------------------------------


def make_record(
    framework,
    strategy,
    seed,
    accuracy,
    *,
    size=230_000,
    latency_ms=0.05,
    latency_valid=True,
    throughput=70_000.0,
    test_samples=10_000,
    hardware="hw-1",
    status="ok",
):
    """Build a cell record with the keys bench compare reads, laid out like the runner writes them."""
    cell_id = f"{framework}-{strategy}-digits-lenet5-s{seed}"
    native = "torch-eager" if framework == "torch" else "tf-eager"
    per_class = [{"class_index": index, "support": test_samples // 10} for index in range(10)]

    def runtime(name, kind, latency_scale):
        return {
            "runtime": name,
            "kind": kind,
            "status": "ok",
            "quality": {"accuracy": accuracy, "f1_macro": accuracy, "per_class": per_class},
            "latency": {"latency_ms_p50": latency_ms * latency_scale, "valid": latency_valid, "invalid_reasons": []},
            "throughput": {"throughput_samples_per_s": throughput / latency_scale, "valid": True},
        }

    record = {
        "schema_version": 1,
        "run_id": "RUN",
        "cell_id": cell_id,
        "cell": {"framework": framework, "strategy": strategy, "dataset": "digits", "model": "lenet5", "seed": seed},
        "profile": "smoke",
        "status": status,
        "error": None,
        "environment": {"hardware_fingerprint": hardware},
        "model": {"size_gzip_bytes": size},
        "runtimes": [runtime(native, "native", 4.0), runtime("onnxruntime", "onnx", 1.0)],
    }
    if status != "ok":
        record["error"] = {"message": "worker exited with signal 9"}
        record["runtimes"] = []
    return record


def write_run(path, records, *, seeds, epochs=3):
    run_dir = RunDir(path)
    run_dir.write_run_info({"run_id": path.name, "profile": {"name": "smoke", "epochs": epochs, "seeds": list(seeds)}})
    for record in records:
        run_dir.write_record(record)
    return run_dir


SEED_ACCURACIES = {0: 0.901, 1: 0.905, 2: 0.898}


def three_seed_records(accuracy_shift=0.0, **overrides):
    return [
        make_record(framework, strategy, seed, accuracy + accuracy_shift, **overrides)
        for framework in ("torch", "tf")
        for strategy in ("baseline", "prune-unstructured")
        for seed, accuracy in SEED_ACCURACIES.items()
    ]


@pytest.fixture
def runs(tmp_path):
    """Run A and run B with 3 seeds; B loses accuracy on torch baseline, grows tf prune and slows torch."""
    first = write_run(tmp_path / "runs" / "A", three_seed_records(), seeds=(0, 1, 2))
    second_records = []
    for record in three_seed_records():
        cell = record["cell"]
        if cell["framework"] == "torch" and cell["strategy"] == "baseline":
            # Lower accuracy on every seed, slower latency and lower throughput.
            accuracy = record["runtimes"][0]["quality"]["accuracy"] - 0.03
            record = make_record("torch", "baseline", cell["seed"], accuracy, latency_ms=0.08, throughput=43_750.0)
        if cell["framework"] == "tf" and cell["strategy"] == "prune-unstructured":
            record["model"]["size_gzip_bytes"] += 512
        if cell["framework"] == "tf" and cell["strategy"] == "baseline":
            # Twice as slow, but the timing failed its validity check.
            accuracy = record["runtimes"][0]["quality"]["accuracy"]
            record = make_record("tf", "baseline", cell["seed"], accuracy, latency_ms=0.10, latency_valid=False)
        second_records.append(record)
    second_records.append(make_record("torch", "lowrank", 0, 0.89))
    second = write_run(tmp_path / "runs" / "B", second_records, seeds=(0, 1, 2))
    return first, second


def run_compare(capsys, *args):
    status = main(["compare", *map(str, args)])
    return status, capsys.readouterr().out


def block(output, label):
    """Return the lines printed for one key."""
    lines = output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(label + " (")))
    end = lines.index("", start)
    return "\n".join(lines[start:end])


def test_three_seed_regression_found(runs, capsys):
    first, second = runs
    status, output = run_compare(capsys, first.path, second.path)
    assert status == 0

    torch_baseline = block(output, "torch / baseline / digits / lenet5 / onnxruntime")
    assert "seeds 0,1,2 | 0,1,2" in torch_baseline
    assert "-3.00 points" in torch_baseline
    assert "Welch's t-test p<0.001, significant" in torch_baseline
    assert "not significant" not in torch_baseline
    assert "latency p50  0.050 → 0.080 ms  x1.60  slower" in torch_baseline
    assert "throughput   70,000 → 43,750 samples/s  x0.62  lower" in torch_baseline
    assert "3 seeds" in torch_baseline

    tf_prune = block(output, "tf / prune-unstructured / digits / lenet5 / onnxruntime")
    assert "230,000 → 230,512 gzip bytes  +512 bytes (+0.22%)  larger" in tf_prune
    assert "not significant" in tf_prune

    tf_baseline = block(output, "tf / baseline / digits / lenet5 / onnxruntime")
    assert "not comparable (invalid timing)" in tf_baseline

    unchanged = block(output, "torch / prune-unstructured / digits / lenet5 / torch-eager")
    assert "unchanged" in unchanged
    assert "within noise" in unchanged

    summary = output.strip().splitlines()[-1]
    assert summary.startswith("summary: 8 keys compared;")
    assert "2 significant accuracy changes (2 lower)" in summary
    assert "2 size changes (2 larger)" in summary
    assert "2 latency changes (2 slower)" in summary
    assert "2 throughput changes (2 lower)" in summary
    assert "2 keys only in one run" in summary


def test_fail_on_regression_exit_code(runs, capsys, caplog):
    first, second = runs
    status, _ = run_compare(capsys, first.path, second.path, "--fail-on-regression")
    assert status == 1
    assert "torch / baseline / digits / lenet5 / onnxruntime accuracy" in caplog.text
    assert "tf / prune-unstructured / digits / lenet5 / onnxruntime size" in caplog.text

    status, output = run_compare(capsys, first.path, first.path, "--fail-on-regression")
    assert status == 0
    assert "0 significant accuracy changes" in output


def test_improvement_is_not_a_regression(runs, capsys):
    first, second = runs
    # B to A: accuracy higher, size smaller, latency faster.
    status, output = run_compare(capsys, second.path, first.path, "--fail-on-regression")
    assert status == 0
    assert "faster" in output
    assert "smaller" in output
    assert "2 significant accuracy changes (0 lower)" in output


def test_keys_in_one_run_listed(runs, capsys):
    first, second = runs
    _, output = run_compare(capsys, first.path, second.path)
    assert "only in B (2):" in output
    assert "  torch / lowrank / digits / lenet5 / torch-eager (A: no such cell or runtime)" in output


def test_single_seed_uses_z_test(tmp_path, capsys):
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.9000)], seeds=(0,))
    second = write_run(tmp_path / "B", [make_record("torch", "baseline", 0, 0.9100)], seeds=(0,))
    status, output = run_compare(capsys, first.path, second.path, "--fail-on-regression")
    assert status == 0
    expected = two_proportion_z_test(0.90, 10_000, 0.91, 10_000).p_value
    native = block(output, "torch / baseline / digits / lenet5 / torch-eager")
    assert f"two-proportion z-test p={expected:.3g}, significant" in native
    assert "+1.00 points" in native
    assert "covers test-set sampling only, not training randomness" in " ".join(output.split())


def test_one_seed_against_three(tmp_path, capsys):
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.9050)], seeds=(0,))
    second = write_run(tmp_path / "B", three_seed_records(), seeds=(0, 1, 2))
    _, output = run_compare(capsys, first.path, second.path)
    native = block(output, "torch / baseline / digits / lenet5 / torch-eager")
    assert "seeds 0 | 0,1,2" in native
    assert "two-proportion z-test" in native
    assert "not significant" in native


def test_hardware_and_profile_differences_warned(tmp_path, capsys):
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.90)], seeds=(0,))
    second = write_run(
        tmp_path / "B", [make_record("torch", "baseline", 0, 0.90, latency_ms=0.5, hardware="hw-2")], seeds=(0,), epochs=20
    )
    status, output = run_compare(capsys, first.path, second.path, "--fail-on-regression")
    assert status == 0
    assert "warning: different hardware fingerprints (hw-1 in A, hw-2 in B)" in output
    assert "warning: profiles differ: epochs 3 in A, 20 in B" in output
    assert "x10.00  not comparable (different hardware)" in output
    assert "0 latency changes" in output


def test_corrupt_record_reported(runs, capsys):
    first, second = runs
    (second.records_dir / "tf-baseline-digits-lenet5-s9.json").write_text("{ not json", encoding="utf-8")
    status, output = run_compare(capsys, first.path, second.path)
    assert status == 0
    assert "left out of the comparison: B: " in output
    assert "tf-baseline-digits-lenet5-s9.json: unreadable record" in output
    assert "summary: 8 keys compared" in output

    status, output = run_compare(capsys, first.path, second.path, "--json")
    assert "tf-baseline-digits-lenet5-s9.json" in json.loads(output)["problems"][0]


def test_record_without_cell_reported(runs, capsys):
    first, second = runs
    second.write_record({"cell_id": "torch-baseline-digits-lenet5-s5", "status": "ok"})
    status, output = run_compare(capsys, first.path, second.path)
    assert status == 0
    assert "torch-baseline-digits-lenet5-s5.json: record without the expected fields (KeyError: 'cell')" in output
    assert "summary: 8 keys compared" in output


def test_failed_cell_listed(tmp_path, capsys):
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.90)], seeds=(0,))
    second = write_run(tmp_path / "B", [make_record("torch", "baseline", 0, 0.90, status="crashed")], seeds=(0,))
    _, output = run_compare(capsys, first.path, second.path)
    assert "only in A (2):" in output
    assert "torch / baseline / digits / lenet5 / torch-eager (B: s0 crashed: worker exited with signal 9)" in output
    assert "cells without numbers:" in output
    assert "B: torch / baseline / digits / lenet5: s0 crashed" in output


def test_run_id_resolved_under_results_dir(runs, capsys):
    first, _ = runs
    results_dir = first.path.parent.parent
    status, output = run_compare(capsys, "A", "B", "--results-dir", results_dir)
    assert status == 0
    assert "summary: 8 keys compared" in output


def test_missing_run_dir_exit_2(tmp_path, capsys, caplog):
    status, _ = run_compare(capsys, tmp_path / "nope", tmp_path / "nope", "--results-dir", tmp_path)
    assert status == 2
    assert f"run directory {tmp_path / 'nope'} not found" in caplog.text
    assert "results/runs/RUN_ID" in caplog.text


def test_run_without_records_exit_2(tmp_path, capsys, caplog):
    (tmp_path / "empty").mkdir()
    status, _ = run_compare(capsys, tmp_path / "empty", tmp_path / "empty")
    assert status == 2
    assert f"no readable records in {tmp_path / 'empty' / 'records'}" in caplog.text


def test_run_with_only_corrupt_records_exit_2(tmp_path, capsys, caplog):
    records = tmp_path / "broken" / "records"
    records.mkdir(parents=True)
    (records / "cell.json").write_text("[1, 2", encoding="utf-8")
    status, _ = run_compare(capsys, tmp_path / "broken", tmp_path / "broken")
    assert status == 2
    assert "1 unreadable, first: cell.json" in caplog.text


def test_json_output(runs, capsys):
    first, second = runs
    status, output = run_compare(capsys, first.path, second.path, "--json")
    assert status == 0
    data = json.loads(output)
    assert data["alpha"] == 0.05
    assert data["threshold"] == RUN_TO_RUN_THRESHOLD
    assert data["counts"]["accuracy_lower"] == 2
    by_label = {
        (item["key"]["framework"], item["key"]["strategy"], item["key"]["runtime"]): item for item in data["keys"]
    }
    torch_baseline = by_label[("torch", "baseline", "onnxruntime")]
    assert torch_baseline["regressions"] == ["accuracy", "latency", "throughput"]
    assert torch_baseline["accuracy_test"]["test"] == "Welch's t-test"
    assert torch_baseline["accuracy_a"]["interval"][0] < torch_baseline["accuracy_a"]["mean"]
    assert data["only_in_b"][0]["key"]["strategy"] == "lowrank"


def test_committed_run_against_itself(capsys):
    status, output = run_compare(capsys, COMMITTED_RUN, COMMITTED_RUN, "--fail-on-regression")
    assert status == 0
    assert not [line for line in output.splitlines() if line.endswith(", significant")]
    summary = output.strip().splitlines()[-1]
    assert "0 significant accuracy changes" in summary
    assert "0 size changes" in summary
    assert "0 latency changes" in summary
    assert "0 throughput changes" in summary
    assert "0 keys only in one run" in summary


def test_runs_without_common_keys_exit_2(tmp_path, capsys, caplog):
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.9)], seeds=(0,))
    second = write_run(tmp_path / "B", [make_record("tf", "lowrank", 0, 0.9)], seeds=(0,))
    status, _ = run_compare(capsys, first.path, second.path, "--fail-on-regression")
    assert status == 2
    assert "nothing was compared" in caplog.text


def test_wrongly_typed_field_exit_2(tmp_path, capsys, caplog):
    broken = make_record("torch", "baseline", 0, 0.9)
    broken["runtimes"][0]["latency"]["latency_ms_p50"] = "fast"
    first = write_run(tmp_path / "A", [make_record("torch", "baseline", 0, 0.9)], seeds=(0,))
    second = write_run(tmp_path / "B", [broken], seeds=(0,))
    status, _ = run_compare(capsys, first.path, second.path)
    assert status == 2
    assert "wrongly typed field" in caplog.text
    assert str(second.path) in caplog.text
