"""The "Seeds and spread" report section, on hand-made records."""

from pathlib import Path

from scipy import stats

from bench.report import records_frame, render_markdown
from bench.report_seeds import native_accuracies, reference_strategy, seeds_section
from bench.store import RunDir, published_run_dir

# The published run committed under results/runs (the newest quick or full run).
COMMITTED_RUN = published_run_dir(Path(__file__).resolve().parent.parent / "results" / "runs").path


def make_record(framework, strategy, seed, accuracy, *, status="ok"):
    """Build a finished cell record whose native runtime has `accuracy`; ONNX Runtime scores 0.1 lower."""
    native = "torch-eager" if framework == "torch" else "tf-eager"
    return {
        "cell_id": f"{framework}-{strategy}-digits-lenet5-s{seed}",
        "cell": {"framework": framework, "strategy": strategy, "dataset": "digits", "model": "lenet5", "seed": seed},
        "status": status,
        "runtimes": [
            {"runtime": "onnxruntime", "kind": "onnx", "status": "ok", "quality": {"accuracy": accuracy - 0.1}},
            {"runtime": native, "kind": "native", "status": "ok", "quality": {"accuracy": accuracy}},
        ],
    }


def table_row(lines, *cells):
    """Return the one table line that starts with these cells."""
    prefix = "| " + " | ".join(cells) + " |"
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


TORCH = {0: 0.900, 1: 0.905, 2: 0.898}
TF = {0: 0.903, 1: 0.906, 2: 0.902}
AUGMENT_TORCH = {0: 0.880, 1: 0.886, 2: 0.881}


def three_seed_records():
    records = []
    for seed in range(3):
        records.append(make_record("torch", "baseline", seed, TORCH[seed]))
        records.append(make_record("tf", "baseline", seed, TF[seed]))
        records.append(make_record("torch", "augment", seed, AUGMENT_TORCH[seed]))
        records.append(make_record("tf", "augment", seed, TF[seed]))
    return records


def test_reference_strategy():
    assert reference_strategy("baseline") is None
    assert reference_strategy("augment") == "baseline"
    assert reference_strategy("compress") == "baseline"
    assert reference_strategy("peft-full") is None
    assert reference_strategy("peft-lora") == "peft-full"


def test_native_accuracy_skips_other_runtimes_and_failures():
    records = [make_record("torch", "baseline", 0, 0.9), make_record("tf", "baseline", 0, 0.8, status="failed")]
    assert native_accuracies(records) == {("digits", "lenet5", "baseline", "torch"): {0: 0.9}}


def test_three_seed_spread_row():
    lines = seeds_section(three_seed_records())
    summary_interval = stats.t.interval(0.95, 2, loc=0.901, scale=stats.sem([0.900, 0.905, 0.898]))
    row = table_row(lines, "baseline", "torch", "0,1,2")
    assert f"| 0.9010 | 0.0036 | [{summary_interval[0]:.4f}, {summary_interval[1]:.4f}] | - | - | - | - |" in row
    assert not any("has one seed" in line for line in lines)


def test_strategy_vs_baseline_paired_by_seed():
    lines = seeds_section(three_seed_records())
    expected = stats.ttest_rel(list(AUGMENT_TORCH.values()), list(TORCH.values())).pvalue
    row = table_row(lines, "augment", "torch", "0,1,2")
    # Mean of the per-seed differences: (-0.020 - 0.019 - 0.017) / 3 = -0.0187.
    assert "| baseline | -1.87 |" in row
    assert f"| {expected:.3g} | significant |" in row


def test_torch_vs_tf_paired_by_seed():
    lines = seeds_section(three_seed_records())
    heading = lines.index("### torch vs tf across seeds")
    expected = stats.ttest_rel(list(TF.values()), list(TORCH.values())).pvalue
    row = table_row(lines[heading:], "baseline", "0,1,2")
    assert f"| 0.9010 | 0.9037 | +0.27 | {expected:.3g} | not significant |" in row


def test_single_seed_note_and_verdicts():
    records = [
        make_record("torch", "baseline", 0, 0.9074),
        make_record("tf", "baseline", 0, 0.9055),
        make_record("torch", "augment", 0, 0.8857),
    ]
    lines = seeds_section(records)
    assert any("one seed (0)" in line and "`full` profile runs seeds 0, 1 and 2" in line for line in lines)
    assert table_row(lines, "baseline", "torch", "0").endswith("| 0.9074 | - | 1 seed | - | - | - | - |")
    assert table_row(lines, "augment", "torch", "0").endswith("| baseline | -2.17 | - | not testable (1 seed) |")
    heading = lines.index("### torch vs tf across seeds")
    assert table_row(lines[heading:], "baseline", "0").endswith("| -0.19 | - | not testable (1 seed) |")


def test_peft_compared_with_full_finetuning():
    records = [
        make_record("torch", "baseline", 0, 0.90),
        make_record("torch", "peft-full", 0, 0.93),
        make_record("torch", "peft-lora", 0, 0.91),
    ]
    lines = seeds_section(records)
    assert "| peft-full | -2.00 |" in table_row(lines, "peft-lora", "torch", "0")
    assert table_row(lines, "peft-full", "torch", "0").endswith("| - | - | - | - |")


def test_missing_reference_cell_named():
    lines = seeds_section([make_record("tf", "augment", 0, 0.88)])
    assert table_row(lines, "augment", "tf", "0").endswith("| baseline | - | - | no baseline cell in this run |")
    assert "### torch vs tf across seeds" not in lines


def test_no_records_no_section():
    assert seeds_section([]) == []
    assert seeds_section([make_record("torch", "baseline", 0, 0.9, status="crashed")]) == []


def test_committed_run_report_has_section(tmp_path):
    run_dir = RunDir(COMMITTED_RUN)
    records, problems = run_dir.read_records()
    markdown = render_markdown(records_frame(records), run_dir, records, problems, tmp_path)
    assert "## Seeds and spread" in markdown
    seeds = sorted({record["cell"]["seed"] for record in records})
    seed_list = ",".join(str(seed) for seed in seeds)
    lora = next(line for line in markdown.splitlines() if line.startswith(f"| peft-lora | torch | {seed_list} |"))
    if len(seeds) == 1:  # a quick run
        assert f"This run has one seed ({seeds[0]})" in markdown
        assert "| - | 1 seed | peft-full |" in lora
        assert lora.endswith("| - | not testable (1 seed) |")
    else:  # a full run: every comparison gets a paired t-test
        assert "This run has one seed" not in markdown
        assert "| peft-full |" in lora
        assert lora.endswith(("| significant |", "| not significant |")), lora
